"""Batch for heavy models: the glue (functions/async_batch) against moto, and the serving
container's batch route running the same batch job, so ``<model>/in/<key>`` ends as
``<model>/out/<key>.jsonl`` or ``<model>/errors/<key>.json`` exactly as on the Lambda path.

moto's InvokeEndpointAsync records nothing of the request but returns an output location;
what the glue sends is captured from the boto3 client's ``provide-client-params`` event.
"""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest

from layers import names
from tests.batch.conftest import BUCKET, s3_record
from tests.batch.files import npy, rows

MODEL, ENDPOINT = "tiny", "tiny-async"


@pytest.fixture
def glue(aws, monkeypatch):
    import functions.async_batch.handler as glue
    from layers.batch import sagemaker_async

    monkeypatch.setenv(names.ENV_BATCH_MODEL, MODEL)
    monkeypatch.setenv(names.ENV_SAGEMAKER_ENDPOINT, ENDPOINT)
    monkeypatch.setattr(sagemaker_async, "_CLIENTS", {})
    sent: list[dict] = []
    glue.client("sagemaker-runtime").meta.events.register(
        "provide-client-params.sagemaker-runtime.InvokeEndpointAsync",
        lambda params, **_: sent.append(dict(params)))
    return glue, sent


def _upload(s3, key: str, body: bytes) -> dict:
    put = s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return s3_record(key, version_id=put["VersionId"], etag=put["ETag"].strip('"'), size=len(body))


def _sqs(record: dict) -> dict:
    return {"Records": [{"messageId": "m-1", "eventSource": "aws:sqs",
                         "body": json.dumps({"Records": [record]})}]}


def _error_notification(input_location: str, reason: str) -> dict:
    message = {"awsRegion": "us-east-1", "eventTime": "2026-12-01T10:00:00.000Z",
               "receivedTime": "2026-12-01T09:59:00.000Z", "invocationStatus": "Failed",
               "failureReason": reason, "inferenceId": "abc",
               "requestParameters": {"endpointName": ENDPOINT, "inputLocation": input_location,
                                     "contentType": "application/json"},
               "responseParameters": {"contentType": "text/plain"}}
    return {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
                         "Sns": {"Type": "Notification", "Message": json.dumps(message)}}]}


def test_each_new_input_is_submitted_once_per_version(glue, aws, lambda_context) -> None:
    handler, sent = glue
    record = _upload(aws, f"{MODEL}/in/rows.npy", npy(rows(5)))
    # when the object's notification arrives (twice: SQS may redeliver)
    first = handler.handler(_sqs(record), lambda_context)
    again = handler.handler(_sqs(record), lambda_context)
    # then one request payload (the notification itself) and the same inference both times
    [submitted] = first["submitted"]
    assert again["submitted"][0]["inference_id"] == submitted["inference_id"]
    assert sent[0] == sent[1] and sent[0]["EndpointName"] == ENDPOINT
    assert sent[0]["CustomAttributes"] == f"route=POST {names.SAGEMAKER_BATCH_ROUTE}"
    assert sent[0]["InvocationTimeoutSeconds"] == names.SAGEMAKER_ASYNC_TIMEOUT_S
    bucket, key = sent[0]["InputLocation"].removeprefix("s3://").split("/", 1)
    assert bucket == BUCKET and key.startswith(f"{MODEL}/async/requests/")
    assert json.loads(aws.get_object(Bucket=bucket, Key=key)["Body"].read()) == {"Records": [record]}


def test_objects_outside_the_models_input_prefix_are_not_submitted(glue, aws, lambda_context) -> None:
    handler, sent = glue
    record = _upload(aws, "other/in/rows.npy", npy(rows(2)))
    assert handler.handler(_sqs(record), lambda_context)["submitted"] == []
    assert sent == []


