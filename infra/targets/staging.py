"""Small, deterministic build contexts and artifacts for the CDK assets, written at synth.

Why stage instead of pointing assets at the repository: a CDK asset copies its whole source
directory into ``cdk.out`` at every synth; the repository holds ``.venv``, ``node_modules``
and ``build/`` (gigabytes). Each asset here gets a directory with exactly what it needs
(``layers/``, ``functions/``, the model, one Dockerfile), so synth stays fast and an asset's
hash changes only when its content does (files are rewritten only when they differ, tarballs
carry fixed timestamps), i.e. no spurious image rebuilds or redeploys.

Why one composed Dockerfile per model: a CDK image asset cannot ``FROM`` another asset's
token (the base image URI is only known after it is pushed). So the staged Dockerfile is
``layers/Dockerfile`` as a named first stage followed by the model's Dockerfile, which says
``FROM modelfn-runtime`` literally (buildah/podman 4.x do not resolve a stage name that comes
from an ``ARG``, so no ``FROM ${BASE_IMAGE}``). Every model image thus starts with the same
instructions on the same inputs: the build cache reuses them and the pushed layers have
identical digests, which ECR stores and Lambda caches once. To use a runtime base built and
pushed by another pipeline instead, set context ``modelfn:base_image`` to its URI: staging
then drops the first stage and writes ``FROM <uri>`` (``runtime_image``), so every engine
builds the same thing. ``modelfn image`` stages through these same functions, and both pass
:func:`image_build_args` (``PYTHON_BASE`` to replace the AWS base, ``RUNTIME_LOCK`` for the
GPU closure).
"""

from __future__ import annotations

import contextlib
import fcntl
import filecmp
import gzip
import hashlib
import io
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from infra.targets import provider
from layers import names
from layers.manifest import verified_marker

REPO_ROOT = Path(__file__).resolve().parents[2]
LAYERS_DOCKERFILE = REPO_ROOT / "layers" / "Dockerfile"
MODEL_DOCKERFILE = REPO_ROOT / "functions" / "Dockerfile"
SAGEMAKER_DOCKERFILE = REPO_ROOT / "functions" / "sagemaker" / "Dockerfile"
TRAINING_DIR = REPO_ROOT / "functions" / "training"
#: Entry-point packages a model image carries (the proxy and training code never ship in it).
#: functions/ packages every model image carries (``stream``: the streaming runtime, the entry
#: point of a generative model's streaming function; a few kB of stdlib code)
IMAGE_FUNCTION_PACKAGES = ("api", "batch", "sagemaker", "stream")
#: what a generative model's image adds, as its own layer right after the runtime's (so a code
#: change does not rebuild it): onnxruntime-genai, the chat template's Jinja2 and the streaming
#: function's PyJWT + cryptography, from layers/requirements-generation.lock (`make lock`), with
#: hashes required and no resolver like the runtime's lock (onnxruntime and numpy come from it)
GENERATION_LAYER = """\
# A generative model's decoding loop and token verification (layers/requirements-generation.lock;
# the GPU SageMaker image: GENERATION_LOCK=layers/requirements-gpu-generation.lock, onnxruntime-genai-cuda)
ARG GENERATION_LOCK=layers/requirements-generation.lock
COPY ${GENERATION_LOCK} /tmp/modelfn-generation.lock
RUN python3 -m pip install --no-cache-dir --disable-pip-version-check \\
        --require-hashes --no-deps --only-binary=:all: \\
        --target "${LAMBDA_TASK_ROOT}" -r /tmp/modelfn-generation.lock \\
    && rm -rf /tmp/modelfn-generation.lock "${LAMBDA_TASK_ROOT}/bin"
"""
_SKIP = {"__pycache__", ".pytest_cache", "Dockerfile"}
_FIXED_MTIME = 0


def _source_files(root: Path, *, skip: Iterable[str] = ()) -> dict[str, Path]:
    """Files under ``root`` keyed by relative posix path, without caches and Dockerfiles."""
    skip = set(skip) | _SKIP
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not skip.intersection(rel.parts) and path.suffix != ".pyc":
            out[rel.as_posix()] = path
    return out


def _same_stat(src: Path, target: Path) -> bool:
    """Whether ``target`` is a copy of ``src`` made here before (same size and mtime)."""
    try:
        a, b = src.stat(), target.stat()
    except OSError:
        return False
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns


