"""1,000 objects, 5% corrupt: exactly 950 results and 50 error records, through SQS batches."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)

from layers.batch.service import BatchService
from tests.batch import files
from tests.batch.conftest import BUCKET, s3_event, sqs_event, upload


class InMemoryStore(BasePersistenceLayer):
    """Idempotency records in a dict: the same Powertools protocol, minus 2,000 mocked DynamoDB calls
    (DynamoDB itself is exercised in test_idempotency.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.records = {}

    def _get_record(self, idempotency_key):
        try:
            return self.records[idempotency_key]
        except KeyError:
            raise IdempotencyItemNotFoundError from None

    def _put_record(self, data_record) -> None:
        old = self.records.get(data_record.idempotency_key)
        if old is not None and not old.is_expired:
            raise IdempotencyItemAlreadyExistsError(old_data_record=old)
        self.records[data_record.idempotency_key] = data_record

    def _update_record(self, data_record) -> None:
        self.records[data_record.idempotency_key] = data_record

    def _delete_record(self, data_record) -> None:
        self.records.pop(data_record.idempotency_key, None)


@pytest.mark.slow
def test_thousand_objects_with_five_percent_corrupt(aws, model, lambda_context):
    store = InMemoryStore()
    service = BatchService(model, persistence=store)
    # given 1,000 tiny objects, every 20th one corrupt, announced in SQS batches of 10
    good = files.csv(files.rows(2).tolist())
    records = [upload(aws, f"tiny/in/part-{i:04d}.csv", b"1,2,oops,4\n" if i % 20 == 0 else good)
               for i in range(1000)]
    # when
    failures = []
    for start in range(0, 1000, 10):
        event = sqs_event(*(s3_event(r) for r in records[start:start + 10]))
        failures += service.handle(event, lambda_context)["batchItemFailures"]
    # then
    assert failures == []
    assert len(store.records) == 1000 and {r.status for r in store.records.values()} == {"COMPLETED"}
    pages = aws.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="tiny/")
    found = [o["Key"] for page in pages for o in page.get("Contents", [])]
    outs = sorted(k for k in found if k.startswith("tiny/out/"))
    errors = sorted(k for k in found if k.startswith("tiny/errors/"))
    assert len(outs) == 950 and len(errors) == 50
    assert errors == [f"tiny/errors/part-{i:04d}.csv.json" for i in range(0, 1000, 20)]
    assert not {k.removeprefix("tiny/out/").removesuffix(".jsonl") for k in outs} & {
        k.removeprefix("tiny/errors/").removesuffix(".json") for k in errors}
