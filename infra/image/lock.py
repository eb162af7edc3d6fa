"""``make lock``: the image's locked closure, ``layers/requirements.lock``, from ``requirements.txt``.

The closure is resolved by pip itself for the interpreter and platforms the images run on
(CPython 3.13, manylinux_2_34 — the AWS Lambda Python 3.13 base, Amazon Linux 2023, glibc
2.34 — for x86_64 and aarch64): ``pip install --dry-run --report`` per platform with binary
wheels only, which reads PyPI's metadata and wheel hashes without downloading the wheels
(the GPU closure is gigabytes). The lock pins each distribution once with the hashes of its
wheels for every platform, so one file serves both architectures and the image installs it
with ``--require-hashes --no-deps``: nothing outside the lock, nothing unpinned, no source
builds. ``layers/requirements-gpu.lock`` is the same set with ``onnxruntime-gpu[cuda,cudnn]``
(CUDA and cuDNN from their PyPI wheels) in place of ``onnxruntime``, for x86_64 (the
SageMaker image on ml.g*/ml.p*). ``layers/requirements-generation.lock`` is what a generative
model's image adds on top (``layers/requirements-generation.txt``: onnxruntime-genai, Jinja2, PyJWT
with ``cryptography``), resolved together with the runtime's requirements so the versions agree,
less every distribution the runtime lock already pins; its own layer installs it the same way.
``layers/requirements-gpu-generation.lock`` is that layer for the GPU SageMaker image:
``onnxruntime-genai-cuda`` in place of ``onnxruntime-genai``, less what the GPU lock pins.

Distributions the base image already provides (boto3 and its closure, in ``/var/runtime``)
are left out, so nothing in ``/var/task`` shadows them (aws-xray-sdk asks for botocore).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.image.standin import cache_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO_ROOT / "layers" / "requirements.txt"
#: Pinned without their declared dependencies, which the runtime never imports (tokenizers'
#: huggingface-hub closure); the file says why for each.
NODEPS_REQUIREMENTS = REPO_ROOT / "layers" / "requirements-nodeps.txt"
LOCK = REPO_ROOT / "layers" / "requirements.lock"
GPU_LOCK = REPO_ROOT / "layers" / "requirements-gpu.lock"
#: What a generative model's image adds (its own layer, infra/targets/staging.py), and its lock.
GENERATION_REQUIREMENTS = REPO_ROOT / "layers" / "requirements-generation.txt"
GENERATION_LOCK = REPO_ROOT / "layers" / "requirements-generation.lock"
#: The generation layer of the GPU SageMaker image: the same set with onnxruntime-genai-cuda (its
#: CUDA 13 build, over onnxruntime-gpu) in place of onnxruntime-genai, layered over the GPU lock.
GPU_GENERATION_LOCK = REPO_ROOT / "layers" / "requirements-gpu-generation.lock"
PYTHON_VERSION = "3.13"
ABI = "cp313"
GLIBC_MINOR = 34  # manylinux_2_34: the Lambda Python 3.13 base's glibc
ARCHES = ("x86_64", "aarch64")
GPU_ARCHES = ("x86_64",)  # SageMaker's ml.g*/ml.p* instances
#: Provided by the Lambda base image (/var/runtime); a copy in /var/task would shadow it.
BASE_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "urllib3",
                           "python-dateutil", "six"})
INDEX_URL = "https://pypi.org/simple"

_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-.*\.whl$")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def platform_tags(arch: str, glibc_minor: int = GLIBC_MINOR) -> list[str]:
    """Every manylinux tag a glibc-2.<minor> system accepts, newest first (pip does not
    expand ``--platform manylinux_2_34_x86_64`` to the older tags by itself)."""
    tags = [f"manylinux_2_{m}_{arch}" for m in range(glibc_minor, 16, -1)]
    return [*tags, f"manylinux2014_{arch}"]


def wheelhouse(arch: str) -> Path:
    """Where the image lane keeps downloaded wheels (outside the repository)."""
    return cache_dir() / "wheelhouse" / f"{ABI}-manylinux_2_{GLIBC_MINOR}-{arch}"


class LockError(RuntimeError):
    pass


def _pip_target_args(arch: str) -> list[str]:
    args = ["--isolated", "--disable-pip-version-check", "--quiet", "--index-url", INDEX_URL,
            "--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp",
            "--abi", ABI]
    for tag in platform_tags(arch):
        args += ["--platform", tag]
    return args


def pip_download(args: Iterable[str], *, arch: str, dest: Path) -> subprocess.CompletedProcess:
    """``pip download`` of binary wheels for ``arch`` from PyPI into ``dest`` (no raise)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", *_pip_target_args(arch), "-d", str(dest)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True)


