"""One model's control routes on the HTTP API: training and versions over HTTPS, IAM-authorized always.

The ``Scope.CONTROL`` rows of the runtime's route table (``POST/GET
/v2/models/<name>/train``, ``GET …/train/{run_id}``, ``GET …/versions``, ``POST
…/versions/{version}/promote``, ``POST …/rollback``) go to a small zip function
(``functions.control.handler``) that starts and reads this model's training state machine
and lists and moves its functions' ``live`` aliases through their CodeDeploy groups
(layers/aliases.py). Whatever the model's inference ``auth``, these routes take SigV4
(``AWS_IAM``): starting a training job or a deployment is never public. The function may
start, list and describe the executions of this model's state machine, read this model's
functions' versions and aliases, delete their old versions, and start deployments of their
own CodeDeploy groups; nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.cdk.constructs.model_routes import lambda_routes
from infra.cdk.live_alias_grants import deployment_statements
from infra.cdk.nag import acknowledge
from infra.cdk.runtimes import ZIP_RUNTIME, ZIP_RUNTIME_REASON
from layers import names
from layers.protocols import route_table

CONTROL_HANDLER = "functions.control.handler.handler"
#: what the zip carries besides functions/control/ (stdlib-only runtime modules)
RUNTIME_FILES = ("errors.py", "messages.py", "routes.py", "aliases.py", "protocols/__init__.py",
                 "protocols/control.py")


class ModelControlApi(Construct):
    """Control function + IAM-authorized routes for one model.

    Public attributes: ``function``, ``routes``.
    """

    @property
    def function(self) -> lambda_.Function:
        return self._function

    @property
    def routes(self) -> dict[str, apigwv2.CfnRoute]:
        return dict(self._routes)

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        model_name: str,
        api_id: str,
        state_machine: sfn.IStateMachine | None = None,
        hyperparameters: Mapping[str, str] | None = None,
        data: str | None = None,
        deploy_to: Mapping[str, Any] | None = None,
        code_dir: Path,
        timeout_s: int = 15,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        """
        :param api_id: the shared HTTP API's id (the model's inference routes are on it too).
        :param state_machine: the model's training state machine (training_pipeline); default
            None: the model has no ``training:`` and its train routes answer 400 saying so.
        :param hyperparameters: the catalog's, as SageMaker strings (the names a run may set).
        :param data: the training channel's location (``s3://bucket/prefix``), shown in runs.
        :param deploy_to: ``{kind: ModelFunction}`` whose ``live`` aliases the versions routes
            list and move (default None: a SageMaker-target model, whose versions routes
            answer 400 saying so).
        :param code_dir: the staged function source (staging.stage_function_code with
            :data:`RUNTIME_FILES`).
        :param timeout_s: the function's timeout (default 15 s; it only calls Step Functions).
        """
        super().__init__(scope, id)
        log_group = logs.LogGroup(self, "Logs", retention=log_retention,
                                  removal_policy=cdk.RemovalPolicy.DESTROY)
        role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                        description=f"modelfn {model_name}: control function execution role")
        log_group.grant_write(role)
        stack = cdk.Stack.of(self)
        self._function = lambda_.Function(
            self, "Function",
            description=f"modelfn: {model_name} training and versions over HTTPS",
            runtime=ZIP_RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=CONTROL_HANDLER,
            code=lambda_.Code.from_asset(str(code_dir)),
            memory_size=256,
            timeout=cdk.Duration.seconds(timeout_s),
            environment={names.ENV_CONTROL: stack.to_json_string({
                "model": model_name,
                "state_machine_arn": state_machine.state_machine_arn if state_machine else None,
                "hyperparameters": dict(hyperparameters or {}), "data": data,
                "deployment": {kind: {"function": f.function.function_name,
                                      "application": f.deployment_group.application.application_name,
                                      "group": f.deployment_group.deployment_group_name}
                               for kind, f in (deploy_to or {}).items()} or None})},
            logging_format=lambda_.LoggingFormat.JSON,
            log_group=log_group,
            role=role,
        )
        if state_machine is not None:
            state_machine.grant_start_execution(self._function)
            state_machine.grant_execution(self._function, "states:DescribeExecution")
            self._function.add_to_role_policy(iam.PolicyStatement(
                sid="ListRuns", actions=["states:ListExecutions"], resources=[state_machine.state_machine_arn]))
        self._grant_versions(deploy_to or {})
        _, _, self._routes = lambda_routes(  # IAM, never the model's auth: training is not public
            self, api_id=api_id, function_arn=self._function.function_arn,
            keys=[f"{method} {path}" for path, method in route_table().control_gateway_routes(model_name)],
            source_path=f"*/*/v2/models/{model_name}/*", authorization="AWS_IAM")
        self._acknowledge(role, stack, state_machine, deploy_to or {})

    def _grant_versions(self, deploy_to: Mapping[str, Any]) -> None:
        """What layers/aliases.py calls, on this model's own functions and CodeDeploy groups."""
        if not deploy_to:
            return
        functions = [f.function.function_arn for f in deploy_to.values()]
        self._function.add_to_role_policy(iam.PolicyStatement(
            sid="ReadAndPruneVersions",
            actions=["lambda:GetAlias", "lambda:ListAliases", "lambda:ListVersionsByFunction",
                     "lambda:DeleteFunction"],
            resources=[*functions, *(f"{arn}:*" for arn in functions)]))
        for f in deploy_to.values():
            for statement in deployment_statements(f.deployment_group):
                self._function.add_to_role_policy(statement)

    def _acknowledge(self, role: iam.Role, stack: cdk.Stack, state_machine: sfn.IStateMachine | None,
                     deploy_to: Mapping[str, Any]) -> None:
        import json

        if state_machine is not None:
            name = json.dumps({"Fn::Select": [6, {"Fn::Split": [":", {
                "Ref": stack.get_logical_id(state_machine.node.default_child)}]}]}, separators=(",", ":"))
            acknowledge(role, "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:"
                        f"<AWS::AccountId>:execution:{name}:*]",
                        "DescribeExecution on this model's own training runs (one execution per run id)")
        for f in deploy_to.values():
            arn = f"<{stack.get_logical_id(f.function.node.default_child)}.Arn>"
            acknowledge(role, f"AwsSolutions-IAM5[Resource::{arn}:*]",
                        "versions and the live alias of this model's own functions (list, prune old ones)")
        for rule in ("AwsSolutions-L1", "Serverless-LambdaLatestVersion"):
            acknowledge(self._function, rule, ZIP_RUNTIME_REASON)
        for rule, why in (
            ("Serverless-LambdaDLQ", "invoked synchronously by the HTTP API; the caller gets the error"),
            ("Serverless-LambdaTracing", "a thin Step Functions client; the execution is the trace"),
        ):
            acknowledge(self._function, rule, why)
