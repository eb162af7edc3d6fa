"""The data plane: what one model's endpoint does, whatever transport asks.

As MLServer's ``DataPlane``: :class:`DataPlane` holds the served model and answers live,
ready, server and model metadata, and inference, reporting to :class:`Hooks` (the metrics
and logs an entry point keeps). The Lambda HTTP binding (:mod:`layers.http`), the SageMaker
server (``functions/sagemaker/serve.py``, through the same binding), the batch job
(:mod:`layers.batch`) and the local stack (which runs those entry points) all call it, so a
request means the same thing everywhere. Protocols (:mod:`layers.protocols`) translate their
wire format into these calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from layers.errors import ModelfnError, NotFound
from layers.servable import Servable
from layers.v2_wire import InferResult, infer, model_metadata, server_metadata


class Hooks:
    """What an entry point observes (logs, metrics); the defaults do nothing."""

    def on_infer(self, result: InferResult, payload_bytes: int) -> None: ...

    def on_client_error(self, exc: ModelfnError) -> None: ...

    def on_internal_error(self, exc: Exception, request_id: str) -> None: ...


class DataPlane:
    """One served model's operations. ``model`` (any :class:`~layers.servable.Servable`) is
    loaded once per process, at init."""

    def __init__(self, model: Servable, hooks: Hooks | None = None) -> None:
        self.model = model
        self.hooks = hooks or Hooks()

    # --- health ----------------------------------------------------------------------------
    def live(self) -> dict[str, Any]:
        return {"live": True}

    def ready(self) -> dict[str, Any]:
        """The model is loaded at init: a process that answers is ready."""
        return {"ready": True}

    def server_metadata(self) -> dict[str, Any]:
        return server_metadata()

    # --- one model -------------------------------------------------------------------------
    def check_model(self, name: str, version: str | None = None) -> None:
        """:class:`NotFound` unless ``name`` (and ``version``, if given) is what is served."""
        model = self.model
        if name != model.name:
            raise NotFound(
                f"model {name!r} is not served here; this endpoint serves {model.name!r} "
                f"(GET /v2/models/{model.name})."
            )
        if version is not None and version != model.version:
            raise NotFound(
                f"model {model.name!r} version {version!r} is not deployed; the deployed version is "
                f"{model.version!r} (or leave /versions/... out of the path)."
            )

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        self.check_model(name, version)
        return model_metadata(self.model)

    def model_ready(self, name: str, version: str | None = None) -> dict[str, Any]:
        self.check_model(name, version)
        return {"name": self.model.name, "ready": True}

    def infer(self, request: Any, binary: bytes | memoryview = b"", *, payload_bytes: int = 0) -> InferResult:
        """A decoded V2 inference request (the model already checked) → its result; reported
        to :meth:`Hooks.on_infer`. Client mistakes raise :class:`~layers.errors.ModelfnError`."""
        result = infer(self.model, request, binary)
        self.hooks.on_infer(result, payload_bytes)
        return result

    def infer_arrays(self, inputs: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None, *,
                     allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
        """Numpy rows (the batch job's chunks, already decoded from their files) → outputs by
        name; the same checks as :meth:`infer` (a client mistake raises ``BadRequest``)."""
        return self.model.infer(inputs, output_names, allow_nonfinite=allow_nonfinite)
