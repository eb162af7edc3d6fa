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
warns, as for the model's routes). Function URLs have no JWT authorizer, so ``auth: jwt``
models get no streaming URL (the plan leaves the function out; the model stack says so).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from layers import names

#: catalog ``auth`` → the function URL's auth type (``jwt`` has none: see the module doc)
AUTH_TYPES = {"iam": lambda_.FunctionUrlAuthType.AWS_IAM, "none": lambda_.FunctionUrlAuthType.NONE}


class StreamingUrl(Construct):
    """Public attributes: ``url`` (the :class:`~aws_cdk.aws_lambda.FunctionUrl`), ``url_string``."""

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
        :param auth: catalog ``auth``: ``iam`` or ``none``.
        """
        super().__init__(scope, id)
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
        if auth == "none":
            cdk.Annotations.of(self).add_warning_v2(
                f"modelfn:public-stream-url:{model_name}",
                f"model {model_name!r} has auth: none: its streaming function URL is public; set "
                "auth: iam in the catalog unless that is intended")
