"""The model catalog (``models.yaml``) loaded into typed specs.

Configuration flows one way: catalog → :class:`ModelSpec` → CDK constructs / local stack →
environment variables → runtime settings. Every error names the model, the key and the fix.
Paths in the catalog are relative to the catalog file and are resolved here, once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infra.catalog_processing import (
    PipelineStep,
    Postprocess,
    Preprocess,
    check_pipelines,
    check_processing,
    nested_fields,
    preprocess_model,
    resolve_processing,
)
from infra.kinds import raw_data_suffixes

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,47}$")
TORCH_SOURCE_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
SOURCE_SUFFIXES = (".onnx", ".joblib", ".pkl", ".pt", ".keras", ".h5")
#: Keras 3 ``.keras`` and legacy HDF5 with architecture; a suffix-less path is a TensorFlow
#: SavedModel directory (infra/build/keras.py)
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
#: A whole ``nn.Module`` saved with ``torch.save`` (what a training entry point's torch result
#: becomes); its classes must be importable from the catalog's directory.
TORCH_FILE_SUFFIXES = (".pt",)
HF_PREFIX = "hf:"


SAVED_MODEL_FILE = "saved_model.pb"


def keras_source_problem(path: Path) -> str | None:
    """Why ``path`` is not a Keras/TensorFlow source (None when it looks like one)."""
    if path.is_dir():
        if not (path / SAVED_MODEL_FILE).is_file():
            return (f"{path} is not a TensorFlow SavedModel directory (no {SAVED_MODEL_FILE}); export "
                    "one with model.export(dir) (Keras 3) or tf.saved_model.save(model, dir)")
        return None
    if not path.is_file():
        return f"file {path} does not exist; fix the path (relative to the catalog file)"
    return None


class CatalogError(ValueError):
    """The catalog cannot be used as written; the message names model, key and fix."""


class Tolerance(BaseModel):
    """Accuracy-gate limits, fp32 vs the quantized candidate on the validation set."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    top1_agreement: float | None = Field(default=None, ge=0.0, le=1.0)
    max_abs_error: float | None = Field(default=None, ge=0.0)
    max_score_error: float | None = Field(default=None, ge=0.0)  # postprocess scores only
    min_cosine: float | None = Field(default=None, ge=-1.0, le=1.0)
    min_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    min_retrieval_top10: float | None = Field(default=None, ge=0.0, le=1.0)  # embeddings only
    max_perplexity_ratio: float | None = Field(default=None, ge=1.0)  # generation only


DEFAULT_TOLERANCE = Tolerance(top1_agreement=0.99, min_cosine=0.99)
#: embeddings without a catalog ``tolerance``: every text's vector within cosine 0.99 of fp32,
#: and on average 9 of each text's 10 nearest neighbours unchanged (infra/tasks/embedding_gate.py)
EMBEDDING_TOLERANCE = Tolerance(min_cosine=0.99, min_retrieval_top10=0.9)
#: generation without a catalog ``tolerance``: fp32's greedy next token kept at 95% of the
#: positions of the validation prompts' continuations (``top1_agreement``), and perplexity on
#: the validation text at most 10% above fp32's (infra/build/generation_gate.py)
GENERATION_TOLERANCE = Tolerance(top1_agreement=0.95, max_perplexity_ratio=1.10)


