"""One model's container-image Lambda function with a safe rollout.

A function publishes a version per change behind a ``live`` alias; CodeDeploy shifts traffic
to it as a canary and rolls back by itself when the errors or p99-duration alarm fires. Every
caller (the HTTP API, the SQS event source) targets the alias, never ``$LATEST``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.cdk.nag import acknowledge
from layers.names import SNAPSTART_MAX_EPHEMERAL_MB


@dataclass(frozen=True)
class RollbackAlarms:
    """What rolls a canary back. Default (the API): one invocation error in a minute, or p99
    duration over the threshold in 2 of 3 minutes."""

    error_threshold: int = 1
    error_periods: int = 1
    error_datapoints: int = 1
    latency: bool = True


ARCHITECTURES = {"x86_64": lambda_.Architecture.X86_64, "arm64": lambda_.Architecture.ARM_64}
ALIAS_NAME = "live"


class ModelFunction(Construct):
    """A ``DockerImageFunction`` + log group + role + ``live`` alias + canary + rollback alarms.

    Public attributes: ``function``, ``alias``, ``role``, ``log_group``, ``error_alarm``,
    ``latency_alarm``, ``deployment_group``.
    """

    @property
    def function(self) -> lambda_.DockerImageFunction:
        return self._function

    @property
    def alias(self) -> lambda_.Alias:
        return self._alias

    @property
    def role(self) -> iam.Role:
        return self._role

    @property
    def log_group(self) -> logs.LogGroup:
        return self._log_group

    @property
    def error_alarm(self) -> cw.Alarm:
        return self._error_alarm

    @property
    def latency_alarm(self) -> cw.Alarm:
        return self._latency_alarm

    @property
    def deployment_group(self) -> codedeploy.LambdaDeploymentGroup:
        return self._deployment_group

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        code: lambda_.DockerImageCode,
        description: str,
        architecture: str,
        memory_mb: int,
        timeout_s: int,
        environment: Mapping[str, str],
        reserved_concurrency: int | None = None,
        provisioned_concurrency: int | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        deployment_config: codedeploy.ILambdaDeploymentConfig = (
            codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES
        ),
        p99_threshold_ms: float | None = None,
        ephemeral_storage_mb: int = 512,
        snapstart: bool = False,
        rollback_on: RollbackAlarms = RollbackAlarms(),
        application: codedeploy.ILambdaApplication | None = None,
    ) -> None:
        """
        :param code: the model image (``DockerImageCode.from_image_asset``), CMD included.
        :param architecture: ``x86_64`` or ``arm64`` (catalog ``architecture``).
        :param reserved_concurrency: default: none (the account's unreserved pool).
        :param provisioned_concurrency: on the ``live`` alias; default: none (on demand).
        :param log_retention: default one month.
        :param deployment_config: default canary, 10 % for 5 minutes, then all.
        :param p99_threshold_ms: p99 duration that rolls a canary back; default 80 % of
            the timeout.
        :param ephemeral_storage_mb: ``/tmp`` size; default 512 (Lambda's default). The batch
            function downloads its input there, so it gets more.
        :param snapstart: SnapStart on published versions (the ``live`` alias always points at
            one); default off. Lambda refuses it together with provisioned concurrency or more
            than 512 MB of ``/tmp``, so both are refused here, before a deploy would fail.
        :param rollback_on: the alarms the canary judges; default :class:`RollbackAlarms`
            (one error, or p99 over the threshold). ``latency_alarm`` exists either way (for
            dashboards and paging); it rolls back only when ``rollback_on.latency``.
        :param application: the CodeDeploy application of the deployment group; default: a new
            one per function (a model's functions share one: one resource fewer).
        """
        if snapstart and provisioned_concurrency is not None:
            raise ValueError(f"{description}: SnapStart and provisioned concurrency cannot both be "
                             "on; drop one (catalog 'snapstart' / 'provisioned_concurrency')")
        if snapstart and ephemeral_storage_mb > SNAPSTART_MAX_EPHEMERAL_MB:
            raise ValueError(f"{description}: SnapStart supports at most "
                             f"{SNAPSTART_MAX_EPHEMERAL_MB} MB of /tmp, not {ephemeral_storage_mb}")
        super().__init__(scope, id)
        self._log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        # Own role instead of the AWSLambdaBasicExecutionRole managed policy: logs go to this
        # one log group only.
        self._role = iam.Role(
            self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{description} (execution role)",
        )
        self._log_group.grant_write(self._role)
        self._function = lambda_.DockerImageFunction(
            self, "Function",
            code=code,
            description=description,
            architecture=ARCHITECTURES[architecture],
            memory_size=memory_mb,
            timeout=cdk.Duration.seconds(timeout_s),
            environment=dict(environment),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self._log_group,
            role=self._role,
            reserved_concurrent_executions=reserved_concurrency,
            ephemeral_storage_size=cdk.Size.mebibytes(ephemeral_storage_mb),
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snapstart else None,
            # Every deploy publishes a version; CDK's default (DESTROY) would delete the
            # previous one with the deploy, leaving `rollback --deployed` nothing to go back
            # to. Kept versions are pruned by the tool (versions.deployed.prune_versions).
            current_version_options=lambda_.VersionOptions(removal_policy=cdk.RemovalPolicy.RETAIN),
        )
        self._alias = lambda_.Alias(
            self, "Live",
            alias_name=ALIAS_NAME,
            version=self._function.current_version,
            provisioned_concurrent_executions=provisioned_concurrency,
        )
        self._error_alarm = cw.Alarm(
            self, "ErrorsAlarm",
            alarm_description=f"{description}: function errors on the live alias (rolls back)",
            metric=self._alias.metric_errors(period=cdk.Duration.minutes(1), statistic="Sum"),
            threshold=rollback_on.error_threshold,
            evaluation_periods=rollback_on.error_periods,
            datapoints_to_alarm=rollback_on.error_datapoints,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        threshold = p99_threshold_ms if p99_threshold_ms is not None else 0.8 * timeout_s * 1000
        self._latency_alarm = cw.Alarm(
            self, "LatencyAlarm",
            alarm_description=f"{description}: p99 duration over {threshold:.0f} ms (rolls back)",
            metric=self._alias.metric_duration(period=cdk.Duration.minutes(1), statistic="p99"),
            threshold=threshold,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        self._deployment_group = codedeploy.LambdaDeploymentGroup(
            self, "Deployment",
            application=application,
            alias=self._alias,
            deployment_config=deployment_config,
            alarms=[self._error_alarm, *([self._latency_alarm] if rollback_on.latency else [])],
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
        )
        acknowledge(
            self._role, "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions; "
            "CDK adds exactly these two actions for active tracing",
        )
        acknowledge(
            self._function, "Serverless-LambdaDLQ",
            "invoked synchronously (HTTP API) or by an SQS event source whose queue has its own "
            "DLQ; there are no asynchronous invocations to dead-letter",
        )
        acknowledge(
            self._deployment_group,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSCodeDeployRoleForLambdaLimited]",
            "CodeDeploy's AWS-maintained least-privilege role policy for Lambda canaries "
            "(alias updates and alarm reads only)",
        )

    @property
    def function_name(self) -> str:
        return self._function.function_name
