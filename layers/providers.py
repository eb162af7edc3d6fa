"""Which onnxruntime execution providers a session asks for, and a warning when a GPU was
wanted but the session fell back to the CPU.

The CPU images carry ``onnxruntime`` (CPU only): :func:`execution_providers` is
``["CPUExecutionProvider"]``. The GPU SageMaker image (ml.g*/ml.p* instance types) carries
``onnxruntime-gpu`` with CUDA and cuDNN from their PyPI wheels (``layers/requirements-gpu.lock``):
its build reports ``CUDAExecutionProvider``, so the session asks for CUDA first, after
:func:`onnxruntime.preload_dlls` has loaded the CUDA/cuDNN libraries from those wheels (no
system CUDA install). Without a usable GPU or driver onnxruntime runs the session on the CPU;
:func:`warn_on_fallback` logs that, so a GPU endpoint running on its CPU is never silent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import onnxruntime as ort

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
log = logging.getLogger("modelfn.providers")


def execution_providers() -> list[str]:
    """``[CUDA, CPU]`` where this onnxruntime build has CUDA (the GPU image), else ``[CPU]``."""
    if CUDA not in ort.get_available_providers():
        return [CPU]
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()  # CUDA + cuDNN from the nvidia-* wheels in site-packages
        except Exception as exc:  # a missing library shows up as the fallback warning below
            log.warning("could not preload the CUDA libraries: %s", exc)
    return [CUDA, CPU]


def warn_on_fallback(session: ort.InferenceSession, requested: Sequence[str]) -> bool:
    """Log a warning and return True when CUDA was requested but the session runs on CPU."""
    if CUDA in requested and CUDA not in session.get_providers():
        log.warning("CUDAExecutionProvider was requested but is not usable here (no GPU, driver "
                    "or CUDA library); this model runs on the CPU (providers: %s)",
                    ", ".join(session.get_providers()))
        return True
    return False
