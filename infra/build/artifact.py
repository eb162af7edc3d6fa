"""Versioned, content-addressed artifacts written atomically.

A build works in a private temp directory; only the finished ``model.onnx`` +
``manifest.json`` are copied into a staging directory next to the target and renamed into
place (an atomic exchange where the kernel offers one). Killed at any point, a build leaves
either the previous artifact or none, never a half-written one; stale staging directories
of dead builds are swept by the next build.

Cache: the key hashes the converted fp32 graph (so a torch factory whose weights changed is
rebuilt), the data files, the catalog settings that shape the result, and
:data:`PIPELINE_VERSION` and the source of the code that shapes an artifact
(:data:`SHAPING_CODE`: a change there, such as a new processing-block format, rebuilds rather
than reusing an artifact the current runtime may not read, without relying on anyone
remembering to bump the version). An artifact whose manifest carries the same key, and whose
file still matches its sha256, is reused.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from infra.catalog import ModelSpec
from layers.manifest import ManifestError, folder_sha256, read_manifest, sha256_file
from layers.names import MANIFEST_FILE, MANIFEST_PROCESSING, MODEL_FILE
from layers.processing.processed import verify_files

#: Bump when a change to the pipeline changes what it would produce from the same inputs.
PIPELINE_VERSION = "5"
STAGING_PREFIX = ".staging-"
#: Where infra/versions keeps a model's versions, inside its model directory; with its live file,
#: versions (``modelfn train``/``promote``) decide what is live, not a build.
VERSIONS_DIR = "versions"
LIVE_FILE = "live.json"
#: Subdirectories of a model directory that outlive a publish (kept versions, infra/versions).
KEPT_SUBDIRS = (VERSIONS_DIR,)
_RENAME_EXCHANGE = 2
_REPO = Path(__file__).resolve().parents[2]
#: Packages (relative to the repository) whose source shapes what a build writes or how the
#: runtime reads it back.
SHAPING_CODE = ("infra/build", "infra/kinds", "infra/tasks", "layers/processing", "layers/kinds",
                "layers/manifest.py")


@functools.cache
def code_digest() -> str:
    """sha256 over the source of :data:`SHAPING_CODE` (names and contents, sorted)."""
    h = hashlib.sha256()
    for rel in SHAPING_CODE:
        root = _REPO / rel
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for f in files:
            h.update(f"{f.relative_to(_REPO).as_posix()}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def models_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "models"


def cache_key(spec: ModelSpec, fp32_sha256: str, *, reduce_range: bool = True) -> str:
    """Everything that determines the artifact, hashed (``reduce_range``: the target's kernel
    assumption, :mod:`infra.build.cpu`)."""
    settings = spec.model_dump(mode="json", include={"quantize", "tolerance", "strict", "target",
                                                      "instance_type", "timeout_s", "preprocess",
                                                      "postprocess", "pipeline", "architecture",
                                                      "cpu_features"})
    files = {k: _data_digest(p) for k in ("calibration", "validation")
             if (p := getattr(spec, k)) is not None}
    files.update(_processing_digests(spec))
    blob = json.dumps({"pipeline": PIPELINE_VERSION, "code": code_digest(), "fp32": fp32_sha256, "settings": settings,
                       "data": files, "reduce_range": reduce_range}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _data_digest(path: Path) -> str:
    """A data file's sha256; a folder of raw images hashes its files' names and contents."""
    return folder_sha256(path) if path.is_dir() else sha256_file(path)


def _processing_digests(spec: ModelSpec) -> dict[str, str]:
    from infra.kinds import kind

    out = {}
    if spec.preprocess is not None:
        out.update(kind(spec.preprocess.kind).digests(spec.preprocess))
    if spec.postprocess is not None and spec.postprocess.labels_file is not None:
        out["labels_file"] = sha256_file(spec.postprocess.labels_file)
    if spec.source_kind == "hf":  # id2label and max_position_embeddings are read from it
        out["hf_config"] = sha256_file(spec.source_path / "config.json")
    return out


def reusable(target: Path, key: str) -> dict[str, Any] | None:
    """The manifest of an intact artifact built with ``key``, else None."""
    try:
        manifest = read_manifest(target, verify=True)
    except ManifestError:
        return None
    if manifest.extra.get("build", {}).get("cache_key") != key:
        return None
    try:
        verify_files(target, (manifest.extra.get(MANIFEST_PROCESSING) or {}).get("files") or {})
    except ManifestError:
        return None
    return manifest.to_dict()


def sweep_stale(models: Path) -> None:
    """Remove staging directories left by builds that were killed."""
    if not models.is_dir():
        return
    for d in models.glob(f"{STAGING_PREFIX}*"):
        pid = d.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and _alive(int(pid))):
            name = d.name.removeprefix(STAGING_PREFIX).rsplit("-", 1)[0].removesuffix("-old")
            _rescue_kept(d, models / name)
            shutil.rmtree(d, ignore_errors=True)


def _rescue_kept(staging: Path, target: Path) -> None:
    """A publish killed or failed mid-way may have left the kept subdirectories in staging."""
    for sub in KEPT_SUBDIRS:
        if (staging / sub).is_dir() and target.is_dir() and not (target / sub).exists():
            os.rename(staging / sub, target / sub)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish(model_file: Path | None, manifest: dict[str, Any], target: Path,
            side_files: dict[str, Path] | None = None, folders: dict[str, Path] | None = None) -> None:
    """Put ``model_file`` + ``manifest`` (+ ``side_files`` by name, e.g. a tokenizer, and
    ``folders`` by name, e.g. a generative model's ``generation/``) at ``target`` in one step."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f"{STAGING_PREFIX}{target.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        if model_file is not None:
            shutil.copyfile(model_file, staging / MODEL_FILE)
            _fsync(staging / MODEL_FILE)
        for name, src in (folders or {}).items():
            shutil.copytree(src, staging / name)
            for f in (staging / name).rglob("*"):
                if f.is_file():
                    _fsync(f)
        for name, src in (side_files or {}).items():
            shutil.copyfile(src, staging / name)
            _fsync(staging / name)
        _write_synced(staging / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
        for sub in KEPT_SUBDIRS:  # carried over: they belong to the model, not to one artifact
            if (target / sub).is_dir():
                os.rename(target / sub, staging / sub)
        if target.exists():
            if not _exchange(staging, target):
                old = target.parent / f"{STAGING_PREFIX}{target.name}-old-{os.getpid()}"
                os.rename(target, old)
                os.rename(staging, target)
                staging = old
        else:
            os.rename(staging, target)
            staging = None
        _fsync_dir(target.parent)
    finally:
        if staging is not None:
            _rescue_kept(staging, target)
            shutil.rmtree(staging, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        _fsync(path)


def managed_live(live_dir: Path) -> dict[str, Any] | None:
    """The live manifest when versions decide what is live (``versions/live.json`` exists), else None."""
    if not (live_dir / VERSIONS_DIR / LIVE_FILE).is_file():
        return None
    try:
        return read_manifest(live_dir, verify=True).to_dict()
    except ManifestError:
        return None
