"""The V2 protocol's fragment of one model's OpenAPI 3.1 document (``GET /openapi.json``).

Written here rather than generated from the resolver's routes, because what a client
generator or a fuzzer needs is not in the route table: the Open Inference Protocol's request
and response bodies (``$inference_request``, ``$inference_response``, ``$metadata_model_response``
… as the KServe V2 / Triton HTTP spec defines them), narrowed to this model — the input names,
datatypes and the fixed dims of each shape are exact, dynamic dims any size ≥ 0, with a
working request as the example — and every error status each route can return, all with the
``{"error": "..."}`` body (API Gateway's own 413/503 answer ``{"message": "..."}``).

A ``null`` where an optional member may be is read as its absence. What JSON Schema cannot
say is in the descriptions: ``data`` holds exactly prod(shape)
elements (flat row-major or nested), values fit the datatype, floats are finite unless the
request sets ``parameters.allow_nonfinite``.

The whole document (every protocol's fragment, the docs routes, the Swagger UI) is
:mod:`layers.protocols.docs`'s, built on first use and cached.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from layers import datatypes, names
from layers.datatypes import HEADER_LENGTH
from layers.messages import BINARY, JSON
from layers.model import Model

DATATYPES = list(datatypes.V2_DATATYPES)

#: what each error status means on these routes (the body is always ``{"error"}``)
_ERRORS = {
    400: "Bad request: a body that is not a V2 request, or a tensor that does not match the "
         "model (unknown or missing input, wrong datatype, shape or element count, NaN).",
    404: "Unknown model or version (this endpoint serves one model and its deployed version).",
    405: "Another method on this path; the Allow header names the one that works.",
    413: f"Request or response over the {names.LAMBDA_SYNC_PAYLOAD_BYTES:,}-byte synchronous "
         "payload limit (use the binary extension, fewer rows, or batch inference).",
    415: "A Content-Type other than application/json or application/octet-stream.",
    503: "The model is not serving (it failed to load), or the integration timed out.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _element(datatype: str) -> dict[str, Any]:
    """JSON schema of one tensor element of ``datatype``."""
    if datatype == "BOOL":
        return {"type": "boolean"}
    if datatype == "BYTES":
        return {"type": "string"}
    row = datatypes.BY_NAME.get(datatype)
    if row is not None and row.is_integer:
        info = np.iinfo(row.numpy)
        return {"type": "integer", "minimum": int(info.min), "maximum": int(info.max)}
    if datatype == "FP16":
        return {"type": "number", "minimum": -65504, "maximum": 65504}
    return {"type": "number"}


def _shape(shape: tuple[int, ...] | list[int]) -> dict[str, Any]:
    dims = [{"const": d} if d >= 0 else {"type": "integer", "minimum": 0} for d in shape]
    return {"type": "array", "prefixItems": dims, "items": False, "minItems": len(dims),
            "description": "dims as the model declares them; -1 in the metadata = any size"}


def _example_tensor(name: str, datatype: str, shape: tuple[int, ...] | list[int]) -> dict[str, Any]:
    dims = [d if d >= 0 else 1 for d in shape]
    value: Any = {"BOOL": False, "BYTES": "text"}.get(datatype, 0)
    return {"name": name, "shape": dims, "datatype": datatype, "data": [value] * math.prod(dims)}


def _input_schema(spec) -> dict[str, Any]:
    data_name = f"Data{spec.datatype}"
    return {
        "type": "object", "required": ["name", "shape", "datatype"],
        "description": f"input {spec.name!r}: {spec.datatype} {list(spec.shape)}. \"data\" holds "
                       "prod(shape) elements, flat row-major or nested; leave it out and set "
                       "parameters.binary_data_size to send the tensor as raw bytes after the "
                       "JSON header (binary extension).",
        "properties": {
            "name": {"const": spec.name}, "datatype": {"const": spec.datatype},
            "shape": _shape(spec.shape), "data": _ref(data_name),
            "parameters": {"type": ["object", "null"], "properties": {
                "binary_data_size": {"type": ["integer", "null"], "minimum": 0}}},
        },
    }


def _data_schemas(used: set[str]) -> dict[str, Any]:
    """``$tensor_data`` per datatype: a list of elements or of nested lists."""
    out = {}
    for dt in sorted(used):
        nested = f"Nested{dt}"
        out[f"Data{dt}"] = {"type": "array", "items": {"anyOf": [_element(dt), _ref(nested)]}}
        out[nested] = {"type": "array", "items": {"anyOf": [_element(dt), _ref(nested)]}}
    return out


def _components(model: Model) -> dict[str, Any]:
    inputs = [_input_schema(s) for s in model.inputs]
    out_names = [s.name for s in model.outputs]
    tensor_meta = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
        "name": {"type": "string"}, "datatype": {"enum": DATATYPES},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": -1}}}}
    schemas: dict[str, Any] = {
        "InferenceRequest": {
            "type": "object", "required": ["inputs"],
            "description": f"$inference_request for model {model.name!r}: each input exactly once.",
            "properties": {
                "id": {"type": ["string", "null"], "description": "echoed in the response"},
                "parameters": {"type": ["object", "null"], "properties": {
                    "binary_data_output": {"type": "boolean"}, "allow_nonfinite": {"type": "boolean"}}},
                "inputs": {"type": "array", "minItems": len(inputs), "maxItems": len(inputs),
                           "items": inputs[0] if len(inputs) == 1 else {"oneOf": inputs}},
                "outputs": {"type": ["array", "null"], "minItems": 1, "maxItems": len(out_names), "items": {
                    "type": "object", "required": ["name"], "properties": {
                        "name": {"enum": out_names},
                        "parameters": {"type": ["object", "null"],
                                       "properties": {"binary_data": {"type": "boolean"}}}}}},
            },
        },
        "InferenceResponse": {
            "type": "object", "required": ["model_name", "outputs"],
            "description": "$inference_response; with binary outputs the tensors follow the JSON "
                           f"header as raw bytes ({HEADER_LENGTH} gives the header's length).",
            "properties": {
                "model_name": {"const": model.name}, "model_version": {"type": "string"},
                "id": {"type": "string"}, "parameters": {"type": "object"},
                "outputs": {"type": "array", "items": {
                    "type": "object", "required": ["name", "shape", "datatype"], "properties": {
                        "name": {"enum": out_names}, "datatype": {"enum": DATATYPES},
                        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                        "data": {"type": "array"}, "parameters": {"type": "object"}}}},
            },
        },
        "MetadataModelResponse": {
            "type": "object", "required": ["name", "platform", "inputs", "outputs"], "properties": {
                "name": {"const": model.name}, "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": _ref("MetadataTensor")},
                "outputs": {"type": "array", "items": _ref("MetadataTensor")}}},
        "MetadataTensor": tensor_meta,
        "MetadataServerResponse": {
            "type": "object", "required": ["name", "version", "extensions"], "properties": {
                "name": {"type": "string"}, "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}}}},
        "Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
        "Ready": {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
        "ModelReady": {"type": "object", "required": ["name", "ready"], "properties": {
            "name": {"const": model.name}, "ready": {"type": "boolean"}}},
        "Error": {"type": "object", "required": ["error"], "properties": {
            "error": {"type": "string", "description": "what was wrong and how to fix it"}}},
        "GatewayError": {"type": "object", "required": ["message"], "properties": {
            "message": {"type": "string"}}, "description": "API Gateway's own error body"},
    }
    schemas.update(_data_schemas({s.datatype for s in model.inputs}))
    return {"schemas": schemas}


def errors(*statuses: int) -> dict[str, Any]:
    out = {}
    for status in statuses:
        schema = ({"anyOf": [_ref("Error"), _ref("GatewayError")]} if status in (413, 503)
                  else _ref("Error"))
        out[str(status)] = {"description": _ERRORS[status], "content": {JSON: {"schema": schema}}}
    return out


def _ok(schema: str, description: str) -> dict[str, Any]:
    return {"200": {"description": description, "content": {JSON: {"schema": _ref(schema)}}}}


def op(summary: str, tag: str, responses: dict[str, Any], params: list | None = None, **extra) -> dict:
    op = {"summary": summary, "tags": [tag], "responses": responses, **extra}
    if params:
        op["parameters"] = params
    return op


def name_param(model: Model) -> dict[str, Any]:
    return {"name": "name", "in": "path", "required": True, "schema": {"enum": [model.name]},
            "description": "the model this endpoint serves"}


def fragment(model: Model) -> dict[str, Any]:
    """The V2 routes' paths and the component schemas (shared by every fragment's errors)."""
    name = name_param(model)
    version = {"name": "version", "in": "path", "required": True, "schema": {"enum": [model.version]},
               "description": "the deployed version"}
    example = {"id": "1", "inputs": [_example_tensor(s.name, s.datatype, s.shape) for s in model.inputs]}
    body = {"required": True, "content": {
        JSON: {"schema": _ref("InferenceRequest"), "example": example},
        BINARY: {"schema": {"type": "string", "format": "binary"},
                 "description": f"binary tensor extension: the JSON request in the first N bytes, N "
                                f"given by the {HEADER_LENGTH} header, then each input with "
                                "parameters.binary_data_size as raw little-endian bytes"}}}
    infer_ok = {"200": {"description": "the outputs", "content": {
        JSON: {"schema": _ref("InferenceResponse")},
        BINARY: {"schema": {"type": "string", "format": "binary"},
                 "description": "JSON header, then binary outputs (when requested)"}}}}
    model_errors = (404, 405, 503)
    paths: dict[str, Any] = {
        "/v2/health/live": {"get": op("Liveness", "health", {**_ok("Live", "live"), **errors(405, 503)})},
        "/v2/health/ready": {"get": op("Readiness (the model loads at init)", "health",
                                        {**_ok("Ready", "ready"), **errors(405, 503)})},
        "/v2": {"get": op("Server metadata", "health",
                           {**_ok("MetadataServerResponse", "server metadata"), **errors(405, 503)})},
    }
    for prefix, params, label in (("/v2/models/{name}", [name], ""),
                                  ("/v2/models/{name}/versions/{version}", [name, version], " of the deployed version")):
        paths[prefix] = {"get": op(f"Model metadata{label}: inputs/outputs (-1 = any size)", "model",
                                    {**_ok("MetadataModelResponse", "model metadata"), **errors(*model_errors)},
                                    params)}
        paths[f"{prefix}/ready"] = {"get": op(f"Model readiness{label}", "model",
                                               {**_ok("ModelReady", "ready"), **errors(*model_errors)}, params)}
        paths[f"{prefix}/infer"] = {"post": op(
            f"Inference{label} (V2 JSON or the binary tensor extension)", "model",
            {**infer_ok, **errors(400, 404, 405, 413, 415, 503)}, params, requestBody=body)}
    paths.update(_generate_paths(model, name, version))
    return {"paths": paths, "components": _components(model)}


#: the per-request generation settings (V2 ``generate`` and a generative model's ``infer``
#: ``parameters``; :mod:`layers.protocols.v2.generate` checks them)
GENERATION_SETTINGS = {
    "max_tokens": {"type": "integer", "minimum": 1},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "top_k": {"type": "integer", "minimum": 0}, "seed": {"type": "integer"},
    "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string", "minLength": 1},
                                            "maxItems": 4}]}}


def _generate_paths(model: Model, name: dict[str, Any], version: dict[str, Any]) -> dict[str, Any]:
    """Triton's generate extension (layers/protocols/v2/generate.py), also under the deployed
    version's path. Every model documents the routes; one that does not generate answers them 400."""
    paths: dict[str, Any] = {}
    settings = GENERATION_SETTINGS
    gen_body = {"required": True, "content": {JSON: {"schema": {
        "type": "object", "required": ["text_input"], "properties": {
            "text_input": {"type": "string", "minLength": 1},
            "parameters": {"type": "object", "properties": settings}, **settings}},
        "example": {"text_input": "Once upon a time", "parameters": {"max_tokens": 16, "temperature": 0}}}}}
    gen_ok = {"type": "object", "properties": {
        "model_name": {"type": "string"}, "model_version": {"type": "string"},
        "text_output": {"type": "string"}, "finish_reason": {"enum": ["stop", "length"]},
        "usage": {"type": "object"}}}
    for suffix, label, content in (
            ("generate", "Generate text (Triton's generate extension)", {JSON: {"schema": gen_ok}}),
            ("generate_stream", "Generate text as server-sent events (one text_output delta per event; "
                                "where the transport cannot stream, the events arrive together)",
             {"text/event-stream": {"schema": {"type": "string"}}})):
        if getattr(model, "task_name", None) != "generation":
            label += f"; {model.name} does not generate text: 400"
        for prefix, params, of in (("/v2/models/{name}", [name], ""),
                                   ("/v2/models/{name}/versions/{version}", [name, version],
                                    " (the deployed version)")):
            paths[f"{prefix}/{suffix}"] = {"post": op(
                label + of, "model", {"200": {"description": "the generated text", "content": content},
                                      **errors(400, 404, 405, 413, 415, 503)}, params, requestBody=gen_body)}
    return paths