def test_a_failed_inference_becomes_the_objects_error_record(glue, aws, lambda_context) -> None:
    handler, sent = glue
    record = _upload(aws, f"{MODEL}/in/rows.npy", npy(rows(3)))
    handler.handler(_sqs(record), lambda_context)
    # when SageMaker reports the invocation failed
    outcome = handler.handler(_error_notification(sent[0]["InputLocation"], "Model container crashed"),
                              lambda_context)
    # then errors/<key>.json says so, for that version, and may be retried
    assert outcome["failed"] == [{"object": f"s3://{BUCKET}/{MODEL}/in/rows.npy",
                                  "error": f"{MODEL}/errors/rows.npy.json"}]
    obj = aws.get_object(Bucket=BUCKET, Key=f"{MODEL}/errors/rows.npy.json")
    error = json.loads(obj["Body"].read())
    assert "Model container crashed" in error["reason"] and "Upload the object again" in error["reason"]
    assert error["retryable"] is True and error["input_version"] == record["s3"]["object"]["versionId"]
    assert obj["Metadata"]["modelfn-source"] == record["s3"]["object"]["versionId"]


def test_a_failure_after_the_result_was_written_changes_nothing(glue, aws, lambda_context) -> None:
    handler, sent = glue
    record = _upload(aws, f"{MODEL}/in/rows.npy", npy(rows(3)))
    handler.handler(_sqs(record), lambda_context)
    aws.put_object(Bucket=BUCKET, Key=f"{MODEL}/out/rows.npy.jsonl", Body=b"{}\n",
                   Metadata={"modelfn-source": record["s3"]["object"]["versionId"]})
    outcome = handler.handler(_error_notification(sent[0]["InputLocation"], "timed out"), lambda_context)
    assert outcome["failed"] == []
    assert "Contents" not in aws.list_objects_v2(Bucket=BUCKET, Prefix=f"{MODEL}/errors/")


@pytest.fixture
def container(aws, monkeypatch, tiny_model_dir, free_port):
    """The SageMaker serving container on 127.0.0.1 serving ``tiny``, inside the moto mock."""
    from functions.sagemaker.serve import make_server
    from tests.functional.conftest import import_handler

    monkeypatch.setenv(names.ENV_MODEL_DIR, str(tiny_model_dir))
    import_handler()
    srv = make_server("127.0.0.1", free_port)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{free_port}"
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


def _invoke_batch(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(f"{url}/invocations", data=body, method="POST", headers={
        "Content-Type": "application/json",
        "X-Amzn-SageMaker-Custom-Attributes": f"route=POST {names.SAGEMAKER_BATCH_ROUTE}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_container_runs_the_batch_job_on_the_submitted_object(glue, aws, container, lambda_context) -> None:
    handler, sent = glue
    record = _upload(aws, f"{MODEL}/in/rows.npy", npy(rows(7)))
    handler.handler(_sqs(record), lambda_context)
    bucket, key = sent[0]["InputLocation"].removeprefix("s3://").split("/", 1)
    payload = aws.get_object(Bucket=bucket, Key=key)["Body"].read()
    # when SageMaker hands the request payload to the container (as InvokeEndpointAsync does)
    status, answer = _invoke_batch(container, payload)
    # then the batch job wrote out/<key>.jsonl: one line per row, as the Lambda path does
    assert status == 200 and answer["results"][0]["status"] == "out"
    lines = aws.get_object(Bucket=BUCKET, Key=f"{MODEL}/out/rows.npy.jsonl")["Body"].read().splitlines()
    assert [json.loads(line)["row"] for line in lines] == list(range(7))
    # and a second delivery of the same version writes nothing again
    status, again = _invoke_batch(container, payload)
    assert status == 200 and again["results"][0]["status"] in ("already-done", "out")


def test_a_body_that_is_not_an_event_is_a_clear_400(container) -> None:
    status, answer = _invoke_batch(container, b"not json")
    assert status == 400 and "S3 event notification" in answer["error"]
