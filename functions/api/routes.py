"""The Open Inference Protocol routes for one model, on Powertools' HTTP API resolver.

Used by the Lambda API function and, through the same handler, by the SageMaker server and
the local stack, so every route behaves the same everywhere. Inference requests normally
reach :mod:`functions.api.direct` before this resolver (the handler checks first); the
inference routes here call the same :func:`~functions.api.direct.serve_infer`, for events
the direct path leaves to the resolver. The OpenAPI document (``/openapi.json``) is
:mod:`functions.api.openapi`'s, with the Swagger UI (``/docs``; its JS/CSS inlined from the
Powertools package, so it works offline).
"""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from functions.api import openapi as openapi_doc
from functions.api.direct import (
    JSON,
    Hooks,
    Reply,
    check_model,
    error_reply,
    internal_error_reply,
    max_request_bytes,
    serve_infer,
)
from layers.errors import MethodNotAllowed, ModelfnError
from layers.model import Model
from layers.protocol import dump_json, model_metadata, server_metadata

__all__ = ["Hooks", "build_app", "json_response", "max_request_bytes"]

_NOT_GET = ["POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_NOT_POST = ["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


_SEGMENT = r"[^/]+"
_ROUTES = (
    (re.compile(rf"^/v2/models/{_SEGMENT}(/versions/{_SEGMENT})?/infer$"), "POST"),
    (re.compile(rf"^/v2(/health/(live|ready)|/models/{_SEGMENT}((/versions/{_SEGMENT})?(/ready)?|/openapi\.json))?$"
                r"|^/(openapi\.json|docs)$"), "GET"),
)


def allowed_method(path: str) -> str | None:
    """The method a route of this API answers at ``path`` (None: no such route)."""
    return next((method for pattern, method in _ROUTES if pattern.match(path)), None)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type=JSON, body=dump_json(body), headers=headers)


def _response(reply: Reply) -> Response:
    return Response(status_code=reply.status, content_type=reply.content_type, body=reply.body,
                    headers=reply.headers)


def build_app(model: Model, hooks: Hooks | None = None) -> APIGatewayHttpResolver:
    """The resolver serving ``model``, reporting to ``hooks``."""
    hooks = hooks or Hooks()
    app = APIGatewayHttpResolver()
    limit = max_request_bytes()
    base = "/v2/models/<name>"
    versioned = "/v2/models/<name>/versions/<version>"

    def check(name: str, version: str | None = None) -> None:
        check_model(model, name, version)

    # --- health and metadata -------------------------------------------------------------
    @app.get("/v2/health/live", summary="Liveness", tags=["health"])
    def live():
        return json_response(200, {"live": True})

    @app.get("/v2/health/ready", summary="Readiness (the model is loaded at init)", tags=["health"])
    def ready():
        return json_response(200, {"ready": True})

    @app.get("/v2", summary="Server metadata", tags=["health"])
    def server():
        return json_response(200, server_metadata())

    @app.get(base, summary="Model metadata: name, versions, inputs/outputs (-1 = dynamic)", tags=["model"])
    def metadata(name: str):
        check(name)
        return json_response(200, model_metadata(model))

    @app.get(versioned, summary="Model metadata of one version", tags=["model"])
    def metadata_version(name: str, version: str):
        check(name, version)
        return json_response(200, model_metadata(model))

    @app.get(base + "/ready", summary="Model readiness", tags=["model"])
    def model_ready(name: str):
        check(name)
        return json_response(200, {"name": model.name, "ready": True})

    @app.get(versioned + "/ready", summary="Readiness of one version", tags=["model"])
    def model_ready_version(name: str, version: str):
        check(name, version)
        return json_response(200, {"name": model.name, "ready": True})

    # --- inference -----------------------------------------------------------------------
    def do_infer(name: str, version: str | None) -> Response:
        return _response(serve_infer(model, hooks, app.current_event.raw_event, name, version, limit))

    @app.post(base + "/infer", summary="Inference (V2 JSON or binary tensor extension)", tags=["model"])
    def infer_route(name: str):
        return do_infer(name, None)

    @app.post(versioned + "/infer", summary="Inference on one version", tags=["model"])
    def infer_version(name: str, version: str):
        return do_infer(name, version)

    # --- wrong methods, unknown routes, errors -------------------------------------------
    def not_allowed(allowed: str):
        def handler(**_: str):
            method = app.current_event.http_method
            raise MethodNotAllowed(f"{method} is not allowed here; use {allowed}.", allow=allowed)
        return handler

    for path in ("/v2/health/live", "/v2/health/ready", "/v2", base, versioned,
                 base + "/ready", versioned + "/ready"):
        app.route(path, method=_NOT_GET, include_in_schema=False)(not_allowed("GET"))
    for path in (base + "/infer", versioned + "/infer"):
        app.route(path, method=_NOT_POST, include_in_schema=False)(
            not_allowed("POST")
        )

    @app.not_found
    def unknown_route(_: NotFoundError):
        event = app.current_event
        if allow := allowed_method(event.path):  # a known route, any other method (TRACE, QUERY…)
            return json_response(405, {"error": f"{event.http_method} is not allowed here; use {allow}."},
                                 {"Allow": allow})
        return json_response(404, {"error": (
            f"no route {event.http_method} {event.path}; routes are under /v2 (e.g. "
            f"POST /v2/models/{model.name}/infer); see GET /docs."
        )})

    @app.exception_handler(ModelfnError)
    def client_error(exc: ModelfnError):
        return _response(error_reply(exc, hooks))

    @app.exception_handler(Exception)
    def internal_error(exc: Exception):
        return _response(internal_error_reply(exc, hooks, app.lambda_context))

    _add_docs(app, model, check, not_allowed)
    return app


def _add_docs(app: APIGatewayHttpResolver, model: Model, check_model, not_allowed) -> None:
    """``GET /openapi.json`` (and ``/v2/models/{name}/openapi.json``, the model's own route, so
    every model's document is reachable behind one API) and ``GET /docs``: the document of
    :mod:`functions.api.openapi` and its Swagger UI, built on first use (no pydantic, nothing
    at cold start)."""

    @app.get("/openapi.json", include_in_schema=False)
    def openapi():
        return Response(status_code=200, content_type=JSON, body=openapi_doc.document_json(model))

    @app.get("/v2/models/<name>/openapi.json", include_in_schema=False)
    def model_openapi(name: str):
        check_model(name)
        return Response(status_code=200, content_type=JSON, body=openapi_doc.document_json(model))

    @app.get("/docs", include_in_schema=False)
    def docs():
        return Response(status_code=200, content_type="text/html", body=openapi_doc.docs_html(model))

    for path in ("/openapi.json", "/v2/models/<name>/openapi.json", "/docs"):
        app.route(path, method=_NOT_GET, include_in_schema=False)(not_allowed("GET"))
