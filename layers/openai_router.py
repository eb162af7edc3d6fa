"""The shared OpenAI form's dispatch: ``/openai/v1/…`` routed by the body's ``"model"``.

API Gateway routes on method and path only, so the rows whose model is named in the JSON body
(``Scope.BODY``: ``POST /openai/v1/embeddings``, and every other body-routed OpenAI route a
protocol registers) and the rows about every model (``Scope.CATALOG``: ``GET
/openai/v1/models[/{model}]``) go to one small router. :func:`decide` is all of its logic,
transport-free and stdlib-only, used twice:

- on AWS by the router function (``functions/openai_router``, a zip function in the shared
  stack): it reads its registry of deployed models (one SSM parameter per model stack,
  :class:`Deployed` as JSON) and forwards the API's event, unchanged, to the model's front
  (its function's ``live`` alias, or its SageMaker proxy) with one Lambda ``Invoke``;
- locally by the gateway (``infra/local/gateway.py``), over the stack's own models.

The router answers for itself only what needs no model: the model list and cards, OpenAI's 400
for a body that names no model, 404 ``model_not_found`` (naming the models there are), and on
AWS a 403 when the model's ``auth`` is not the shared routes' (one route has one authorizer:
the shared form reaches the models of its auth and public ones; the pinned
``/openai/<model>/v1`` form reaches any model in its own auth mode). Everything else, request
checks included, is the model function's, exactly as through the pinned form.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from layers import openai_wire as wire

#: the router's routes: ``routeKey`` → the JSON member naming the model (``Scope.BODY``) or
#: None (``Scope.CATALOG``); the CDK writes it from the route table (:func:`routes_of`)
Routes = Mapping[str, "str | None"]


@dataclass(frozen=True)
class Deployed:
    """One model as the router knows it (on AWS: the value of the model's SSM parameter)."""

    name: str
    #: what serves the model: on AWS the ARN of its front's ``live`` alias; locally its name
    target: str
    auth: str = "none"
    created: int = 0

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k != "name"}, sort_keys=True)

    @classmethod
    def from_json(cls, name: str, text: str) -> Deployed:
        doc = json.loads(text)
        return cls(name=name, target=str(doc["target"]), auth=str(doc.get("auth", "none")),
                   created=int(doc.get("created", 0)))


@dataclass(frozen=True)
class Decision:
    """Forward to ``forward``, or answer ``status``/``body`` here. ``missing``: the body named a
    model the registry does not hold (a caller with a cached registry may refresh and retry)."""

    forward: Deployed | None = None
    status: int = 200
    body: dict[str, Any] | None = None
    missing: bool = False


def routes_of(table) -> dict[str, str | None]:
    """``routeKey`` → body field (or None) of a :class:`~layers.routes.RouteTable`'s router rows."""
    return {f"{r.method} {r.path}": r.body_field for r in table.router_routes()}


def body_bytes(body: str | bytes | None, base64_encoded: bool) -> bytes:
    if not body:
        return b""
    if base64_encoded:
        return base64.b64decode(body)
    return body.encode() if isinstance(body, str) else body


def decide(route_key: str, body: bytes, path_params: Mapping[str, str] | None, models: Mapping[str, Deployed],
           routes: Routes, *, route_auth: str | None = None) -> Decision:
    """What to do with one request on a router route. ``route_auth``: the authorization of the
    shared routes (AWS); None (the local stack, which checks no credentials) skips that check."""
    if route_key not in routes:
        return _error(404, f"The router serves {', '.join(sorted(routes))}; not {route_key}.")
    field = routes[route_key]
    if field is None:  # Scope.CATALOG: every model of the catalog
        asked = (path_params or {}).get("model")
        if asked is None:
            return Decision(body=wire.models_response([wire.model_card(m.name, m.created)
                                                       for m in sorted(models.values(), key=lambda m: m.name)]))
        if asked not in models:
            return _missing(asked, models)
        return Decision(body=wire.model_card(asked, models[asked].created))
    try:
        doc = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(400, f"We could not parse the JSON body of your request ({exc}).")
    name = doc.get(field) if isinstance(doc, dict) else None
    if not isinstance(name, str) or not name:
        return _error(400, f"'{field}' is required: the name of the model to use (GET /openai/v1/models "
                           "lists them).", param=field)
    target = models.get(name)
    if target is None:
        return _missing(name, models)
    if route_auth is not None and target.auth not in (route_auth, "none"):
        return _error(403, f"Model `{name}` takes auth: {target.auth}, and this shared route takes auth: "
                           f"{route_auth}; call it through its own base URL /openai/{name}/v1 with "
                           f"{target.auth} credentials.", param=field, code="permission_denied")
    return Decision(forward=target)


def _missing(name: str, models: Mapping[str, Deployed]) -> Decision:
    status, body = wire.error_of(wire.model_not_found(name, sorted(models)))
    return Decision(status=status, body=body, missing=True)


def _error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> Decision:
    return Decision(status=status, body=wire.error_body(status, message, param=param, code=code))


def http_response(decision: Decision) -> dict[str, Any]:
    """An answered :class:`Decision` as an HTTP API (payload 2.0) Lambda result."""
    return {"statusCode": decision.status, "headers": {"Content-Type": "application/json"},
            "body": json.dumps(decision.body, separators=(",", ":")), "isBase64Encoded": False}