class EmbeddingSpec(BaseModel):
    """Pooling of an embeddings/feature-extraction model (default: the sentence-transformers
    directory's own; a bare encoder: ``mean``, normalized for ``task: embeddings`` only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    pooling: Literal["cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"] | None = None
    normalize: bool | None = None
    #: the shorter sizes the model was trained to be cut to (Matryoshka, e.g. sentence-transformers'
    #: MatryoshkaLoss ``matryoshka_dims``): OpenAI's ``dimensions`` may ask for these, and gets the
    #: first N components, re-normalized when the model normalizes
    matryoshka_dims: tuple[int, ...] | None = None

    @field_validator("matryoshka_dims")
    @classmethod
    def _positive(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (not value or any(d < 1 for d in value)):
            raise ValueError("matryoshka_dims lists positive vector sizes, e.g. [256, 128, 64]")
        return value


class GenerationSpec(BaseModel):
    """A causal language model's serving settings (task ``generation``, infra/kinds/generation.py).

    ``max_context``: the longest prompt + completion in tokens (the KV cache is sized for it in
    the fit); default the model's ``max_position_embeddings`` capped at 2048. ``max_tokens``:
    the completion length when a request gives none (default 128). ``min_tokens_per_s``
    (optional): the least tokens/s the build host must measure for Lambda; slower goes to SageMaker.
    ``temperature``/``top_p``/``top_k`` (optional): sampling defaults for requests that set none
    (over the model's ``generation_config.json``; the manifest's ``generation.defaults``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_context: int | None = Field(default=None, ge=8, le=1_048_576)
    max_tokens: int = Field(default=128, ge=1, le=1_048_576)
    min_tokens_per_s: float | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)


#: Instance families with a GPU (SageMaker ``ml.<family>.<size>``): the training image runs
#: the entry point on CUDA there, and on CPU everywhere else.
GPU_FAMILY_RE = re.compile(r"^ml\.(g|p)\d")
INSTANCE_TYPE_RE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9]+$")
#: ``module:function`` importable from the catalog's directory, or ``path/to/script.py`` with
#: an optional ``:function`` (default :data:`DEFAULT_ENTRY_FUNCTION`).
SCRIPT_ENTRY_RE = re.compile(r"^(?P<path>[^:]+\.py)(?::(?P<func>[A-Za-z_]\w*))?$")
DEFAULT_ENTRY_FUNCTION = "train"
#: Hyperparameter keys with this prefix carry modelfn's own settings to the training container.
RESERVED_HYPERPARAMETER_PREFIX = "modelfn_"
#: The torch version of the training image modelfn builds (functions/training/Dockerfile).
DEFAULT_FRAMEWORK_VERSION = "2.13.0"


#: data-parallel instances of one training job (SageMaker's own limit is higher; locally each
#: is a process on this machine's CPUs)
MAX_TRAINING_INSTANCES = 16


