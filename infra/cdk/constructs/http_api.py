"""The one HTTP API in front of every model, with the V2 routes of design.md.

The API, its stage and its JWT authorizer live in the shared stack; each model's stack adds
its own routes (infra/cdk/constructs/model_routes.py). Per model ``<name>`` (whatever runs it: a model function's ``live`` alias or the SageMaker
proxy): ``GET /v2/models/<name>``, ``GET …/ready``, ``POST …/infer``, the same three under
``…/versions/{version}/…``, and ``ANY /v2/models/<name>/{proxy+}`` so a wrong method or
path under a model reaches that model's router and gets its ``{"error": …}`` 404/405
instead of API Gateway's bare ``{"message": "Not Found"}``.

Server-wide routes (``/v2/health/live``, ``/v2/health/ready``, ``/openapi.json``, ``/docs``)
and ``$default`` (any other path) go to the first model in the catalog, with that model's
auth: every model process serves them through the same router, so one is enough, and the
API then answers unknown paths with the router's JSON 404.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import aws_cdk as cdk
import jsii
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.cdk.nag import acknowledge
from layers.protocols import route_table

GET, POST, ANY = apigwv2.HttpMethod.GET, apigwv2.HttpMethod.POST, apigwv2.HttpMethod.ANY
#: the server-wide routes (sent to the first model), from the runtime's route table
SERVER_ROUTES = tuple(path for path, _ in route_table().server_gateway_routes())
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationLatencyMs": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "authorizerError": "$context.authorizer.error",
}


class ConfigurationError(ValueError):
    """The app's context lacks something a catalog choice needs; the message says which."""


def model_routes(name: str) -> tuple[tuple[str, apigwv2.HttpMethod], ...]:
    """(path, method) of every route one model gets: the runtime's route table
    (:mod:`layers.routes`), ``{name}`` = ``name``."""
    return tuple((path, apigwv2.HttpMethod(method)) for path, method in route_table().model_gateway_routes(name))


class ModelHttpApi(Construct):
    """HTTP API + ``$default`` stage (throttled, JSON access logs) + the JWT authorizer.

    Public attributes: ``api``, ``stage``, ``access_logs``, ``url``, ``jwt_authorizer``.
    """

    @property
    def api(self) -> apigwv2.HttpApi:
        return self._api

    @property
    def stage(self) -> apigwv2.HttpStage:
        return self._stage

    @property
    def access_logs(self) -> logs.LogGroup:
        return self._access_logs

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        throttle_rate_limit: float = 100,
        throttle_burst_limit: int = 200,
        jwt_issuer: str | None = None,
        jwt_audience: Sequence[str] = (),
        cors_origins: Sequence[str] = (),
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        """
        :param throttle_rate_limit: default-route steady requests/s (default 100).
        :param throttle_burst_limit: default-route burst (default 200).
        :param jwt_issuer: issuer URL for ``auth: jwt`` models (context ``modelfn:jwt_issuer``).
        :param jwt_audience: accepted audiences (context ``modelfn:jwt_audience``).
        :param cors_origins: allowed origins; default none, i.e. CORS off
            (context ``modelfn:cors_origins``).
        """
        super().__init__(scope, id)
        cors = None
        if cors_origins:
            cors = apigwv2.CorsPreflightOptions(
                allow_origins=list(cors_origins),
                allow_methods=[apigwv2.CorsHttpMethod.GET, apigwv2.CorsHttpMethod.POST],
                allow_headers=["content-type", "authorization", "x-amz-date",
                               "x-amz-security-token", "inference-header-content-length"],
                max_age=cdk.Duration.hours(1),
            )
        self._api = apigwv2.HttpApi(
            self, "Api",
            description="modelfn: Open Inference Protocol (KServe V2) routes, one model per function",
            create_default_stage=False,
            cors_preflight=cors,
        )
        self._access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        self._stage = apigwv2.HttpStage(
            self, "DefaultStage",
            http_api=self._api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=throttle_rate_limit, burst_limit=throttle_burst_limit
            ),
            access_log_settings=_AccessLogSettings(self._access_logs),
        )
        self._jwt_authorizer = None
        if jwt_issuer and jwt_audience:
            self._jwt_authorizer = apigwv2.HttpAuthorizer(
                self, "Jwt", http_api=self._api, type=apigwv2.HttpAuthorizerType.JWT,
                identity_source=["$request.header.Authorization"],
                jwt_issuer=jwt_issuer, jwt_audience=list(jwt_audience),
            )
        acknowledge(
            self._stage, "Serverless-APIGWXrayEnabled",
            "HTTP APIs do not support X-Ray tracing; every function behind it traces actively",
        )

    @property
    def url(self) -> str:
        return self._stage.url

    @property
    def jwt_authorizer(self) -> apigwv2.HttpAuthorizer | None:
        """The JWT authorizer ``auth: jwt`` models' routes use; None when not configured."""
        return self._jwt_authorizer


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    """JSON access logs into a log group (structured: one JSON object per request)."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS))
