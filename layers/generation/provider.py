"""Where a generative model's decoding loop runs: the CPU or CUDA, chosen by one setting.

The setting is :data:`layers.names.ENV_EXECUTION_PROVIDER` (``cpu`` | ``cuda``; unset: ``cpu``),
which the plan sets on a SageMaker GPU endpoint (``ml.g*``/``ml.p*``). The folder's own
``genai_config.json`` names the provider it was built for (the build's ``-e cuda`` variant says
``cuda``); the runtime never trusts that alone: it clears the folder's providers and appends
the one the setting asks for, so a CUDA-built folder runs on the CPU where the setting says
``cpu`` (the local stack, the build's gate), and a ``cuda`` setting on a host that cannot give
CUDA fails the start with the reason instead of running on the CPU unnoticed.

CUDA needs the GPU image: ``onnxruntime-genai-cuda`` (its ``libonnxruntime-genai-cuda.so``) over
``onnxruntime-gpu`` with the CUDA libraries from their PyPI wheels, which
:func:`layers.providers.execution_providers` preloads (cuBLAS, cuBLASLt, cuFFT, cuRAND, cudart,
NVRTC: what ``libonnxruntime-genai-cuda.so`` links against), and an NVIDIA GPU with its driver.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from layers import names
from layers.manifest import ManifestError

CPU, CUDA = names.EXECUTION_PROVIDERS
#: the shared library a CUDA build of onnxruntime-genai carries beside its module
CUDA_LIBRARY = "libonnxruntime-genai-cuda.so"
log = logging.getLogger("modelfn.generation")


class ProviderUnavailable(ManifestError):
    """CUDA was asked for and this process cannot give it; the message says why and the fix."""


def requested() -> str:
    """The setting's provider (``cpu`` when unset); any other value is a clear error."""
    raw = os.environ.get(names.ENV_EXECUTION_PROVIDER, "").strip().lower()
    if not raw:
        return CPU
    if raw not in names.EXECUTION_PROVIDERS:
        raise ManifestError(f"{names.ENV_EXECUTION_PROVIDER}={raw!r} is not one of "
                            f"{', '.join(names.EXECUTION_PROVIDERS)}; unset it to run on the CPU.")
    return raw


def built_for(folder: Path, block: dict[str, Any]) -> str:
    """The provider the folder was built for: the manifest's ``execution_provider``, else
    ``cuda`` when its genai_config's decoder names CUDA provider options, else ``cpu``."""
    if block.get("execution_provider") in names.EXECUTION_PROVIDERS:
        return str(block["execution_provider"])
    import json

    try:
        cfg = json.loads((folder / "genai_config.json").read_text())
        options = cfg["model"]["decoder"]["session_options"].get("provider_options") or []
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return CPU
    return CUDA if any(isinstance(o, dict) and CUDA in o for o in options) else CPU


def _unavailable(why: str) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"{names.ENV_EXECUTION_PROVIDER}=cuda but CUDA is not usable here: {why}. CUDA needs the GPU "
        "image (onnxruntime-genai-cuda over onnxruntime-gpu: `modelfn image` builds it for a catalog "
        "entry whose instance_type is ml.g*/ml.p*) on an NVIDIA GPU; set "
        f"{names.ENV_EXECUTION_PROVIDER}=cpu to run this model on the CPU instead.")


def prepare_cuda(og: Any) -> None:
    """Check that this onnxruntime-genai is a CUDA build and load the CUDA libraries it links
    against (the nvidia-* wheels, through onnxruntime's ``preload_dlls``), before the model
    opens. Raises :class:`ProviderUnavailable` naming what is missing."""
    from layers.providers import CUDA as ORT_CUDA
    from layers.providers import execution_providers

    package = Path(getattr(og, "__file__", "") or ".").parent
    if not (package / CUDA_LIBRARY).is_file():
        raise _unavailable(f"this onnxruntime-genai ({getattr(og, '__version__', '?')}) is the CPU build "
                           f"(no {CUDA_LIBRARY}; the GPU image installs onnxruntime-genai-cuda)")
    if ORT_CUDA not in execution_providers():
        raise _unavailable("onnxruntime has no CUDAExecutionProvider (the GPU image installs onnxruntime-gpu)")


def configure(config: Any, provider: str) -> None:
    """Make the og.Config run on ``provider``, whatever the folder's genai_config says."""
    config.clear_providers()
    if provider == CUDA:
        config.append_provider(CUDA)


def open_model(og: Any, config: Any, provider: str, folder: Path) -> Any:
    """``og.Model(config)`` on ``provider``; a CUDA request that onnxruntime-genai cannot meet
    (no GPU, no driver, a library missing) is :class:`ProviderUnavailable`, never a CPU run."""
    if provider == CUDA:
        prepare_cuda(og)
    configure(config, provider)
    try:
        model = og.Model(config)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if provider == CUDA:
            raise _unavailable(f"onnxruntime-genai could not open {folder} on CUDA ({first})") from exc
        raise ManifestError(f"onnxruntime-genai cannot load {folder}: {first}. "
                            "Rebuild the model with `modelfn build`.") from exc
    device = str(getattr(model, "device_type", provider) or provider)
    if provider == CUDA and device.lower() != CUDA:
        raise _unavailable(f"onnxruntime-genai opened the model on {device}")
    return model
