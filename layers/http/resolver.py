"""Every route of the table on Powertools' HTTP API resolver.

Each served route of :func:`layers.protocols.route_table` becomes one resolver route calling
its protocol's operation; every other method on a route's path answers 405 with ``Allow``;
unknown paths answer the JSON 404. Inference normally takes the fast path
(:mod:`layers.http.fastpath`) first; the resolver's inference routes call the same operation,
for events the fast path leaves to it. Built (and Powertools' event handler imported) on the
first request that is not the fast path's.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from layers import protocols
from layers.dataplane import DataPlane, Hooks
from layers.errors import MethodNotAllowed, ModelfnError
from layers.http.apigw import error_reply, internal_error_reply, request
from layers.http.router import METHODS
from layers.limits import max_request_bytes
from layers.messages import JSON, Reply
from layers.model import Model
from layers.v2_wire import dump_json

__all__ = ["build_app", "json_response"]

def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type=JSON, body=dump_json(body), headers=headers)


def _response(reply: Reply) -> Response:
    body = reply.body
    if reply.stream is not None:
        body = b"".join(p.encode() if isinstance(p, str) else p for p in reply.stream)
    return Response(status_code=reply.status, content_type=reply.content_type, body=body,
                    headers=reply.headers)


def _resolver_path(template: str) -> str:
    """``/v2/models/{name}`` → Powertools' ``/v2/models/<name>``."""
    return template.replace("{", "<").replace("}", ">")


def build_app(served: Model | DataPlane, hooks: Hooks | None = None, *,
              limit: int | None = None) -> APIGatewayHttpResolver:
    """The resolver serving ``served`` (a model, or its data plane), reporting to ``hooks``."""
    plane = served if isinstance(served, DataPlane) else DataPlane(served, hooks)
    model = plane.model
    app = APIGatewayHttpResolver()
    limit = max_request_bytes() if limit is None else limit
    table = protocols.route_table()

    def endpoint(route):
        operation = protocols.operation(route)

        def serve(**params: str) -> Response:
            event = app.current_event
            req = request(event.raw_event, route.method, event.path, params, limit, app.lambda_context)
            return _response(operation(plane, req))
        return serve

    methods: dict[str, list[str]] = defaultdict(list)
    for route in table.served():
        app.route(_resolver_path(route.path), method=route.method, include_in_schema=False)(endpoint(route))
        methods[route.path].append(route.method)

    # --- wrong methods, unknown routes, errors -------------------------------------------
    def not_allowed(allowed: str):
        def handler(**_: str):
            method = app.current_event.http_method
            raise MethodNotAllowed(f"{method} is not allowed here; use {allowed}.", allow=allowed)
        return handler

    for path, allowed in methods.items():
        others = [m for m in METHODS if m not in allowed]
        app.route(_resolver_path(path), method=others, include_in_schema=False)(not_allowed(", ".join(allowed)))

    patterns = [(route.pattern(), route.method) for route in table.served()]

    @app.not_found
    def unknown_route(_: NotFoundError):
        event = app.current_event
        # a known route, any other method (TRACE, QUERY…)
        if allow := ", ".join(dict.fromkeys(m for p, m in patterns if p.match(event.path))):
            return json_response(405, {"error": f"{event.http_method} is not allowed here; use {allow}."},
                                 {"Allow": allow})
        return json_response(404, {"error": (
            f"no route {event.http_method} {event.path}; routes are under /v2 (e.g. "
            f"POST /v2/models/{model.name}/infer); see GET /docs."
        )})

    @app.exception_handler(ModelfnError)
    def client_error(exc: ModelfnError):
        return _response(error_reply(exc, plane.hooks))

    @app.exception_handler(Exception)
    def internal_error(exc: Exception):
        return _response(internal_error_reply(exc, plane.hooks, app.lambda_context))

    return app
