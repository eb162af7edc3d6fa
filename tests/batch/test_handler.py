"""The Lambda entry point: SQS partial failures, direct S3 events, what it ignores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from layers.batch.service import UnsupportedEvent
from tests.batch import files
from tests.batch.conftest import get_lines, keys, s3_event, s3_record, sqs_event, upload
from tests.conftest import load_event

REPO = Path(__file__).resolve().parents[2]


def test_sqs_reports_only_the_failed_messages(service, aws, lambda_context):
    # given a good object, a message that is not an S3 notification, and S3's test event
    good = s3_event(upload(aws, "tiny/in/good.npy", files.npy(files.rows(3))))
    test_event = load_event("sqs_s3_test_event")["Records"][0]["body"]
    event = sqs_event(good, "this is not json", test_event)
    # when
    response = service.handle(event, lambda_context)
    # then only the garbage message is retried; the good one produced its result
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert keys(aws, "tiny/out/") == ["tiny/out/good.npy.jsonl"]


def test_a_bad_object_is_a_result_not_a_failed_message(service, aws, lambda_context):
    event = sqs_event(s3_event(upload(aws, "tiny/in/bad.csv", b"a,b\n1,x\n")),
                      s3_event(upload(aws, "tiny/in/ok.csv", b"1,2,3,4\n")))
    assert service.handle(event, lambda_context) == {"batchItemFailures": []}
    assert keys(aws, "tiny/errors/") == ["tiny/errors/bad.csv.json"]
    assert keys(aws, "tiny/out/") == ["tiny/out/ok.csv.jsonl"]


def test_recorded_sqs_event_is_processed(service, aws, lambda_context):
    # given the recorded message, pointing at an object that exists with that version
    event = load_event("sqs_s3_object_created")
    body = json.loads(event["Records"][0]["body"])
    put = aws.put_object(Bucket="modelfn-batch", Key="tiny/in/features.npz", Body=files.npz(x=files.rows(2)))
    body["Records"][0]["s3"]["object"]["versionId"] = put["VersionId"]
    event["Records"][0]["body"] = json.dumps(body)
    assert service.handle(event, lambda_context) == {"batchItemFailures": []}
    assert len(get_lines(aws, "tiny/out/features.npz.jsonl")) == 2


def test_url_encoded_keys_are_decoded(service, aws, lambda_context):
    record = upload(aws, "tiny/in/daily scores+1.csv", b"1,2,3,4\n")
    assert record["s3"]["object"]["key"] == "tiny/in/daily+scores%2B1.csv"
    service.handle(s3_event(record), lambda_context)
    assert keys(aws, "tiny/out/") == ["tiny/out/daily scores+1.csv.jsonl"]


@pytest.mark.parametrize("key", ["other-model/in/a.npy", "tiny/out/a.npy.jsonl", "tiny/errors/a.npy.json",
                                 "tiny/in/", "tiny/a.npy"])
def test_objects_outside_this_models_input_prefix_are_skipped(service, aws, lambda_context, key):
    record = s3_record(key, version_id=None, etag="abc", size=1)
    result = service.handle(s3_event(record), lambda_context)["results"][0]
    assert result["status"] == "skipped"
    assert keys(aws, "") == []


def test_removal_events_are_skipped(service, aws, lambda_context):
    record = s3_record("tiny/in/a.npy", version_id=None, etag="", size=0, event_name="ObjectRemoved:Delete")
    assert service.handle(s3_event(record), lambda_context)["results"][0]["status"] == "skipped"


def test_an_event_that_is_not_s3_or_sqs_is_refused(service, lambda_context):
    with pytest.raises(UnsupportedEvent, match="S3 event notification"):
        service.handle({"detail-type": "Scheduled Event"}, lambda_context)


def test_handler_module_imports_and_runs_with_only_model_dir(tiny_model_dir):
    # given a process environment with MODEL_DIR and nothing AWS-related
    env = {"PATH": os.environ["PATH"], "MODEL_DIR": str(tiny_model_dir), "HOME": os.environ.get("HOME", "/tmp")}
    script = (
        "import json, sys\n"
        "from functions.batch.handler import handler\n"
        "from tests.conftest import FakeLambdaContext, load_event\n"
        "print(json.dumps(handler(load_event('sqs_s3_test_event'), FakeLambdaContext())))\n"
    )
    # when the module is imported and given S3's test event
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    # then it answers without touching AWS
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == {"batchItemFailures": []}
    # and records its cold start through the shared observability setup (EMF on stdout)
    emf = [json.loads(line) for line in lines[:-1] if line.startswith("{") and '"_aws"' in line]
    cold = [e for e in emf if "ColdStart" in e]
    assert len(cold) == 1 and cold[0]["ColdStart"] in ([1.0], 1.0), emf
    # the dimensions the dashboard graphs (infra/cdk/constructs/dashboard.py)
    assert cold[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "modelfn"
    assert {"function_name", "service"} <= set(cold[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0])
