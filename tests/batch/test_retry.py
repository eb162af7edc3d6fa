"""Batches of many messages: failures are reported per message, each retried after a growing
delay, and a batch in which every message failed is reported, not raised."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from infra.local.s3 import to_lambda_record
from layers import names
from layers.batch import clients
from layers.batch.retry import queue_url, retry_delay_s
from layers.batch.service import BatchService
from tests.batch import files
from tests.batch.conftest import keys, s3_event, upload


class FlakyS3:
    """The real (moto) S3 client, except that reading the objects in ``failing`` answers S3's
    transient ``InternalError``, as S3 sometimes does."""

    def __init__(self, s3, failing: set[str]) -> None:
        self._s3, self.failing = s3, failing

    def get_object(self, **kwargs):
        if kwargs["Key"] in self.failing:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "We encountered an internal error"}},
                              "GetObject")
        return self._s3.get_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self._s3, name)


class RecordingSqs:
    """The moto SQS client, recording the visibility timeouts the function sets."""

    def __init__(self, sqs) -> None:
        self._sqs, self.visibility = sqs, []

    def change_message_visibility(self, **kwargs):
        self.visibility.append(kwargs["VisibilityTimeout"])
        return self._sqs.change_message_visibility(**kwargs)

    def __getattr__(self, name):
        return getattr(self._sqs, name)


@pytest.fixture
def queue(aws):
    sqs = clients.sqs_client()
    url = sqs.create_queue(QueueName="modelfn-tiny-batch", Attributes={"VisibilityTimeout": "5400"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs, url, arn


def deliver(sqs, url: str, arn: str, n: int) -> dict:
    """Receive ``n`` messages and shape them as the Lambda SQS event source does."""
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=n, AttributeNames=["All"])["Messages"]
    assert len(got) == n
    return {"Records": [to_lambda_record(m, arn) for m in got]}


def test_delay_grows_four_times_per_attempt_up_to_twelve_hours():
    assert [retry_delay_s(n, 60) for n in (1, 2, 3, 4)] == [60, 240, 960, 3840]
    assert retry_delay_s(50, 60) == names.SQS_MAX_VISIBILITY_TIMEOUT_S
    assert queue_url("arn:aws:sqs:us-east-1:123456789012:q", "https://sqs.us-east-1.amazonaws.com") == \
        "https://sqs.us-east-1.amazonaws.com/123456789012/q"


def test_a_batch_where_every_object_fails_reports_each_and_delays_its_retry(aws, model, queue, lambda_context):
    sqs, url, arn = queue
    # given ten objects that S3 fails to read (transiently), announced in one batch of ten
    records = [upload(aws, f"tiny/in/part-{i}.npy", files.npy(files.rows(2))) for i in range(10)]
    for r in records:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(s3_event(r)))
    spy = RecordingSqs(sqs)
    service = BatchService(model, s3=FlakyS3(aws, {f"tiny/in/part-{i}.npy" for i in range(10)}), sqs=spy)
    event = deliver(sqs, url, arn, 10)
    # when
    response = service.handle(event, lambda_context)
    # then every message is an item failure (no invocation error), each retried after 60 s
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == \
        sorted(r["messageId"] for r in event["Records"])
    assert spy.visibility == [60] * 10
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []
    assert keys(aws, "tiny/out/") == []


def test_only_the_failed_objects_of_a_batch_are_retried_and_later_attempts_wait_longer(
        aws, model, queue, lambda_context):
    sqs, url, arn = queue
    records = [upload(aws, f"tiny/in/part-{i}.npy", files.npy(files.rows(2))) for i in range(4)]
    for r in records:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(s3_event(r)))
    spy = RecordingSqs(sqs)
    flaky = FlakyS3(aws, {"tiny/in/part-1.npy", "tiny/in/part-3.npy"})
    service = BatchService(model, s3=flaky, sqs=spy)
    event = deliver(sqs, url, arn, 4)
    # a message on its third delivery (SQS counts them) waits 16x the first delay
    event["Records"][3]["attributes"]["ApproximateReceiveCount"] = "3"
    failing_ids = {r["messageId"] for r in event["Records"]
                   if json.loads(r["body"])["Records"][0]["s3"]["object"]["key"] in flaky.failing}
    # when
    response = service.handle(event, lambda_context)
    # then
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == failing_ids
    assert keys(aws, "tiny/out/") == ["tiny/out/part-0.npy.jsonl", "tiny/out/part-2.npy.jsonl"]
    counts = {r["messageId"]: int(r["attributes"]["ApproximateReceiveCount"]) for r in event["Records"]}
    assert sorted(spy.visibility) == sorted(retry_delay_s(counts[m], 60) for m in failing_ids)


def test_the_retry_delay_comes_from_the_function_environment(aws, model, queue, lambda_context, monkeypatch):
    monkeypatch.setenv(names.ENV_BATCH_RETRY_DELAY_S, "5")
    sqs, url, arn = queue
    r = upload(aws, "tiny/in/a.npy", files.npy(files.rows(1)))
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(s3_event(r)))
    spy = RecordingSqs(sqs)
    service = BatchService(model, s3=FlakyS3(aws, {"tiny/in/a.npy"}), sqs=spy)
    service.handle(deliver(sqs, url, arn, 1), lambda_context)
    assert spy.visibility == [5]
