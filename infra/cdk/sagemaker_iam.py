"""The CloudWatch permissions a SageMaker role needs for its own logs and metrics.

SageMaker writes an endpoint's logs to ``/aws/sagemaker/Endpoints/<endpoint>`` and a training
job's to the one group ``/aws/sagemaker/TrainingJobs``; its metrics go to the namespace of the
same name. Both the endpoint and the training constructs grant exactly that, scoped.
"""

from __future__ import annotations

from typing import Literal

import aws_cdk as cdk
from aws_cdk import aws_iam as iam

SageMakerKind = Literal["Endpoints", "TrainingJobs"]

#: Log-group name patterns per kind: one group per endpoint, one group for all training jobs.
LOG_GROUP_PATTERNS: dict[SageMakerKind, str] = {
    "Endpoints": "/aws/sagemaker/Endpoints/*",
    "TrainingJobs": "/aws/sagemaker/TrainingJobs:*",
}


def grant_sagemaker_logs_and_metrics(role: iam.IRole, *, kind: SageMakerKind, sid_prefix: str) -> None:
    """Let ``role`` write the logs and metrics SageMaker emits for a resource of ``kind``."""
    stack = cdk.Stack.of(role)
    role.add_to_principal_policy(iam.PolicyStatement(
        sid=f"{sid_prefix}Logs",
        actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                 "logs:DescribeLogStreams"],
        resources=[stack.format_arn(
            service="logs", resource="log-group", resource_name=LOG_GROUP_PATTERNS[kind],
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )],
    ))
    role.add_to_principal_policy(iam.PolicyStatement(
        sid=f"{sid_prefix}Metrics",
        actions=["cloudwatch:PutMetricData"],
        resources=["*"],  # PutMetricData has no resource type; the namespace condition scopes it
        conditions={"StringEquals": {"cloudwatch:namespace": f"/aws/sagemaker/{kind}"}},
    ))
