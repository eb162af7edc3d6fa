"""OpenAI's API, the second registered protocol: embeddings, the model list, and (for generative
models) completions and chat completions (:mod:`layers.protocols.openai_completions`).

Routes: ``POST /openai/{name}/v1/embeddings`` and ``GET /openai/{name}/v1/models[/{model}]``
are pinned to one model (each model's own function answers them, no extra hop); ``POST
/openai/v1/embeddings`` names the model in the body's ``"model"`` (``Scope.BODY``: the
router, :mod:`layers.openai_router`, reads it and forwards the request to that model's
function; a function asked for another model answers OpenAI's 404 ``model_not_found``).
``GET /openai/v1/models[/{model}]`` (``Scope.CATALOG``) is the router's: every model of the
catalog; a model function asked directly answers for itself. The wire format (request checks, float/base64 vectors, usage,
error bodies) is :mod:`layers.openai_wire`; every error here, including the shared checks'
(size, content type), is answered in OpenAI's error shape.
"""

from __future__ import annotations

from collections.abc import Callable

from layers import openai_wire as wire
from layers.dataplane import DataPlane
from layers.errors import ModelfnError
from layers.messages import Reply, Request, json_body, json_reply
from layers.protocols import Protocol, register
from layers.protocols import openai_completions as completions
from layers.routes import ANY, GET, POST, Route, Scope

NAME = "openai"
PINNED = "/openai/{name}/v1"
SHARED = "/openai/v1"
_SIZE_FIX = "Send fewer texts per request, or drop a .txt into the batch bucket."


def _route(method: str, path: str, operation: str, **kw) -> Route:
    return Route(method, path, operation, NAME, **kw)


ROUTES = (
    # the pinned form ``/openai/<model>/v1/…`` reaches the model's function through its one
    # ``ANY /openai/<model>/{proxy+}`` catch-all (routes per API are a quota; see v2's)
    _route(ANY, "/openai/{name}/{proxy+}", "", summary="any path under a pinned model: its router's 404/405"),
    _route(POST, PINNED + "/embeddings", "embeddings", gateway=False, summary="OpenAI embeddings (this model)"),
    _route(GET, PINNED + "/models", "models", gateway=False, summary="OpenAI model list (this model)"),
    _route(GET, PINNED + "/models/{model}", "model", gateway=False, summary="OpenAI model card (this model)"),
    _route(POST, SHARED + "/embeddings", "embeddings", scope=Scope.BODY, body_field="model",
           summary="OpenAI embeddings, the model named in the body"),
    _route(GET, SHARED + "/models", "models", scope=Scope.CATALOG, summary="OpenAI model list: every model"),
    _route(GET, SHARED + "/models/{model}", "model", scope=Scope.CATALOG, summary="OpenAI model card"),
    # generative models (layers/protocols/openai_completions.py)
    _route(POST, PINNED + "/completions", "completions", gateway=False, summary="OpenAI completions (this model)"),
    _route(POST, PINNED + "/chat/completions", "chat_completions", gateway=False, summary="OpenAI chat completions (this model)"),
    _route(POST, SHARED + "/completions", "completions", scope=Scope.BODY, body_field="model",
           summary="OpenAI completions, the model named in the body"),
    _route(POST, SHARED + "/chat/completions", "chat_completions", scope=Scope.BODY, body_field="model",
           summary="OpenAI chat completions, the model named in the body"),
)


def _openai_errors(op: Callable[[DataPlane, Request], Reply]) -> Callable[[DataPlane, Request], Reply]:
    def wrapped(plane: DataPlane, req: Request) -> Reply:
        try:
            return op(plane, req)
        except ModelfnError as exc:
            plane.hooks.on_client_error(exc)
            status, body = wire.error_of(exc)
            return json_reply(status, body)
    wrapped.__name__ = op.__name__
    return wrapped


def _vector_task(plane: DataPlane) -> dict:
    """The manifest's task record of an embedding model (``dimensions``, ``normalize``,
    ``matryoshka_dims``); any other model is OpenAI's 400."""
    task = getattr(plane.model, "task", None) or {}
    if task.get("task") not in ("embeddings", "feature-extraction"):
        raise wire.OpenAIError(f"Model `{plane.model.name}` is not an embedding model (it serves "
                               f"{task.get('task') or 'tensors'}); use its V2 route POST /v2/models/"
                               f"{plane.model.name}/infer.", param="model")
    return task


@_openai_errors
def embeddings(plane: DataPlane, req: Request) -> Reply:
    pinned = req.params.get("name")
    if pinned is not None and pinned != plane.model.name:
        raise wire.model_not_found(pinned, [plane.model.name])
    doc = json_body(req, size_fix=_SIZE_FIX, not_json=wire.not_json)
    name = doc.get("model") if isinstance(doc, dict) else None
    if isinstance(name, str) and name and name != plane.model.name:
        raise wire.model_not_found(name, [plane.model.name])
    task = _vector_task(plane)
    model, texts, fmt, size = wire.parse_embeddings(doc, dimensions=int(task["dimensions"]),
                                                    cuts=tuple(task.get("matryoshka_dims") or ()))
    vectors, tokens = plane.model.embed(texts)
    vectors = wire.cut(vectors, size, normalize=bool(task.get("normalize")))
    return json_reply(200, wire.embeddings_response(model, vectors, fmt, tokens))


