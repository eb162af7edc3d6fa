"""Batch inference through the local S3: an upload under <model>/in/ ends in out/ or errors/."""

from __future__ import annotations

import io
import json
import time

import boto3
import numpy as np
import pytest

# one stack for the package: keep its users on one xdist worker
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("local-stack")]


@pytest.fixture(scope="module")
def s3(stack):
    return boto3.client("s3", endpoint_url=stack.s3_endpoint, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x")


def wait_for(s3, bucket: str, key: str, timeout_s: float = 60) -> bytes:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            time.sleep(0.3)
    raise AssertionError(f"s3://{bucket}/{key} did not appear within {timeout_s} s")


def test_npz_upload_yields_one_jsonl_line_per_row(stack, s3):
    # given
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, x=x)
    # when
    s3.put_object(Bucket="modelfn-batch", Key="tiny/in/rows.npz", Body=buf.getvalue())
    # then
    lines = wait_for(s3, "modelfn-batch", "tiny/out/rows.npz.jsonl").decode().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["row"] for r in rows] == list(range(5))
    assert rows[0]["outputs"][0]["name"] == "probs"


def test_corrupt_upload_goes_to_errors_with_the_reason(stack, s3):
    s3.put_object(Bucket="modelfn-batch", Key="tiny/in/broken.npz", Body=b"not an npz at all")
    reason = json.loads(wait_for(s3, "modelfn-batch", "tiny/errors/broken.npz.json"))
    assert reason
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="modelfn-batch", Key="tiny/out/broken.npz.jsonl")


def test_objects_outside_the_in_prefix_trigger_nothing(stack, s3):
    s3.put_object(Bucket="modelfn-batch", Key="tiny/elsewhere/x.npz", Body=b"ignored")
    sqs = boto3.client("sqs", endpoint_url=stack.s3_endpoint, region_name="us-east-1",
                       aws_access_key_id="x", aws_secret_access_key="x")
    attrs = sqs.get_queue_attributes(QueueUrl=stack.aws.queue_urls["tiny"],
                                     AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"


def test_a_burst_of_uploads_is_processed_whole_within_the_concurrency_bound(stack):
    """The load test, small (bench/bench_batch_burst.py drops 2,000): every object has exactly
    one result, none twice, and no more batch invocations ran at once than configured."""
    from tests.e2e.burst import drop_burst

    # given the tiny model's batch settings (catalog defaults: 2 at once, 10 per batch)
    # when 300 objects land at once
    result = drop_burst(stack, "tiny", 300, timeout_s=300)
    # then
    assert (result.lost, result.duplicates, result.errors) == (0, 0, 0), result
    assert (result.left_in_queue, result.dead_letters) == (0, 0), result
    assert 1 <= result.peak_concurrency <= result.max_concurrency == 2, result
    assert result.invocations < result.objects, "objects were not batched"
