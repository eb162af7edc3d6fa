"""Retraining starter (the logic of ``functions/retrain/handler.py``): new training data under ``<model>/train/`` → one state machine run.

S3 "Object Created" events for the batch bucket reach this function through an EventBridge
rule and an SQS queue whose event source mapping batches for a window (the debounce,
infra/cdk/constructs/retraining_trigger.py): a hundred files uploaded together arrive as one
batch. Per batch, each model whose ``train/`` prefix received objects gets at most one
execution of its training state machine, and none while one of its executions is still
running (that run already trains on the data it copied; the next upload retrains again).
Two batches may run at once (the event source's maximum concurrency is 2, SQS's minimum, and
the function reserves no concurrency so nothing is throttled and sent toward the DLQ): when
both start a run for one model, each then lists the running executions and the newer one
stops itself (:func:`yield_to_older`), so exactly one run stays.

A deterministic execution name (from the batch's message ids) makes a retried batch find the
execution it already started instead of starting a second one. Failures raise: SQS delivers
the batch again and, after the queue's receive limit, keeps it in the dead-letter queue.

Runtime code: boto3 only (the Lambda runtime's); the state machines come from env
``MODELFN_RETRAIN_STATE_MACHINES`` (JSON ``{model: arn}``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import boto3
from botocore.config import Config

from layers import names

LOG = logging.getLogger("modelfn.retrain")
LOG.setLevel(logging.INFO)
#: Keys listed in an execution's input (the count is always complete).
INPUT_KEYS_SHOWN = 20

_CLIENT = None


def client():
    """The Step Functions client, created once per process (lazily, for tests)."""
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = boto3.client("stepfunctions", config=Config(retries={"max_attempts": 5, "mode": "standard"}))
    return _CLIENT


def state_machines() -> dict[str, str]:
    raw = os.environ.get(names.ENV_RETRAIN_STATE_MACHINES, "")
    try:
        machines = json.loads(raw) if raw else {}
    except ValueError:
        raise RuntimeError(f"{names.ENV_RETRAIN_STATE_MACHINES} must be JSON {{model: state machine ARN}}, "
                           f"got {raw[:200]!r}") from None
    if not machines:
        raise RuntimeError(f"{names.ENV_RETRAIN_STATE_MACHINES} names no state machines; the CDK app sets "
                           "it for every model with training:")
    return machines


def training_keys(records: list[dict[str, Any]], models: set[str]) -> dict[str, list[str]]:
    """``{model: [new object keys under <model>/train/]}`` of one SQS batch of EventBridge events."""
    touched: dict[str, list[str]] = {}
    for record in records:
        try:
            event = json.loads(record["body"])
            key = event["detail"]["object"]["key"]
        except (KeyError, TypeError, ValueError):
            LOG.warning("ignoring a message that is not an S3 Object Created event",
                        extra={"message_id": record.get("messageId")})
            continue
        model, _, rest = key.partition("/")
        if model in models and rest.startswith(f"{names.TRAIN_PREFIX}/") and not key.endswith("/"):
            touched.setdefault(model, []).append(key)
    return touched


def execution_name(model: str, records: list[dict[str, Any]]) -> str:
    """Same batch → same name (a retried batch does not start a second run); ≤ 80 chars."""
    digest = hashlib.sha256("\n".join(sorted(r.get("messageId", "") for r in records)).encode())
    return f"retrain-{model[:40]}-{digest.hexdigest()[:24]}"


def start_unless_running(model: str, arn: str, keys: list[str], name: str) -> tuple[str, str]:
    """(``started`` | ``running``, execution ARN)."""
    sfn = client()
    running = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING", maxResults=1)["executions"]
    if running and running[0]["name"] != name:
        return "running", running[0]["executionArn"]
    payload = {"trigger": "new-training-data", "model": model, "objects": len(keys),
               "keys": keys[:INPUT_KEYS_SHOWN]}
    try:
        started = sfn.start_execution(stateMachineArn=arn, name=name, input=json.dumps(payload))
    except sfn.exceptions.ExecutionAlreadyExists:  # this batch's run, started on an earlier try
        return "started", f"{arn.replace(':stateMachine:', ':execution:')}:{name}"
    older = yield_to_older(arn, started["executionArn"])
    if older is not None:
        return "running", older
    return "started", started["executionArn"]


def yield_to_older(arn: str, mine: str) -> str | None:
    """Another batch started a run of the same model at the same time: the newer of the two
    (start date, then name) stops itself. Returns the run that stays when it is not ``mine``."""
    sfn = client()
    running = sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING", maxResults=100)["executions"]
    if len(running) < 2:
        return None
    oldest = min(running, key=lambda e: (e["startDate"], e["name"]))
    if oldest["executionArn"] == mine:
        return None
    sfn.stop_execution(executionArn=mine, error="ConcurrentRetraining",
                       cause=f"another batch started {oldest['name']} at the same time; it trains on the new data")
    return oldest["executionArn"]


def start_runs(records: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """One SQS batch of S3 "Object Created" messages → ``{"started"|"running": {model: execution ARN}}``."""
    machines = state_machines()
    touched = training_keys(records, set(machines))
    outcome: dict[str, dict[str, str]] = {"started": {}, "running": {}}
    for model, keys in sorted(touched.items()):
        what, execution = start_unless_running(model, machines[model], keys,
                                               execution_name(model, records))
        outcome[what][model] = execution
        LOG.info("retraining %s", "started" if what == "started" else "skipped: a run is in progress",
                 extra={"model": model, "objects": len(keys), "execution": execution})
    return outcome
