"""The one route table: every HTTP route modelfn serves, declared once.

A :class:`Route` says what a request looks like (method, path template) and what serves it
(the protocol, the operation name, and where the model comes from: :class:`Scope`). The
protocols register their routes here (:mod:`layers.protocols`); everything that routes
reads :func:`table` instead of keeping its own list:

- the Lambda HTTP binding (:mod:`layers.http.resolver`) registers one resolver route per
  row, and answers 405 with ``Allow`` on a row's path for any other method;
- the fast path (:mod:`layers.http.fastpath`) takes the rows marked ``fast``;
- the OpenAPI document (:mod:`layers.http.openapi`) documents exactly the rows;
- the CDK HTTP API (``infra/cdk/constructs/http_api.py``) and the local gateway
  (``infra/local/gateway.py``) route :func:`model_gateway_routes` per model and
  :func:`server_gateway_routes` once; ``tests/unit/test_single_definitions.py`` checks both.

Path templates use ``{name}`` for the model (its own path segment), other ``{param}`` for
one path segment each. On API Gateway a model's routes carry its name literally (one
integration per model), so ``{name}`` is substituted there; every other parameter stays a
path parameter.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass

GET, POST, ANY = "GET", "POST", "ANY"


class Scope(enum.Enum):
    """Where a route's model comes from, which decides how the API routes it."""

    #: no model in the request: any model's function answers (API Gateway sends these
    #: routes, and ``$default``, to the first model of the catalog)
    SERVER = "server"
    #: the path names the model (``{name}``): the API routes it to that model's function
    MODEL = "model"
    #: the JSON body names the model (``body_field``, e.g. OpenAI's ``"model"``): a router
    #: reads the body and forwards the request to that model's function (on AWS the OpenAI
    #: router function, :mod:`layers.openai_router`; locally the gateway, with the same code)
    BODY = "body"
    #: no model in the request, and the answer is about every model of the catalog (OpenAI's
    #: ``GET /openai/v1/models``): the router answers it from its registry of deployed models;
    #: a model function asked directly answers for itself
    CATALOG = "catalog"
    #: the path names the model, but the model's control function answers, not the model's
    #: own: training and versions (:mod:`layers.protocols.control`). On AWS always
    #: IAM-authorized, whatever the model's inference ``auth``; locally the stack's control
    #: integration (:mod:`infra.local.control`) runs the CLI's code
    CONTROL = "control"


@dataclass(frozen=True)
class Route:
    method: str  #: GET, POST, or ANY (a catch-all, API Gateway only)
    path: str  #: template: ``/v2/models/{name}/infer``
    operation: str  #: what the protocol's operations table calls to answer it
    protocol: str  #: the registered protocol that owns the route
    scope: Scope = Scope.MODEL
    #: the API Gateway gets an explicit route for it (False: it arrives through a model's
    #: ``{proxy+}`` catch-all or ``$default``)
    gateway: bool = True
    #: served by the fast path (no resolver): the routes where microseconds count
    fast: bool = False
    #: for :attr:`Scope.BODY`: the JSON member naming the model
    body_field: str | None = None
    summary: str = ""

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+)\+?\}", self.path))

    @property
    def catch_all(self) -> bool:
        return self.method == ANY

    def for_model(self, name: str) -> str:
        """The path API Gateway routes for ``name`` (``{name}`` substituted)."""
        return self.path.replace("{name}", name)

    def pattern(self, segment: str = r"[^/]+", name_segment: str | None = None) -> re.Pattern[str]:
        """A regex matching this route's paths, one named group per parameter."""
        out, pos = [], 0
        for m in re.finditer(r"\{(\w+)(\+?)\}", self.path):
            out.append(re.escape(self.path[pos:m.start()]))
            seg = ".+" if m[2] else (name_segment if m[1] == "name" and name_segment else segment)
            out.append(f"(?P<{m[1]}>{seg})")
            pos = m.end()
        out.append(re.escape(self.path[pos:]))
        return re.compile("^" + "".join(out) + "$")


class RouteTable:
    """The routes of every registered protocol (:func:`layers.protocols.route_table`), and
    the views each router needs."""

    def __init__(self, routes: tuple[Route, ...] = ()) -> None:
        seen = set()
        for r in routes:
            if (r.method, r.path) in seen:
                raise ValueError(f"route {r.method} {r.path} is declared twice")
            seen.add((r.method, r.path))
        self.routes = tuple(routes)

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def __len__(self) -> int:
        return len(self.routes)

    def served(self) -> tuple[Route, ...]:
        """The routes a model function answers itself (not the API's catch-alls, not the
        control routes)."""
        return tuple(r for r in self.routes if not r.catch_all and r.scope is not Scope.CONTROL)

    def control(self) -> tuple[Route, ...]:
        """The routes the control function answers (training, versions)."""
        return tuple(r for r in self.routes if r.scope is Scope.CONTROL)

    def control_gateway_routes(self, name: str) -> tuple[tuple[str, str], ...]:
        """(path, method) of every control route of one model, ``{name}`` = ``name``."""
        return tuple((r.for_model(name), r.method) for r in self.control())

    def fast(self) -> tuple[Route, ...]:
        return tuple(r for r in self.routes if r.fast)

    def model_gateway_routes(self, name: str) -> tuple[tuple[str, str], ...]:
        """(path, method) of every API Gateway route one model gets, ``{name}`` = ``name``."""
        return tuple((r.for_model(name), r.method) for r in self.routes
                     if r.gateway and r.scope is Scope.MODEL)

    def server_gateway_routes(self) -> tuple[tuple[str, str], ...]:
        """(path, method) of the API Gateway routes no model owns (sent to the first model)."""
        return tuple((r.path, r.method) for r in self.routes if r.gateway and r.scope is Scope.SERVER)

    def body_routed(self) -> tuple[Route, ...]:
        """Routes whose model is named in the JSON body (a router must read it)."""
        return tuple(r for r in self.routes if r.scope is Scope.BODY)

    def router_routes(self) -> tuple[Route, ...]:
        """What the router answers or dispatches: the :attr:`Scope.BODY` and
        :attr:`Scope.CATALOG` rows (each gets an API Gateway route onto the router, whatever
        its ``gateway`` flag)."""
        return tuple(r for r in self.routes if r.scope in (Scope.BODY, Scope.CATALOG))

    def model_prefixes(self) -> tuple[str, ...]:
        """Path prefixes (``/v2/models/{name}``) under which a path names a model: the
        catch-alls' (``ANY <prefix>/{proxy+}``)."""
        return tuple(r.path[: r.path.index("{name}") + len("{name}")] for r in self.routes
                     if r.catch_all and "{name}" in r.path)

    def methods(self, path_template: str) -> tuple[str, ...]:
        """The methods served at ``path_template``."""
        return tuple(r.method for r in self.served() if r.path == path_template)
