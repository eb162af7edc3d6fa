"""Lambda entry point for one model's HTTP API (``functions.api.handler.handler``).

The model is loaded here, at import (the Lambda init phase), once per process: a missing
``MODEL_DIR`` or a sha256 mismatch makes the import fail, which is how Lambda reports an
init error, instead of a function that answers 500 to every request.

Request path: ``POST /v2/models/<name>[/versions/<v>]/infer`` goes straight to the protocol
(:mod:`functions.api.direct`); every other route goes to the Powertools resolver
(:mod:`functions.api.routes`), which is built, and its module imported, on the first such
request (``app`` below), so a cold start answering an inference never pays for it (under
SnapStart it is built at init, which the snapshot holds). Both
paths answer identically (``tests/functional/test_direct_path.py``).

Observability (:mod:`layers.observability`, the setup every entry point shares): one EMF
line per request (``Latency`` ms, ``BatchSize``, ``PayloadBytes``, ``Errors<Class>``; the
``model`` dimension; request id, model version, path and status as metadata) and
Powertools' ``ColdStart`` metric; the Logger's Lambda context (request id, cold start) with
model name and version on every line (client errors at INFO, internal errors with the
trace, each request at DEBUG only: a second JSON line per request cost more than the whole
protocol path, see ``bench/bench_api.py``); inside Lambda, a Tracer subsegment annotated with
the model.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from functions.api.direct import Hooks, match_infer, max_request_bytes, respond
from layers.errors import ModelfnError
from layers.model import get_model
from layers.observability import setup
from layers.protocol import InferResult
from layers.snapstart import register_hooks, snapstart_active

obs = setup()
logger, metrics, tracer = obs.logger, obs.metrics, obs.tracer

model = get_model()  # init: verify sha256, create the one session; raises if unservable
obs.bind_model(model.name, model.version)
register_hooks(model, logger)  # SnapStart: prime before the snapshot, re-seed after restore
_limit = max_request_bytes()


class _Observe(Hooks):
    def on_infer(self, result: InferResult, payload_bytes: int) -> None:
        obs.count("BatchSize", result.batch_size)
        obs.count("PayloadBytes", payload_bytes, unit="Bytes")

    def on_client_error(self, exc: ModelfnError) -> None:
        obs.error(exc)
        logger.info("client error", extra={"status": exc.status, "error": exc.message})

    def on_internal_error(self, exc: Exception, request_id: str) -> None:
        obs.count("ErrorsInternal")
        logger.exception("internal error", extra={"request_id": request_id})


_hooks = _Observe()
_app = None


def __getattr__(name: str) -> Any:
    """``app``: the resolver for every route but inference, built on first use."""
    if name == "app":
        return _resolver()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _resolver():
    global _app
    if _app is None:
        from functions.api.routes import build_app

        _app = build_app(model, _hooks)
    return _app


def _serve(event: dict[str, Any], context: Any) -> dict[str, Any]:
    start = time.perf_counter()
    route = match_infer(event)
    if route is not None:
        response = respond(model, _hooks, event, context, route, _limit)
    else:
        response = _resolver().resolve(event, context)
    ms = (time.perf_counter() - start) * 1000.0
    status = response.get("statusCode")
    obs.record_request(latency_ms=ms, request_id=getattr(context, "aws_request_id", ""),
                       status=status, path=event.get("rawPath", ""))
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("request", extra={"path": event.get("rawPath"), "status": status, "latency_ms": round(ms, 3)})
    return response


_handle = obs.entry_point(_serve)
if snapstart_active():  # init goes into the snapshot, so nothing waits for it: build everything
    _resolver()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda handler: an API Gateway HTTP API (payload 2.0) event → HTTP response."""
    return _handle(event, context)
