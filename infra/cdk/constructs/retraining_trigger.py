"""Retraining on new data: objects under ``<model>/train/`` start the model's state machine.

EventBridge rule (S3 "Object Created" in the batch bucket, one key prefix per trained model)
→ SQS queue → the starter function (functions/retrain/handler.py) through an event source
mapping that batches for ``debounce_s``. Why this shape: S3 sends one event per object, and a
data drop is often hundreds of files; the batching window gathers a burst into one
invocation, which starts at most one execution per model and none while one runs. The event
source allows two invocations at once (SQS's minimum maximum concurrency) and the function
reserves no concurrency: a reservation below the event source's concurrency throttles by
design, and throttled batches count toward ``maxReceiveCount`` and end in the DLQ. Two
batches racing for one model are settled by the starter (the newer run stops itself). The queue also keeps
the events through a throttle or a failed start (retries, then a dead-letter queue with an
alarm) instead of losing them. Why EventBridge and not a bucket notification: S3 allows only
one notification per overlapping prefix/event, and EventBridge leaves the batch prefixes'
SQS notifications untouched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.cdk.constructs.event_queue import EventQueue
from infra.cdk.nag import acknowledge
from infra.cdk.runtimes import ZIP_RUNTIME, ZIP_RUNTIME_REASON
from layers import names

RETRAIN_HANDLER = "functions.retrain.handler.handler"
#: SQS event source mappings take up to 10,000 messages per batch when a window is set.
MAX_BATCH = 10_000
#: Starter invocations at once: SQS event sources take no less than 2.
STARTER_CONCURRENCY = 2


class ModelRetrainingTrigger(Construct):
    """Public attributes: ``rule``, ``queue``, ``dead_letter_queue``, ``function``."""

    @property
    def rule(self) -> events.Rule:
        return self._rule

    @property
    def queue(self) -> sqs.Queue:
        return self._queue

    @property
    def dead_letter_queue(self) -> sqs.Queue:
        return self._dead_letter_queue

    @property
    def function(self) -> lambda_.Function:
        return self._function

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        bucket: s3.Bucket,
        state_machines: Mapping[str, sfn.IStateMachine],
        code_dir: Path,
        debounce_s: int = 300,
        timeout_s: int = 60,
        max_receive_count: int = 5,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        """
        :param bucket: the batch bucket (its EventBridge notifications are turned on).
        :param state_machines: model name → its training state machine.
        :param code_dir: the staged starter source (staging.stage_function_code).
        :param debounce_s: batching window: uploads within it start one run (default 300 s,
            Lambda's maximum).
        :param timeout_s: the starter's timeout (default 60 s).
        :param max_receive_count: deliveries before a batch moves to the DLQ (default 5).
        """
        super().__init__(scope, id)
        bucket.enable_event_bridge_notification()
        events_queue = EventQueue(
            self, "Queue", visibility_timeout_s=6 * timeout_s + debounce_s,
            max_receive_count=max_receive_count,
            alarm_description="modelfn retraining: new-data events gave up; see the DLQ",
        )
        self._queue, self._dead_letter_queue = events_queue.queue, events_queue.dead_letter_queue
        self._rule = events.Rule(
            self, "NewTrainingData",
            description="modelfn: new objects under <model>/train/ retrain the model",
            event_pattern=events.EventPattern(
                source=["aws.s3"], detail_type=["Object Created"],
                detail={"bucket": {"name": [bucket.bucket_name]},
                        "object": {"key": [{"prefix": f"{m}/{names.TRAIN_PREFIX}/"}
                                           for m in sorted(state_machines)]}},
            ),
            targets=[targets.SqsQueue(self._queue, dead_letter_queue=self._dead_letter_queue)],
        )
        log_group = logs.LogGroup(self, "Logs", retention=log_retention,
                                  removal_policy=cdk.RemovalPolicy.DESTROY)
        role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description="modelfn: retraining starter execution role")
        log_group.grant_write(role)
        self._function = lambda_.Function(
            self, "Starter",
            description="modelfn: start a training run per model for new training data",
            runtime=ZIP_RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=RETRAIN_HANDLER,
            code=lambda_.Code.from_asset(str(code_dir)),
            memory_size=256,
            timeout=cdk.Duration.seconds(timeout_s),
            environment={names.ENV_RETRAIN_STATE_MACHINES: cdk.Stack.of(self).to_json_string(
                {m: sm.state_machine_arn for m, sm in sorted(state_machines.items())})},
            tracing=lambda_.Tracing.ACTIVE,
            logging_format=lambda_.LoggingFormat.JSON,
            log_group=log_group,
            role=role,
        )
        self._function.add_event_source(sources.SqsEventSource(
            self._queue, batch_size=MAX_BATCH, max_batching_window=cdk.Duration.seconds(debounce_s),
            max_concurrency=STARTER_CONCURRENCY,
        ))
        for _, machine in sorted(state_machines.items()):
            machine.grant_start_execution(self._function)
            machine.grant_execution(self._function, "states:StopExecution")
        self._function.add_to_role_policy(iam.PolicyStatement(
            sid="SeeRunningExecutions", actions=["states:ListExecutions"],
            resources=[sm.state_machine_arn for _, sm in sorted(state_machines.items())],
        ))
        self._acknowledge(state_machines)

    def _acknowledge(self, state_machines: Mapping[str, sfn.IStateMachine]) -> None:
        stack = cdk.Stack.of(self)
        for _, machine in sorted(state_machines.items()):
            name = json.dumps({"Fn::Select": [6, {"Fn::Split": [":", {
                "Ref": stack.get_logical_id(machine.node.default_child)}]}]}, separators=(",", ":"))
            acknowledge(self._function.role,
                        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:"
                        f"<AWS::AccountId>:execution:{name}:*]",
                        "StopExecution on this model's own training runs (names are per batch): "
                        "the newer of two concurrent runs stops itself")
        acknowledge(self._function.role, "AwsSolutions-IAM5[Resource::*]",
                    "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions")
        for rule, why in (
            *((rule, ZIP_RUNTIME_REASON) for rule in ("AwsSolutions-L1", "Serverless-LambdaLatestVersion")),
            ("Serverless-LambdaDLQ", "invoked only by its SQS event source mapping; failed "
                                     "batches go to the queue's redrive DLQ"),
            ("Serverless-LambdaEventSourceMappingDestination",
             "SQS event source mappings support no on-failure destination; the queue's redrive "
             "DLQ keeps failed batches"),
        ):
            acknowledge(self._function, rule, why)

