"""Lambda entry point of the async-batch glue for heavy models: wiring only, the logic is
:mod:`layers.batch.sagemaker_async` (S3 notifications of ``<model>/in/`` → SageMaker
asynchronous inference with ``route=POST /batch``; the endpoint's error notifications →
``<model>/errors/<key>.json``). Runtime code: boto3 and stdlib-only parts of layers/.
"""

from __future__ import annotations

from typing import Any

from layers.batch.sagemaker_async import BATCH_ATTRIBUTE, client, handle_records

__all__ = ["BATCH_ATTRIBUTE", "client", "handler"]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle_records(event.get("Records") or [])
