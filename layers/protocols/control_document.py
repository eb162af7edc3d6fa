"""The control routes' fragment of the OpenAPI document (training runs, versions, promote, rollback).

Separate from :mod:`layers.protocols.control` because the control function (a stdlib-only
zip) carries that module but never builds a document; the model functions build this on
``GET /openapi.json``. On AWS these routes go to the model's control function and are
IAM-authorized (SigV4 for ``execute-api``) whatever the model's inference ``auth``: each
operation's description says so.
"""

from __future__ import annotations

from typing import Any

from layers.messages import JSON
from layers.protocols.control import RESERVED_QUERY, STATUSES

TAG = "control"
AUTH = ("On AWS: IAM-authorized, whatever the model's auth (sign with SigV4 for execute-api, e.g. "
        "infra.client.control.ControlClient or `modelfn … --deployed`); the local stack takes it unsigned.")
_ERRORS = {
    400: "Bad request: a body or query that is not what the route takes, a model without training:, "
         "a hyperparameter the deployed job does not declare, or versions of a SageMaker-target model.",
    403: "Not signed, or signed by a principal without execute-api:Invoke on this route (AWS).",
    404: "Unknown model, training run or version.",
    405: "Another method on this path; the Allow header names the one that works.",
    409: "A training run of this model is already in progress, or nothing to roll back to.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": _ERRORS[s], "content": {JSON: {"schema": _ref("Error")}}} for s in statuses}


def _ok(status: int, schema: str, description: str) -> dict[str, Any]:
    return {str(status): {"description": description, "content": {JSON: {"schema": _ref(schema)}}}}


def _op(summary: str, responses: dict[str, Any], params: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "description": AUTH, "tags": [TAG], "parameters": params,
            "responses": {**responses, **_errors(403, 404, 405)}, **extra}


def _path_param(name: str, description: str, enum: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", **({"enum": enum} if enum else {})}}


SCHEMAS: dict[str, Any] = {
    "TrainRequest": {"type": "object", "additionalProperties": False, "properties": {
        "hyperparameters": {"type": "object", "description": "name: value over the catalog's "
                            "training.hyperparameters (query parameters override these)"},
        "data": {"type": "string", "description": "training data: an s3:// prefix (locally also a folder)"}}},
    "TrainingRun": {"type": "object", "required": ["model", "run_id", "status", "status_url"], "properties": {
        "model": {"type": "string"}, "run_id": {"type": "string"},
        "status": {"type": "string", "enum": list(STATUSES)},
        "status_url": {"type": "string", "description": "GET it to follow the run"},
        "created_at": {"type": ["string", "null"]}, "started_at": {"type": ["string", "null"]},
        "finished_at": {"type": ["string", "null"]},
        "hyperparameters": {"type": ["object", "null"]}, "data": {"type": ["string", "null"]},
        "version": {"type": ["string", "null"], "description": "the version the run built"},
        "promoted": {"description": "whether the gate made it live"},
        "reason": {"type": ["string", "null"], "description": "the gate's reason"},
        "metrics": {"type": "object"}, "error": {"type": ["string", "null"]}}},
    "TrainingRuns": {"type": "object", "properties": {
        "model": {"type": "string"}, "runs": {"type": "array", "items": _ref("TrainingRun")}}},
    "Versions": {"type": "object", "required": ["model", "live", "versions"], "properties": {
        "model": {"type": "string"}, "live": {"type": ["string", "null"]},
        "versions": {"type": "array", "items": {"type": "object", "properties": {
            "version": {"type": "string"}, "parent_version": {"type": ["string", "null"]},
            "promoted": {"type": "boolean"}, "reason": {"type": "string"}, "metrics": {"type": "object"}}}}}},
    "VersionChange": {"type": "object", "required": ["model", "live", "previous", "changed"], "properties": {
        "model": {"type": "string"}, "live": {"type": ["string", "null"]},
        "previous": {"type": ["string", "null"]}, "changed": {"type": "boolean"},
        "deployments": {"type": "object", "description": "AWS: CodeDeploy deployment id per function "
                        "kind (the live alias moves through its canary)"},
        "signature_change": {"type": "string"}}},
}


def fragment(model_name: str) -> dict[str, Any]:
    """The control paths for ``model_name`` and their schemas."""
    name = _path_param("name", "the model", [model_name])
    run_id = _path_param("run_id", "a run id from POST …/train")
    version = _path_param("version", "a version (or a unique prefix of 4+ characters), or its number")
    query = {"name": "hyperparameters", "in": "query", "required": False, "style": "form", "explode": True,
             "schema": {"type": "object", "additionalProperties": True},
             "description": "any other query parameter is a hyperparameter, decoded as JSON where it is "
                            f"JSON (epochs=3 is a number); {', '.join(RESERVED_QUERY)} is the data location"}
    body = {"required": False, "content": {JSON: {"schema": _ref("TrainRequest"),
                                                  "example": {"hyperparameters": {"epochs": 3}}}}}
    train = "/v2/models/{name}/train"
    return {
        "paths": {
            train: {
                "post": _op("Start a training run of the model's training: entry point (202; follow status_url)",
                            {**_ok(202, "TrainingRun", "accepted: status queued"), **_errors(400, 409)},
                            [name, query], requestBody=body),
                "get": _op("The model's training runs, newest first", _ok(200, "TrainingRuns", "runs"),
                           [name]),
            },
            train + "/{run_id}": {"get": _op("One training run: status, version, promotion and metrics",
                                             _ok(200, "TrainingRun", "the run"), [name, run_id])},
            "/v2/models/{name}/versions": {"get": _op(
                "Versions, lineage and which is live (as `modelfn versions NAME --json`)",
                _ok(200, "Versions", "versions"), [name])},
            "/v2/models/{name}/versions/{version}/promote": {"post": _op(
                "Make a kept version live (AWS: through the model's CodeDeploy canary)",
                {**_ok(200, "VersionChange", "what changed"), **_errors(400)}, [name, version])},
            "/v2/models/{name}/rollback": {"post": _op(
                "Make the previously live version live again",
                {**_ok(200, "VersionChange", "what changed"), **_errors(400, 409)}, [name])},
        },
        "components": {"schemas": SCHEMAS},
    }
