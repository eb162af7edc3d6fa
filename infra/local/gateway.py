"""The local HTTP API: API Gateway's behaviour in front of each model's function.

Requests are routed exactly like the deployed API (:func:`match_route`): ``/v2/models/{name}``
and everything under it goes to that model's function; the shared OpenAI routes (body-routed
``/openai/v1/…`` and the model list) go through the OpenAI router's logic
(:mod:`layers.openai_router`); the health and docs routes and any other path go to the first
serving model (its router answers them) — turned into HTTP API 2.0 events (:mod:`.http_api_events`),
and the function's result turned back into a response. API Gateway's limits hold: a body
over 10 MB is refused with 413, an integration that takes longer than 30 s gives 503
``{"message":"Service Unavailable"}``, a function error gives 500
``{"message":"Internal Server Error"}``.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from infra.local.function_pool import FunctionPool, NoCapacity
from infra.local.http_api_events import (
    HttpRequest,
    HttpResponse,
    from_result,
    gateway_error,
    to_event,
)
from layers import names
from layers.openai_router import Deployed, decide, routes_of
from layers.protocols import route_table
from layers.routes import ANY, Scope

log = logging.getLogger("modelfn.local.gateway")

MODELS_PREFIX = "/v2/models/"
#: routes of the deployed API that are not under a model (served by the default integration)
SHARED_ROUTES = tuple(path for path, _ in route_table().server_gateway_routes())


class Integration(Protocol):
    def __call__(self, req: HttpRequest, route_key: str, path_parameters: dict[str, str] | None,
                 timeout_s: float) -> HttpResponse: ...


@dataclass
class LambdaIntegration:
    """AWS_PROXY integration with payload format 2.0 onto one function's pool."""

    pool: FunctionPool

    def __call__(self, req: HttpRequest, route_key: str, path_parameters: dict[str, str] | None,
                 timeout_s: float) -> HttpResponse:
        if self.pool.failure:
            return _not_serving(self.pool.spec.name, self.pool.failure)
        event = to_event(req, route_key=route_key, path_parameters=path_parameters)
        payload = json.dumps(event).encode()
        if len(payload) > names.LAMBDA_SYNC_PAYLOAD_BYTES:
            return gateway_error(413, "Request Entity Too Large")
        # the integration timeout is API Gateway's: the function may run on, as on AWS
        try:
            outcome = self.pool.invoke(payload, acquire_timeout_s=timeout_s, answer_within_s=timeout_s)
        except NoCapacity:
            outcome = None
        if outcome is None:
            return gateway_error(503, "Service Unavailable")
        if not outcome.ok:
            log.warning("%s: invocation failed: %s: %s", self.pool.spec.name, outcome.error_type,
                        outcome.error_message)
            return gateway_error(500, "Internal Server Error")
        return from_result(outcome.payload)


def _not_serving(name: str, reason: str) -> HttpResponse:
    return HttpResponse.json(503, {"error": f"model {name!r} is not serving: {reason}. "
                                            "Fix the cause and restart `modelfn up`."})


@dataclass
class Routes:
    """What the deployed API routes to: one integration per model, plus the shared routes."""

    models: dict[str, Integration] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # model -> why it is not serving
    default: Callable[[], Integration | None] = lambda: None
    #: the control routes (training, versions; ``Scope.CONTROL``): the deployed API's control
    #: function, here :class:`infra.local.control.ControlIntegration`; None: not served
    control: Callable[..., HttpResponse] | None = None
    #: generative models' streaming endpoints (:class:`infra.local.streaming.StreamingIntegration`):
    #: requests that ask to stream are answered chunk by chunk there
    streams: dict[str, Any] = field(default_factory=dict)
    #: what the OpenAI router knows (every serving model of the catalog, ``Scope.BODY``/``CATALOG``
    #: routes); default: the serving models, created 0
    registry: Callable[[], dict[str, Deployed]] | None = None

    def deployed(self) -> dict[str, Deployed]:
        if self.registry is not None:
            return self.registry()
        return {name: Deployed(name=name, target=name) for name in sorted(self.models)}


