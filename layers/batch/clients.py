"""boto3 clients, created on first use (so importing the handler needs only ``MODEL_DIR``).

boto3 reads ``AWS_ENDPOINT_URL`` itself (the local stack points it at its moto server).
The region falls back to us-east-1 when neither ``AWS_REGION`` (always set on Lambda) nor
``AWS_DEFAULT_REGION`` is, so a laptop without AWS configuration still works.
"""

from __future__ import annotations

import functools
import os
from typing import Any


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


@functools.cache
def s3_client() -> Any:
    import boto3

    return boto3.client("s3", region_name=region())


@functools.cache
def dynamodb_client() -> Any:
    import boto3

    return boto3.client("dynamodb", region_name=region())


@functools.cache
def sqs_client() -> Any:
    import boto3

    return boto3.client("sqs", region_name=region())


def reset_clients() -> None:
    """Forget cached clients (tests start each moto mock with fresh ones)."""
    s3_client.cache_clear()
    dynamodb_client.cache_clear()
    sqs_client.cache_clear()
