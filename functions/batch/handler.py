"""Batch inference Lambda entry point: S3 object events (direct, or via the model's SQS queue).

The model is loaded once per process, at import; everything else lives in
:mod:`layers.batch.service`. Layout and formats: README "Batch inference" and design.md.
"""

from __future__ import annotations

import warnings
from typing import Any

from layers.batch.service import BatchService, logger, metrics, tracer
from layers.model import get_model

service = BatchService(get_model())

# An invocation that only skips (S3's s3:TestEvent, a key outside this model's prefix) has no
# metrics to publish, and that is fine: keep Powertools' warning out of the function's log.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(raise_on_empty_metrics=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return service.handle(event, context)
