"""The Open Inference Protocol routes for one model, on Powertools' HTTP API resolver.

Used by the Lambda API function and, through the same handler, by the SageMaker server and
the local stack, so every route behaves the same everywhere. The OpenAPI document and the
Swagger UI are Powertools' (``/openapi.json``, ``/docs``; the UI's JS/CSS are inlined from
the Powertools package, so ``/docs`` works offline).
"""

from __future__ import annotations

import base64
import math
import os
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from layers import names
from layers.errors import (
    BadRequest,
    MethodNotAllowed,
    ModelfnError,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from layers.model import Model
from layers.protocol import (
    HEADER_LENGTH,
    InferResult,
    dump_json,
    infer,
    join_body,
    model_metadata,
    server_metadata,
    split_body,
)

JSON = "application/json"
BINARY = "application/octet-stream"
_ACCEPTED_TYPES = ("application/json", "application/octet-stream", "application/vnd.")
_NOT_GET = ["POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_NOT_POST = ["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def max_request_bytes() -> int:
    raw = os.environ.get(names.ENV_MAX_REQUEST_BYTES, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else names.LAMBDA_SYNC_PAYLOAD_BYTES


def _check_response_size(size: int, limit: int) -> None:
    if size > limit:
        raise PayloadTooLarge(
            f"the response would be {size:,} bytes; the limit is {limit:,} bytes. Send fewer "
            "rows per request, request fewer outputs, or use batch inference."
        )


def _b64decode(raw: str) -> bytes:
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        raise BadRequest(
            "the body is marked isBase64Encoded but is not valid base64; send the request bytes "
            "base64-encoded, or as text with isBase64Encoded false."
        ) from None


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, content_type=JSON, body=dump_json(body), headers=headers)


class Hooks:
    """What the entry point observes (logs, metrics); the defaults do nothing."""

    def on_infer(self, result: InferResult, payload_bytes: int) -> None: ...

    def on_client_error(self, exc: ModelfnError) -> None: ...

    def on_internal_error(self, exc: Exception, request_id: str) -> None: ...


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

    def check_model(name: str, version: str | None = None) -> None:
        if name != model.name:
            raise NotFound(
                f"model {name!r} is not served here; this endpoint serves {model.name!r} "
                f"(GET /v2/models/{model.name})."
            )
        if version is not None and version != model.version:
            raise NotFound(
                f"model {model.name!r} version {version!r} is not deployed; the deployed version is "
                f"{model.version!r} (or leave /versions/... out of the path)."
            )

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
        check_model(name)
        return json_response(200, model_metadata(model))

    @app.get(versioned, summary="Model metadata of one version", tags=["model"])
    def metadata_version(name: str, version: str):
        check_model(name, version)
        return json_response(200, model_metadata(model))

    @app.get(base + "/ready", summary="Model readiness", tags=["model"])
    def model_ready(name: str):
        check_model(name)
        return json_response(200, {"name": model.name, "ready": True})

    @app.get(versioned + "/ready", summary="Readiness of one version", tags=["model"])
    def model_ready_version(name: str, version: str):
        check_model(name, version)
        return json_response(200, {"name": model.name, "ready": True})

    # --- inference -----------------------------------------------------------------------
    def do_infer(name: str, version: str | None) -> Response:
        check_model(name, version)
        event = app.current_event.raw_event
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        content_type = (headers.get("content-type") or "").strip().lower()
        if content_type and not content_type.startswith(_ACCEPTED_TYPES):
            raise UnsupportedMediaType(
                f"Content-Type {content_type!r} is not supported; send application/json (curl: "
                "-H 'Content-Type: application/json'), or application/octet-stream with "
                "Inference-Header-Content-Length for the binary tensor extension."
            )
        raw = event.get("body") or ""
        if event.get("isBase64Encoded"):
            body: bytes | str = _b64decode(raw)
            size = len(body)
        else:  # text body: parsed as str, no encode/decode round trip
            body, size = raw, len(raw) if raw.isascii() else len(raw.encode("utf-8"))
        if size > limit:
            raise PayloadTooLarge(
                f"the request body is {size:,} bytes; the limit is {limit:,} bytes (Lambda's "
                "synchronous payload). Send fewer rows per request, use the binary tensor "
                "extension, or drop a file into the batch bucket."
            )
        request, binary = split_body(body, headers.get(HEADER_LENGTH.lower()))
        result = infer(model, request, binary)
        hooks.on_infer(result, size)
        if not result.binary:
            text = dump_json(result.response)
            _check_response_size(len(text) if text.isascii() else len(text.encode()), limit)
            return Response(status_code=200, content_type=JSON, body=text)
        payload, header_length = join_body(result)
        _check_response_size(4 * math.ceil(len(payload) / 3), limit)  # base64 in the Lambda response
        return Response(status_code=200, content_type=BINARY, body=payload,
                        headers={HEADER_LENGTH: str(header_length)})

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
        hooks.on_client_error(exc)
        headers = {"Allow": exc.allow} if isinstance(exc, MethodNotAllowed) and exc.allow else None
        return json_response(exc.status, exc.body(), headers)

    @app.exception_handler(Exception)
    def internal_error(exc: Exception):
        """A bug, never a client's fault: the trace goes to the log, the client gets the request id."""
        request_id = getattr(app.lambda_context, "aws_request_id", None) or "unknown"
        hooks.on_internal_error(exc, request_id)
        return json_response(500, {"error": f"internal error; request id {request_id}"})

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
