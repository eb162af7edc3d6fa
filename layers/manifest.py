"""The build manifest (``manifest.json``): the one description of a built model.

Written by the build pipeline (infra/build), read by every runtime entry point, the local
stack and the CDK app. Stdlib only, so reading it costs nothing at cold start.

Fields (design.md "Build output"): ``name``, ``version`` (first 12 hex of the artifact's
sha256), ``sha256``, ``source``, ``signature`` (``inputs``/``outputs``: ``name``, V2
``datatype``, ``shape`` with -1 for dynamic dims), ``quantization`` (``mode``,
``fallback_reason``), ``metrics`` (``fp32``/``shipped``), ``target``, ``target_reasons``,
``built_at``. Extra keys the pipeline adds (e.g. ``fit``) are kept in ``extra``.

Lineage (additive; versions after the first, infra/versions): ``parent_version`` (the version
that was live when this one was built, or null) and ``lineage``: ``origin`` (``source`` or
``training``), ``number`` (1, 2, … per model), ``training_job``, ``entry_point``,
``hyperparameters``, ``data`` (``location`` + fingerprint ``sha256``/``files``/``bytes``),
``device``, or ``source`` for a version built from the catalog source.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layers.datatypes import V2_DATATYPES
from layers.names import (
    ENV_LAMBDA_TASK_ROOT,
    ENV_SAM_LOCAL,
    GENERATION_DIR,
    MANIFEST_FILE,
    MODEL_FILE,
    VERIFIED_FILE,
)


class ManifestError(Exception):
    """The model directory cannot be served as it is; the message says how to fix it."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        if d.get("datatype") not in V2_DATATYPES:
            raise ManifestError(
                f"tensor {d.get('name')!r} has datatype {d.get('datatype')!r}; "
                f"expected one of {', '.join(V2_DATATYPES)}. Rebuild with `modelfn build`."
            )
        return cls(name=str(d["name"]), datatype=d["datatype"], shape=tuple(int(x) for x in d["shape"]))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    sha256: str
    source: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    quantization: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    target: str = "lambda"
    target_reasons: tuple[str, ...] = ()
    built_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    parent_version: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)

    _KNOWN = (
        "name", "version", "sha256", "source", "signature", "quantization", "metrics",
        "target", "target_reasons", "built_at", "parent_version", "lineage",
    )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        try:
            sig = d["signature"]
            return cls(
                name=d["name"],
                version=d["version"],
                sha256=d["sha256"],
                source=d.get("source", ""),
                inputs=tuple(TensorSpec.from_dict(t) for t in sig["inputs"]),
                outputs=tuple(TensorSpec.from_dict(t) for t in sig["outputs"]),
                quantization=dict(d.get("quantization") or {}),
                metrics=dict(d.get("metrics") or {}),
                target=d.get("target", "lambda"),
                target_reasons=tuple(d.get("target_reasons") or ()),
                built_at=d.get("built_at", ""),
                parent_version=d.get("parent_version"),
                lineage=dict(d.get("lineage") or {}),
                extra={k: v for k, v in d.items() if k not in cls._KNOWN},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(
                f"manifest.json is missing or has a malformed field ({exc}); "
                "rebuild the model with `modelfn build`."
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "source": self.source,
            "signature": {
                "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs],
            },
            "quantization": self.quantization,
            "metrics": self.metrics,
            "target": self.target,
            "target_reasons": list(self.target_reasons),
            "built_at": self.built_at,
            **({"parent_version": self.parent_version, "lineage": self.lineage} if self.lineage else {}),
            **self.extra,
        }


#: Read size for :func:`sha256_file`: large enough that the per-read Python cost vanishes next to
#: hashing, small enough to stay in cache-friendly memory (``bench/bench_coldstart.py`` measures
#: this against 1 MiB reads, ``hashlib.file_digest`` and mmap).
HASH_CHUNK_BYTES = 8 << 20


def sha256_file(path: Path, chunk: int = HASH_CHUNK_BYTES) -> str:
    """sha256 of a file: unbuffered reads into one reused buffer (no allocation per chunk);
    OpenSSL hashes each chunk with the GIL released. Every function does this at init (the
    runtime contract), so its time is part of the fit report's init check."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def folder_sha256(folder: Path) -> str:
    """sha256 over a folder's files (each relative path and its sha256, sorted): the artifact
    digest of a generative model's ``generation/`` folder."""
    h = hashlib.sha256()
    for p in sorted(q for q in Path(folder).rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(folder).as_posix()}\0{sha256_file(p)}\0".encode())
    return h.hexdigest()


def artifact_path(model_dir: str | Path) -> Path:
    """What the manifest's sha256 covers: ``model.onnx``, or a generative model's ``generation/``."""
    model_dir = Path(model_dir)
    folder = model_dir / GENERATION_DIR
    return folder if folder.is_dir() and not (model_dir / MODEL_FILE).is_file() else model_dir / MODEL_FILE


def artifact_sha256(model_dir: str | Path) -> str:
    path = artifact_path(model_dir)
    return folder_sha256(path) if path.is_dir() else sha256_file(path)


def read_manifest(model_dir: str | Path, *, verify: bool = True) -> Manifest:
    """Read ``manifest.json`` from ``model_dir``; with ``verify``, check the model's sha256.

    A mismatch raises :class:`ManifestError`: a function must refuse to start rather than
    serve an artifact other than the one that was built, gated and versioned.
    """
    model_dir = Path(model_dir)
    mpath, opath = model_dir / MANIFEST_FILE, artifact_path(model_dir)
    if not mpath.is_file() or not opath.exists():
        raise ManifestError(
            f"{model_dir} must hold {MODEL_FILE} and {MANIFEST_FILE}; "
            "point MODEL_DIR at a directory written by `modelfn build` (build/models/<name>)."
        )
    try:
        data = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{mpath} is not valid JSON ({exc}); rebuild with `modelfn build`.") from exc
    manifest = Manifest.from_dict(data)
    if verify:
        verify_artifact(model_dir, manifest)
    return manifest


def verify_artifact(model_dir: str | Path, manifest: Manifest, actual: str | None = None) -> None:
    """Refuse (:class:`ManifestError`) an artifact whose sha256 (``actual``, or computed now)
    is not the manifest's: a function must not serve anything but what was built and gated.

    Inside Lambda the digest was checked once per image instead (:func:`trusted_by_image`):
    the model's image was staged with a :data:`VERIFIED_FILE` written after hashing the
    artifact against this manifest, and an image cannot change after it is built."""
    if actual is None and trusted_by_image(model_dir, manifest):
        return
    opath = artifact_path(model_dir)
    actual = actual or artifact_sha256(model_dir)
    if actual != manifest.sha256:
        raise ManifestError(
            f"{opath} has sha256 {actual[:12]}… but manifest.json says "
            f"{manifest.sha256[:12]}…: the artifact was changed after it was built. "
            "Rebuild with `modelfn build` instead of editing model.onnx by hand."
        )


def artifact_sizes(model_dir: str | Path) -> dict[str, int]:
    """Each file the artifact digest covers (relative to ``model_dir``) → its size in bytes."""
    model_dir = Path(model_dir)
    path = artifact_path(model_dir)
    files = sorted(q for q in path.rglob("*") if q.is_file()) if path.is_dir() else [path]
    return {p.relative_to(model_dir).as_posix(): p.stat().st_size for p in files}


def verified_marker(model_dir: str | Path) -> bytes:
    """The :data:`VERIFIED_FILE` for ``model_dir``'s artifact, which image staging writes next
    to the copy it puts in the image: the artifact hashed now and checked against the manifest
    (:class:`ManifestError` on a mismatch, so a mismatched directory never becomes an image),
    and each artifact file's size."""
    manifest = read_manifest(model_dir, verify=False)
    actual = artifact_sha256(model_dir)
    verify_artifact(model_dir, manifest, actual)
    return json.dumps({"sha256": actual, "sizes": artifact_sizes(model_dir)}, indent=1, sort_keys=True).encode()


def trusted_by_image(model_dir: str | Path, manifest: Manifest) -> bool:
    """Whether the artifact's digest was already checked for this image, so init need not hash
    it again (0.2-0.3 s of a DistilBERT-sized int8 cold start, ``bench/bench_pipeline.py``).

    True only inside Lambda (``LAMBDA_TASK_ROOT`` set, not ``sam local``), where the function
    runs its image as pushed (layers stored and pulled by their sha256 digests) on a read-only
    file system, and only when the image's :data:`VERIFIED_FILE` names this manifest's sha256
    and every artifact file still has the size it had when it was hashed: the one place the
    bytes could differ from the ones staging hashed is a copy between staging and the image
    build, which would not keep every size. Anywhere else (the local stack, tests, SageMaker's
    ``/opt/ml/model``, a build directory) the artifact is hashed at every start."""
    if not os.environ.get(ENV_LAMBDA_TASK_ROOT) or os.environ.get(ENV_SAM_LOCAL):
        return False
    try:
        doc = json.loads((Path(model_dir) / VERIFIED_FILE).read_bytes())
        return (isinstance(doc, dict) and doc.get("sha256") == manifest.sha256
                and doc.get("sizes") == artifact_sizes(model_dir))
    except (OSError, ValueError):
        return False


