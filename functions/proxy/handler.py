"""Lambda entry point of the SageMaker proxy (HTTP API → ``InvokeEndpoint``): wiring only,
the logic is :mod:`layers.sagemaker_proxy`.

Observability: the shared setup (:mod:`layers.observability`): one EMF line per request
(``Latency``, ``ColdStart``, ``Errors<status>``; dimension ``model``) and a log line per
request at INFO with the route, status and latency.
"""

from __future__ import annotations

import os
import time
from typing import Any

from layers import names
from layers.observability import setup
from layers.sagemaker_proxy import client, client_timeouts, custom_attributes, forward

__all__ = ["client", "client_timeouts", "custom_attributes", "handler"]

observability = setup()
logger, metrics = observability.logger, observability.metrics
if os.environ.get(names.ENV_PROXY_MODEL):
    observability.bind_model(os.environ[names.ENV_PROXY_MODEL], os.environ.get(names.ENV_PROXY_MODEL_VERSION, ""))


def _handle(event: dict, context: Any) -> dict:
    start = time.perf_counter()
    response = forward(event, context)
    ms = (time.perf_counter() - start) * 1000.0
    status = response.get("statusCode")
    observability.record_request(latency_ms=ms, request_id=getattr(context, "aws_request_id", ""),
                                 status=status, path=event.get("rawPath", ""))
    if status != 200:
        observability.count(f"Errors{status}")
    logger.info("request", extra={"path": event.get("rawPath"), "status": status, "latency_ms": round(ms, 3)})
    return response


# layers/observability.py: Lambda context in logs, ColdStart metric, model dimension, tracing
_handle = observability.entry_point(_handle)


def handler(event: dict, context: Any) -> dict:
    """Lambda handler: an API Gateway HTTP API (payload 2.0) event → the endpoint's answer."""
    return _handle(event, context)
