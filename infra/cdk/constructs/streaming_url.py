"""A generative model's streaming endpoint: a function URL in ``RESPONSE_STREAM`` mode.

Why a function URL: as AWS documents today, Lambda streams a response through a function URL
(``InvokeMode: RESPONSE_STREAM``), ``InvokeWithResponseStream``, or a REST API's Lambda proxy
integration with ``responseTransferMode: STREAM``; never through an HTTP API, which is what
the model's other routes use. A function URL needs no second API, sends the HTTP API's own
payload 2.0 events (the runtime's binding reads them unchanged) and answers every route of
the model, so ``<url>openai/v1/chat/completions`` with ``"stream": true`` streams server-sent
events as the model produces them, up to 15 minutes and 200 MB.

Auth follows the catalog: ``iam`` → ``AWS_IAM`` (SigV4 signed for the ``lambda`` service;
callers need ``lambda:InvokeFunctionUrl`` on the function), ``none`` → ``NONE`` (public; synth
warns, as for the model's routes), ``jwt`` → ``NONE`` + verification in the function: function
URLs have no JWT authorizer, so the streaming runtime checks the bearer token itself before it
routes the request (``layers/http/jwt_auth.py``: the HTTP API authorizer's checks against the
same issuer and audiences, its ``401 {"message": "Unauthorized"}``; the model stack passes them
in the function's environment). Anyone may reach such a URL, as anyone may reach the HTTP API;
only a valid token gets past the first lines of the runtime. cdk-nag's ``LambdaFunctionUrlAuth``
rule (function URLs must have auth) is acknowledged on it with that reason.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.cdk.nag import acknowledge
from layers import names

#: catalog ``auth`` → the function URL's auth type (``jwt``: the function verifies; module doc)
AUTH_TYPES = {"iam": lambda_.FunctionUrlAuthType.AWS_IAM, "jwt": lambda_.FunctionUrlAuthType.NONE,
              "none": lambda_.FunctionUrlAuthType.NONE}
#: cdk-nag's rule that a function URL has auth, under the ids of the packs the app runs
#: (infra/cdk/nag.py) and of the compliance packs a user may add
URL_AUTH_RULES = tuple(f"{pack}-LambdaFunctionUrlAuth" for pack in (
    "AwsSolutions", "Serverless", "NIST.800.53.R4", "NIST.800.53.R5", "HIPAA.Security", "PCI.DSS.321"))
JWT_URL_REASON = ("auth: jwt model: function URLs have no JWT authorizer, so the streaming function "
                  "verifies the bearer token itself (issuer, audience, signature, expiry: the HTTP API "
                  "authorizer's checks) before routing; a refused request is a 401 and runs nothing")


class StreamingUrl(Construct):
    """Public attributes: ``url`` (the :class:`~aws_cdk.aws_lambda.FunctionUrl`), ``url_string``,
    ``model_name``, ``auth``."""

    @property
    def url(self) -> lambda_.FunctionUrl:
        return self._url

    @property
    def url_string(self) -> str:
        """``https://<id>.lambda-url.<region>.on.aws/`` (a token until deploy)."""
        return self._url.url

    def __init__(self, scope: Construct, id: str, *, model_name: str, target: lambda_.IFunction,
                 auth: str) -> None:
        """
        :param target: the streaming function's ``live`` alias (never ``$LATEST``).
        :param auth: catalog ``auth``: ``iam``, ``jwt`` (the function verifies tokens; its
            environment must carry the issuer and audiences) or ``none``.
        """
        super().__init__(scope, id)
        self.model_name, self.auth = model_name, auth
        if auth not in AUTH_TYPES:
            raise ValueError(f"model {model_name!r}: a function URL cannot check auth: {auth}; "
                             f"use one of {sorted(AUTH_TYPES)}")
        self._url = lambda_.FunctionUrl(
            self, "Url", function=target, auth_type=AUTH_TYPES[auth],
            invoke_mode=lambda_.InvokeMode.RESPONSE_STREAM,
        )
        cdk.CfnOutput(self, "Output", key=names.output_stream_url(model_name), value=self._url.url,
                      description=f"{model_name}: streaming endpoint (any route; \"stream\": true "
                                  "streams server-sent events)")
        if auth == "jwt":
            for rule in URL_AUTH_RULES:
                acknowledge(self._url, rule, JWT_URL_REASON)
        if auth == "none":
            cdk.Annotations.of(self).add_warning_v2(
                f"modelfn:public-stream-url:{model_name}",
                f"model {model_name!r} has auth: none: its streaming function URL is public; set "
                "auth: iam in the catalog unless that is intended")
