"""Batch inference Lambda entry point: S3 object events (direct, or via the model's SQS queue).

The model is loaded once per process, at import; everything else lives in
:mod:`layers.batch.service`. Layout and formats: README "Batch inference" and design.md.
"""

from __future__ import annotations

import warnings
from typing import Any

from layers.batch.service import BatchService, observability
from layers.model import get_model

model = get_model()  # init: verify sha256, create the one session; raises if unservable
service = BatchService(model)
observability.bind_model(model.name, model.version)

# An invocation that only skips (S3's s3:TestEvent, a key outside this model's prefix) has no
# metrics to publish, and that is fine: keep Powertools' warning out of the function's log.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return service.handle(event, context)


# layers/observability.py: Lambda context in logs, ColdStart metric, model dimension, tracing
_handle = observability.entry_point(_handle)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda handler: SQS messages carrying S3 notifications, or a direct S3 event."""
    return _handle(event, context)
