"""Which image a model's SageMaker training job runs: modelfn's PyTorch image, CPU or CUDA.

By default each trained model gets its own image built from functions/training/Dockerfile
(the runner, then the user's code as the last layer, so a code change rebuilds only that):
for GPU instance types (``ml.g*``, ``ml.p*``) with PyPI's torch wheels, which bundle the CUDA
runtime; for CPU instance types with the CPU-only build (no CUDA libraries to pull onto an
instance that has no GPU). A catalog ``training.image`` (a full URI of an image that follows
the same container contract) replaces it; the job's role is granted pulls on its ECR
repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

#: SageMaker families with NVIDIA GPUs (g4dn, g5, g6, g6e, p3, p4d, p5, ...).
GPU_FAMILY = re.compile(r"^ml\.[gp]\d")
#: Where the image's torch comes from, by processor.
TORCH_INDEX_URLS = {"gpu": "https://pypi.org/simple", "cpu": "https://download.pytorch.org/whl/cpu"}
#: ``<account>.dkr.ecr.<region>.<suffix>/<repository>[:tag|@digest]``
ECR_IMAGE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.[a-z0-9.]+/([^:@]+)")


def processor(instance_type: str) -> str:
    """``ml.g5.xlarge`` → ``gpu``; ``ml.m5.large`` → ``cpu``."""
    return "gpu" if GPU_FAMILY.match(instance_type) else "cpu"


def build_args(*, instance_type: str, framework_version: str) -> dict[str, str]:
    """The Dockerfile's build args for one model's training image."""
    return {"TORCH_VERSION": framework_version,
            "TORCH_INDEX_URL": TORCH_INDEX_URLS[processor(instance_type)]}


@dataclass(frozen=True)
class TrainingImage:
    image: tasks.DockerImage
    repository_arn: str | None
    """An ECR repository the job's role must be granted pulls on (a ``training.image``);
    None when CDK grants them (the built image) or the image is not in ECR."""


def training_image(
    scope: Construct,
    id: str,
    *,
    context_dir: Path,
    instance_type: str,
    framework_version: str,
    image: str | None = None,
) -> TrainingImage:
    """The built image (``context_dir``: staging.stage_training_image), or ``image``."""
    if image:
        match = ECR_IMAGE.match(image)
        arn = None if match is None else cdk.Stack.of(scope).format_arn(
            service="ecr", account=match[1], region=match[2], resource="repository",
            resource_name=match[3],
        )
        return TrainingImage(tasks.DockerImage.from_registry(image), arn)
    return TrainingImage(
        tasks.DockerImage.from_asset(
            scope, id, directory=str(context_dir), platform=ecr_assets.Platform.LINUX_AMD64,
            build_args=build_args(instance_type=instance_type, framework_version=framework_version),
        ),
        None,
    )
