"""One model's routes on the shared HTTP API: one integration, one invoke permission.

The model's stack owns them (the API itself is the shared stack's, imported by id), so a
change to one model's routes touches that model's stack only. Every route of the model goes
through the same ``AWS_PROXY`` integration (payload 2.0) to what runs the model (a model
function's ``live`` alias, or the SageMaker proxy), and one ``Lambda::Permission`` lets the
API invoke it from those routes, instead of one permission per route (what the L2
``HttpLambdaIntegration`` adds). The routes come from the runtime's one route table
(:mod:`layers.routes`: :func:`model_routes` per model); the model that serves the
server-wide routes (``/v2/health/*``, ``/openapi.json``, ``/docs``, ``$default``) gets those
too (infra/cdk/constructs/http_api.py says why one model is enough).
"""

from __future__ import annotations

import re

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.cdk.constructs.http_api import ConfigurationError, model_routes
from infra.cdk.nag import acknowledge
from layers.protocols import route_table

#: catalog ``auth`` → the route's ``AuthorizationType``
AUTHORIZATION = {"iam": "AWS_IAM", "jwt": "JWT", "none": "NONE"}


def _route_id(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-") or "Default"


def lambda_routes(scope: Construct, *, api_id: str, function_arn: str, keys: list[str], source_path: str,
                  authorization: str, authorizer_id: str | None = None
                  ) -> tuple[apigwv2.CfnIntegration, lambda_.CfnPermission, dict[str, apigwv2.CfnRoute]]:
    """``keys`` on the shared HTTP API, all to one Lambda proxy integration (payload 2.0), with
    the invoke permission scoped to ``source_path`` (``*`` or e.g. ``*/*/openai/v1/*``).
    Created under ``scope`` as ``Integration``, ``Invoke`` and one route per key."""
    integration = apigwv2.CfnIntegration(
        scope, "Integration", api_id=api_id, integration_type="AWS_PROXY",
        integration_uri=function_arn, payload_format_version="2.0",
    )
    permission = lambda_.CfnPermission(
        scope, "Invoke", action="lambda:InvokeFunction", function_name=function_arn,
        principal="apigateway.amazonaws.com",
        source_arn=cdk.Stack.of(scope).format_arn(service="execute-api", resource=api_id, resource_name=source_path),
    )
    routes = {key: apigwv2.CfnRoute(scope, _route_id(key), api_id=api_id, route_key=key,
                                    target=f"integrations/{integration.ref}", authorization_type=authorization,
                                    authorizer_id=authorizer_id)
              for key in keys}
    return integration, permission, routes


class ModelRoutes(Construct):
    """Public attributes: ``integration``, ``permission``, ``routes`` (route key → route)."""

    @property
    def integration(self) -> apigwv2.CfnIntegration:
        return self._integration

    @property
    def permission(self) -> lambda_.CfnPermission:
        return self._permission

    @property
    def routes(self) -> dict[str, apigwv2.CfnRoute]:
        return dict(self._routes)

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        api_id: str,
        model_name: str,
        target: lambda_.IFunction,
        auth: str,
        jwt_authorizer_id: str | None = None,
        server_routes: bool = False,
    ) -> None:
        """
        :param api_id: the shared HTTP API's id.
        :param target: what serves the model (an alias: the API never calls ``$LATEST``).
        :param auth: catalog ``auth``: ``iam``, ``jwt`` (needs ``jwt_authorizer_id``) or ``none``.
        :param jwt_authorizer_id: the shared API's JWT authorizer; default none.
        :param server_routes: also route the server-wide paths and ``$default`` here
            (default False: the app gives them to one model only).
        """
        super().__init__(scope, id)
        if auth == "jwt" and not jwt_authorizer_id:
            raise ConfigurationError(
                f"model {model_name!r} has auth: jwt but the JWT issuer/audience are not configured; "
                "pass them as context, e.g. `cdk synth -c modelfn:jwt_issuer="
                "https://issuer.example.com/ -c modelfn:jwt_audience=my-client-id`, or "
                "set them in cdk.json"
            )
        keys = [f"{method.value} {path}" for path, method in model_routes(model_name)]
        if server_routes:
            keys += [f"{method} {path}" for path, method in route_table().server_gateway_routes()]
            keys.append("$default")
        # One permission for every route of the model, scoped to the shared API: the model's
        # routes span several path prefixes (one per protocol: /v2/models/<name>…,
        # /openai/<name>/…; the server routes any path), and only this model's integration
        # targets this function, so a narrower source ARN would exclude nothing more.
        self._integration, self._permission, self._routes = lambda_routes(
            self, api_id=api_id, function_arn=target.function_arn, keys=keys, source_path="*",
            authorization=AUTHORIZATION[auth], authorizer_id=jwt_authorizer_id if auth == "jwt" else None)
        if auth == "none":
            cdk.Annotations.of(self).add_warning_v2(
                f"modelfn:public-model:{model_name}",
                f"model {model_name!r} has auth: none: anyone who knows the URL can call it; set "
                "auth: iam or auth: jwt in the catalog unless that is intended",
            )
            acknowledge(
                self, "AwsSolutions-APIG4",
                f"the catalog sets auth: none for model {model_name!r} (public by the owner's "
                "choice); synth warns about it",
            )