@dataclass
class Pin:
    name: str
    version: str
    hashes: set[str] = field(default_factory=set)
    arches: set[str] = field(default_factory=set)


def resolve_report(requirements: Sequence[str], *, arch: str) -> list[dict]:
    """pip's resolution of ``requirements`` for ``arch`` (its ``--report`` install items)."""
    with tempfile.TemporaryDirectory(prefix="modelfn-lock-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", *_pip_target_args(arch), "--dry-run",
               "--ignore-installed", "--target", str(Path(tmp) / "t"), "--report", str(report),
               *requirements]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise LockError(f"pip could not resolve binary wheels for cp313 "
                            f"manylinux_2_{GLIBC_MINOR} {arch}: "
                            f"{(proc.stderr or proc.stdout).strip()[-1500:]}")
        return json.loads(report.read_text()).get("install", [])


def resolve(requirements: Sequence[str], arches: Sequence[str] = ARCHES,
            nodeps: Sequence[str] = ()) -> dict[str, Pin]:
    """name → pin over ``arches``: one version everywhere, every wheel's sha256.
    ``nodeps`` are pinned alone, without their declared dependencies."""
    pins: dict[str, Pin] = {}
    for arch in arches:
        items = resolve_report(requirements, arch=arch)
        if nodeps:
            items = [*items, *resolve_report(["--no-deps", *nodeps], arch=arch)]
        for item in items:
            name, version = normalize(item["metadata"]["name"]), item["metadata"]["version"]
            info = item.get("download_info", {})
            digest = info.get("archive_info", {}).get("hashes", {}).get("sha256")
            if not digest or not info.get("url", "").split("#")[0].endswith(".whl"):
                raise LockError(f"{name} {version} has no binary wheel with a sha256 for {arch}")
            pin = pins.setdefault(name, Pin(name, version))
            if pin.version != version:
                raise LockError(f"{name} resolves to {pin.version} on one platform and "
                                f"{version} on {arch}; pin it in layers/requirements.txt")
            pin.hashes.add(digest)
            pin.arches.add(arch)
    missing = [p.name for p in pins.values() if p.arches != set(arches)]
    if missing:
        raise LockError(f"resolved for only some of {', '.join(arches)}: {', '.join(missing)}")
    return pins


def requirement_lines(path: Path = REQUIREMENTS) -> list[str]:
    if not path.is_file():
        return []
    return [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()
            if ln.split("#", 1)[0].strip()]


def gpu_requirements(lines: Sequence[str]) -> list[str]:
    """The CPU set with ``onnxruntime`` swapped for ``onnxruntime-gpu`` + CUDA/cuDNN wheels."""
    out = []
    for line in lines:
        m = re.match(r"^onnxruntime\s*(==.*)$", line)
        out.append(f"onnxruntime-gpu[cuda,cudnn]{m[1]}" if m else line)
    if out == list(lines):
        raise LockError("layers/requirements.txt pins no onnxruntime to swap for onnxruntime-gpu")
    return out


def gpu_generation_requirements(lines: Sequence[str]) -> list[str]:
    """The generation layer's set with ``onnxruntime-genai`` swapped for ``onnxruntime-genai-cuda``
    (same version: its CUDA 13 build, which needs onnxruntime-gpu and the CUDA wheels of the GPU
    lock: cuBLAS/cuBLASLt 13, cuFFT 12, cuRAND 10, cudart 13)."""
    out = [re.sub(r"^onnxruntime-genai\s*(==.*)$", r"onnxruntime-genai-cuda\1", line) for line in lines]
    if out == list(lines):
        raise LockError("layers/requirements-generation.txt pins no onnxruntime-genai to swap for "
                        "onnxruntime-genai-cuda")
    return out


