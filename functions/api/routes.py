"""The Open Inference Protocol routes for one model, on Powertools' HTTP API resolver.

Used by the Lambda API function and, through the same handler, by the SageMaker server and
the local stack, so every route behaves the same everywhere. Inference requests normally
reach :mod:`functions.api.direct` before this resolver (the handler checks first); the
inference routes here call the same :func:`~functions.api.direct.serve_infer`, for events
the direct path leaves to the resolver and so that ``/openapi.json`` describes them. The OpenAPI document and the
Swagger UI are Powertools' (``/openapi.json``, ``/docs``; the UI's JS/CSS are inlined from
the Powertools package, so ``/docs`` works offline).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

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


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type=JSON, body=dump_json(body), headers=headers)


def _response(reply: Reply) -> Response:
    return Response(status_code=reply.status, content_type=reply.content_type, body=reply.body,
                    headers=reply.headers)


def build_app(model: Model, hooks: Hooks | None = None, *, swagger: bool = False) -> APIGatewayHttpResolver:
    """The resolver serving ``model``, reporting to ``hooks``.

    ``swagger=True`` calls Powertools' ``enable_swagger`` on it directly; the served app
    leaves it False and builds such a twin on the first ``GET /docs`` (see :func:`_add_docs`).
    """
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

    _add_docs(app, model, hooks, swagger)
    return app


def _add_docs(app: APIGatewayHttpResolver, model: Model, hooks: Hooks, swagger: bool) -> None:
    """``GET /openapi.json`` and ``GET /docs``, generated by Powertools from the routes above.

    Powertools' OpenAPI support imports its pydantic models (~200 ms, measured in
    bench/bench_coldstart.py) when ``enable_swagger`` is called, which would put it in every
    cold start. So both routes build it on first use: the spec from this app, the Swagger UI
    (JS/CSS inlined from the Powertools package, so it works offline) from a twin app with the
    same routes on which ``enable_swagger`` is called once.
    """
    title = f"modelfn: {model.name}"
    info = {"title": title, "version": model.version,
            "description": "Open Inference Protocol (KServe V2) endpoint for one model."}
    if swagger:
        app.enable_swagger(path="/docs", **info)
    else:
        twin: list[APIGatewayHttpResolver] = []

        @app.get("/docs", include_in_schema=False)
        def docs():
            if not twin:
                twin.append(build_app(model, hooks, swagger=True))
            r = twin[0].resolve(app.current_event.raw_event, app.lambda_context)
            return Response(status_code=r["statusCode"], body=r["body"], headers=r.get("headers"),
                            content_type=(r.get("headers") or {}).get("Content-Type"))

    @app.get("/openapi.json", include_in_schema=False)
    def openapi():
        return Response(status_code=200, content_type=JSON, body=app.get_openapi_json_schema(**info))