def sync_tree(dest: Path, files: dict[str, Path | bytes]) -> Path:
    """Make ``dest`` hold exactly ``files`` (rel path → source file or content).

    Unchanged files are left alone (their mtimes too); stale ones are removed. A file copied
    here before keeps its source's size and mtime, so a restage neither copies nor reads it
    again (a model directory of gigabytes costs one ``stat`` per file); a copy whose stat
    differs is compared by content first, and only rewritten when that differs.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with _exclusive(dest):
        return _sync_tree(dest, files)


@contextlib.contextmanager
def _exclusive(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock for ``dest`` across processes: two staging runs into the same
    directory (``modelfn image`` beside ``cdk synth``, or two test workers) take turns instead
    of removing each other's files mid-copy. The lock file lives in the temp dir, keyed by the
    resolved path, never inside a build context."""
    key = hashlib.sha256(str(dest.resolve()).encode()).hexdigest()[:32]
    locks = Path(tempfile.gettempdir()) / "modelfn-stage-locks"
    locks.mkdir(exist_ok=True)
    with open(locks / key, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sync_tree(dest: Path, files: dict[str, Path | bytes]) -> Path:
    for existing in sorted(dest.rglob("*"), reverse=True):
        rel = existing.relative_to(dest).as_posix()
        if existing.is_file() and rel not in files:
            existing.unlink()
        elif existing.is_dir() and not any(k.startswith(rel + "/") for k in files):
            shutil.rmtree(existing)
    for rel, src in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, bytes):
            if not target.is_file() or target.read_bytes() != src:
                target.write_bytes(src)
        elif _same_stat(src, target):
            continue
        elif target.is_file() and filecmp.cmp(src, target, shallow=False):
            shutil.copystat(src, target)  # same content: next time the stat says so
        else:
            target.unlink(missing_ok=True)  # a read-only earlier copy must not block the new one
            shutil.copy2(src, target)
    return dest


_GLOBAL_ARG = re.compile(r"^\s*ARG\s+\S+", re.IGNORECASE)
_FROM = re.compile(r"^\s*FROM\s", re.IGNORECASE)


def _split_header(dockerfile: str) -> tuple[list[str], list[str]]:
    """(global ARG lines before the first FROM, the rest without comments)."""
    header, body, seen_from = [], [], False
    for line in dockerfile.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        seen_from = seen_from or bool(_FROM.match(line))
        if seen_from:
            body.append(line)
        elif _GLOBAL_ARG.match(line):
            header.append(line)
    return header, body


RUNTIME_STAGE = "modelfn-runtime"
_FROM_RUNTIME = re.compile(rf"^\s*FROM\s+{RUNTIME_STAGE}\s*$", re.IGNORECASE)
#: The AWS Lambda Python base every image builds on (layers/Dockerfile ``PYTHON_BASE``).
DEFAULT_PYTHON_BASE = "public.ecr.aws/lambda/python:3.13"
CPU_LOCK = "layers/requirements.lock"
GPU_LOCK = "layers/requirements-gpu.lock"
#: the generation layer of the GPU SageMaker image (onnxruntime-genai-cuda), :data:`GENERATION_LAYER`
GPU_GENERATION_LOCK = "layers/requirements-gpu-generation.lock"
#: SageMaker instance families with NVIDIA GPUs (:mod:`infra.targets.provider`): their image
#: carries onnxruntime-gpu + CUDA.
CUDA_FAMILIES = provider.CUDA_FAMILIES


def compose_dockerfile(base: str, model: str, *, runtime_image: str | None = None) -> str:
    """``base`` (the runtime stage) then ``model`` (FROM it), global ARGs hoisted on top.

    With ``runtime_image`` the runtime stage is left out and the model's
    ``FROM modelfn-runtime`` becomes ``FROM <runtime_image>``.
    """
    base_header, base_body = _split_header(base)
    model_header, model_body = _split_header(model)
    if not any(_FROM_RUNTIME.match(line) for line in model_body):
        raise ValueError(f"the model Dockerfile must say `FROM {RUNTIME_STAGE}`")
    if runtime_image:
        base_header, base_body = [], []
        model_body = [f"FROM {runtime_image}" if _FROM_RUNTIME.match(line) else line
                      for line in model_body]
    lines = [
        "# Generated by infra/targets/staging.py from layers/Dockerfile + the model Dockerfile.",
        *base_header, *model_header, *base_body, *model_body,
    ]
    return "\n".join(lines) + "\n"


