"""Retries with growing delay for failed batch messages.

SQS has no per-attempt backoff: a message whose invocation reported it failed becomes
visible again when its visibility timeout (the queue's, 6 × the function timeout) runs out,
which would retry a transient S3 error after 90 minutes, every time. So before reporting a
message as failed, the function sets its visibility timeout from the attempt number SQS
counts (``ApproximateReceiveCount``): ``retry_delay_s × 4^(n-1)`` (60 s, 240 s, 960 s, …,
at most SQS's 12 h). The queue's redrive policy (``maxReceiveCount``) still bounds the
attempts and moves what keeps failing to the dead-letter queue, whose alarm pages.
"""

from __future__ import annotations

import os
from typing import Any

from layers import names


def base_delay_s() -> int:
    raw = os.environ.get(names.ENV_BATCH_RETRY_DELAY_S, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else names.DEFAULT_BATCH_RETRY_DELAY_S


def retry_delay_s(receive_count: int, base_s: int | None = None) -> int:
    """Seconds before the next attempt of a message received ``receive_count`` times."""
    base = base_delay_s() if base_s is None else base_s
    attempt = max(1, receive_count)
    return int(min(names.SQS_MAX_VISIBILITY_TIMEOUT_S, base * names.BATCH_RETRY_GROWTH ** (attempt - 1)))


def queue_url(queue_arn: str, endpoint_url: str) -> str:
    """``arn:aws:sqs:<region>:<account>:<name>`` → the queue URL on ``endpoint_url``."""
    parts = queue_arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        raise ValueError(f"not an SQS queue ARN: {queue_arn!r}")
    return f"{endpoint_url.rstrip('/')}/{parts[4]}/{parts[5]}"


def delay_retry(sqs: Any, *, queue_arn: str, receipt_handle: str, receive_count: int) -> int:
    """Make the failed message visible again only after its attempt's delay; returns it."""
    delay = retry_delay_s(receive_count)
    sqs.change_message_visibility(
        QueueUrl=queue_url(queue_arn, sqs.meta.endpoint_url),
        ReceiptHandle=receipt_handle,
        VisibilityTimeout=delay,
    )
    return delay
