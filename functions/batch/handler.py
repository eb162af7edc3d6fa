"""Batch inference Lambda entry point: S3 object events (direct, or via the model's SQS queue).

The model is loaded once per process, at import; everything else lives in
:mod:`layers.batch.service`. Layout and formats: README "Batch inference" and design.md.
"""

from __future__ import annotations

from typing import Any

from layers.batch.service import BatchService, logger, metrics, tracer
from layers.model import get_model

service = BatchService(get_model())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(raise_on_empty_metrics=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return service.handle(event, context)
