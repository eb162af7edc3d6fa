"""The fast path: the table's ``fast`` routes (V2 inference) served without the resolver.

Inference is the one route where microseconds count, so :class:`FastPath` recognises it from
the raw HTTP API 2.0 event (method, stage-stripped path, the same path-segment characters
Powertools' resolver accepts) and calls the route's operation straight away; every other
request, and any event this cannot read plainly, goes to the resolver
(:mod:`layers.http.resolver`), which calls the same operation. Both build the same response
(:mod:`layers.http.apigw`).

Nothing here imports the Powertools event handler (~28 ms at import, see
``bench/bench_coldstart.py``), so a cold start that begins with an inference never loads it.
"""

from __future__ import annotations

from typing import Any

from layers import protocols
from layers.dataplane import DataPlane
from layers.errors import ModelfnError
from layers.http.apigw import (
    error_reply,
    event_method_path,
    internal_error_reply,
    lambda_response,
    request,
)
from layers.routes import Route

# A path segment as Powertools' resolver matches ``<name>`` (its _SAFE_URI, _UNSAFE_URI and \w),
# so a path this takes is a path the resolver would route to the same operation.
SEGMENT = r"[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+"

Match = tuple[Route, str, dict[str, Any]]


class FastPath:
    """The fast routes of the table, matched against raw events."""

    def __init__(self, routes: tuple[Route, ...] | None = None) -> None:
        routes = protocols.route_table().fast() if routes is None else routes
        self._routes = [(r.method, r.pattern(SEGMENT), r, protocols.operation(r)) for r in routes]

    def match(self, event: Any) -> Match | None:
        """(route, path, path parameters) when ``event`` is a plain request for a fast route."""
        try:
            method, path = event_method_path(event)
        except (KeyError, TypeError, AttributeError):
            return None  # the resolver reads (and answers) events this cannot
        for route_method, pattern, route, _ in self._routes:
            if route_method == method and (m := pattern.match(path)):
                return route, path, m.groupdict()
        return None

    def respond(self, plane: DataPlane, event: dict[str, Any], context: Any, match: Match,
                limit: int) -> dict[str, Any]:
        """A matched event → the Lambda response the resolver would build."""
        route, path, params = match
        try:
            reply = protocols.operation(route)(plane, request(event, route.method, path, params, limit, context))
        except ModelfnError as exc:
            reply = error_reply(exc, plane.hooks)
        except Exception as exc:
            reply = internal_error_reply(exc, plane.hooks, context)
        return lambda_response(reply)