is_cuda_instance = provider.is_cuda_instance


def image_build_args(*, python_base: str | None = None, gpu: bool = False,
                     generative: bool = False) -> dict[str, str]:
    """Build args of a staged image: ``PYTHON_BASE`` replaces the AWS base (an offline
    stand-in, a mirror), ``RUNTIME_LOCK`` selects the GPU closure and, for a generative model
    (``generative``), ``GENERATION_LOCK`` its CUDA decoding loop. Empty: the defaults."""
    args = {}
    if python_base:
        args["PYTHON_BASE"] = python_base
    if gpu:
        args["RUNTIME_LOCK"] = GPU_LOCK
        if generative:
            args["GENERATION_LOCK"] = GPU_GENERATION_LOCK
    return args


def runtime_files(*, function_packages: Iterable[str] = IMAGE_FUNCTION_PACKAGES) -> dict[str, Path]:
    """``layers/`` and the chosen ``functions/<pkg>/`` sources, keyed by context path."""
    files = {f"layers/{k}": v for k, v in _source_files(REPO_ROOT / "layers").items()}
    files["functions/__init__.py"] = REPO_ROOT / "functions" / "__init__.py"
    for pkg in function_packages:
        for k, v in _source_files(REPO_ROOT / "functions" / pkg).items():
            files[f"functions/{pkg}/{k}"] = v
    return files


def model_files(model_dir: Path) -> list[str]:
    """What a model directory ships: model.onnx (a generative model: every file of its
    ``generation/`` folder instead), manifest.json and the side files its manifest's
    processing block lists (e.g. tokenizer.json)."""
    import json

    manifest = json.loads((model_dir / names.MANIFEST_FILE).read_text())
    side = (manifest.get(names.MANIFEST_PROCESSING) or {}).get("files") or {}
    folder = model_dir / names.GENERATION_DIR
    if folder.is_dir() and not (model_dir / names.MODEL_FILE).is_file():
        artifact = [f"{names.GENERATION_DIR}/{p.relative_to(folder).as_posix()}"
                    for p in sorted(folder.rglob("*")) if p.is_file()]
    else:
        artifact = [names.MODEL_FILE]
    return [*artifact, names.MANIFEST_FILE, *sorted(side)]


def stage_model_image(*, dest: Path, model_dir: Path, runtime_image: str | None = None) -> Path:
    """The Docker build context of one model's Lambda image (api + batch)."""
    files: dict[str, Path | bytes] = dict(runtime_files())
    for fname in model_files(model_dir):
        files[f"model/{fname}"] = model_dir / fname
    # the artifact's sha256 checked here, once per image, instead of at every cold start
    files[f"model/{names.VERIFIED_FILE}"] = verified_marker(model_dir)
    model = MODEL_DOCKERFILE.read_text()
    if _is_generative(model_dir):
        model = _with_generation(model)
    files["Dockerfile"] = compose_dockerfile(
        LAYERS_DOCKERFILE.read_text(), model, runtime_image=runtime_image
    ).encode()
    return sync_tree(dest, files)


def _with_generation(dockerfile: str) -> str:
    """``dockerfile`` with :data:`GENERATION_LAYER` right after its ``FROM modelfn-runtime``."""
    return "\n".join(line + ("\n" + GENERATION_LAYER if _FROM_RUNTIME.match(line) else "")
                     for line in dockerfile.splitlines())


def _is_generative(model_dir: Path) -> bool:
    import json

    try:
        return json.loads((Path(model_dir) / "manifest.json").read_text()).get("task") == "generation"
    except (OSError, ValueError):
        return False


def stage_sagemaker_image(*, dest: Path, runtime_image: str | None = None, generative: bool = False) -> Path:
    """The Docker build context of the SageMaker serving image (no model inside; the CPU and
    GPU variants share it and differ by :func:`image_build_args`; ``generative`` adds
    :data:`GENERATION_LAYER`)."""
    files: dict[str, Path | bytes] = dict(runtime_files())
    serving = SAGEMAKER_DOCKERFILE.read_text()
    if generative:
        serving = _with_generation(serving)
    files["Dockerfile"] = compose_dockerfile(
        LAYERS_DOCKERFILE.read_text(), serving, runtime_image=runtime_image,
    ).encode()
    return sync_tree(dest, files)


