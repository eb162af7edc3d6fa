"""Lambda SnapStart hooks for a model function.

With SnapStart, Lambda runs the function's init once when a version is published, snapshots
the memory, and starts every later execution environment from that snapshot. Two hooks make
that safe and worth it (registered with ``snapshot_restore_py``, which awslambdaric runs when
``AWS_LAMBDA_INITIALIZATION_TYPE`` is ``snap-start``: before-snapshot right after init,
after-restore before the first invoke; the local stack runs them in the same order):

- **before snapshot: prime.** One inference on the model's example input, so onnxruntime's
  kernels, memory arenas and the first-run graph work are paid once, inside the snapshot,
  instead of on the first request of every restored environment. A model that rejects the
  primer is logged and served anyway: priming is an optimisation, never a reason to fail.
- **after restore: make the environment unique again.** Every restored environment shares the
  snapshot's memory, so random state is re-seeded from the OS and the Powertools cold-start
  flags are set again (the first invoke after a restore *is* the cold start users feel).
  Code that holds a connection registers its own reset with :func:`on_restore`.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from layers.codec import to_numpy_dtype
from layers.names import ENV_LAMBDA_INIT_TYPE, INIT_TYPE_SNAPSTART

#: Manifest key (written by the build) with the batch-1 input shapes the build measured with.
EXAMPLE_SHAPES_KEY = "example_shapes"

_restore_callbacks: list[Callable[[], Any]] = []


def snapstart_active() -> bool:
    """True in an execution environment that Lambda (or the local stack) starts via SnapStart."""
    return os.environ.get(ENV_LAMBDA_INIT_TYPE) == INIT_TYPE_SNAPSTART


def primer_inputs(model: Any) -> dict[str, np.ndarray]:
    """One batch of zeros (text: one short string) shaped like the build's example input.

    The build records the shapes it measured with under ``example_shapes``; without them every
    dynamic dimension is 1.
    """
    custom = getattr(model, "primer_inputs", None)  # text/image models (layers/processing)
    if callable(custom) and (feeds := custom()) is not None:
        return feeds
    shapes = model.manifest.extra.get(EXAMPLE_SHAPES_KEY) or {}
    feeds = {}
    for spec in model.inputs:
        shape = shapes.get(spec.name) or [1 if d < 0 else d for d in spec.shape]
        if spec.datatype == "BYTES":
            feeds[spec.name] = np.full(shape, "modelfn", dtype=object)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=to_numpy_dtype(spec.datatype))
    return feeds


def prime(model: Any, logger: Any = None) -> bool:
    """Run the model once on :func:`primer_inputs`; False (and a warning) if it refuses."""
    started = time.perf_counter()
    try:
        model.infer(primer_inputs(model), allow_nonfinite=True)
    except Exception as exc:  # priming must never make a snapshot fail
        if logger is not None:
            logger.warning("snapstart: priming skipped, the model refused the primer input",
                           extra={"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__})
        return False
    if logger is not None:
        logger.info("snapstart: primed before snapshot",
                    extra={"prime_ms": round((time.perf_counter() - started) * 1000, 3)})
    return True


def on_restore(callback: Callable[[], Any]) -> Callable[[], Any]:
    """Register ``callback`` to run after each restore (e.g. reopen a connection)."""
    _restore_callbacks.append(callback)
    return callback


def reset_after_restore(logger: Any = None) -> None:
    """What every restored environment must not share with the others."""
    random.seed()
    np.random.seed()  # the legacy global RNG; Generators made later seed from the OS anyway
    _reset_cold_start_flags()
    for callback in _restore_callbacks:
        callback()
    if logger is not None:
        logger.info("snapstart: restored from snapshot")


def _reset_cold_start_flags() -> None:
    """The Powertools modules that report ColdStart each keep their own flag."""
    for name in ("aws_lambda_powertools.metrics.provider.cold_start",
                 "aws_lambda_powertools.metrics.base",
                 "aws_lambda_powertools.logging.logger",
                 "aws_lambda_powertools.tracing.tracer"):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "is_cold_start"):
            module.is_cold_start = True


def register_hooks(model: Any, logger: Any = None) -> None:
    """Register the before-snapshot and after-restore hooks for ``model``.

    Registration is free: awslambdaric runs the hooks only under SnapStart. Outside Lambda's
    runtime (tests, SageMaker) ``snapshot_restore_py`` may be missing; then there is nothing
    to register with.
    """
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return
    register_before_snapshot(prime, model, logger)
    register_after_restore(reset_after_restore, logger)
