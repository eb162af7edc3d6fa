"""The route table as a router for transports without API Gateway events (the SageMaker
container): (method, path) → the route and its path parameters, or the very 404/405 the
Lambda resolver (:mod:`layers.http.resolver`) answers for the same request.

Matching follows the resolver: a path segment is what Powertools' ``<param>`` matches
(:data:`layers.http.fastpath.SEGMENT`); another method on a route's path is a 405 naming the
path's methods; a path the resolver does not match but whose shape is a route's (any
characters in a segment) is a 405 as in its not-found handler; anything else is the JSON 404.
"""

from __future__ import annotations

from collections import defaultdict

from layers import protocols
from layers.errors import MethodNotAllowed
from layers.http.fastpath import SEGMENT
from layers.messages import Reply, json_reply
from layers.routes import Route

#: the methods the resolver answers with a 405 on a route's path (others reach its 404 handler)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class Router:
    def __init__(self) -> None:
        served = protocols.route_table().served()
        methods: dict[str, list[str]] = defaultdict(list)
        for r in served:
            methods[r.path].append(r.method)
        self._routes = [(r, r.pattern(SEGMENT), ", ".join(methods[r.path])) for r in served]
        self._loose = [(r.pattern(), r.method) for r in served]

    def match(self, method: str, path: str, model_name: str) -> tuple[Route, dict[str, str]] | Reply:
        """The route for ``method path`` and its parameters; or the reply the resolver gives
        when there is none (raises :class:`MethodNotAllowed` where its handler raises)."""
        allowed = None
        for route, pattern, path_methods in self._routes:
            if m := pattern.match(path):
                if route.method == method:
                    return route, m.groupdict()
                allowed = allowed or path_methods
        if allowed is not None and method in METHODS:
            raise MethodNotAllowed(f"{method} is not allowed here; use {allowed}.", allow=allowed)
        if allow := ", ".join(dict.fromkeys(m for p, m in self._loose if p.match(path))):
            return json_reply(405, {"error": f"{method} is not allowed here; use {allow}."}, {"Allow": allow})
        return json_reply(404, {"error": (
            f"no route {method} {path}; routes are under /v2 (e.g. "
            f"POST /v2/models/{model_name}/infer); see GET /docs."
        )})
