"""Local S3, SQS and DynamoDB (an embedded moto server) and the SQS event source mapping.

The resources are the deployed ones: the ``modelfn-batch`` bucket, one queue (with a
dead-letter queue) per model, ``ObjectCreated`` notifications filtered on ``<model>/in/``
exactly as the CDK app configures them, and the idempotency table. moto delivers the
S3→SQS notifications itself (same process as the server). :class:`QueuePoller` is Lambda's
SQS event source: it receives a batch (size 1, as deployed), invokes the model's batch function with the
SQS event, and deletes only what succeeded (``ReportBatchItemFailures``); a failed invoke
leaves the messages for redelivery after the visibility timeout, then the DLQ.
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
MAX_RECEIVE_COUNT = 3  # deliveries before a message goes to the dead-letter queue
BATCH_SIZE = 1  # S3 objects per invocation: one object may be large
VISIBILITY_FACTOR = 6  # queue visibility timeout = 6 x the batch function's timeout


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

    def create_resources(self, models: dict[str, int]) -> None:
        """Bucket, per-model queue + DLQ + prefix-filtered notification, idempotency table.

        :param models: model name -> its batch function's timeout in seconds.
        """
        s3, sqs, ddb = self.client("s3"), self.client("sqs"), self.client("dynamodb")
        s3.create_bucket(Bucket=self.bucket)
        configs = []
        for model, timeout_s in models.items():
            dlq = sqs.create_queue(QueueName=queue_name(model) + "-dlq")["QueueUrl"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            url = sqs.create_queue(QueueName=queue_name(model), Attributes={
                "VisibilityTimeout": str(VISIBILITY_FACTOR * timeout_s),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                             "maxReceiveCount": str(MAX_RECEIVE_COUNT)}),
            })["QueueUrl"]
            self.queue_urls[model] = url
            configs.append({
                "Id": f"{model}-in",
                "QueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_name(model)}",
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [
                    {"Name": "prefix", "Value": f"{model}/{names.BATCH_IN}/"}]}},
            })
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
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def queue_arn(self) -> str:
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.queue_url.rsplit('/', 1)[-1]}"

    def start(self) -> QueuePoller:
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"sqs-{self.model}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        sqs = self.aws.client("sqs")
        while not self._stop.is_set():
            if self.pool.failure:  # like a mapping whose function cannot start: nothing consumed
                self._stop.wait(1)
                continue
            try:
                got = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=BATCH_SIZE,
                                          WaitTimeSeconds=1, AttributeNames=["All"],
                                          MessageAttributeNames=["All"]).get("Messages", [])
            except Exception as exc:  # the server is stopping, or a transient error
                if not self._stop.is_set():
                    log.warning("%s: receive failed: %s", self.model, exc)
                    time.sleep(1)
                continue
            if got and not self._stop.is_set():
                self._deliver(sqs, got)

    def _deliver(self, sqs, messages: list[dict]) -> None:
        event = {"Records": [to_lambda_record(m, self.queue_arn) for m in messages]}
        outcome = self.pool.invoke(json.dumps(event).encode(), acquire_timeout_s=self.pool.spec.timeout_s * 2)
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
