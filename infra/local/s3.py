"""Local S3, SQS and DynamoDB (an embedded moto server) and the SQS event source mapping.

The resources are the deployed ones: the ``modelfn-batch`` bucket, one queue (with a
dead-letter queue) per model, ``ObjectCreated`` notifications filtered on ``<model>/in/``
exactly as the CDK app configures them, and the idempotency table. moto delivers the
S3→SQS notifications itself (same process as the server). :class:`QueuePoller` is Lambda's
SQS event source with the catalog's ``batch`` settings, as deployed: ``max_concurrency``
pollers (the batch function has as many instances, like its reserved concurrency), each
gathering up to ``batch_size`` messages (waiting at most ``max_batching_window_s``),
invoking the batch function with the SQS event and deleting only what succeeded
(``ReportBatchItemFailures``). A failed message comes back when the visibility timeout the
function set for it runs out (growing per attempt, layers/batch/retry.py); a failed invoke
leaves the whole batch for the queue's visibility timeout; after ``max_receive_count``
deliveries a message goes to the DLQ. :attr:`QueuePoller.peak_concurrency` records the most
invocations that ran at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

import boto3
from botocore.config import Config

from infra.local.function_pool import ACCOUNT, REGION, FunctionPool
from layers import names

log = logging.getLogger("modelfn.local.s3")

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "modelfn-local", "AWS_SECRET_ACCESS_KEY": "modelfn-local",
               "AWS_SESSION_TOKEN": "modelfn-local", "AWS_DEFAULT_REGION": REGION}
# the deployed settings (infra/cdk/constructs/batch_pipeline.py), not imported: CDK is heavy
VISIBILITY_FACTOR = 6  # queue visibility timeout = 6 x the batch function's timeout
SQS_RECEIVE_MAX = 10  # messages one ReceiveMessage call returns at most


@dataclass(frozen=True)
class QueueSettings:
    """One model's event source mapping and queue (catalog ``batch``; infra/catalog.py
    documents the defaults, which are these)."""

    timeout_s: int = 900
    max_concurrency: int = 2
    batch_size: int = 10
    max_batching_window_s: int = 0
    max_receive_count: int = 3

    @classmethod
    def of(cls, timeout_s: int, batch) -> QueueSettings:
        """From the function timeout and a catalog :class:`~infra.catalog.BatchSpec`."""
        return cls(timeout_s=timeout_s, max_concurrency=batch.max_concurrency, batch_size=batch.batch_size,
                   max_batching_window_s=batch.max_batching_window_s, max_receive_count=batch.max_receive_count)


def queue_name(model: str) -> str:
    return f"modelfn-{model}-batch"


class LocalAws:
    """The embedded moto server and the deployed resources created in it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4566) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self.bucket = names.DEFAULT_BATCH_BUCKET
        self.table = names.DEFAULT_IDEMPOTENCY_TABLE
        self.queue_urls: dict[str, str] = {}
        self.settings: dict[str, QueueSettings] = {}
        self.train_queue_urls: dict[str, str] = {}

    def start(self) -> LocalAws:
        """Start serving, with empty state (moto keeps its backends per Python process)."""
        import urllib.request

        self._server.start()
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"),
                               timeout=10).read()
        return self

    @property
    def endpoint(self) -> str:
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id="modelfn-local", aws_secret_access_key="modelfn-local",
                            config=Config(retries={"max_attempts": 2}))

    def create_resources(self, models: dict[str, QueueSettings], train_models: tuple[str, ...] = ()) -> None:
        """Bucket, per-model queue + DLQ + prefix-filtered notification, idempotency table.

        :param models: model name -> its queue and event source settings.
        :param train_models: models with ``training:``; objects under ``<model>/train/`` notify
            their ``modelfn-<model>-train`` queue (local retraining, infra/train/retrain.py).
        """
        s3, sqs, ddb = self.client("s3"), self.client("sqs"), self.client("dynamodb")
        s3.create_bucket(Bucket=self.bucket)
        s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        configs = []
        for model, settings in models.items():
            self.settings[model] = settings
            dlq = sqs.create_queue(QueueName=queue_name(model) + "-dlq")["QueueUrl"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            url = sqs.create_queue(QueueName=queue_name(model), Attributes={
                "VisibilityTimeout": str(VISIBILITY_FACTOR * settings.timeout_s),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                             "maxReceiveCount": str(settings.max_receive_count)}),
            })["QueueUrl"]
            self.queue_urls[model] = url
            configs.append(_notification(f"{model}-in", queue_name(model), f"{model}/{names.BATCH_IN}/"))
        for model in train_models:
            name = f"modelfn-{model}-{names.TRAIN_PREFIX}"
            self.train_queue_urls[model] = sqs.create_queue(QueueName=name)["QueueUrl"]
            configs.append(_notification(f"{model}-{names.TRAIN_PREFIX}", name, f"{model}/{names.TRAIN_PREFIX}/"))
        if configs:
            s3.put_bucket_notification_configuration(
                Bucket=self.bucket, NotificationConfiguration={"QueueConfigurations": configs})
        ddb.create_table(TableName=self.table, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
        ddb.update_time_to_live(TableName=self.table, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": "expiration"})

    def stop(self) -> None:
        self._server.stop()
        server = getattr(self._server, "_server", None)
        if server is not None:
            server.server_close()  # free the port (moto's stop() only shuts the loop down)


def _notification(config_id: str, queue: str, prefix: str) -> dict:
    """One ``ObjectCreated`` → SQS queue notification, filtered on a key prefix."""
    return {"Id": config_id, "QueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}}


def to_lambda_record(msg: dict, queue_arn: str) -> dict:
    """One SQS message as the Lambda SQS event source delivers it."""
    attrs = msg.get("Attributes", {})
    return {
        "messageId": msg["MessageId"],
        "receiptHandle": msg["ReceiptHandle"],
        "body": msg["Body"],
        "attributes": {k: attrs[k] for k in ("ApproximateReceiveCount", "SentTimestamp", "SenderId",
                                             "ApproximateFirstReceiveTimestamp") if k in attrs},
        "messageAttributes": {
            k: {"stringValue": v.get("StringValue"), "binaryValue": v.get("BinaryValue"),
                "stringListValues": [], "binaryListValues": [], "dataType": v["DataType"]}
            for k, v in (msg.get("MessageAttributes") or {}).items()},
        "md5OfBody": msg.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


@dataclass
class QueuePoller:
    """Lambda's SQS event source mapping for one model's queue and batch function."""

    model: str
    queue_url: str
    pool: FunctionPool
    aws: LocalAws
    settings: QueueSettings = field(default_factory=QueueSettings)
    peak_concurrency: int = 0  # most invocations in flight at once, since start
    invocations: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def queue_arn(self) -> str:
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.queue_url.rsplit('/', 1)[-1]}"

    def start(self) -> QueuePoller:
        self._threads = [threading.Thread(target=self._run, daemon=True, name=f"sqs-{self.model}-{i}")
                         for i in range(self.settings.max_concurrency)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def reset_counters(self) -> None:
        with self._lock:
            self.peak_concurrency, self.invocations = self._in_flight, 0

    def _run(self) -> None:
        sqs = self.aws.client("sqs")
        while not self._stop.is_set():
            if self.pool.failure:  # like a mapping whose function cannot start: nothing consumed
                self._stop.wait(1)
                continue
            try:
                got = self._gather(sqs)
            except Exception as exc:  # the server is stopping, or a transient error
                if not self._stop.is_set():
                    log.warning("%s: receive failed: %s", self.model, exc)
                    time.sleep(1)
                continue
            if got and not self._stop.is_set():
                self._deliver(sqs, got)

    def _gather(self, sqs) -> list[dict]:
        """Up to ``batch_size`` messages: what is there, or what arrives within the window."""
        size, window = self.settings.batch_size, self.settings.max_batching_window_s
        until = time.monotonic() + window
        got: list[dict] = []
        while len(got) < size and not self._stop.is_set():
            wait = 1 if not got else max(0, min(20, int(until - time.monotonic())))
            batch = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=min(SQS_RECEIVE_MAX, size - len(got)),
                                        WaitTimeSeconds=wait, AttributeNames=["All"],
                                        MessageAttributeNames=["All"]).get("Messages", [])
            got += batch
            if not got or (not batch and time.monotonic() >= until):
                break
        return got

    def _deliver(self, sqs, messages: list[dict]) -> None:
        event = {"Records": [to_lambda_record(m, self.queue_arn) for m in messages]}
        with self._lock:
            self._in_flight += 1
            self.invocations += 1
            self.peak_concurrency = max(self.peak_concurrency, self._in_flight)
        try:
            outcome = self.pool.invoke(json.dumps(event).encode(), acquire_timeout_s=self.pool.spec.timeout_s * 2)
        finally:
            with self._lock:
                self._in_flight -= 1
        if not outcome.ok:
            log.warning("%s: batch invocation failed (%s: %s); the messages will be redelivered",
                        self.model, outcome.error_type, outcome.error_message)
            return
        failed: set[str] = set()
        try:
            result = json.loads(outcome.payload) or {}
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures") or []}
        except (ValueError, AttributeError, TypeError, KeyError):
            log.warning("%s: batch function returned no valid batchItemFailures; "
                        "treating the batch as processed", self.model)
        done = [m for m in messages if m["MessageId"] not in failed]
        for i in range(0, len(done), 10):
            sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(done[i:i + 10])])
        if failed:
            log.warning("%s: %d message(s) reported failed; left for redelivery", self.model, len(failed))
