"""What moving a model function's ``live`` alias through its CodeDeploy group takes (IAM).

:func:`layers.aliases.start_deployment` calls CreateDeployment with an AppSpec revision;
CodeDeploy then reads the group's deployment config and registers the revision under the
application. Both the control function (promote/rollback over HTTPS) and the retraining
build (deploying a winner) hold these statements, scoped to the model's own group.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam


def deployment_statements(group: codedeploy.ILambdaDeploymentGroup, *,
                          read_deployments: bool = False) -> list[iam.PolicyStatement]:
    """:param read_deployments: also GetDeployment (the retraining build waits on it)."""
    stack = cdk.Stack.of(group)
    create = ["codedeploy:CreateDeployment", *(["codedeploy:GetDeployment"] if read_deployments else [])]
    return [
        iam.PolicyStatement(actions=create, resources=[group.deployment_group_arn]),
        iam.PolicyStatement(actions=["codedeploy:GetDeploymentConfig"],
                            resources=[group.deployment_config.deployment_config_arn]),
        iam.PolicyStatement(
            actions=["codedeploy:RegisterApplicationRevision", "codedeploy:GetApplicationRevision"],
            resources=[stack.format_arn(service="codedeploy", resource="application",
                                        resource_name=group.application.application_name,
                                        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)]),
    ]
