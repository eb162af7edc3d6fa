"""The thin proxy function that puts a SageMaker endpoint behind the HTTP API's V2 routes.

Why a function and not a direct integration: HTTP APIs have no SageMaker service
integration (only Lambda, HTTP URLs and a few AWS services such as SQS/Step Functions), and
a REST-API ``AwsIntegration`` would split the one API into two. The proxy adds only the
``route=<METHOD> <PATH>`` custom attribute, so the endpoint serves every V2 route through the
same router as a Lambda model (functions/proxy/handler.py).

Observability as every entry point (layers/observability.py): the zip carries the handler and
the few runtime modules it imports; Powertools (with the X-Ray SDK) comes from the stack's own
layer, built from exactly the versions the images pin (powertools_layer.py), on the images'
Python (3.13, infra/cdk/runtimes.py).
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.cdk.constructs.powertools_layer import PowertoolsLayer
from infra.cdk.nag import acknowledge
from infra.cdk.runtimes import ZIP_RUNTIME, ZIP_RUNTIME_REASON
from layers import names

PROXY_HANDLER = "functions.proxy.handler.handler"


class SageMakerProxyFunction(Construct):
    """Public attributes: ``function``, ``alias``, ``role``, ``log_group``."""

    @property
    def function(self) -> lambda_.Function:
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

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        model_name: str,
        model_version: str = "",
        code_dir: Path,
        endpoint_name: str,
        endpoint_arn: str,
        memory_mb: int = 256,
        timeout_s: int = names.PROXY_TIMEOUT_S,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        """
        :param model_version: the manifest's version, in the proxy's logs; default unset.
        :param code_dir: the staged proxy source (staging.stage_proxy_code); the Powertools
            layer is staged beside it (``<code_dir>/../powertools-layer``).
        :param memory_mb: default 256 (it only forwards bytes).
        :param timeout_s: default 29 s: just under the HTTP API's 30 s integration timeout.
        """
        super().__init__(scope, id)
        self._log_group = logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        self._role = iam.Role(
            self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"modelfn {model_name}: SageMaker proxy execution role",
        )
        self._log_group.grant_write(self._role)
        self._role.add_to_principal_policy(iam.PolicyStatement(
            sid="InvokeOwnEndpoint", actions=["sagemaker:InvokeEndpoint"], resources=[endpoint_arn],
        ))
        self._function = lambda_.Function(
            self, "Function",
            description=f"modelfn {model_name}: HTTP API → SageMaker endpoint proxy",
            runtime=ZIP_RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=PROXY_HANDLER,
            code=lambda_.Code.from_asset(str(code_dir)),
            memory_size=memory_mb,
            timeout=cdk.Duration.seconds(timeout_s),
            environment={
                names.ENV_SAGEMAKER_ENDPOINT: endpoint_name,
                names.ENV_PROXY_TIMEOUT_S: str(timeout_s),
                names.ENV_PROXY_MODEL: model_name,
                names.ENV_PROXY_MODEL_VERSION: model_version,
                names.ENV_POWERTOOLS_SERVICE: f"{names.SERVICE_NAME}-{model_name}",
                names.ENV_POWERTOOLS_NAMESPACE: names.METRICS_NAMESPACE,
            },
            layers=[PowertoolsLayer.of(self, stage_dir=Path(code_dir).parent / "powertools-layer")],
            # kept on every deploy: `rollback` needs the previous version (versions.deployed)
            current_version_options=lambda_.VersionOptions(removal_policy=cdk.RemovalPolicy.RETAIN),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self._log_group,
            role=self._role,
        )
        self._alias = lambda_.Alias(
            self, "Live", alias_name="live", version=self._function.current_version
        )
        acknowledge(
            self._role, "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions; "
            "CDK adds exactly these two actions for active tracing",
        )
        for rule in ("AwsSolutions-L1", "Serverless-LambdaLatestVersion"):
            acknowledge(self._function, rule, ZIP_RUNTIME_REASON)
        acknowledge(
            self._function, "Serverless-LambdaDLQ",
            "invoked synchronously by the HTTP API only; there are no asynchronous invocations",
        )
