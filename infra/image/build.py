"""Stage and build the images of a catalog's models, exactly as ``cdk synth`` stages them.

The build contexts come from the same functions the CDK app calls
(:mod:`infra.targets.staging`), in the same place (``<build dir>/cdk-stage/``), from the same
plan (:mod:`infra.targets`: image kind, architecture, GPU), so the
image built here is the image ``cdk deploy`` ships; only ``--base`` (the ``PYTHON_BASE``
build arg) can swap the AWS base for a stand-in or a mirror.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from infra.image.engine import Engine, EngineError
from infra.targets import plan_model, staging
from infra.targets.deploy_spec import DeploySpec

#: Catalog architecture → the engine's ``--platform``.
PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}


def image_tag(name: str, version: str) -> str:
    return f"modelfn-{name}:{version}"


@dataclass(frozen=True)
class ImageTarget:
    """One image to build: its model, kind, tag, platform, staged context and build args."""

    model: str
    kind: str  # "lambda" or "sagemaker"
    tag: str
    platform: str
    context: Path
    build_args: dict[str, str]
    gpu: bool = False


@dataclass(frozen=True)
class ImageResult:
    model: str
    tag: str
    engine: str
    size_bytes: int
    model_layer_bytes: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def plan(specs: Iterable[DeploySpec], *, stage_dir: Path, python_base: str | None = None
         ) -> list[ImageTarget]:
    """The images of ``specs``: each Lambda model's own image (api + batch), and for a
    SageMaker model the serving image (CPU or GPU by instance type), tagged per model."""
    targets = []
    for spec in specs:
        image = plan_model(spec).image  # the same plan the CDK app and the local stack render
        if image.kind == "sagemaker":
            generative = spec.manifest.extra.get("task") == "generation"
            context = staging.stage_sagemaker_image(
                dest=stage_dir / ("sagemaker-image-generation" if generative else "sagemaker-image"),
                generative=generative)
            targets.append(ImageTarget(
                spec.name, "sagemaker", image_tag(spec.name, spec.version), PLATFORMS[image.architecture],
                context, staging.image_build_args(python_base=python_base, gpu=image.gpu, generative=generative),
                image.gpu))
            continue
        context = staging.stage_model_image(dest=stage_dir / "images" / spec.name,
                                            model_dir=spec.model_dir)
        targets.append(ImageTarget(
            spec.name, "lambda", image_tag(spec.name, spec.version),
            PLATFORMS[image.architecture], context,
            staging.image_build_args(python_base=python_base)))
    return targets


def build_one(engine: Engine, target: ImageTarget, *, log: Callable[[str], None] | None = None
              ) -> ImageResult:
    """Build ``target`` and measure it; :class:`EngineError` (with the engine's output tail)
    when the build fails."""
    t0 = time.perf_counter()
    engine.build(context=target.context, tag=target.tag, platform=target.platform,
                 build_args=target.build_args, log=log)
    seconds = time.perf_counter() - t0
    layers = engine.layer_sizes(target.tag)
    if not layers:
        raise EngineError(f"{engine.name} reports no layers for {target.tag}")
    # The model directory is the last layer of a Lambda image; the SageMaker image has none
    model_layer = layers[-1] if target.kind == "lambda" else 0
    return ImageResult(model=target.model, tag=target.tag, engine=engine.name,
                       size_bytes=engine.size_bytes(target.tag), model_layer_bytes=model_layer,
                       seconds=round(seconds, 2))
