"""The OpenAI router: the shared ``/openai/v1/…`` routes onto a small zip function that reads
the body's ``model`` and invokes that model's function.

HTTP APIs route on method and path, never on a body, so the route table's ``Scope.BODY`` rows
(``POST /openai/v1/embeddings`` and every other body-routed OpenAI route) and ``Scope.CATALOG``
rows (``GET /openai/v1/models[/{model}]``) go here: the function
(``functions.openai_router.handler``, :mod:`layers.openai_router`) forwards the API's event
unchanged with one synchronous Lambda ``Invoke`` of the model's front (``live`` alias), and
answers the model list from its registry. The registry is one SSM parameter per model under
:func:`layers.names.router_registry_path`, written by each model's stack
(:class:`~infra.cdk.constructs.openai_registration.OpenAIRegistration`, which also lets this
function's role invoke that model's alias), so deploying one model touches no other stack.

One route has one authorizer: the shared routes take ``auth`` (the app passes the catalog's
first model's, like the server routes), and the router forwards only to models of that auth
or public ones (a 403 names the model's own pinned base URL otherwise).
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.cdk.constructs.http_api import ConfigurationError
from infra.cdk.constructs.model_routes import AUTHORIZATION, lambda_routes
from infra.cdk.nag import acknowledge
from infra.cdk.runtimes import ZIP_RUNTIME, ZIP_RUNTIME_REASON
from layers import names
from layers.openai_router import routes_of
from layers.protocols import route_table

#: what the zip carries besides functions/openai_router/ (stdlib-only runtime modules)
RUNTIME_FILES = ("errors.py", "openai_wire.py", "openai_router.py")


class OpenAIRouter(Construct):
    """Router function + the shared OpenAI routes. Public attributes: ``function``, ``role``, ``routes``."""

    @property
    def function(self) -> lambda_.Function:
        return self._function

    @property
    def role(self) -> iam.Role:
        return self._role

    @property
    def routes(self) -> dict[str, apigwv2.CfnRoute]:
        return dict(self._routes)

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        api_id: str,
        registry_path: str,
        code_dir: Path,
        auth: str = "iam",
        jwt_authorizer_id: str | None = None,
        memory_mb: int = 512,
        timeout_s: int = names.PROXY_TIMEOUT_S,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        """
        :param api_id: the shared HTTP API's id.
        :param registry_path: the SSM path the model stacks register under
            (:func:`layers.names.router_registry_path`).
        :param code_dir: the staged function source (staging.stage_function_code with
            :data:`RUNTIME_FILES`).
        :param auth: the shared routes' authorization: ``iam`` (default), ``jwt`` (needs
            ``jwt_authorizer_id``) or ``none``.
        :param memory_mb: default 512: it parses and re-serializes whole bodies (up to 6 MB),
            and Lambda's CPU share grows with memory.
        :param timeout_s: default 29 s, just under the HTTP API's 30 s integration timeout.
        """
        super().__init__(scope, id)
        if auth == "jwt" and not jwt_authorizer_id:
            raise ConfigurationError(
                "the shared /openai/v1 routes take auth: jwt (the catalog's first model's) but the JWT "
                "issuer/audience are not configured; pass -c modelfn:jwt_issuer=... -c modelfn:jwt_audience=...")
        stack = cdk.Stack.of(self)
        log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=cdk.RemovalPolicy.DESTROY)
        self._role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                              description="modelfn: OpenAI router execution role")
        log_group.grant_write(self._role)
        path = registry_path.strip("/")
        self._role.add_to_policy(iam.PolicyStatement(  # invoking a model is granted by each model's stack
            sid="ReadRegistry", actions=["ssm:GetParametersByPath"],
            resources=[stack.format_arn(service="ssm", resource="parameter", resource_name=path)]))
        routes = routes_of(route_table())
        self._function = lambda_.Function(
            self, "Function",
            description="modelfn: the shared /openai/v1 routes, dispatched by the body's model",
            runtime=ZIP_RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=names.OPENAI_ROUTER_HANDLER,
            code=lambda_.Code.from_asset(str(code_dir)),
            memory_size=memory_mb,
            timeout=cdk.Duration.seconds(timeout_s),
            environment={names.ENV_OPENAI_ROUTER: stack.to_json_string(
                {"registry": f"/{path}", "auth": auth, "routes": routes})},
            logging_format=lambda_.LoggingFormat.JSON,
            log_group=log_group,
            role=self._role,
        )
        _, _, self._routes = lambda_routes(
            self, api_id=api_id, function_arn=self._function.function_arn, keys=list(routes),
            source_path="*/*/openai/v1/*", authorization=AUTHORIZATION[auth],
            authorizer_id=jwt_authorizer_id if auth == "jwt" else None)
        for rule in ("AwsSolutions-L1", "Serverless-LambdaLatestVersion"):
            acknowledge(self._function, rule, ZIP_RUNTIME_REASON)
        for rule, why in (
            ("Serverless-LambdaDLQ", "invoked synchronously by the HTTP API; the caller gets the error"),
            ("Serverless-LambdaTracing", "a thin dispatcher: the model function it invokes traces actively"),
        ):
            acknowledge(self._function, rule, why)
        if auth == "none":
            acknowledge(self, "AwsSolutions-APIG4", "the catalog's first model has auth: none, so the shared "
                        "OpenAI routes are public by the owner's choice; they reach public models only")