class Gateway:
    """A threaded HTTP server on ``host:port`` speaking for API Gateway."""

    def __init__(self, routes: Routes, *, host: str = "127.0.0.1", port: int = 3000,
                 integration_timeout_s: float = names.HTTP_API_TIMEOUT_S,
                 max_body_bytes: int = names.HTTP_API_PAYLOAD_BYTES) -> None:
        self.routes = routes
        self.integration_timeout_s = integration_timeout_s
        self.max_body_bytes = max_body_bytes
        self._server = _Server((host, port), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="gateway")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Gateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(self, req: HttpRequest) -> HttpResponse:
        if self.routes.control is not None:
            from layers.errors import MethodNotAllowed
            from layers.protocols.control import match

            try:
                hit = match(req.method, req.path)
            except MethodNotAllowed as exc:
                return HttpResponse.json(405, exc.body(), [("allow", exc.allow)])
            if hit is not None:
                return self.routes.control(req, *hit)
        if (hit := match_router_route(req.method, req.path)) is not None:
            return self._route_by_router(req, *hit)
        name, route_key, params = match_route(req.method, req.path)
        if (stream := self.routes.streams.get(name)) is not None and stream.wants(req):
            return stream(req)
        if name is not None:
            integration = self.routes.models.get(name)
            if integration is not None:
                return integration(req, route_key, params, self.integration_timeout_s)
            if name in self.routes.failed:
                return _not_serving(name, self.routes.failed[name])
            if req.path.startswith(MODELS_PREFIX):
                known = ", ".join(sorted([*self.routes.models, *self.routes.failed])) or "(none)"
                return HttpResponse.json(404, {"error": f"no model named {name!r} is served here; "
                                                        f"models: {known}"})
        # server routes and $default go to the first model, as in the deployed API
        integration = self.routes.default()
        if integration is None:
            return HttpResponse.json(503, {"error": "no model is serving; see the `modelfn up` "
                                                    "output for the cause"})
        return integration(req, route_key, params, self.integration_timeout_s)


    def _route_by_router(self, req: HttpRequest, route_key: str, params: dict[str, str] | None) -> HttpResponse:
        """The deployed API's OpenAI router (:mod:`layers.openai_router`), in process: the same
        decision, then the model's own integration instead of a Lambda ``Invoke``."""
        decision = decide(route_key, req.body, params, self.routes.deployed(), _router_routes())
        if decision.forward is None:
            return HttpResponse.json(decision.status, decision.body)
        name = decision.forward.name
        if (stream := self.routes.streams.get(name)) is not None and stream.wants(req):
            return stream(req)
        integration = self.routes.models.get(name)
        if integration is None:
            return _not_serving(name, self.routes.failed.get(name, "it is not running"))
        return integration(req, route_key, params, self.integration_timeout_s)


def match_router_route(method: str, path: str) -> tuple[str, dict[str, str] | None] | None:
    """(routeKey, pathParameters) of a request on one of the router's routes (``Scope.BODY`` /
    ``Scope.CATALOG``), else None."""
    for pattern, route in _router_patterns():
        if route.method == method and (m := pattern.match(path)):
            return f"{route.method} {route.path}", m.groupdict() or None
    return None


def match_route(method: str, path: str) -> tuple[str | None, str, dict[str, str] | None]:
    """(model name or None, routeKey, pathParameters) for a request, as the deployed HTTP API
    (infra/cdk/constructs/http_api.py) matches it, both from the runtime's route table: each
    model's routes (``GET /v2/models/<name>``, ``GET …/ready``, ``POST …/infer``, the same
    three under ``…/versions/{version}``), its ``ANY <prefix>/{proxy+}`` catch-all, the
    server routes; everything else ``$default``."""
    for prefix in _prefixes():  # ``/v2/models/m/`` is ``/v2/models/m``
        if (m := prefix.match(path)) and m["rest"] == "":
            path = m["base"]
            break
    for pattern, route in _model_patterns():
        if route.method == method and (m := pattern.match(path)):
            params = m.groupdict()
            name = params.pop("name")
            return name, f"{method} {route.for_model(name)}", params or None
    for prefix in _prefixes():
        if (m := prefix.match(path)):
            name, rest = m["name"], m["rest"]
            base = m["base"]
            if rest:
                return name, f"{ANY} {base}/{{proxy+}}", {"proxy": rest}
            return name, "$default", None
    if (path, method) in _server_routes():
        return None, f"{method} {path}", None
    return None, "$default", None