#: The runtime modules the SageMaker proxy imports besides the names (Powertools comes from
#: AWS's Powertools layer; nothing here needs orjson, numpy or onnxruntime).
PROXY_RUNTIME_FILES = ("errors.py", "limits.py", "observability.py", "sagemaker_proxy.py", "sagemaker_wire.py")


def stage_proxy_code(*, dest: Path) -> Path:
    """The zip source of the SageMaker proxy function: its handler, the shared names and the
    runtime modules it imports (:data:`PROXY_RUNTIME_FILES`)."""
    return stage_function_code(dest=dest, package="proxy", runtime=PROXY_RUNTIME_FILES)


#: The runtime modules (under ``layers/``) each zip function's package imports.
FUNCTION_RUNTIME_FILES = {"async_batch": ("sagemaker_wire.py", "batch/sagemaker_async.py"),
                          "retrain": ("retraining.py",)}
#: The stdlib-only batch modules (layout, error records) a zip function may carry.
BATCH_LAYOUT_FILES = ("__init__.py", "layout.py", "upload.py")


def stage_function_code(*, dest: Path, package: str, batch_layout: bool = False,
                        runtime: tuple[str, ...] = ()) -> Path:
    """The zip source of a thin boto3-only function: ``functions/<package>/`` + the names
    (+ with ``batch_layout`` the batch bucket layout, :data:`BATCH_LAYOUT_FILES`; + the
    ``runtime`` modules of ``layers/`` named)."""
    files: dict[str, Path | bytes] = {
        "functions/__init__.py": REPO_ROOT / "functions" / "__init__.py",
        "layers/__init__.py": REPO_ROOT / "layers" / "__init__.py",
        "layers/names.py": REPO_ROOT / "layers" / "names.py",
    }
    for name in (*runtime, *FUNCTION_RUNTIME_FILES.get(package, ())):
        files[f"layers/{name}"] = REPO_ROOT / "layers" / name
    if batch_layout:
        for name in BATCH_LAYOUT_FILES:
            files[f"layers/batch/{name}"] = REPO_ROOT / "layers" / "batch" / name
    for k, v in _source_files(REPO_ROOT / "functions" / package).items():
        files[f"functions/{package}/{k}"] = v
    return sync_tree(dest, files)


def stage_training_image(*, dest: Path, code: dict[str, Path] | None = None) -> Path:
    """The Docker build context of a training image: the runner, and the user's ``code``
    (relative path → file) under ``code/`` (it becomes ``/opt/ml/code``)."""
    files: dict[str, Path | bytes] = {
        f"functions/training/{k}": v for k, v in _source_files(TRAINING_DIR).items()
    }
    files["layers/__init__.py"] = REPO_ROOT / "layers" / "__init__.py"  # the runner's shared names
    files["layers/names.py"] = REPO_ROOT / "layers" / "names.py"
    files["code/.keep"] = b""  # the COPY of code/ needs the folder even without user code
    for rel, path in (code or {}).items():
        files[f"code/{rel}"] = path
    files["Dockerfile"] = (TRAINING_DIR / "Dockerfile").read_bytes()
    return sync_tree(dest, files)


