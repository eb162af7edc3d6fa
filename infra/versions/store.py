"""Versions of one model on disk: ``<out>/models/<name>/versions/<version>/`` + the live one.

Layout (the live directory keeps the design.md contract; everything else reads it)::

    models/<name>/model.onnx, manifest.json      the live version (a generative model: generation/
                                                 instead of model.onnx; + any processing files)
    models/<name>/versions/<version>/            every version built: its artifact, manifest.json,
        promotion.json                           the decision: promoted?, reason, gate metrics
        training.json, training.log              what the training run did (trained versions)
    models/<name>/versions/live.json             the promotion stack (rollback pops it) + history

A version directory is written once (atomically: staged, then renamed) and never changed but
for its ``promotion.json``. Promotion publishes the version's files as the live directory in
one atomic exchange (:func:`infra.build.artifact.publish`, which carries ``versions/``
over). A version is its whole artifact (:func:`artifact_parts`): ``model.onnx``, or a generative
model's ``generation/`` folder (the manifest's sha256 is that folder's digest), plus the
processing files the manifest lists (a tokenizer). A live version built by ``modelfn build`` from the catalog ``source`` is adopted as a
version (origin ``source``) the first time versions are touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.build.artifact import LIVE_FILE, VERSIONS_DIR
from layers.manifest import ManifestError, read_manifest
from layers.names import GENERATION_DIR, MANIFEST_FILE, MANIFEST_PROCESSING, MODEL_FILE

DECISION_FILE = "promotion.json"


class VersionError(ValueError):
    """A version operation cannot be done as asked; the message says what to do instead."""


def artifact_parts(model_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The :func:`infra.build.artifact.publish` arguments that carry ``model_dir``'s artifact:
    ``model.onnx`` or a generative model's ``generation/`` folder, and the processing files its
    manifest lists (verified by sha256 when served, so they travel with the version)."""
    model_file, folder = model_dir / MODEL_FILE, model_dir / GENERATION_DIR
    files = (manifest.get(MANIFEST_PROCESSING) or {}).get("files") or {}
    return {"model_file": model_file if model_file.is_file() else None,
            "side_files": {name: model_dir / name for name in files},
            "folders": {GENERATION_DIR: folder} if folder.is_dir() else {}}


def publish_dir(model_dir: Path, manifest: dict[str, Any], target: Path) -> None:
    """Publish the artifact in ``model_dir`` with ``manifest`` at ``target`` (one atomic step)."""
    from infra.build import artifact

    artifact.publish(manifest=manifest, target=target, **artifact_parts(model_dir, manifest))


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class VersionInfo:
    version: str
    number: int
    parent_version: str | None
    promoted: bool
    reason: str
    metrics: dict[str, Any]
    mode: str
    lineage: dict[str, Any]
    built_at: str
    path: Path

    def to_json(self) -> dict[str, Any]:
        """The ``modelfn versions --json`` shape of one version."""
        return {"version": self.version, "parent_version": self.parent_version,
                "promoted": self.promoted, "reason": self.reason, "metrics": self.metrics}


