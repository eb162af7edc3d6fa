"""Lambda entry point for one model's HTTP API (``functions.api.handler.handler``).

The model is loaded here, at import (the Lambda init phase), once per process: a missing
``MODEL_DIR`` or a sha256 mismatch makes the import fail, which is how Lambda reports an
init error, instead of a function that answers 500 to every request.

Observability: one EMF line per request from Powertools Metrics (``Latency`` ms,
``BatchSize``, ``PayloadBytes``, ``Errors<Class>`` counts, ``ColdStart``; request id, path and
status as metadata), Powertools Logger (request id via ``inject_lambda_context``, model name
and version on every line; client errors at INFO, internal errors with the trace, each
request at DEBUG: a second JSON line per request measurably cost more than the whole
protocol path, see ``bench/bench_api.py``) and, inside Lambda, Tracer (``layers/observability.py`` says why it is built
without auto-patching and only where it can trace).
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from functions.api.routes import Hooks, build_app
from layers.errors import ModelfnError
from layers.model import get_model
from layers.observability import make_logger, make_metrics, make_tracer
from layers.protocol import InferResult
from layers.snapstart import register_hooks

logger = make_logger()
metrics = make_metrics()
tracer = make_tracer()

model = get_model()  # init: verify sha256, create the one session; raises if unservable
logger.append_keys(model_name=model.name, model_version=model.version)
metrics.set_default_dimensions(model=model.name)
register_hooks(model, logger)  # SnapStart: prime before the snapshot, re-seed after restore


class _Observe(Hooks):
    def on_infer(self, result: InferResult, payload_bytes: int) -> None:
        metrics.add_metric(name="BatchSize", unit=MetricUnit.Count, value=result.batch_size)
        metrics.add_metric(name="PayloadBytes", unit=MetricUnit.Bytes, value=payload_bytes)

    def on_client_error(self, exc: ModelfnError) -> None:
        metrics.add_metric(name=f"Errors{type(exc).__name__}", unit=MetricUnit.Count, value=1)
        logger.info("client error", extra={"status": exc.status, "error": exc.message})

    def on_internal_error(self, exc: Exception, request_id: str) -> None:
        metrics.add_metric(name="ErrorsInternal", unit=MetricUnit.Count, value=1)
        logger.exception("internal error", extra={"request_id": request_id})


app = build_app(model, _Observe())


def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    start = time.perf_counter()
    if tracer is not None:
        tracer.put_annotation(key="model", value=model.name)
        tracer.put_annotation(key="model_version", value=model.version)
    response = app.resolve(event, context)
    ms = (time.perf_counter() - start) * 1000.0
    metrics.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=ms)
    # The EMF line is the per-request record (CloudWatch Logs Insights can query it): the
    # request id, route and status ride along as metadata instead of a second log line.
    metrics.add_metadata(key="request_id", value=getattr(context, "aws_request_id", ""))
    metrics.add_metadata(key="path", value=event.get("rawPath", ""))
    metrics.add_metadata(key="status", value=response.get("statusCode"))
    logger.debug("request", extra={"path": event.get("rawPath"), "status": response.get("statusCode"),
                                   "latency_ms": round(ms, 3)})
    return response


_handle = metrics.log_metrics(capture_cold_start_metric=True)(_handle)
_handle = logger.inject_lambda_context(clear_state=False)(_handle)
if tracer is not None:
    _handle = tracer.capture_lambda_handler(capture_response=False)(_handle)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda handler: an API Gateway HTTP API (payload 2.0) event → HTTP response."""
    return _handle(event, context)
