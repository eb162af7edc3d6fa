"""The endpoint's own documentation: ``GET /openapi.json``, ``GET /v2/models/{name}/openapi.json``
(the model's own route, so every model's document is reachable behind one API) and
``GET /docs`` (Swagger UI, its JS/CSS inlined from the Powertools package so it works offline).

The document is every registered protocol's fragment (:func:`layers.protocols.document_fragments`)
under one ``info``; its paths are exactly the route table's served routes
(``tests/unit/test_single_definitions.py``). Built on first use and cached per model; nothing
at cold start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from layers.dataplane import DataPlane
from layers.messages import JSON, Reply, Request
from layers.model import Model
from layers.protocols import Protocol, document_fragments, register
from layers.protocols.v2.document import errors, name_param, op
from layers.routes import GET, Route, Scope

NAME = "docs"
OPENAPI_VERSION = "3.1.0"
ROUTES = (
    Route(GET, "/openapi.json", "openapi", NAME, Scope.SERVER, summary="This OpenAPI document"),
    Route(GET, "/v2/models/{name}/openapi.json", "model_openapi", NAME, gateway=False,
          summary="This OpenAPI document"),
    Route(GET, "/docs", "docs", NAME, Scope.SERVER, summary="Swagger UI"),
)


def fragment(model: Model) -> dict[str, Any]:
    name = name_param(model)
    doc_ok = {"200": {"description": "this document", "content": {JSON: {"schema": {"type": "object"}}}}}
    paths: dict[str, Any] = {}
    for path in ("/openapi.json", "/v2/models/{name}/openapi.json"):
        per_model = "{name}" in path
        paths[path] = {"get": op("This OpenAPI document", "docs",
                                 {**doc_ok, **errors(*((404, 405) if per_model else (405,)))},
                                 [name] if per_model else None)}
    paths["/docs"] = {"get": op("Swagger UI for this document", "docs", {
        "200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
        **errors(405)})}
    return {"paths": paths}


def document(model: Model) -> dict[str, Any]:
    """The OpenAPI document for ``model``'s endpoint."""
    paths, schemas = document_fragments(model)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": f"modelfn: {model.name}", "version": model.version,
                 "description": "Open Inference Protocol (KServe V2) endpoint for one model. Deployed "
                                "models with auth: iam need SigV4-signed requests (execute-api)."},
        "paths": paths,
        "components": {"schemas": schemas},
    }


_built: dict[tuple[str, str], str] = {}


def document_json(model: Model) -> str:
    """:func:`document` as JSON, built once per model (name and sha256)."""
    key = (model.name, model.manifest.sha256)
    if key not in _built:
        _built[key] = json.dumps(document(model), separators=(",", ":"))
    return _built[key]


def docs_html(model: Model) -> str:
    """The Swagger UI page for the document, with Powertools' JS/CSS inlined (works offline)."""
    from aws_lambda_powertools.event_handler.openapi import swagger_ui
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

    ui = Path(swagger_ui.__file__).parent
    return generate_swagger_html(
        document_json(model).replace("</", "<\\/"),
        (ui / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (ui / "swagger-ui.min.css").read_text(encoding="utf-8"),
        swagger_base_url="", oauth2_config=None)


def openapi(plane: DataPlane, req: Request) -> Reply:
    return Reply(200, JSON, document_json(plane.model))


def model_openapi(plane: DataPlane, req: Request) -> Reply:
    plane.check_model(req.params["name"])
    return Reply(200, JSON, document_json(plane.model))


def docs(plane: DataPlane, req: Request) -> Reply:
    return Reply(200, "text/html", docs_html(plane.model))


PROTOCOL = register(Protocol(
    name=NAME, routes=ROUTES,
    operations={"openapi": openapi, "model_openapi": model_openapi, "docs": docs},
    document=fragment,
))
