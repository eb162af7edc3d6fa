"""Batch inference Lambda entry point: S3 object events (direct, or via the model's SQS queue).

The model is loaded once per process, at import; everything else lives in
:mod:`layers.batch.service`. Layout and formats: README "Batch inference" and design.md.
"""

from __future__ import annotations

import warnings
from typing import Any

from layers.batch.service import BatchService, logger, metrics, tracer
from layers.model import get_model

model = get_model()  # init: verify sha256, create the one session; raises if unservable
service = BatchService(model)
logger.append_keys(model_name=model.name, model_version=model.version)
metrics.set_default_dimensions(model=model.name)

# An invocation that only skips (S3's s3:TestEvent, a key outside this model's prefix) has no
# metrics to publish, and that is fine: keep Powertools' warning out of the function's log.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)



def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if tracer is not None:
        tracer.put_annotation(key="model", value=model.name)
    return service.handle(event, context)


# the shared setup (layers/observability.py): ColdStart metric, model dimension, no auto-patching
_handle = metrics.log_metrics(capture_cold_start_metric=True, raise_on_empty_metrics=False)(_handle)
_handle = logger.inject_lambda_context(clear_state=False)(_handle)
if tracer is not None:
    _handle = tracer.capture_lambda_handler(capture_response=False)(_handle)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda handler: SQS messages carrying S3 notifications, or a direct S3 event."""
    return _handle(event, context)
