"""Lambda entry point of the retraining starter: wiring only, the logic is
:mod:`layers.retraining` (SQS batch of S3 events under ``<model>/train/`` → one state machine
run per model). Runtime code: boto3 only (the Lambda runtime's).
"""

from __future__ import annotations

from typing import Any

from layers.retraining import start_runs


def handler(event: dict[str, Any], context: Any) -> dict[str, dict[str, str]]:
    return start_runs(event.get("Records") or [])
