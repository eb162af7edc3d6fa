"""The Lambda HTTP entry point's request path, shared by every HTTP transport.

:class:`HttpBinding` serves one API Gateway HTTP API 2.0 event: a fast route
(:mod:`.fastpath`) straight to its operation, anything else through the resolver
(:mod:`.resolver`, built on the first such request, so a cold start answering an inference
never pays for it), then one EMF record for the request (``Latency`` ms; ``BatchSize``,
``PayloadBytes``, ``Errors<Class>`` from :class:`ObservedHooks`; request id, model version,
path and status as metadata) and, at DEBUG only, one log line (a second JSON line per
request cost more than the whole protocol path, see ``bench/bench_api.py``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from layers import protocols
from layers.dataplane import DataPlane, Hooks
from layers.errors import ModelfnError
from layers.http.apigw import error_reply, internal_error_reply
from layers.http.fastpath import FastPath
from layers.limits import max_request_bytes
from layers.messages import Reply, Request
from layers.observability import Observability
from layers.v2_wire import InferResult


class ObservedHooks(Hooks):
    """The data plane's events as metrics and logs of ``obs``."""

    def __init__(self, obs: Observability) -> None:
        self.obs = obs

    def on_infer(self, result: InferResult, payload_bytes: int) -> None:
        self.obs.count("BatchSize", result.batch_size)
        self.obs.count("PayloadBytes", payload_bytes, unit="Bytes")

    def on_client_error(self, exc: ModelfnError) -> None:
        self.obs.error(exc)
        self.obs.logger.info("client error", extra={"status": exc.status, "error": exc.message})

    def on_internal_error(self, exc: Exception, request_id: str) -> None:
        self.obs.count("ErrorsInternal")
        self.obs.logger.exception("internal error", extra={"request_id": request_id})


class HttpBinding:
    """HTTP API 2.0 events → ``plane``; per-request metrics to ``obs`` when given."""

    def __init__(self, plane: DataPlane, obs: Observability | None = None, *, limit: int | None = None) -> None:
        self.plane = plane
        self.obs = obs
        self.limit = max_request_bytes() if limit is None else limit
        self.fast = FastPath()
        #: ``match_fast(event)``: the fast route an event is for, or None (tests switch it off)
        self.match_fast = self.fast.match
        self._app = None
        self._router = None

    def resolver(self):
        """Powertools' resolver over every route, built on first use."""
        if self._app is None:
            from layers.http.resolver import build_app

            self._app = build_app(self.plane, limit=self.limit)
        return self._app

    def router(self):
        """The table as a router for requests that come without an event (built on first use)."""
        if self._router is None:
            from layers.http.router import Router

            self._router = Router()
        return self._router

    def handle(self, req: Request, context: Any = None) -> Reply:
        """A request from a transport without API Gateway events (the SageMaker container) →
        the reply the resolver would give, recorded as :meth:`serve` records."""
        start = time.perf_counter()
        hooks = self.plane.hooks
        try:
            found = self.router().match(req.method, req.path, self.plane.model.name)
            if isinstance(found, Reply):
                reply = found
            else:
                route, req.params = found
                reply = protocols.operation(route)(self.plane, req)
        except ModelfnError as exc:
            reply = error_reply(exc, hooks)
        except Exception as exc:
            reply = internal_error_reply(exc, hooks, req.context)
        self._record(start, req.context, reply.status, req.path)
        return reply

    def _record(self, start: float, context: Any, status: Any, path: str) -> None:
        obs = self.obs
        if obs is None:
            return
        ms = (time.perf_counter() - start) * 1000.0
        obs.record_request(latency_ms=ms, request_id=getattr(context, "aws_request_id", ""),
                           status=status, path=path)
        logger = obs.logger
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("request", extra={"path": path, "status": status, "latency_ms": round(ms, 3)})

    def serve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """One event → its Lambda response (the fast path or the resolver), recorded."""
        start = time.perf_counter()
        match = self.match_fast(event)
        if match is not None:
            response = self.fast.respond(self.plane, event, context, match, self.limit)
        else:
            response = self.resolver().resolve(event, context)
        self._record(start, context, response.get("statusCode"), event.get("rawPath", ""))
        return response
