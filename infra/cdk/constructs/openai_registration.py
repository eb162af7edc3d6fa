"""One model's entry in the OpenAI router's registry, from the model's own stack.

An SSM parameter ``<registry path>/<model>`` holding :class:`layers.openai_router.Deployed`
(its front's ``live`` alias ARN, its ``auth``, when it was built), read by the router function
(infra/cdk/constructs/openai_router.py), and a resource-based permission on that alias for the
router's role: the grant lives with the model (a role policy per model on the shared role would
outgrow IAM's 10 KB inline-policy limit at a few dozen models), and removing the model's stack
removes both.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_ssm as ssm
from constructs import Construct


class OpenAIRegistration(Construct):
    """Public attributes: ``parameter``, ``permission``."""

    @property
    def parameter(self) -> ssm.StringParameter:
        return self._parameter

    @property
    def permission(self) -> lambda_.CfnPermission:
        return self._permission

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        registry_path: str,
        model_name: str,
        target: lambda_.IFunction,
        auth: str,
        router_role_arn: str,
        created: int = 0,
    ) -> None:
        """
        :param registry_path: the router's SSM path (:func:`layers.names.router_registry_path`).
        :param target: what serves the model (its front's alias, as the API routes reach it).
        :param auth: the model's catalog ``auth`` (the router forwards only within the shared
            routes' auth, or to public models).
        :param router_role_arn: the router function's role (the shared stack's export).
        :param created: the model card's ``created`` (the manifest's ``built_at``); default 0.
        """
        super().__init__(scope, id)
        self._parameter = ssm.StringParameter(
            self, "Entry", parameter_name=f"{registry_path.rstrip('/')}/{model_name}",
            description=f"modelfn: {model_name} for the OpenAI router",
            string_value=cdk.Stack.of(self).to_json_string(
                {"target": target.function_arn, "auth": auth, "created": int(created)}),
        )
        self._permission = lambda_.CfnPermission(
            self, "RouterInvoke", action="lambda:InvokeFunction", function_name=target.function_arn,
            principal=router_role_arn,
        )