@_openai_errors
def models(plane: DataPlane, req: Request) -> Reply:
    pinned = req.params.get("name")
    if pinned is not None and pinned != plane.model.name:
        raise wire.model_not_found(pinned, [plane.model.name])
    return json_reply(200, wire.models_response([wire.model_card(plane.model.name, _created(plane))]))


@_openai_errors
def model(plane: DataPlane, req: Request) -> Reply:
    """``GET …/models/{model}``: this model's card (a model function knows only itself; the
    shared form is the router's, which knows every model)."""
    pinned, asked = req.params.get("name"), req.params.get("model")
    for name in (pinned, asked):
        if name is not None and name != plane.model.name:
            raise wire.model_not_found(name, [plane.model.name])
    return json_reply(200, wire.model_card(plane.model.name, _created(plane)))


def _created(plane: DataPlane) -> int:
    return wire.created_of(getattr(plane.model.manifest, "built_at", "") or "")


def document(model) -> dict:
    """The OpenAPI fragment: OpenAI's request/response and error bodies, narrowed to this model
    (its name; its vector sizes as ``dimensions``)."""
    task = getattr(model, "task", None) or {}
    error = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"], "properties": {
            "message": {"type": "string"}, "type": {"type": "string"},
            "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}
    gateway = {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}}

    def errors(*statuses: int) -> dict:
        return {str(st): {"description": "OpenAI's error body" if st not in (413, 503) else
                          "OpenAI's error body, or API Gateway's own",
                          "content": {"application/json": {"schema": error if st not in (413, 503)
                                                           else {"anyOf": [error, gateway]}}}}
                for st in statuses}

    text = {"type": "string", "minLength": 1}
    props = {"model": {"enum": [model.name]},
             "input": {"oneOf": [text, {"type": "array", "items": text, "minItems": 1,
                                        "maxItems": wire.MAX_INPUTS}]},
             "encoding_format": {"enum": list(wire.ENCODINGS)}, "user": {"type": "string"}}
    if task.get("dimensions"):
        sizes = sorted({int(task["dimensions"]), *task.get("matryoshka_dims", ())}, reverse=True)
        props["dimensions"] = {"enum": sizes, "description": "the vector size: the model's own, or a size "
                               "it was trained to be cut to (Matryoshka)"}
    request = {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "required": ["model", "input"], "properties": props,
                   "additionalProperties": False},
        "example": {"model": model.name, "input": ["a sentence to embed"]}}}}
    vector = {"oneOf": [{"type": "array", "items": {"type": "number"}},
                        {"type": "string", "description": "base64 of little-endian float32"}]}
    embeddings_ok = {"200": {"description": "one vector per input", "content": {"application/json": {"schema": {
        "type": "object", "required": ["object", "data", "model", "usage"], "properties": {
            "object": {"const": "list"}, "model": {"type": "string"},
            "data": {"type": "array", "items": {"type": "object", "required": ["object", "index", "embedding"],
                                                "properties": {"object": {"const": "embedding"},
                                                               "index": {"type": "integer"},
                                                               "embedding": vector}}},
            "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"], "properties": {
                "prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}}}}}}}}}
    card = {"type": "object", "required": ["id", "object", "created", "owned_by"], "properties": {
        "id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
        "owned_by": {"type": "string"}}}
    models_ok = {"200": {"description": "the models this endpoint serves", "content": {"application/json": {
        "schema": {"type": "object", "required": ["object", "data"], "properties": {
            "object": {"const": "list"}, "data": {"type": "array", "items": card}}}}}}}
    name = {"name": "name", "in": "path", "required": True, "schema": {"enum": [model.name]},
            "description": "the model this endpoint serves"}
    paths: dict = {}
    card_ok = {"200": {"description": "one model", "content": {"application/json": {"schema": card}}}}
    asked = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"},
             "description": "the model's name (a catalog entry)"}
    for r in ROUTES:
        if r.catch_all:  # the API's, not a path a client calls
            continue
        op: dict = {"summary": r.summary, "tags": ["openai"]}
        if r.operation in completions.OPERATIONS:
            op = completions.document(model, r.path, errors(400, 403, 404, 405, 413, 415, 503))
            op["summary"] = r.summary
        params = [p for p, key in ((name, "{name}"), (asked, "{model}")) if key in r.path]
        if params:
            op["parameters"] = params
        if r.operation in completions.OPERATIONS:
            pass
        elif r.method == POST:
            op["requestBody"] = request
            # 403: the shared form on AWS reaches only models of the shared routes' auth (the router)
            op["responses"] = {**embeddings_ok, **errors(400, 403, 404, 405, 413, 415, 503)}
        else:
            op["responses"] = {**(card_ok if "{model}" in r.path else models_ok), **errors(404, 405, 503)}
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {"paths": paths}


PROTOCOL = register(Protocol(name=NAME, routes=ROUTES, operations={
    "embeddings": embeddings, "models": models, "model": model,
    **{name: _openai_errors(op) for name, op in completions.OPERATIONS.items()}},
                             document=document))