def render(pins: dict[str, Pin], *, what: str, arches: Sequence[str],
           source: str = "layers/requirements.txt", omitted: Sequence[str] = ()) -> str:
    """The lock file's text; ``omitted``: a note on distributions left out besides the base's."""
    lines = [
        f"# {what}: generated by `make lock` (infra/image/lock.py) from",
        f"# {source} for CPython 3.13 on manylinux_2_34 {' and '.join(arches)} (the",
        "# AWS Lambda Python 3.13 base). Installed with --require-hashes --no-deps. Do not edit.",
        f"# Left out (the base image provides them): {', '.join(sorted(BASE_PROVIDED))}",
        *omitted,
    ]
    if not omitted:
        lines.append("# Pinned without their dependencies (layers/requirements-nodeps.txt says why): "
                     f"{', '.join(sorted(normalize(n.split('==')[0]) for n in requirement_lines(NODEPS_REQUIREMENTS)))}")
    for name in sorted(pins):
        if name in BASE_PROVIDED:
            continue
        pin = pins[name]
        hashes = " \\\n".join(f"    --hash=sha256:{h}" for h in sorted(pin.hashes))
        lines.append(f"{name}=={pin.version} \\\n{hashes}")
    return "\n".join(lines) + "\n"


def parse_lock(text: str) -> dict[str, tuple[str, set[str]]]:
    """name → (version, hashes) of a lock file."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = {}
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        spec, *opts = line.split()
        name, version = spec.split("==")
        out[normalize(name)] = (version, {o.split(":", 1)[1] for o in opts if o.startswith("--hash=")})
    return out


def layered(runtime: dict[str, Pin], full: dict[str, Pin]) -> dict[str, Pin]:
    """What ``full`` (the runtime's requirements resolved with a layer's) adds to ``runtime``:
    the layer's lock. A distribution both pin must agree, else the layer would replace the
    runtime's copy in /var/task."""
    clash = [f"{n} {runtime[n].version} vs {p.version}" for n, p in full.items()
             if n in runtime and runtime[n].version != p.version]
    if clash:
        raise LockError("the generation layer's requirements move pins of the runtime lock: "
                        f"{', '.join(clash)}; pin compatible versions in layers/requirements-generation.txt")
    return {n: p for n, p in full.items() if n not in runtime}


def locks() -> dict[Path, str]:
    """Every lock file's path and its freshly resolved text."""
    cpu, nodeps = requirement_lines(), requirement_lines(NODEPS_REQUIREMENTS)
    runtime = resolve(cpu, nodeps=nodeps)
    gen_lines = requirement_lines(GENERATION_REQUIREMENTS)
    generation = layered(runtime, resolve([*cpu, *gen_lines], nodeps=nodeps))
    gpu = resolve(gpu_requirements(cpu), arches=GPU_ARCHES, nodeps=nodeps)
    gpu_generation = layered(gpu, resolve([*gpu_requirements(cpu), *gpu_generation_requirements(gen_lines)],
                                          arches=GPU_ARCHES, nodeps=nodeps))
    return {
        LOCK: render(runtime, what="The image's locked closure", arches=ARCHES),
        GPU_LOCK: render(gpu, what="The GPU SageMaker image's locked closure", arches=GPU_ARCHES),
        GPU_GENERATION_LOCK: render(
            gpu_generation, what="A generative model's layer of the GPU SageMaker image", arches=GPU_ARCHES,
            source="layers/requirements-generation.txt (onnxruntime-genai-cuda for onnxruntime-genai)",
            omitted=["# Left out (layers/requirements-gpu.lock pins them, the runtime layer installs them): "
                     f"{', '.join(sorted(n for n in gpu if n not in BASE_PROVIDED))}"]),
        GENERATION_LOCK: render(
            generation, what="A generative model's image layer", arches=ARCHES,
            source="layers/requirements-generation.txt",
            omitted=["# Left out (layers/requirements.lock pins them, the runtime layer installs them): "
                     f"{', '.join(sorted(n for n in runtime if n not in BASE_PROVIDED))}"]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.image.lock",
                                description="write layers/requirements.lock, requirements-gpu.lock, "
                                            "requirements-generation.lock and requirements-gpu-generation.lock")
    p.add_argument("--check", action="store_true", help="fail if a lock is not up to date")
    args = p.parse_args(argv)
    try:
        texts = locks()
    except LockError as exc:
        print(f"make lock: {exc}", file=sys.stderr)
        return 1
    stale = [path for path, text in texts.items()
             if not path.is_file() or path.read_text() != text]
    for path in stale:
        rel = path.relative_to(REPO_ROOT)
        if args.check:
            print(f"{rel} is stale: run `make lock`", file=sys.stderr)
        else:
            path.write_text(texts[path])
            print(f"wrote {rel} ({texts[path].count('==')} pins)")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
