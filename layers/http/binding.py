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

from layers.dataplane import DataPlane, Hooks
from layers.errors import ModelfnError
from layers.http.fastpath import FastPath
from layers.limits import max_request_bytes
from layers.observability import Observability
from layers.protocol import InferResult


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

    def resolver(self):
        """Powertools' resolver over every route, built on first use."""
        if self._app is None:
            from layers.http.resolver import build_app

            self._app = build_app(self.plane, limit=self.limit)
        return self._app

    def serve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """One event → its Lambda response (the fast path or the resolver), recorded."""
        start = time.perf_counter()
        match = self.match_fast(event)
        if match is not None:
            response = self.fast.respond(self.plane, event, context, match, self.limit)
        else:
            response = self.resolver().resolve(event, context)
        obs = self.obs
        if obs is not None:
            ms = (time.perf_counter() - start) * 1000.0
            status = response.get("statusCode")
            obs.record_request(latency_ms=ms, request_id=getattr(context, "aws_request_id", ""),
                               status=status, path=event.get("rawPath", ""))
            logger = obs.logger
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("request", extra={"path": event.get("rawPath"), "status": status,
                                               "latency_ms": round(ms, 3)})
        return response
