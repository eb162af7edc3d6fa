"""Open Inference Protocol (KServe V2) requests and responses, independent of transport.

The Lambda API function, the SageMaker server and the batch function all go through
:func:`infer` / :func:`infer_request`, so a request means the same thing everywhere.

Binary tensor extension (as Triton/KServe, what ``tritonclient.http`` sends by default):
the HTTP body is ``<JSON header><raw tensor bytes...>`` and the request header
``Inference-Header-Content-Length`` gives the JSON header's length. Inputs whose
``parameters.binary_data_size`` is set take that many bytes from what follows the header,
in input order. Outputs asked for with ``parameters.binary_data: true`` (or every output,
with the request parameter ``binary_data_output: true``) come back the same way: raw
little-endian bytes after the JSON header, each announced by ``parameters.binary_data_size``.

Request parameters understood: ``binary_data_output`` (above) and ``allow_nonfinite``
(accept NaN/Inf in floating-point inputs; rejected by default). A model that takes per-request
settings (a generative model: ``max_tokens``, ``temperature``, …) reads the others through its
``request_options`` and refuses what it does not know; for other models they are ignored, as V2
allows; per-output ``classification`` (a Triton extension) is refused rather than ignored,
because ignoring it would return a different tensor than the client asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from layers import jsonfast
from layers.codec import decode_binary, decode_tensor, encode_binary, encode_tensor
from layers.datatypes import HEADER_LENGTH
from layers.errors import BadRequest
from layers.model import Model

__all__ = ["HEADER_LENGTH", "InferResult", "dump_json", "infer", "infer_request", "join_body",
           "model_metadata", "parse_request", "server_metadata", "split_body"]

PLATFORM = "onnxruntime_onnx"


@dataclass
class InferResult:
    """A V2 response: the JSON part and the binary-extension chunks that follow it, in order."""

    response: dict[str, Any]
    binary: list[bytes] = field(default_factory=list)
    batch_size: int = 0


def infer_request(model: Model, request: Any) -> dict[str, Any]:
    """A whole V2 JSON request → V2 response dict (every output as JSON ``data``)."""
    return infer(model, request, binary=b"", json_only=True).response


@dataclass
class V2Request:
    """One parsed V2 inference request, every input decoded and validated (names, datatypes,
    shapes, values): what every transport hands the model."""

    id: str | None
    arrays: dict[str, np.ndarray]
    outputs: list[str] | None
    """Output names asked for, or None for every output."""
    binary_outputs: set[str]
    allow_nonfinite: bool
    options: dict[str, Any] | None = None
    """Keyword arguments of the model's ``run`` from the request's other parameters (a
    generative model's settings), or None."""

    @property
    def rows(self) -> int:
        first = next(iter(self.arrays.values()))
        return int(first.shape[0]) if first.ndim else 1


def parse_request(model: Model, request: Any, binary: bytes | memoryview = b"") -> V2Request:
    """A V2 request (JSON header + binary-extension bytes) → :class:`V2Request`, or the
    :class:`BadRequest` saying what is wrong. The one parser of the HTTP API, the SageMaker
    server and batch ``.jsonl`` lines, so a request means (and fails) the same everywhere."""
    if not isinstance(request, dict):
        raise BadRequest(
            f"the request body must be a JSON object with \"inputs\"; got {type(request).__name__}."
        )
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest(f"\"id\" must be a string if given; got {request_id!r}.")
    params = _params(request)
    allow_nonfinite = params.get("allow_nonfinite") is True
    arrays = _decode_inputs(model, request.get("inputs"), binary, allow_nonfinite)
    outputs, binary_names = _requested_outputs(model, request.get("outputs"), params)
    options = None
    if params and (read := getattr(model, "request_options", None)) is not None:
        options = read({k: v for k, v in params.items() if k not in _FLAGS})
    return V2Request(request_id, arrays, outputs, binary_names, allow_nonfinite, options)


def infer(model: Model, request: Any, binary: bytes | memoryview = b"", *,
          json_only: bool = False) -> InferResult:
    """A V2 request (JSON header + binary-extension bytes) → :class:`InferResult`."""
    req = parse_request(model, request, binary)
    # the decoder validated every input (no second pass)
    results = (model.run(req.arrays, req.outputs) if req.options is None
               else model.run(req.arrays, req.outputs, **req.options))

    response: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if req.id is not None:
        response["id"] = req.id
    out_tensors, chunks = [], []
    for name, arr in results.items():
        if name in req.binary_outputs and not json_only:
            datatype, raw = encode_binary(arr)
            out_tensors.append({"name": name, "shape": list(arr.shape), "datatype": datatype,
                                "parameters": {"binary_data_size": len(raw)}})
            chunks.append(raw)
        else:
            out_tensors.append(encode_tensor(name, arr))
    response["outputs"] = out_tensors
    return InferResult(response, chunks, req.rows)


def _params(obj: dict, kind: str = "", name: str = "") -> dict[str, Any]:
    """``obj``'s ``parameters`` (an empty dict when absent), checked; errors name ``kind name``
    (e.g. ``input 'x'``), or the request when ``kind`` is empty: the text is only made for an
    error, since this runs for every tensor of every request."""
    params = obj.get("parameters")
    if params is None:
        return _NO_PARAMS
    where = f"{kind} {name!r}" if kind else "the request"
    if not isinstance(params, dict):
        raise BadRequest(f"\"parameters\" of {where} must be a JSON object; got {params!r}.")
    for flag in _FLAGS:  # a non-boolean would silently read as false
        if flag in params and not isinstance(params[flag], bool):
            raise BadRequest(f"\"parameters\".{flag} of {where} must be true or false; got {params[flag]!r}.")
    return params


_NO_PARAMS: dict[str, Any] = {}  # read only


#: boolean request/tensor parameters the protocol reads
_FLAGS = ("binary_data", "binary_data_output", "allow_nonfinite")


def _decode_inputs(model: Model, inputs: Any, binary: bytes | memoryview,
                   allow_nonfinite: bool) -> dict[str, np.ndarray]:
    """Decode and validate every input once: name, datatype and shape against the signature
    while decoding, then the value checks (:meth:`Model.check_value`)."""
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest(
            "the request needs \"inputs\": a non-empty list of {name, shape, datatype, data}; "
            f"model {model.name!r} takes {[s.name for s in model.inputs]}."
        )
    specs = {s.name: s for s in model.inputs}
    arrays: dict[str, np.ndarray] = {}
    mv, offset = memoryview(binary), 0
    for t in inputs:
        name = t.get("name") if isinstance(t, dict) else None
        if not isinstance(name, str):
            decode_tensor(t)  # raises the BadRequest that says what is wrong with it
        if name in arrays:
            raise BadRequest(f"input {name!r} appears more than once; send each input once.")
        if name not in specs:
            raise BadRequest(f"unknown input {name!r}; model {model.name!r} takes {list(specs)}.")
        spec = specs[name]
        size = _params(t, "input", name).get("binary_data_size")
        if size is None:
            arrays[name] = model.check_value(spec, decode_tensor(t, spec), allow_nonfinite=allow_nonfinite)
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest(f"input {name!r}: binary_data_size must be a non-negative integer.")
        if offset + size > len(mv):
            raise BadRequest(
                f"input {name!r} announces {size} binary bytes but only {len(mv) - offset} follow the "
                f"JSON header; send the tensor bytes after the header and set {HEADER_LENGTH}."
            )
        arrays[name] = model.check_value(spec, decode_binary(t, mv[offset:offset + size], spec),
                                         allow_nonfinite=allow_nonfinite)
        offset += size
    if offset != len(mv):
        raise BadRequest(
            f"{len(mv) - offset} bytes follow the JSON header that no input claims; set "
            "parameters.binary_data_size on each binary input, or check "
            f"{HEADER_LENGTH}."
        )
    missing = [n for n in specs if n not in arrays]
    if missing:
        raise BadRequest(f"missing input(s) {missing}; model {model.name!r} takes {list(specs)}.")
    return arrays


def _requested_outputs(model: Model, outputs: Any, params: dict) -> tuple[list[str] | None, set[str]]:
    """(names to compute or None for all, names to send as binary)."""
    default_binary = params.get("binary_data_output") is True
    if outputs is None:
        all_names = [s.name for s in model.outputs]
        return None, set(all_names) if default_binary else set()
    if not isinstance(outputs, list) or not outputs:
        raise BadRequest("\"outputs\" must be a list of {\"name\": ...} with at least one entry; "
                         "leave it out to get every output.")
    names, binary = [], set()
    for o in outputs:
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise BadRequest("each entry of \"outputs\" must be an object with a \"name\" string.")
        p = _params(o, "output", o["name"])
        if p.get("classification"):
            raise BadRequest(
                f"output {o['name']!r}: the classification extension is not supported; request the "
                "raw tensor and take the top-k on the client."
            )
        names.append(o["name"])
        if p.get("binary_data", default_binary) is True:
            binary.add(o["name"])
    return names, binary


# --- HTTP body framing -----------------------------------------------------------------------


def split_body(body: bytes | str, header_length: str | int | None) -> tuple[Any, memoryview]:
    """HTTP body → (parsed JSON header, binary bytes after it). A ``str`` body (API Gateway's
    text bodies) is parsed as is, without an encode/decode round trip."""
    if header_length is None or header_length == "":
        return _json(body), memoryview(b"")
    mv = memoryview(body.encode("utf-8") if isinstance(body, str) else body)
    try:
        n = int(header_length)
    except (TypeError, ValueError):
        n = -1
    if n < 0 or n > len(mv):
        raise BadRequest(
            f"{HEADER_LENGTH} is {header_length!r} but the body has {len(mv)} bytes; it must be the "
            "byte length of the JSON header at the start of the body."
        )
    return _json(mv[:n]), mv[n:]


def join_body(result: InferResult) -> tuple[bytes, int | None]:
    """:class:`InferResult` → (HTTP body, value for the response's header-length header or None)."""
    head = dump_json(result.response).encode()
    if not result.binary:
        return head, None
    return b"".join([head, *result.binary]), len(head)


def dump_json(obj: Any) -> str:
    """Compact JSON text (UTF-8; see :mod:`layers.jsonfast`)."""
    return jsonfast.dumps(obj)


def _json(data: bytes | str | memoryview) -> Any:
    try:
        return jsonfast.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(
            f"the body is not valid JSON ({exc}); send a V2 request object, e.g. "
            '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}.'
        ) from None


# --- metadata --------------------------------------------------------------------------------


def model_metadata(model: Model) -> dict[str, Any]:
    """``GET /v2/models/{name}``: name, versions, platform, inputs/outputs (shape -1 = dynamic)."""
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": PLATFORM,
        "inputs": [s.to_dict() for s in model.inputs],
        "outputs": [s.to_dict() for s in model.outputs],
    }


def server_metadata() -> dict[str, Any]:
    """``GET /v2``: what tritonclient's ``get_server_metadata`` reads."""
    return {"name": "modelfn", "version": "2", "extensions": ["binary_tensor_data"]}
