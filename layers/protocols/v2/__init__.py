"""The Open Inference Protocol (KServe V2 / Triton HTTP), the first registered protocol.

Routes (design.md): ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2``,
``GET /v2/models/{name}``, ``GET …/ready``, ``POST …/infer`` and the same three under
``/v2/models/{name}/versions/{version}``; on the API, ``GET /v2/models/{name}`` and
``ANY /v2/models/{name}/{proxy+}`` send every path under a model to that model's function
(which routes it, or answers its JSON 404/405). Inference
is the fast path's route. Request/response bodies are :mod:`layers.v2_wire`'s; the OpenAPI
fragment is :mod:`.document`'s.
"""

from __future__ import annotations

import math

from layers.dataplane import DataPlane
from layers.datatypes import HEADER_LENGTH
from layers.errors import PayloadTooLarge, UnsupportedMediaType
from layers.messages import BINARY, JSON, Reply, Request, json_reply
from layers.protocols import Protocol, register
from layers.protocols.v2 import generate
from layers.routes import ANY, GET, POST, Route, Scope
from layers.v2_wire import dump_json, join_body, split_body

NAME = "v2"
_ACCEPTED_TYPES = ("application/json", "application/octet-stream", "application/vnd.")
_SIZE_FIX = ("Send fewer rows per request, use the binary tensor extension, or drop a file into the "
             "batch bucket.")


def _route(method: str, path: str, operation: str, **kw) -> Route:
    return Route(method, path, operation, NAME, **kw)


def _model_routes(prefix: str, label: str, *, gateway: bool) -> tuple[Route, ...]:
    """Metadata, readiness and inference under ``prefix``. ``gateway``: the metadata path gets
    its own API Gateway route; the others arrive through the model's ``{proxy+}`` catch-all
    (HTTP API's routes per API are a quota, 300 by default: a route per path and model would
    cap a catalog at about 16 Lambda models)."""
    return (
        _route(GET, prefix, "model_metadata", gateway=gateway, summary=f"Model metadata{label}"),
        _route(GET, f"{prefix}/ready", "model_ready", gateway=False, summary=f"Model readiness{label}"),
        _route(POST, f"{prefix}/infer", "infer", fast=True, gateway=False, summary=f"Inference{label}"),
    )


def _generate_routes(prefix: str, label: str) -> tuple[Route, ...]:
    return (
        _route(POST, f"{prefix}/generate", "generate", gateway=False,
               summary=f"Generate text (generative models){label}"),
        _route(POST, f"{prefix}/generate_stream", "generate_stream", gateway=False,
               summary=f"Generate text as server-sent events (generative models){label}"),
    )


MODEL = "/v2/models/{name}"
ROUTES = (
    _route(GET, "/v2/health/live", "live", scope=Scope.SERVER, summary="Liveness"),
    _route(GET, "/v2/health/ready", "ready", scope=Scope.SERVER, summary="Readiness"),
    _route(GET, "/v2", "server_metadata", scope=Scope.SERVER, gateway=False, summary="Server metadata"),
    # ``GET /v2/models/<name>`` is the one path under a model that ``{proxy+}`` (one or more
    # segments) does not match: it keeps its own route; everything else under the model,
    # generative models' generate routes (Triton's generate extension, .generate, also pinned to
    # a version like infer) included, arrives through the catch-all, so a model costs the API
    # two V2 routes
    *_model_routes(MODEL, "", gateway=True),
    *_model_routes(MODEL + "/versions/{version}", " of one version", gateway=False),
    *_generate_routes(MODEL, ""),
    *_generate_routes(MODEL + "/versions/{version}", " of one version"),
    _route(ANY, MODEL + "/{proxy+}", "", summary="any other path under a model: its router's 404/405"),
)


# --- operations against the data plane ----------------------------------------------------
def live(plane: DataPlane, req: Request) -> Reply:
    return json_reply(200, plane.live())


def ready(plane: DataPlane, req: Request) -> Reply:
    return json_reply(200, plane.ready())


def server_metadata(plane: DataPlane, req: Request) -> Reply:
    return json_reply(200, plane.server_metadata())


def model_metadata(plane: DataPlane, req: Request) -> Reply:
    return json_reply(200, plane.model_metadata(req.params["name"], req.params.get("version")))


def model_ready(plane: DataPlane, req: Request) -> Reply:
    return json_reply(200, plane.model_ready(req.params["name"], req.params.get("version")))


def infer(plane: DataPlane, req: Request) -> Reply:
    """V2 JSON, or the binary tensor extension (``Inference-Header-Content-Length``)."""
    params = req.params
    plane.check_model(params["name"], params.get("version"))
    headers = req.headers
    content_type = (headers.get("content-type") or "").strip().lower()
    if content_type and not content_type.startswith(_ACCEPTED_TYPES):
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r} is not supported; send application/json (curl: "
            "-H 'Content-Type: application/json'), or application/octet-stream with "
            "Inference-Header-Content-Length for the binary tensor extension."
        )
    req.check_size(_SIZE_FIX)
    body, size = req.body()
    request, binary = split_body(body, headers.get(_HEADER_LENGTH_LOWER))
    result = plane.infer(request, binary, payload_bytes=size)
    limit = req.limit
    if not result.binary:
        text = dump_json(result.response)
        if limit:
            _check_response_size(len(text) if text.isascii() else len(text.encode()), limit)
        return Reply(200, JSON, text)
    payload, header_length = join_body(result)
    if limit:  # base64 in the Lambda response
        _check_response_size(4 * math.ceil(len(payload) / 3), limit)
    return Reply(200, BINARY, payload, {HEADER_LENGTH: str(header_length)})


_HEADER_LENGTH_LOWER = HEADER_LENGTH.lower()


def _check_response_size(size: int, limit: int) -> None:
    if size > limit:
        raise PayloadTooLarge(
            f"the response would be {size:,} bytes; the limit is {limit:,} bytes. Send fewer "
            "rows per request, request fewer outputs, or use batch inference."
        )


def _document(model):
    from layers.protocols.v2.document import fragment

    return fragment(model)


PROTOCOL = register(Protocol(
    name=NAME,
    routes=ROUTES,
    operations={"live": live, "ready": ready, "server_metadata": server_metadata,
                "model_metadata": model_metadata, "model_ready": model_ready, "infer": infer,
                "generate": generate.generate, "generate_stream": generate.generate_stream},
    document=_document,
))
