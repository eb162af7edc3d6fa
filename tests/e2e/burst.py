"""A burst of uploads on the local stack, counted: what the load test and the benchmark run.

``drop_burst`` puts ``n`` small ``.npy`` objects under ``<model>/in/<run>/`` at once (16
uploaders), waits until every one has its result, then counts what a user relies on:
results present (``lost``), result objects written more than once (``duplicates``: extra
versions in the versioned bucket), error records, messages left in the queue and its DLQ,
and the most batch invocations that ran at once (the local event source's count).
"""

from __future__ import annotations

import io
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import boto3
import numpy as np
from botocore.config import Config

ROWS = 2


@dataclass(frozen=True)
class BurstResult:
    objects: int
    results: int
    lost: int
    duplicates: int
    errors: int
    left_in_queue: int
    dead_letters: int
    peak_concurrency: int
    max_concurrency: int
    batch_size: int
    invocations: int
    wall_s: float

    def to_dict(self) -> dict:
        return asdict(self)


def _client(stack, service: str):
    return boto3.client(service, endpoint_url=stack.s3_endpoint, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(max_pool_connections=32, retries={"max_attempts": 5}))


def _count(s3, bucket: str, prefix: str) -> int:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sum(page.get("KeyCount", 0) for page in pages)


def _queue_depth(sqs, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return sum(int(v) for v in attrs.values())


def drop_burst(stack, model: str, n: int, *, timeout_s: float = 600, progress=None) -> BurstResult:
    """Upload ``n`` objects at once to ``model``'s input prefix and count the outcome."""
    bucket = stack.aws.bucket
    s3, sqs = _client(stack, "s3"), _client(stack, "sqs")
    poller = next(p for p in stack.pollers if p.model == model)
    run = f"burst-{uuid.uuid4().hex[:8]}"
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(0).standard_normal((ROWS, 4)).astype(np.float32))
    body = buf.getvalue()
    poller.reset_counters()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=bucket, Key=f"{model}/in/{run}/obj-{i:05d}.npy", Body=body),
                      range(n)))
    out_prefix, err_prefix = f"{model}/out/{run}/", f"{model}/errors/{run}/"
    deadline = time.monotonic() + timeout_s
    done = 0
    while time.monotonic() < deadline:
        done = _count(s3, bucket, out_prefix) + _count(s3, bucket, err_prefix)
        if progress is not None:
            progress(done)
        if done >= n:
            break
        time.sleep(2.0)
    wall = time.perf_counter() - t0
    time.sleep(1.0)  # anything still running would write a second version now
    versions = Counter()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=out_prefix):
        for v in page.get("Versions", []):
            versions[v["Key"]] += 1
    dlq = stack.aws.queue_urls[model].replace(f"/modelfn-{model}-batch", f"/modelfn-{model}-batch-dlq")
    return BurstResult(
        objects=n, results=len(versions), lost=n - len(versions),
        duplicates=sum(c - 1 for c in versions.values()), errors=_count(s3, bucket, err_prefix),
        left_in_queue=_queue_depth(sqs, stack.aws.queue_urls[model]), dead_letters=_queue_depth(sqs, dlq),
        peak_concurrency=poller.peak_concurrency, max_concurrency=poller.settings.max_concurrency,
        batch_size=poller.settings.batch_size, invocations=poller.invocations, wall_s=round(wall, 2),
    )
