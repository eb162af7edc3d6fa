"""Lambda entry point of the OpenAI router (``functions.openai_router.handler.handler``).

The shared ``/openai/v1/…`` routes (``Scope.BODY`` and ``Scope.CATALOG`` rows of the route
table) come here; :func:`layers.openai_router.decide` says whether to answer (model list,
OpenAI's 400/403/404) or forward, and a forward is one synchronous Lambda ``Invoke`` of the
model's front (its ``live`` alias) with the API's event unchanged, whose result is returned
as it came. Stdlib + boto3 (a zip function, no numpy, no Powertools: its cold start is part
of every shared-form request's tail).

The registry is the SSM parameters under ``registry`` (one per model stack, written at
deploy, so deploying one model needs no change here): read at init, again after
:data:`REGISTRY_TTL_S`, and at once (at most every :data:`MISS_REFRESH_S`) when a body names
a model it does not hold, so a model deployed a moment ago is found without a redeploy.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from layers import names
from layers.openai_router import Decision, Deployed, body_bytes, decide, http_response

LOG = logging.getLogger("modelfn.openai_router")
REGISTRY_TTL_S = 60.0
MISS_REFRESH_S = 5.0


class Registry:
    """The deployed models, from SSM ``GetParametersByPath`` (cached)."""

    def __init__(self, ssm, path: str, *, clock=time.monotonic) -> None:
        self.ssm, self.path, self.clock = ssm, path.rstrip("/"), clock
        self.models: dict[str, Deployed] = {}
        self.loaded_at = self.refreshed_at = float("-inf")

    def load(self) -> dict[str, Deployed]:
        models: dict[str, Deployed] = {}
        for page in self.ssm.get_paginator("get_parameters_by_path").paginate(Path=self.path, Recursive=False):
            for p in page.get("Parameters", []):
                name = p["Name"].rsplit("/", 1)[-1]
                try:
                    models[name] = Deployed.from_json(name, p["Value"])
                except (ValueError, KeyError, TypeError):
                    LOG.warning("registry parameter %s is not a model registration; skipped", p["Name"])
        self.models, self.loaded_at = models, self.clock()
        return models

    def current(self) -> dict[str, Deployed]:
        if self.clock() - self.loaded_at > REGISTRY_TTL_S:
            self.load()
        return self.models

    def refresh_for_miss(self) -> bool:
        """Reload now unless it was just reloaded for a miss; True when it reloaded."""
        if self.clock() - self.refreshed_at < MISS_REFRESH_S:
            return False
        self.refreshed_at = self.clock()
        self.load()
        return True


class Router:
    """:func:`decide` over a :class:`Registry`, forwarding with ``lambda_client.invoke``."""

    def __init__(self, *, registry: Registry, lambda_client, routes: dict[str, str | None],
                 route_auth: str | None) -> None:
        self.registry, self.lambda_client, self.routes, self.route_auth = registry, lambda_client, routes, route_auth

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        key = event.get("routeKey") or ""
        body = body_bytes(event.get("body"), bool(event.get("isBase64Encoded")))
        params = event.get("pathParameters")
        decision = self._decide(key, body, params, self.registry.current())
        if decision.missing and self.registry.refresh_for_miss():
            decision = self._decide(key, body, params, self.registry.models)
        if decision.forward is None:
            return http_response(decision)
        return self.forward(decision.forward, event)

    def _decide(self, key, body, params, models) -> Decision:
        return decide(key, body, params, models, self.routes, route_auth=self.route_auth)

    def forward(self, target: Deployed, event: dict[str, Any]) -> dict[str, Any]:
        out = self.lambda_client.invoke(FunctionName=target.target, Payload=json.dumps(event).encode())
        payload = out["Payload"].read()
        if out.get("FunctionError"):
            LOG.error("model %s failed: %s", target.name, payload[:2000])
            return http_response(Decision(status=500, body={"error": {
                "message": f"Model `{target.name}` failed to answer; the request id is in its logs.",
                "type": "server_error", "param": None, "code": None}}))
        return json.loads(payload)


_router: Router | None = None


def router() -> Router:
    global _router
    if _router is None:
        import boto3
        from botocore.config import Config

        settings = json.loads(os.environ[names.ENV_OPENAI_ROUTER])
        # one attempt within the HTTP API's 30 s: a retried inference would run twice
        config = Config(read_timeout=names.HTTP_API_TIMEOUT_S, connect_timeout=5,
                        retries={"total_max_attempts": 1}, tcp_keepalive=True)
        registry = Registry(boto3.client("ssm"), settings["registry"])
        _router = Router(registry=registry, lambda_client=boto3.client("lambda", config=config),
                         routes=settings["routes"], route_auth=settings.get("auth"))
        registry.current()
    return _router


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event on a shared OpenAI route → the HTTP response."""
    return router()(event)


if os.environ.get(names.ENV_OPENAI_ROUTER):  # at init: clients and the registry before the first request
    try:
        router()
    except Exception:  # e.g. SSM throttled: the first request loads it (the registry starts stale)
        LOG.exception("OpenAI router: registry not loaded at init")