class TrainingSpec(BaseModel):
    """The user's own training code, run under SageMaker's container contract.

    On AWS a Step Functions execution starts a SageMaker training job; locally ``modelfn
    train`` runs the same entry point in the same layout. Defaults (design.md "Catalog"):

    * ``entry_point``: required; ``module:function`` next to the catalog or a script path
      (``train.py`` or ``train.py:function``, default function ``train``), called as
      ``fn(data_dir: Path, hyperparameters: dict, model_dir: Path)``.
    * ``data``: where the training data lives: an ``s3://bucket/prefix`` (SageMaker's
      ``train`` channel) or, locally, a folder relative to the catalog; default none
      (``modelfn train --data DIR``; on AWS the model's ``<name>/train/`` prefix).
    * ``hyperparameters``: passed to the entry point (SageMaker sends them as strings; the
      runner decodes JSON numbers/booleans back), default ``{}``.
    * ``instance_type``: ``ml.g5.xlarge`` (GPU families ``ml.g*``/``ml.p*`` train on CUDA).
    * ``max_runtime_s``: 3600 (SageMaker's stopping condition; locally a timeout).
    * ``image``: none = modelfn's training image (PyTorch ``framework_version``, CUDA
      wheels); or the URI of your own image that follows the same contract.
    * ``framework_version``: the torch version of modelfn's training image (2.13.0).
    * ``instance_count``: 1; N > 1 runs the entry point data-parallel on N instances (N
      processes on CPU with gloo locally), rank and world size through
      :mod:`functions.training.train`'s contract (torchrun's env vars, the process group
      initialized for torch), rank 0's result is the model. An instance with several GPUs
      runs one process per GPU (torchrun ``--nproc_per_node`` = its GPUs).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    entry_point: str
    data: str | None = None
    hyperparameters: dict[str, str | int | float | bool] = Field(default_factory=dict)
    instance_type: str = "ml.g5.xlarge"
    max_runtime_s: int = Field(default=3600, ge=60, le=432_000)
    image: str | None = None
    framework_version: str = DEFAULT_FRAMEWORK_VERSION
    instance_count: int = Field(default=1, ge=1, le=MAX_TRAINING_INSTANCES)

    @field_validator("entry_point")
    @classmethod
    def _entry_point(cls, v: str) -> str:
        if not (TORCH_SOURCE_RE.match(v) or SCRIPT_ENTRY_RE.match(v)):
            raise ValueError(
                f"{v!r} is not an entry point: use 'module:function' (a module next to the "
                "catalog) or a script path 'train.py' / 'train.py:function'"
            )
        return v

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, v: str) -> str:
        if not INSTANCE_TYPE_RE.match(v):
            raise ValueError(f"{v!r} is not a SageMaker instance type; use e.g. ml.g5.xlarge or ml.m5.large")
        return v

    @field_validator("hyperparameters")
    @classmethod
    def _hyperparameters(cls, v: dict) -> dict:
        reserved = sorted(k for k in v if k.startswith(RESERVED_HYPERPARAMETER_PREFIX))
        if reserved:
            raise ValueError(f"hyperparameter names starting with {RESERVED_HYPERPARAMETER_PREFIX!r} are "
                             f"reserved for modelfn ({reserved}); rename them")
        return v

    @property
    def gpu(self) -> bool:
        """Whether ``instance_type`` has a GPU (the job trains on CUDA)."""
        return bool(GPU_FAMILY_RE.match(self.instance_type))

    @property
    def data_is_s3(self) -> bool:
        return bool(self.data and self.data.startswith("s3://"))

    def entry(self, root: Path) -> tuple[Path, str, str]:
        """``(directory to import from, module name, function name)`` for ``entry_point``."""
        m = SCRIPT_ENTRY_RE.match(self.entry_point)
        if m:
            script = Path(m["path"])
            script = script if script.is_absolute() else root / script
            return script.parent, script.stem, m["func"] or DEFAULT_ENTRY_FUNCTION
        module, func = self.entry_point.split(":")
        return root, module, func


class PromotionSpec(BaseModel):
    """How a newly trained version must compare with the live one to replace it.

    Both run on the model's ``validation`` set, measured side by side in one run:
    accuracy (against its ``labels``) may drop by at most ``max_accuracy_drop`` (absolute,
    default 0.01), batch-1 p50 latency may grow to at most ``max_latency_ratio`` × the live
    one's (default 1.5), and the artifact to at most ``max_size_ratio`` × (default 2.0).
    A generative model is judged on its validation text instead of accuracy: its perplexity
    may be at most ``max_perplexity_ratio`` × the live one's (default 1.05), and the latency
    bound applies to the time per generated token.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_accuracy_drop: float = Field(default=0.01, ge=0.0, le=1.0)
    max_latency_ratio: float = Field(default=1.5, ge=1.0)
    max_size_ratio: float = Field(default=2.0, ge=1.0)
    max_perplexity_ratio: float = Field(default=1.05, ge=1.0)  # generation only


