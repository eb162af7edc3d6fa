"""The typed step between the catalog + build output and the CDK constructs.

Catalog :class:`~infra.catalog.ModelSpec` + the built :class:`~layers.manifest.Manifest` →
one :class:`DeploySpec` per model, with every sizing decision made (and explained) here, so
constructs only turn specs into resources. Synth fails here, with the fix, when a model has
not been built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from infra.catalog import DEFAULT_BATCH, BatchSpec, Catalog, ModelSpec, TrainingSpec
from infra.targets import provider
from layers import names
from layers.manifest import Manifest, ManifestError, read_manifest

#: Memory for a function whose catalog entry sets none and whose manifest has no fit report.
DEFAULT_MEMORY_MB = 2048
#: Timeout of every batch function: one object may hold many rows (Lambda's maximum).
BATCH_TIMEOUT_S = names.LAMBDA_MAX_TIMEOUT_S


class NotBuiltError(RuntimeError):
    """A catalog model has no usable build output; the message says to run ``modelfn build``."""


@dataclass(frozen=True)
class DeploySpec:
    """Everything the constructs need to deploy one model, decided once."""

    name: str
    model_dir: Path
    """``build/models/<name>``: holds ``model.onnx`` and ``manifest.json``."""
    version: str
    target: Literal["lambda", "sagemaker"]
    architecture: Literal["x86_64", "arm64"]
    memory_mb: int
    memory_source: Literal["catalog", "fit", "default"]
    api_timeout_s: int
    """Capped at the HTTP API's 30 s integration timeout."""
    batch_timeout_s: int
    reserved_concurrency: int | None
    provisioned_concurrency: int | None
    snapstart: bool
    """SnapStart on the API function's published versions (catalog ``snapstart``)."""
    instance_type: str
    """SageMaker instance type (sagemaker target only)."""
    auth: Literal["iam", "jwt", "none"]
    training: TrainingSpec | None
    manifest: Manifest
    batch: BatchSpec = DEFAULT_BATCH
    """The batch path's concurrency, batch size and retries (catalog ``batch``)."""


def _memory(spec: ModelSpec, manifest: Manifest) -> tuple[int, Literal["catalog", "fit", "default"]]:
    if spec.memory_mb is not None:
        return spec.memory_mb, "catalog"
    fit = manifest.extra.get("fit") or {}
    fit_mb = fit.get("memory_mb")
    if isinstance(fit_mb, int | float) and fit_mb > 0:
        return min(max(int(fit_mb), 128), names.LAMBDA_MAX_MEMORY_MB), "fit"
    return DEFAULT_MEMORY_MB, "default"


def _timeout(spec: ModelSpec, manifest: Manifest) -> int:
    if "timeout_s" in spec.model_fields_set:
        return spec.timeout_s
    fit_s = (manifest.extra.get("fit") or {}).get("timeout_s")
    return int(fit_s) if isinstance(fit_s, int | float) and fit_s > 0 else spec.timeout_s


def _target(spec: ModelSpec, manifest: Manifest) -> Literal["lambda", "sagemaker"]:
    if spec.target != "auto":
        return spec.target
    return "sagemaker" if manifest.target == "sagemaker" else "lambda"


def _check_provider(spec: ModelSpec, manifest: Manifest, target: str) -> None:
    """A generative model's folder is built for one provider (CUDA: fp16 activations and CUDA
    attention); deploying it where the plan runs the other needs a rebuild, said here at synth."""
    block = manifest.extra.get("generation")
    if manifest.extra.get("task") != "generation" or not isinstance(block, dict):
        return
    built = block.get("execution_provider", provider.CPU)
    wanted = provider.execution_provider(target=target, instance_type=spec.instance_type)
    if built != wanted:
        raise NotBuiltError(
            f"model {spec.name!r} was built for {built} but its catalog entry places it on {wanted} "
            f"(target {target}, instance_type {spec.instance_type}); rebuild it with "
            f"`modelfn build --model {spec.name} --force`.")


def load_deploy_spec(spec: ModelSpec, build_dir: Path) -> DeploySpec:
    """One model's deploy spec from its catalog entry and ``build_dir/models/<name>``."""
    model_dir = Path(build_dir) / "models" / spec.name
    try:
        manifest = read_manifest(model_dir)
    except ManifestError as exc:
        raise NotBuiltError(
            f"model {spec.name!r} is not built ({exc}). Run `modelfn build --model {spec.name}` "
            "(or `make synth`, which builds first), then synth again."
        ) from exc
    if manifest.name != spec.name:
        raise NotBuiltError(
            f"{model_dir}/manifest.json names model {manifest.name!r}, not {spec.name!r}; "
            f"rebuild with `modelfn build --model {spec.name} --force`."
        )
    target = _target(spec, manifest)
    _check_provider(spec, manifest, target)
    memory_mb, memory_source = _memory(spec, manifest)
    timeout_s = _timeout(spec, manifest)
    return DeploySpec(
        name=spec.name,
        model_dir=model_dir,
        version=manifest.version,
        target=target,
        architecture=spec.architecture,
        memory_mb=memory_mb,
        memory_source=memory_source,
        api_timeout_s=min(timeout_s, names.HTTP_API_TIMEOUT_S),
        batch_timeout_s=BATCH_TIMEOUT_S,
        reserved_concurrency=spec.reserved_concurrency,
        provisioned_concurrency=spec.provisioned_concurrency,
        snapstart=spec.snapstart_enabled,
        instance_type=spec.instance_type,
        auth=spec.auth,
        training=spec.training,
        manifest=manifest,
        batch=spec.batch,
    )


def load_deploy_specs(catalog: Catalog, build_dir: Path) -> tuple[DeploySpec, ...]:
    """Deploy specs for every catalog model; every missing build is reported at once."""
    specs, problems = [], []
    for model in catalog.models:
        try:
            specs.append(load_deploy_spec(model, build_dir))
        except NotBuiltError as exc:
            problems.append(str(exc))
    if problems:
        raise NotBuiltError("\n".join(problems))
    if not specs:
        raise NotBuiltError(f"{catalog.path} lists no models; add one under 'models:'.")
    return tuple(specs)
