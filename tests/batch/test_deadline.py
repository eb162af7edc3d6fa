"""Too big for the time left: an error record with the measured rate and how to split, never a timeout."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from layers.batch import deadline
from tests.batch import files
from tests.batch.conftest import get_json, keys, s3_event, sqs_event, upload
from tests.conftest import load_event


class FakeTime:
    """Monotonic time that advances one second per reading."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now


@dataclass
class ClockedContext:
    clock: FakeTime
    deadline_at: float
    aws_request_id: str = "req-1"
    function_name: str = "modelfn-tiny-batch"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:modelfn-tiny-batch"

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline_at - self.clock.now) * 1000)


def test_object_too_big_for_an_invocation_gets_split_advice(service, aws, monkeypatch):
    # given an invocation of 40 s, and chunks of 10 rows that take "1 s" each
    clock = FakeTime()
    monkeypatch.setattr(deadline, "time", clock)
    context = ClockedContext(clock, deadline_at=clock.now + 40)
    service.job.max_chunk_rows = 10
    # when a 1,000-row file arrives
    service.handle(s3_event(upload(aws, "tiny/in/huge.npy", files.npy(files.rows(1000)))), context)
    # then it ends in errors/ with the reason and the advice, and nothing in out/
    assert keys(aws, "tiny/out/") == []
    record = get_json(aws, "tiny/errors/huge.npy.json")
    assert "too large to finish in one invocation: 1000 rows" in record["reason"]
    assert "Split it into files of at most" in record["reason"]
    assert record["rows"] == 1000 and 0 < record["max_rows_per_file"] < 1000
    assert aws.list_multipart_uploads(Bucket="modelfn-batch").get("Uploads", []) == []


def test_no_time_left_in_this_invocation_retries_the_message(service, aws, lambda_context):
    # given an SQS batch whose invocation has only 1.5 s left (less than the reserve)
    lambda_context.remaining_ms = 1500
    late = s3_event(upload(aws, "tiny/in/late.npy", files.npy(files.rows(2))))
    event = sqs_event(late, load_event("sqs_s3_test_event")["Records"][0]["body"])
    # when
    response = service.handle(event, lambda_context)
    # then the object's message is retried in a fresh invocation, nothing is written
    assert response["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    assert keys(aws, "tiny/out/") == keys(aws, "tiny/errors/") == []
    # and the idempotency record was released, so the redelivery runs
    lambda_context.remaining_ms = 30_000
    assert service.handle(sqs_event(late), lambda_context) == {"batchItemFailures": []}
    assert keys(aws, "tiny/out/") == ["tiny/out/late.npy.jsonl"]


@pytest.mark.parametrize("remaining_s, reserve_s", [(30, 2.0), (300, 15.0), (900, 30.0)])
def test_reserve_scales_with_the_time_limit(remaining_s, reserve_s):
    assert deadline.Deadline(lambda: remaining_s * 1000).reserve_s == reserve_s
