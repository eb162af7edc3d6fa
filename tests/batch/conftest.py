"""Batch fixtures: a moto-mocked AWS (bucket + idempotency table), the tiny model, events."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import pytest

from layers import names
from tests.conftest import load_event

BUCKET = names.DEFAULT_BATCH_BUCKET


@pytest.fixture
def aws(monkeypatch):
    """Fresh moto S3 + DynamoDB with the batch bucket (versioned) and the idempotency table.

    The function's cached boto3 clients are reused across tests (moto intercepts clients made
    before a mock starts, and each mock starts empty); they are rebuilt only if one was made
    against another endpoint.
    """
    from moto import mock_aws

    from layers.batch import clients

    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv(names.ENV_BATCH_MEMORY_BUDGET_MB, raising=False)
    with mock_aws():
        if not all(c.meta.endpoint_url.endswith(".amazonaws.com")
                   for c in (clients.s3_client(), clients.dynamodb_client())):
            clients.reset_clients()
        s3 = clients.s3_client()
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        clients.dynamodb_client().create_table(
            TableName=names.DEFAULT_IDEMPOTENCY_TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield s3


@pytest.fixture
def model(tiny_model_dir: Path):
    from layers.model import load_model

    return load_model(tiny_model_dir)


@pytest.fixture
def service(aws, model):
    from layers.batch.service import BatchService

    return BatchService(model)


def s3_record(key: str, *, version_id: str | None, etag: str, size: int,
              event_name: str = "ObjectCreated:Put", bucket: str = BUCKET) -> dict:
    """One S3 notification record shaped like the recorded one, for ``key`` (URL-encoded as S3 does)."""
    from urllib.parse import quote_plus

    record = copy.deepcopy(load_event("s3_object_created")["Records"][0])
    record["eventName"] = event_name
    record["s3"]["bucket"]["name"] = bucket
    obj = record["s3"]["object"]
    obj.update(key=quote_plus(key, safe="/"), size=size, eTag=etag)
    if version_id is None:
        obj.pop("versionId", None)
    else:
        obj["versionId"] = version_id
    return record


def s3_event(*records: dict) -> dict:
    return {"Records": list(records)}


def sqs_event(*bodies: dict | str) -> dict:
    template = load_event("sqs_s3_object_created")["Records"][0]
    out = []
    for body in bodies:
        message = copy.deepcopy(template)
        message["messageId"] = str(uuid.uuid4())
        message["body"] = body if isinstance(body, str) else json.dumps(body)
        out.append(message)
    return {"Records": out}


def upload(s3, key: str, body: bytes, bucket: str = BUCKET) -> dict:
    """Put an object and return the S3 notification record S3 would send for it."""
    response = s3.put_object(Bucket=bucket, Key=key, Body=body)
    return s3_record(key, version_id=response.get("VersionId"), etag=response["ETag"].strip('"'),
                     size=len(body), bucket=bucket)


def get_json(s3, key: str, bucket: str = BUCKET):
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def get_lines(s3, key: str, bucket: str = BUCKET) -> list[dict]:
    text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in text.splitlines()]


def keys(s3, prefix: str, bucket: str = BUCKET) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))