class VersionStore:
    """The versions of model ``name`` under build directory ``out_dir``."""

    def __init__(self, out_dir: Path, name: str) -> None:
        self.name = name
        self.live_dir = Path(out_dir) / "models" / name
        self.root = self.live_dir / VERSIONS_DIR

    # --- reading ----------------------------------------------------------------------------
    def live_version(self) -> str | None:
        data = _read_json(self.live_dir / MANIFEST_FILE, None)
        return data.get("version") if isinstance(data, dict) else None

    def version_dir(self, version: str) -> Path:
        return self.root / version

    def versions(self) -> list[VersionInfo]:
        if not self.root.is_dir():
            return []
        infos = [self._info(d) for d in self.root.iterdir()
                 if d.is_dir() and not d.name.startswith(".") and (d / MANIFEST_FILE).is_file()]
        return sorted(infos, key=lambda i: (i.number, i.built_at))

    def _info(self, d: Path) -> VersionInfo:
        manifest = _read_json(d / MANIFEST_FILE, {})
        decision = _read_json(d / DECISION_FILE, {})
        shipped = (manifest.get("metrics") or {}).get("shipped") or {}
        metrics = {k: shipped[k] for k in ("accuracy", "p50_ms", "p95_ms", "size_bytes", "tokens_per_s", "ttft_ms")
                   if k in shipped}
        if decision.get("metrics"):
            metrics["vs_live"] = decision["metrics"]
        lineage = manifest.get("lineage") or {}
        return VersionInfo(
            version=manifest.get("version", d.name), number=int(lineage.get("number") or 0),
            parent_version=manifest.get("parent_version"), promoted=bool(decision.get("promoted")),
            reason=decision.get("reason", ""), metrics=metrics,
            mode=(manifest.get("quantization") or {}).get("mode", "?"), lineage=lineage,
            built_at=manifest.get("built_at", ""), path=d)

    def resolve(self, ref: str) -> str:
        """A version id, a unique prefix of one, or its number (``3`` / ``v3``)."""
        infos = self.versions()
        exact = [i.version for i in infos if i.version == ref]
        number = ref.removeprefix("v")
        numbered = [i.version for i in infos
                    if number.isdigit() and len(number) < 6 and i.number == int(number)]
        prefix = [i.version for i in infos if len(ref) >= 4 and i.version.startswith(ref)]
        for found in (exact, numbered, prefix if len(prefix) == 1 else []):
            if found:
                return found[0]
        known = ", ".join(f"v{i.number} {i.version}" for i in infos) or "(none yet)"
        raise VersionError(f"{self.name} has no version {ref!r}; known versions: {known}")

    def next_number(self) -> int:
        return max((i.number for i in self.versions()), default=0) + 1

    def stack(self) -> list[str]:
        return list(_read_json(self.root / LIVE_FILE, {}).get("stack") or [])

    # --- writing ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[VersionStore]:
        """One writer at a time (a retraining run and a ``modelfn promote`` may overlap)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def adopt_live(self) -> str | None:
        """Record a live version that no version directory holds yet (built from ``source``)."""
        try:
            live = read_manifest(self.live_dir, verify=True).to_dict()
        except ManifestError:
            return None
        version = live["version"]
        if not (self.root / version).is_dir():
            live.setdefault("parent_version", None)
            live.setdefault("lineage", {"origin": "source", "source": live.get("source")})
            live["lineage"].setdefault("number", self.next_number())
            self.add(self.live_dir, live, {})
            self.decide(version, promoted=True, reason="built from the catalog source by `modelfn build`")
        if not self.stack():
            self._push(version, "adopt", "live before versions were kept")
        return version

    def add(self, model_dir: Path, manifest: dict[str, Any], files: dict[str, Path]) -> Path:
        """Keep the version built in ``model_dir`` (its artifact, :func:`artifact_parts`) with
        ``manifest`` and extra ``files`` by name (idempotent: an identical artifact is kept)."""
        target = self.root / manifest["version"]
        if target.is_dir():
            return target
        publish_dir(model_dir, manifest, target)  # staged, then renamed into place
        for name, src in files.items():
            if src.is_file():
                shutil.copyfile(src, target / name)
        return target

    def decide(self, version: str, *, promoted: bool, reason: str, metrics: dict | None = None) -> None:
        decision = {"promoted": promoted, "reason": reason, "at": now()}
        if metrics:
            decision["metrics"] = metrics
        _write_json(self.root / version / DECISION_FILE, decision)

    def promote(self, version: str, *, reason: str, metrics: dict | None = None) -> None:
        """Make ``version`` live (atomic swap of the live directory) and push it on the stack."""
        d = self.root / version
        try:
            manifest = read_manifest(d, verify=True).to_dict()
        except ManifestError as exc:
            raise VersionError(f"{self.name} {version} cannot be promoted: {exc}") from exc
        publish_dir(d, manifest, self.live_dir)
        self.decide(version, promoted=True, reason=reason, metrics=metrics)
        self._push(version, "promote", reason)

    def rollback(self) -> tuple[str, str]:
        """Make the previously live version live again; return ``(from, to)``."""
        current = self.live_version()
        stack = self.stack()
        while stack and stack[-1] == current:
            stack.pop()
        if not stack:
            parent = _read_json(self.live_dir / MANIFEST_FILE, {}).get("parent_version")
            if not parent or not (self.root / parent).is_dir():
                raise VersionError(f"{self.name}: nothing to roll back to (v{current} is the only version "
                                   "that was live); `modelfn promote NAME VERSION` picks any kept version")
            stack = [parent]
        target = stack[-1]
        try:
            manifest = read_manifest(self.root / target, verify=True).to_dict()
        except ManifestError as exc:
            raise VersionError(f"{self.name} cannot roll back to {target}: {exc}") from exc
        publish_dir(self.root / target, manifest, self.live_dir)
        live = _read_json(self.root / LIVE_FILE, {})
        live["stack"] = stack
        live.setdefault("history", []).append({"at": now(), "action": "rollback", "version": target,
                                               "from": current})
        _write_json(self.root / LIVE_FILE, live)
        if current and (self.root / current).is_dir():
            old = _read_json(self.root / current / DECISION_FILE, {})
            self.decide(current, promoted=bool(old.get("promoted")), metrics=old.get("metrics"),
                        reason=f"rolled back to {target} at {now()} (was: {old.get('reason', '')})")
        return current or "", target

    def _push(self, version: str, action: str, reason: str) -> None:
        live = _read_json(self.root / LIVE_FILE, {})
        stack = [v for v in live.get("stack") or [] if v != version]
        live["stack"] = [*stack, version]
        live.setdefault("history", []).append({"at": now(), "action": action, "version": version,
                                               "reason": reason})
        _write_json(self.root / LIVE_FILE, live)
