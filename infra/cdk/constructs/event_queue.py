"""An encrypted, TLS-only SQS queue with a dead-letter queue and an alarm on it.

What every event path that feeds a thin function uses (retraining, heavy-model batch): the
queue keeps events through throttles and failed attempts, the DLQ keeps what failed
``max_receive_count`` times, and the alarm says so.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.cdk.nag import acknowledge


class EventQueue(Construct):
    """Public attributes: ``queue``, ``dead_letter_queue``, ``alarm``."""

    @property
    def queue(self) -> sqs.Queue:
        return self._queue

    @property
    def dead_letter_queue(self) -> sqs.Queue:
        return self._dead_letter_queue

    @property
    def alarm(self) -> cw.Alarm:
        return self._alarm

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        visibility_timeout_s: int,
        alarm_description: str,
        max_receive_count: int = 3,
        retention_days: int = 4,
    ) -> None:
        """
        :param visibility_timeout_s: Lambda's guidance: 6× the consumer's timeout (plus its
            batching window).
        :param alarm_description: what it means when messages reach the DLQ.
        :param max_receive_count: deliveries before a message moves to the DLQ (default 3).
        :param retention_days: of the queue (default 4; the DLQ keeps messages 14 days).
        """
        super().__init__(scope, id)
        self._dead_letter_queue = sqs.Queue(
            self, "DeadLetters", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
            retention_period=cdk.Duration.days(14),
        )
        self._queue = sqs.Queue(
            self, "Events", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
            visibility_timeout=cdk.Duration.seconds(visibility_timeout_s),
            retention_period=cdk.Duration.days(retention_days),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self._dead_letter_queue,
                                                  max_receive_count=max_receive_count),
        )
        self._alarm = cw.Alarm(
            self, "DeadLettersAlarm", alarm_description=alarm_description,
            metric=self._dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=cdk.Duration.minutes(5)),
            threshold=1, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        for rule, why in (("AwsSolutions-SQS3", "this queue is the dead-letter queue of the events"),
                          ("Serverless-SQSRedrivePolicy", "this queue is itself the dead-letter queue; "
                                                          "messages stay here for inspection")):
            acknowledge(self._dead_letter_queue, rule, why)
