"""Lambda entry point for one model's HTTP API (``functions.api.handler.handler``).

Wiring only: the model is loaded here, at import (the Lambda init phase), once per process
(a missing ``MODEL_DIR`` or a sha256 mismatch makes the import fail, which is how Lambda
reports an init error, instead of a function that answers 500 to every request); the
request path is the runtime's HTTP binding over the data plane (:mod:`layers.http`,
:mod:`layers.dataplane`): the fast path for inference, the resolver (built on first use, or
at init under SnapStart, which the snapshot holds) for every other route.

Observability (:mod:`layers.observability`, the setup every entry point shares): one EMF
line per request and Powertools' ``ColdStart`` metric; the Logger's Lambda context with model
name and version on every line; inside Lambda, a Tracer subsegment annotated with the model.
"""

from __future__ import annotations

from typing import Any

from layers.dataplane import DataPlane
from layers.http.binding import HttpBinding, ObservedHooks
from layers.model import get_model
from layers.observability import setup
from layers.snapstart import register_hooks, snapstart_active

obs = setup()
logger, metrics, tracer = obs.logger, obs.metrics, obs.tracer

model = get_model()  # init: verify sha256, create the one session; raises if unservable
obs.bind_model(model.name, model.version)
register_hooks(model, logger)  # SnapStart: prime before the snapshot, re-seed after restore
plane = DataPlane(model, ObservedHooks(obs))
binding = HttpBinding(plane, obs)

_handle = obs.entry_point(binding.serve)
if snapstart_active():  # init goes into the snapshot, so nothing waits for it: build everything
    binding.resolver()


def __getattr__(name: str) -> Any:
    """``app``: the resolver for every route but the fast ones, built on first use."""
    if name == "app":
        return binding.resolver()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda handler: an API Gateway HTTP API (payload 2.0) event → HTTP response."""
    return _handle(event, context)