class BatchSpec(BaseModel):
    """How the batch path (S3 → SQS → batch function) consumes a burst of objects.

    ``max_concurrency`` (default 2, AWS's minimum for an SQS event source; at most 1,000):
    batch invocations that run at once, set as the event source's maximum concurrency and the
    batch function's reserved concurrency, so a burst of uploads never takes the account's
    concurrency from the API functions. ``batch_size`` (default 10, 1–10,000): S3 objects per
    invocation; a failed object is reported alone (``ReportBatchItemFailures``).
    ``max_batching_window_s`` (default 0, at most 300): how long the event source waits to
    fill a batch; AWS requires at least 1 s when ``batch_size`` is over 10.
    ``max_receive_count`` (default 3): deliveries before a message goes to the dead-letter
    queue. ``retry_delay_s`` (default 60): the first retry's delay; each later one waits
    4× longer (60 s, 240 s, 960 s, …, at most 12 h).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_concurrency: int = Field(default=2, ge=2, le=1000)
    batch_size: int = Field(default=10, ge=1, le=10_000)
    max_batching_window_s: int = Field(default=0, ge=0, le=300)
    max_receive_count: int = Field(default=3, ge=1, le=1000)
    retry_delay_s: int = Field(default=60, ge=1, le=43_200)

    @model_validator(mode="after")
    def _window_for_large_batches(self) -> BatchSpec:
        if self.batch_size > 10 and self.max_batching_window_s < 1:
            raise ValueError(
                f"batch_size {self.batch_size} is over 10, which AWS allows only with "
                "max_batching_window_s of at least 1; set max_batching_window_s: 1 (or more)"
            )
        return self


DEFAULT_BATCH = BatchSpec()


class ModelSpec(BaseModel):
    """One catalog entry. Defaults are the documented catalog defaults (design.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: str = ""  # required unless ``pipeline`` or ``training`` is given (checked in _check_files)
    example_input: Path | None = None
    quantize: Literal["auto", "dynamic", "static", "none", "int4", "int8"] = "auto"
    """int4/int8: weight-only (MatMulNBits), for generation models (infra/build/generation_gate.py)"""
    calibration: Path | None = None
    validation: Path | None = None
    tolerance: Tolerance = DEFAULT_TOLERANCE
    strict: bool = False
    target: Literal["auto", "lambda", "sagemaker"] = "auto"
    memory_mb: int | None = Field(default=None, ge=128, le=10_240)
    timeout_s: int = Field(default=30, ge=1, le=900)
    architecture: Literal["x86_64", "arm64"] = "x86_64"
    cpu_features: tuple[Literal["avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"], ...] = ()
    """x86 CPU features every host that runs the model has (default: none assumed). int8 is
    gated under kernels safe on every CPU of ``architecture``; naming a dot-product flag
    (avx512_vnni, avx_vnni, amx_int8) lets it use full 8-bit weights (infra/build/cpu.py)."""
    reserved_concurrency: int | None = Field(default=None, ge=0)
    provisioned_concurrency: int | None = Field(default=None, ge=1)
    snapstart: bool | None = None
    """SnapStart on the API function's published versions; default (None): on, unless the
    model has ``provisioned_concurrency`` (Lambda allows only one of the two)."""
    instance_type: str = "ml.m5.large"
    auth: Literal["iam", "jwt", "none"] = "iam"
    training: TrainingSpec | None = None
    task: Literal["classification", "embeddings", "token-classification", "feature-extraction",
                  "generation"] | None = None
    """default: what an ``hf:`` directory is (infra/tasks/detect.py); other sources: raw tensors"""
    embedding: EmbeddingSpec | None = None
    generation: GenerationSpec | None = None
    """decoding settings of a causal language model (task generation); default GenerationSpec()"""
    preprocess: Preprocess | None = None
    postprocess: Postprocess | None = None
    pipeline: tuple[str | PipelineStep, ...] | None = None
    batch: BatchSpec = DEFAULT_BATCH
    promotion: PromotionSpec = PromotionSpec()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                f"{v!r} is not a valid name: use 1-48 lowercase letters, digits and '-', "
                "starting with a letter (it becomes a route, a function name and an S3 prefix)"
            )
        return v

    @property
    def snapstart_enabled(self) -> bool:
        """Whether the API function uses SnapStart (see ``snapstart``)."""
        if self.snapstart is None:
            return self.provisioned_concurrency is None
        return self.snapstart

    @property
    def source_kind(self) -> Literal["onnx", "sklearn", "torch", "hf", "keras", "pipeline", "none"]:
        if self.pipeline is not None:
            return "pipeline"
        if not self.source:
            return "none"  # a model with training: before its first `modelfn train`
        if self.source.startswith(HF_PREFIX):
            return "hf"
        if self.source.endswith(".onnx"):
            return "onnx"
        if self.source.endswith((".joblib", ".pkl")):
            return "sklearn"
        if self.source.endswith(KERAS_SUFFIXES) or (
                ":" not in self.source and not Path(self.source.rstrip("/")).suffix):
            return "keras"  # a .keras/.h5 file or a SavedModel directory
        return "torch"  # a "pkg.module:factory" or a whole module saved with torch.save (.pt)

    @property
    def source_path(self) -> Path | None:
        """The source file (an hf source's directory), or None for torch factories and pipelines."""
        if self.source_kind in ("pipeline", "none") or (
                self.source_kind == "torch" and not self.source.endswith(TORCH_FILE_SUFFIXES)):
            return None
        return Path(self.source.removeprefix(HF_PREFIX))


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    path: Path
    models: tuple[ModelSpec, ...]

    def get(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.models) or "(none)"
        raise CatalogError(f"no model named {name!r} in {self.path}{did_you_mean(name, [m.name for m in self.models])}; "
                           f"known models: {known}")

    @property
    def root(self) -> Path:
        return self.path.parent


