"""The container engines ``modelfn image`` drives: Docker (BuildKit), podman and buildah.

Every engine builds the same staged context with the same result: one single-platform image
in Docker v2s2 form with no attestation index (Lambda refuses an OCI index: "image manifest,
config or layer media type … is not supported"). Docker: ``--provenance=false --sbom=false``;
podman/buildah: ``--format docker``. Engine-wide settings a machine needs (runtime, cgroup
manager, default ulimits) belong in ``/etc/containers/containers.conf``, which podman and
buildah read for builds and runs alike (the image lane writes one: tests/image/conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ENGINES = ("docker", "podman", "buildah")
INSTALL_HINT = ("install podman (Debian/Ubuntu: `apt-get install podman runc`) or Docker, "
                "or pick one with --engine")


class EngineError(RuntimeError):
    """No usable engine, or an engine step failed; the message names the fix."""


@dataclass(frozen=True)
class Engine:
    name: str
    executable: str

    # --- plumbing -----------------------------------------------------------------------
    def _run(self, args: Sequence[str], *, check: bool = True, timeout: float | None = 120
             ) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run([self.executable, *args], capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise EngineError(f"`{self.name} {' '.join(args[:2])}` did not finish in {timeout} s") from exc
        if check and proc.returncode != 0:
            raise EngineError(f"`{self.name} {' '.join(args[:2])}` failed: "
                              f"{(proc.stderr or proc.stdout).strip()[-800:]}")
        return proc

    def unusable_reason(self) -> str | None:
        """Why this engine cannot build here (Docker without a daemon), or None."""
        if self.name != "docker":
            return None
        proc = self._run(["info", "--format", "{{.ServerVersion}}"], check=False, timeout=20)
        if proc.returncode != 0:
            said = ((proc.stderr or "").strip().splitlines() or ["no answer"])[-1]
            return (f"docker is installed but its daemon is not reachable ({said}); "
                    "start it (`sudo systemctl start docker`) or use --engine podman")
        return None

    # --- building -----------------------------------------------------------------------
    def build_args(self, *, context: Path, tag: str, platform: str,
                   build_args: Mapping[str, str] | None = None) -> list[str]:
        """The engine's argv (after the executable) for one single-platform v2s2 build."""
        args = ["build", "--platform", platform, "-t", tag, "-f", str(Path(context) / "Dockerfile")]
        if self.name == "docker":
            args += ["--provenance=false", "--sbom=false"]
        else:  # podman and buildah: Docker v2s2 (not OCI), cached layers, host network for pip
            args += ["--format", "docker", "--layers", "--network", "host"]
        for k, v in sorted((build_args or {}).items()):
            args += ["--build-arg", f"{k}={v}"]
        return [*args, str(context)]

    def build(self, *, context: Path, tag: str, platform: str,
              build_args: Mapping[str, str] | None = None,
              log: Callable[[str], None] | None = None, timeout_s: float = 1800) -> None:
        argv = [self.executable, *self.build_args(context=context, tag=tag, platform=platform,
                                                  build_args=build_args)]
        env = {**os.environ, "DOCKER_BUILDKIT": "1"} if self.name == "docker" else None
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env)
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = [*tail[-39:], line.rstrip()]
            if log:
                log(line.rstrip())
        if proc.wait(timeout=timeout_s) != 0:
            raise EngineError(f"{self.name} build of {tag} failed (exit {proc.returncode}):\n"
                              + "\n".join(tail[-15:]))

    def import_tarball(self, tarball: Path, tag: str) -> None:
        """A root filesystem tarball as a one-layer image (``import``; buildah: from scratch)."""
        if self.name == "buildah":
            ctr = self._run(["from", "scratch"]).stdout.strip()
            try:
                mnt = self._run(["mount", ctr]).stdout.strip()
                subprocess.run(["tar", "--numeric-owner", "-C", mnt, "-xf", str(tarball)], check=True)
                self._run(["commit", "--format", "docker", ctr, tag], timeout=600)
            finally:
                self._run(["rm", ctr], check=False)
            return
        self._run(["import", str(tarball), tag], timeout=600)

    # --- inspecting ---------------------------------------------------------------------
    def image_exists(self, tag: str) -> bool:
        if self.name == "docker":
            return self._run(["image", "inspect", tag], check=False).returncode == 0
        if self.name == "podman":
            return self._run(["image", "exists", tag], check=False).returncode == 0
        return self._run(["inspect", "--type", "image", tag], check=False).returncode == 0

    def layer_sizes(self, tag: str) -> list[int]:
        """Uncompressed size of each layer, bottom to top (empty metadata layers left out)."""
        if self.name == "docker":
            out = self._run(["history", "--no-trunc", "--human=false", "--format", "{{.Size}}",
                             tag]).stdout.split()
            sizes = [int(s) for s in reversed(out)]
        elif self.name == "podman":
            rows = json.loads(self._run(["history", "--format", "json", tag]).stdout or "[]")
            sizes = [int(r.get("size") or r.get("Size") or 0) for r in reversed(rows)]
        else:
            doc = json.loads(self._run(["inspect", "--type", "image", tag]).stdout)
            manifest = json.loads(doc.get("Manifest") or "{}")
            sizes = [int(layer.get("size", 0)) for layer in manifest.get("layers", [])]
        return [s for s in sizes if s > 0]

    def size_bytes(self, tag: str) -> int:
        if self.name in ("docker", "podman"):
            return int(self._run(["image", "inspect", "--format", "{{.Size}}", tag]).stdout.strip())
        return sum(self.layer_sizes(tag))

    def architecture(self, tag: str) -> str:
        fmt = "{{.Architecture}}" if self.name != "buildah" else "{{.OCIv1.Architecture}}"
        cmd = ["image", "inspect", "--format", fmt, tag] if self.name != "buildah" else \
            ["inspect", "--type", "image", "--format", fmt, tag]
        return self._run(cmd).stdout.strip()


def find_engine(preferred: str | None = None) -> Engine:
    """``preferred`` if usable, else the first usable of docker, podman, buildah."""
    reasons: list[str] = []
    for name in ([preferred] if preferred else ENGINES):
        path = shutil.which(name)
        if path is None:
            reasons.append(f"{name} is not installed")
            continue
        engine = Engine(name, path)
        why = engine.unusable_reason()
        if why is None:
            return engine
        reasons.append(why)
    wanted = f"container engine {preferred!r}" if preferred else "no usable container engine"
    raise EngineError(f"{wanted}: {'; '.join(reasons)}. Fix: {INSTALL_HINT}.")
