"""Which execution provider a model is served on, decided once from its catalog entry.

CUDA on a SageMaker GPU instance type (``ml.g*``/``ml.p*``: NVIDIA GPUs), the CPU everywhere
else (Lambda has no GPU; ``ml.inf*``/``ml.trn*`` accelerators are Neuron devices, which neither
onnxruntime-gpu nor onnxruntime-genai drives). The build makes a generative model's CUDA variant
from it (:mod:`infra.build.generation`), the plan carries it
(:attr:`infra.targets.plan.ImagePlan.execution_provider`), the constructs and the local stack
set it as :data:`layers.names.ENV_EXECUTION_PROVIDER` (:func:`infra.environment.function_environment`),
and the runtime reads it (:mod:`layers.generation.provider`).
"""

from __future__ import annotations

from layers import names

CPU, CUDA = names.EXECUTION_PROVIDERS
#: SageMaker instance families with NVIDIA GPUs: their image carries onnxruntime-gpu + CUDA.
CUDA_FAMILIES = ("ml.g", "ml.p")


def is_cuda_instance(instance_type: str | None) -> bool:
    return bool(instance_type) and instance_type.startswith(CUDA_FAMILIES)


def execution_provider(*, target: str, instance_type: str | None) -> str:
    """``cuda`` for a model placed on a GPU instance type (``target`` sagemaker, or auto: a GPU
    instance type sends a model to SageMaker), else ``cpu``."""
    return CUDA if target != "lambda" and is_cuda_instance(instance_type) else CPU


def host_has_cuda_genai() -> bool:
    """Whether this host's onnxruntime-genai is the CUDA build (``onnxruntime-genai-cuda``):
    the local stack runs a CUDA-planned model on CUDA only then."""
    import importlib.metadata as md

    try:
        md.version("onnxruntime-genai-cuda")
    except md.PackageNotFoundError:
        return False
    return True


def local_provider(planned: str, *, model: str, containers: bool = False) -> str:
    """The provider the local stack runs a model on: the plan's, except a CUDA plan on a host
    whose onnxruntime-genai is not the CUDA build, or in a container (the local runner passes
    no GPU through), runs on the CPU, and the log says so (never silently)."""
    import logging

    if planned != CUDA:
        return CPU
    if not containers and host_has_cuda_genai():
        return CUDA
    why = "containers get no GPU here" if containers else "this host's onnxruntime-genai is the CPU build"
    logging.getLogger("modelfn.local").warning(
        "%s is planned for CUDA (a GPU instance type); the local stack runs it on the CPU (%s)", model, why)
    return CPU