def _where(model: dict[str, Any] | Any, index: int) -> str:
    name = model.get("name") if isinstance(model, dict) else None
    return f"model {name!r}" if name else f"model #{index + 1}"


def did_you_mean(got: Any, choices: Any) -> str:
    """``" (did you mean 'quantize'?)"`` for a near miss among ``choices`` (difflib), else ""."""
    import difflib

    if not isinstance(got, str):
        return ""
    close = difflib.get_close_matches(got, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _expected_values(e: dict[str, Any]) -> list[str]:
    """The allowed values pydantic lists for a literal/enum error (``'auto', 'dynamic' or 'none'``)."""
    return re.findall(r"'([^']*)'", str((e.get("ctx") or {}).get("expected", "")))


def _explain(err: ValidationError, where: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(entry)"
        if e["type"] == "extra_forbidden":
            allowed = ", ".join(ModelSpec.model_fields if len(e["loc"]) == 1 else Tolerance.model_fields)
            nested = {"training": TrainingSpec, "promotion": PromotionSpec, "batch": BatchSpec,
                      "embedding": EmbeddingSpec, "generation": GenerationSpec}
            if len(e["loc"]) > 1 and e["loc"][0] in nested:
                allowed = ", ".join(nested[e["loc"][0]].model_fields)
            elif e["loc"] and (fields := nested_fields(e["loc"])) is not None:
                allowed = ", ".join(fields)
            hint = did_you_mean(str(e["loc"][-1]), allowed.split(", "))
            lines.append(f"{where}: unknown key {key!r}{hint}; remove it or use one of: {allowed}")
        elif e["type"] == "missing":
            lines.append(f"{where}: missing required key {key!r}; add it to the entry")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            hint = did_you_mean(e.get("input"), _expected_values(e)) if e["type"] in ("literal_error", "enum") else ""
            lines.append(f"{where}: key {key!r}: {msg} (got {e.get('input')!r}){hint}")
    return "\n".join(lines)


def _resolve(root: Path, value: Path | None) -> Path | None:
    return None if value is None else (value if value.is_absolute() else root / value)


def _resolve_training(root: Path, training: TrainingSpec) -> TrainingSpec:
    """Script entry points and local data folders become absolute (relative to the catalog)."""
    update: dict[str, str] = {}
    m = SCRIPT_ENTRY_RE.match(training.entry_point)
    if m:
        script = str(_resolve(root, Path(m["path"])))
        update["entry_point"] = f"{script}:{m['func']}" if m["func"] else script
    if training.data and not training.data_is_s3:
        update["data"] = str(_resolve(root, Path(training.data)))
    return training.model_copy(update=update)


def _check_files(spec: ModelSpec, where: str) -> list[str]:
    problems = []
    if spec.source_kind == "pipeline":
        if spec.source:
            problems.append(f"{where}: key 'source': a pipeline entry takes its models from "
                            "'pipeline'; remove 'source'")
    elif not spec.source:
        if spec.training is None:
            problems.append(f"{where}: missing required key 'source'; add it to the entry (or "
                            "'pipeline' for a chain of other entries, or a 'training:' entry point "
                            "whose first `modelfn train` makes version 1)")
    elif spec.source_kind == "torch" and spec.source_path is not None:
        if not spec.source_path.is_file():
            problems.append(f"{where}: key 'source': file {spec.source} does not exist; fix the path "
                            "(relative to the catalog file) or run the step that produces it")
    elif spec.source_kind == "hf":
        if not (spec.source_path / "config.json").is_file():
            problems.append(f"{where}: key 'source': {spec.source_path} is not a saved Hugging Face "
                            "model directory (no config.json); point hf:<dir> at what "
                            "save_pretrained() wrote (relative to the catalog file)")
    elif spec.source_kind == "keras":
        if (problem := keras_source_problem(Path(spec.source))) is not None:
            problems.append(f"{where}: key 'source': {problem}")
    elif spec.source_kind == "torch":
        if not TORCH_SOURCE_RE.match(spec.source):
            problems.append(
                f"{where}: key 'source': {spec.source!r} is neither a file ending in "
                f"{', '.join(SOURCE_SUFFIXES)} (or a SavedModel directory) nor a torch factory "
                "'pkg.module:factory'"
            )
    elif not Path(spec.source).is_file():
        problems.append(f"{where}: key 'source': file {spec.source} does not exist; fix the path "
                        "(relative to the catalog file) or run the step that produces it")
    if (spec.task is not None or spec.embedding is not None or spec.generation is not None) \
            and spec.source_kind != "hf":
        problems.append(f"{where}: keys 'task'/'embedding'/'generation' choose what an hf:<dir> source serves; this "
                        f"source is {spec.source_kind}: remove them")
    raw_ok = spec.preprocess is not None or spec.source_kind == "hf"  # an hf dir brings its tokenizer
    for key in ("example_input", "calibration", "validation"):
        p = getattr(spec, key)
        if p is None:
            continue
        if p.is_dir() and raw_ok and key != "example_input":
            continue  # a folder of images, read through the model's preprocess
        elif not p.is_file():
            problems.append(f"{where}: key {key!r}: file {p} does not exist; fix the path "
                            "(relative to the catalog file)")
        elif p.suffix in raw_data_suffixes() and raw_ok:
            continue  # raw inputs of the model's kind (infra/kinds): .txt, .jsonl
        elif p.suffix != ".npz":
            raw = f", or {'/'.join(raw_data_suffixes())}/a folder of raw inputs" if raw_ok else ""
            problems.append(f"{where}: key {key!r}: {p.name} must be an .npz of arrays keyed by input name{raw}")
    if spec.source_kind in ("sklearn", "torch", "keras") and spec.example_input is None:
        problems.append(f"{where}: key 'example_input' is required to convert a {spec.source_kind} "
                        "model; add an .npz with one example batch keyed by input name")
    if spec.cpu_features and spec.architecture != "x86_64":
        problems.append(f"{where}: key 'cpu_features' names x86 CPU features but architecture is "
                        f"{spec.architecture}; remove cpu_features or set architecture: x86_64")
    if spec.quantize == "static" and spec.calibration is None:
        problems.append(f"{where}: key 'calibration' is required for quantize: static; add an .npz "
                        "of representative inputs, or use quantize: dynamic/auto")
    if spec.snapstart and spec.provisioned_concurrency is not None:
        problems.append(f"{where}: keys 'snapstart' and 'provisioned_concurrency' cannot both be on "
                        "one function (Lambda refuses SnapStart with provisioned concurrency); "
                        "remove 'provisioned_concurrency', or set snapstart: false")
    if spec.quantize in ("int4", "int8") and spec.source_kind != "hf":
        problems.append(f"{where}: key 'quantize': {spec.quantize} (weight-only) is for generation models "
                        "(a causal language model's hf:<dir>); use auto, dynamic, static or none")
    if spec.quantize != "none" and spec.validation is None and spec.strict:
        problems.append(f"{where}: key 'validation' is required with strict: true (the accuracy "
                        "gate needs data); add an .npz or set strict: false")
    problems.extend(check_processing(spec, where))
    return problems


def _check_training(spec: ModelSpec, where: str, root: Path) -> list[str]:
    if spec.training is None:
        return []
    problems = []
    if spec.validation is None:
        problems.append(f"{where}: key 'validation' is required with 'training:' (each new version is "
                        "gated against the live one on it); add an .npz with 'labels'")
    directory, module, _ = spec.training.entry(root)
    if SCRIPT_ENTRY_RE.match(spec.training.entry_point):
        script = directory / f"{module}.py"
        if not script.is_file():
            problems.append(f"{where}: key 'training.entry_point': script {script} does not exist; "
                            "fix the path (relative to the catalog file)")
    else:
        base = directory.joinpath(*module.split("."))
        if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
            problems.append(f"{where}: key 'training.entry_point': module {module!r} is not next to "
                            f"the catalog (no {base.with_suffix('.py')}); put it there or use a script path")
    return problems


def _spec_model() -> type[ModelSpec]:
    """:class:`ModelSpec` with the ``preprocess:`` schema of the input kinds registered now."""
    current = preprocess_model() | None
    field = ModelSpec.model_fields["preprocess"]
    if field.annotation != current:
        field.annotation = current
        ModelSpec.model_rebuild(force=True)
    return ModelSpec


def parse_catalog(data: Any, path: Path) -> Catalog:
    """Validate already-parsed YAML ``data`` as the catalog at ``path``."""
    path = Path(path).resolve()
    root = path.parent
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise CatalogError(f"{path}: expected a mapping with a 'models:' list; see models.yaml")
    extra = set(data) - {"models"}
    if extra:
        raise CatalogError(f"{path}: unknown top-level key(s) {sorted(extra)}; only 'models' is allowed")
    problems: list[str] = []
    specs: list[ModelSpec] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(data["models"]):
        where = _where(raw, i)
        if not isinstance(raw, dict):
            problems.append(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
            continue
        try:
            spec = _spec_model().model_validate(raw)
        except ValidationError as err:
            problems.append(_explain(err, where))
            continue
        if spec.name in seen:
            problems.append(f"{where}: duplicate name (also model #{seen[spec.name] + 1}); "
                            "names must be unique because each is a route and a function")
            continue
        seen[spec.name] = i
        resolved = {k: _resolve(root, getattr(spec, k)) for k in ("example_input", "calibration", "validation")}
        if spec.source_kind == "hf":
            resolved["source"] = HF_PREFIX + str(_resolve(root, spec.source_path))
        elif spec.source_kind not in ("torch", "pipeline", "none") or spec.source_path is not None:
            resolved["source"] = str(_resolve(root, Path(spec.source)))
        if spec.training is not None:
            resolved["training"] = _resolve_training(root, spec.training)
        resolved.update(resolve_processing(spec, root))
        spec = spec.model_copy(update=resolved)
        problems.extend(_check_files(spec, where))
        problems.extend(_check_training(spec, where, root))
        specs.append(spec)
    problems.extend(check_pipelines(specs))
    if problems:
        lines = "\n".join(problems).splitlines()  # one model's entry may hold several problems
        raise CatalogError(f"{path}: the catalog has {len(lines)} problem(s):\n" + "\n".join(lines))
    return Catalog(path=path, models=tuple(specs))


def load_catalog(path: str | Path = "models.yaml") -> Catalog:
    """Load and validate the catalog file; raises :class:`CatalogError` with every problem."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"catalog {path} not found; pass --catalog or create models.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path} is not valid YAML: {exc}") from exc
    return parse_catalog(data, path)