def write_model_tarball(*, model_dir: Path, dest: Path) -> Path:
    """``model.tar.gz`` for SageMaker (:func:`model_files` at the archive root).

    Deterministic (fixed mtimes, owners and gzip header) so an unchanged model keeps its
    asset hash. Rewritten only when the bytes differ.
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for fname in model_files(model_dir):
            info = tarfile.TarInfo(fname)
            info.size = (model_dir / fname).stat().st_size
            info.mtime, info.mode, info.uid, info.gid = _FIXED_MTIME, 0o644, 0, 0
            with open(model_dir / fname, "rb") as f:
                tar.addfile(info, f)
    payload = gzip.compress(raw.getvalue(), mtime=_FIXED_MTIME)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.is_file() or dest.read_bytes() != payload:
        dest.write_bytes(payload)
    return dest


#: Files of the user's package that travel with the code (data arrives through channels).
TRAINING_CODE_SUFFIXES = (".py", ".txt", ".json", ".yaml", ".yml", ".toml", ".cfg")


def training_code_files(*, catalog_root: Path, entry_point: str) -> dict[str, Path]:
    """The user's training code, keyed by path relative to the catalog's directory.

    ``entry_point`` is ``pkg.module:function`` (a module under the catalog's directory: its
    top-level package or module travels) or a script (``train.py[:function]``, relative or
    absolute: the ``.py`` files beside it travel). Of a package only source and small config
    files travel (:data:`TRAINING_CODE_SUFFIXES`); data reaches the job through channels.
    """
    root = Path(catalog_root).resolve()
    target = entry_point.split(":", 1)[0]
    if target.endswith(".py"):
        script = Path(target) if Path(target).is_absolute() else root / target
        candidates, only_siblings = [script], True
    else:
        top = target.split(".", 1)[0]
        candidates, only_siblings = [root / top, root / f"{top}.py"], False
    found = next((c.resolve() for c in candidates if c.exists()), None)
    if found is None:
        raise ValueError(
            f"training entry_point {entry_point!r}: none of "
            f"{', '.join(str(c) for c in candidates)} exists; put the training code next to "
            "the catalog (a package or module importable from its directory, or a script)"
        )
    try:
        found.relative_to(root)
    except ValueError:
        raise ValueError(f"training entry_point {entry_point!r} is outside the catalog's "
                         f"directory {root}; move the code next to the catalog") from None
    if found.is_dir():
        paths = [found / k for k, v in _source_files(found).items()
                 if Path(k).suffix in TRAINING_CODE_SUFFIXES]
    elif only_siblings:
        paths = sorted(p for p in found.parent.iterdir()
                       if p.is_file() and p.suffix in TRAINING_CODE_SUFFIXES)
    else:
        paths = [found]
    return {p.relative_to(root).as_posix(): p for p in paths}


def image_entry_point(entry_point: str, catalog_root: Path) -> str:
    """The entry point as the runner sees it in the image (code under ``/opt/ml/code``): a
    script the catalog resolved to an absolute path becomes relative to the catalog again."""
    target, sep, func = entry_point.partition(":")
    if target.endswith(".py") and Path(target).is_absolute():
        target = Path(target).resolve().relative_to(Path(catalog_root).resolve()).as_posix()
    return f"{target}{sep}{func}"


#: Repository files CodeBuild needs to run ``modelfn build`` on a trained model.
BUILD_SOURCE_DIRS = ("layers", "functions", "infra")
BUILD_SOURCE_FILES = ("pyproject.toml", "README.md")


def catalog_subset(catalog_path: Path, models: Iterable[str]) -> bytes:
    """The catalog file with only ``models`` under ``models:`` (other keys kept as written),
    so one model's build source does not change when another model's entry does."""
    import yaml

    raw = yaml.safe_load(Path(catalog_path).read_text()) or {}
    keep = set(models)
    raw["models"] = [m for m in raw.get("models") or [] if isinstance(m, dict) and m.get("name") in keep]
    return yaml.safe_dump(raw, sort_keys=False).encode()


def stage_build_source(*, dest: Path, catalog_path: Path, data_files: Iterable[Path],
                       models: Iterable[str] | None = None) -> Path:
    """The repository subset + the catalog (as ``models.yaml``; only ``models`` when given) +
    its data files.

    ``data_files`` (files, or directories taken whole) must lie under the catalog's directory;
    they keep their relative paths so the catalog resolves them the same way in CodeBuild.
    """
    root = catalog_path.parent
    files: dict[str, Path | bytes] = {}
    for d in BUILD_SOURCE_DIRS:
        for k, v in _source_files(REPO_ROOT / d, skip=("cdk.out",)).items():
            files[f"{d}/{k}"] = v
    for f in BUILD_SOURCE_FILES:
        if (REPO_ROOT / f).is_file():
            files[f] = REPO_ROOT / f
    files["models.yaml"] = catalog_path if models is None else catalog_subset(catalog_path, models)
    for path in data_files:
        try:
            rel = Path(path).resolve().relative_to(root.resolve())
        except ValueError as exc:
            raise ValueError(
                f"{path} is outside the catalog's directory {root}; a model with training: "
                "needs its data files next to the catalog so CodeBuild can use them"
            ) from exc
        if Path(path).is_dir():  # a saved model directory (hf:<dir>): every file in it
            for k, v in _source_files(Path(path)).items():
                files[f"{rel.as_posix()}/{k}"] = v
        else:
            files[rel.as_posix()] = Path(path)
    return sync_tree(dest, files)