@functools.cache
def _model_patterns():
    table = route_table()
    return tuple((r.pattern(name_segment="[^/]*"), r) for r in table
                 if r.gateway and r.scope is Scope.MODEL and not r.catch_all)


@functools.cache
def _prefixes():
    """``<prefix>/<name>[/<rest>]`` for each catch-all's prefix (``/v2/models/{name}``)."""
    out = []
    for prefix in route_table().model_prefixes():
        head = re.escape(prefix[: prefix.index("{name}")])
        out.append(re.compile(f"^(?P<base>{head}(?P<name>[^/]*))(?:/(?P<rest>.*))?$"))
    return tuple(out)


@functools.cache
def _router_routes() -> dict[str, str | None]:
    return routes_of(route_table())


@functools.cache
def _router_patterns():
    return tuple((r.pattern(), r) for r in route_table().router_routes())


@functools.cache
def _server_routes():
    return frozenset(route_table().server_gateway_routes())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        log.debug("connection from %s dropped", client_address, exc_info=True)


class _BodyTooLarge(Exception):
    pass


def _handler_for(gw: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        server_version = "modelfn-local-apigw"

        def log_message(self, format: str, *args) -> None:
            log.info("%s - %s", self.address_string(), format % args)

        def _handle(self) -> None:
            try:
                body = self._read_body()
            except _BodyTooLarge:
                self.close_connection = True
                return self._send(gateway_error(413, "Request Entity Too Large"))
            path, _, query = self.path.partition("?")
            req = HttpRequest(method=self.command, path=path, query=query,
                              headers=list(self.headers.items()), body=body,
                              source_ip=self.client_address[0], host=gw._server.server_address[0],
                              port=gw._server.server_address[1])
            try:
                resp = gw.handle(req)
            except Exception:
                log.exception("gateway failure for %s %s", self.command, path)
                resp = gateway_error(500, "Internal Server Error")
            self._send(resp)

        def _read_body(self) -> bytes:
            limit = gw.max_body_bytes
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks, total = [], 0
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                    total += size
                self.rfile.readline()
                if total > limit:
                    raise _BodyTooLarge
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            if length > limit:
                self._drain(length)
                raise _BodyTooLarge
            return self.rfile.read(length) if length else b""

        def _drain(self, length: int) -> None:
            """Read what the client sends so it sees the 413 instead of a reset connection."""
            while length > 0:
                got = self.rfile.read(min(length, 1 << 20))
                if not got:
                    return
                length -= len(got)

        def _send(self, resp: HttpResponse) -> None:
            if resp.chunks is not None:
                return self._send_chunked(resp)
            self.send_response(resp.status)
            for k, v in resp.headers:
                if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(resp.body)

        def _send_chunked(self, resp: HttpResponse) -> None:
            """A streamed body: HTTP/1.1 chunked transfer, each chunk flushed as it comes."""
            self.send_response(resp.status)
            for k, v in resp.headers:
                if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(k, v)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for chunk in resp.chunks or ():
                    if chunk:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):  # the client left: stop generating
                self.close_connection = True
            finally:
                close = getattr(resp.chunks, "close", None)
                if close is not None:
                    close()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

        def __getattr__(self, name: str):
            # any other method (TRACE, CONNECT, PROPFIND…) is routed like the deployed API
            # routes it (the function answers 405/404 with its JSON error), not the stdlib's 501
            if name.startswith("do_"):
                return self._handle
            raise AttributeError(name)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """Malformed requests (bad request line, oversized headers) get API Gateway's JSON
            error instead of the stdlib's HTML page."""
            self.close_connection = True
            self.request_version = "HTTP/1.1"  # with status line and headers, whatever was sent
            self._send(gateway_error(code, self.responses.get(code, (message or "Error",))[0]))

    return Handler
