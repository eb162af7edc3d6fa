"""V2 (Open Inference Protocol) tensor codec: JSON tensors and binary-extension bytes ↔ numpy.

Numeric tensors go through numpy in one call each way (``np.asarray`` on the JSON list,
``ndarray.tolist()`` back), never a Python loop per element. BYTES is the one datatype
that is Python objects by nature: strings in JSON, and in the binary extension each element
is a 4-byte little-endian length followed by its bytes, exactly as Triton does.

Rules a client can rely on:

* ``data`` may be flat (row-major) or nested; only its element count must match ``shape``.
* BOOL takes JSON ``true``/``false``; integer types take integers within the type's range;
  FP16/FP32/FP64 take JSON numbers (integers included). FP16 travels as JSON numbers too.
* BYTES in JSON are strings (UTF-8). An output element that is not valid UTF-8 cannot be
  written as JSON: ask for that output with ``"parameters": {"binary_data": true}``.
* NaN/Inf: the codec passes them through (``json`` reads ``NaN``/``Infinity``, the binary
  extension carries any IEEE value); whether a model accepts them is decided by
  :meth:`layers.model.Model.infer` (rejected unless the request allows them).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import Any

import numpy as np

from layers import datatypes
from layers.datatypes import V2_DATATYPES
from layers.errors import BadRequest
from layers.manifest import TensorSpec

_NUMPY = datatypes.TO_NUMPY
_V2 = datatypes.FROM_NUMPY
_BYTES_LEN = np.dtype("<u4")


def to_numpy_dtype(datatype: str) -> np.dtype:
    """numpy dtype for a V2 datatype (BYTES → ``object``, holding ``str``/``bytes``)."""
    try:
        return _NUMPY[datatype]
    except (KeyError, TypeError):
        raise BadRequest(
            f"datatype {datatype!r} is not a V2 datatype; use one of {', '.join(V2_DATATYPES)}."
        ) from None


def to_v2_datatype(np_dtype: Any) -> str:
    """V2 datatype for a numpy dtype; strings/bytes/objects are BYTES."""
    found = _V2.get(np_dtype)  # a native dtype, as every output array has: one dict lookup
    if found is not None:
        return found
    dt = np.dtype(np_dtype)
    if dt.kind in "OSU":
        return "BYTES"
    try:
        return _V2[dt.newbyteorder("=")]
    except KeyError:
        raise BadRequest(f"numpy dtype {dt} has no V2 datatype") from None


def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape)


def check_header(t: Any, spec: TensorSpec | None = None) -> tuple[str, tuple[int, ...], str]:
    """Validate a tensor's ``name``/``shape``/``datatype`` (against ``spec`` when given)."""
    if not isinstance(t, dict):
        raise BadRequest(
            f"each input must be an object with name, shape, datatype and data; got {type(t).__name__}."
        )
    name = t.get("name")
    if not isinstance(name, str):
        raise BadRequest("an input has no \"name\" string; give each input the name the model expects.")
    shape = t.get("shape")
    if not isinstance(shape, list) or not _is_dims(shape):
        raise BadRequest(
            f"input {name!r}: \"shape\" must be a list of non-negative integers (e.g. [1, 4]); got {shape!r}."
        )
    datatype = t.get("datatype")
    if spec is not None:
        if datatype != spec.datatype:
            raise BadRequest(
                f"input {name!r} has datatype {datatype!r} but the model expects {spec.datatype}; "
                f"send it as {spec.datatype}."
            )
        check_shape(name, tuple(shape), spec)
    else:
        to_numpy_dtype(datatype)
    return name, tuple(shape), datatype


def _is_dims(shape: list) -> bool:
    """Every element a non-negative integer (``bool`` is not one); a loop, not ``all()`` over a
    generator: this runs on every request."""
    for d in shape:
        if type(d) is not int and (isinstance(d, bool) or not isinstance(d, int)):
            return False
        if d < 0:
            return False
    return True


def check_shape(name: str, shape: tuple[int, ...], spec: TensorSpec) -> None:
    """Rank and fixed dims of ``shape`` against ``spec`` (-1 in the spec is free)."""
    if len(shape) != len(spec.shape):
        raise BadRequest(
            f"input {name!r} has shape {list(shape)} (rank {len(shape)}) but the model expects rank "
            f"{len(spec.shape)}, shape {list(spec.shape)} (-1 = any size); reshape it."
        )
    for i, (got, want) in enumerate(zip(shape, spec.shape, strict=True)):
        if want >= 0 and got != want:
            raise BadRequest(
                f"input {name!r} has shape {list(shape)} but dimension {i} must be {want} "
                f"(model shape {list(spec.shape)}, -1 = any size)."
            )


def decode_tensor(t: dict, spec: TensorSpec | None = None) -> np.ndarray:
    """A V2 JSON tensor (``{"name","shape","datatype","data"}``) → numpy array of ``shape``."""
    name, shape, datatype = check_header(t, spec)
    if "data" not in t:
        raise BadRequest(
            f"input {name!r} has no \"data\"; send the values as a JSON list, or as binary with "
            "\"parameters\": {\"binary_data_size\": <bytes>} and the Inference-Header-Content-Length header."
        )
    data = t["data"]
    dtype = to_numpy_dtype(datatype)
    arr = _bytes_from_json(name, data) if datatype == "BYTES" else numeric_from_json(name, data, datatype, dtype)
    return _reshape(name, arr, shape)


def decode_binary(t: dict, raw: bytes | memoryview, spec: TensorSpec | None = None) -> np.ndarray:
    """A V2 tensor whose data came as binary-extension bytes → numpy array (no copy for numerics)."""
    name, shape, datatype = check_header(t, spec)
    if datatype == "BYTES":
        return _reshape(name, _bytes_from_binary(name, raw), shape)
    dtype = to_numpy_dtype(datatype).newbyteorder("<")
    n = element_count(shape)
    if len(raw) != n * dtype.itemsize:
        raise BadRequest(
            f"input {name!r}: binary_data_size is {len(raw)} bytes but shape {list(shape)} of "
            f"{datatype} needs {n * dtype.itemsize} ({n} × {dtype.itemsize}); fix the shape or the data."
        )
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return arr if dtype.isnative else arr.astype(dtype.newbyteorder("="))


def encode_tensor(name: str, arr: np.ndarray) -> dict:
    """numpy array → V2 JSON tensor with flat row-major ``data``."""
    if not isinstance(arr, np.ndarray):
        arr = np.asarray(arr)
    datatype = to_v2_datatype(arr.dtype)
    if datatype == "BYTES":
        data: list = [_as_json_str(name, v) for v in arr.ravel().tolist()]
    else:
        data = arr.ravel().tolist()
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": data}


def encode_binary(arr: np.ndarray) -> tuple[str, bytes]:
    """numpy array → (V2 datatype, binary-extension bytes: little-endian, row-major)."""
    arr = np.asarray(arr)
    datatype = to_v2_datatype(arr.dtype)
    if datatype == "BYTES":
        parts = []
        for v in arr.ravel().tolist():
            b = v.encode("utf-8") if isinstance(v, str) else bytes(v)
            parts += (len(b).to_bytes(4, "little"), b)
        return datatype, b"".join(parts)
    le = arr.dtype.newbyteorder("<")
    return datatype, np.ascontiguousarray(arr, dtype=le).tobytes()


# --- helpers -----------------------------------------------------------------------------


def numeric_from_json(name: str, data: Any, datatype: str, dtype: np.dtype) -> np.ndarray:
    if isinstance(data, bool | int | float):
        data = [data]
    if not isinstance(data, list):
        raise BadRequest(f"input {name!r}: \"data\" must be a JSON list of numbers; got {type(data).__name__}.")
    try:
        arr = _flat_numbers(data)
        if arr is None:
            arr = np.asarray(data)
    except ValueError:
        raise BadRequest(
            f"input {name!r}: \"data\" is a ragged nested list; send a flat row-major list or "
            "equal-length rows."
        ) from None
    kind = arr.dtype.kind
    if arr.size == 0:
        return np.zeros(0, dtype=dtype)
    if dtype.kind in "iu" and kind in "fO":
        # numpy widens ints beyond int64 (UINT64's upper half) mixed with others to float/object:
        # decode those exactly, element by element (the only per-element path, and a rare one).
        arr = _exact_ints(name, datatype, dtype, data)
        kind = arr.dtype.kind
    if datatype == "BOOL":
        if kind != "b":
            raise BadRequest(f"input {name!r} is BOOL: send true/false values, not {_kind_name(kind)}.")
        return arr
    if kind not in "iuf":
        raise BadRequest(f"input {name!r} is {datatype}: send numbers, not {_kind_name(kind)}.")
    if dtype.kind in "iu":
        if kind == "f":
            raise BadRequest(
                f"input {name!r} is {datatype}: send integers; got fractional numbers (or ints "
                "written as floats, e.g. 1.0 → 1)."
            )
        info = np.iinfo(dtype)
        lo, hi = arr.min(), arr.max()
        if lo < info.min or hi > info.max:
            raise BadRequest(
                f"input {name!r}: values [{lo}, {hi}] do not fit {datatype} "
                f"(range [{info.min}, {info.max}])."
            )
    elif kind in "iu" and dtype == np.float16 and np.abs(arr).max() > np.finfo(np.float16).max:
        raise BadRequest(f"input {name!r}: values exceed the FP16 range (±65504).")
    return arr.astype(dtype, copy=False)


def _flat_numbers(data: list) -> np.ndarray | None:
    """A flat list of JSON numbers as the array ``np.asarray`` would make (float64 if the first
    is a float, else int64 for ints), through :mod:`array` (one C loop over the list; numpy's
    type discovery per element took 82 µs for a 32×64 request, this ~15); None where it does
    not apply (nested, strings, bools first, ints beyond int64), for ``np.asarray`` to decide."""
    if not data:
        return None
    code = _ARRAY_CODES.get(type(data[0]))
    if code is None:
        return None
    try:
        return np.frombuffer(array(code, data), _ARRAY_DTYPES[code])
    except (TypeError, OverflowError):  # a later element that is not a number of this kind
        return None


_ARRAY_CODES = {float: "d", int: "q"}
_ARRAY_DTYPES = {"d": np.dtype(np.float64), "q": np.dtype(np.int64)}


def _exact_ints(name: str, datatype: str, dtype: np.dtype, data: list) -> np.ndarray:
    flat = _flatten(data)
    if not all(type(v) is int for v in flat):
        raise BadRequest(
            f"input {name!r} is {datatype}: send integers; got fractional numbers (or ints "
            "written as floats, e.g. 1.0 → 1)."
        )
    try:
        return np.asarray(flat, dtype=dtype)
    except OverflowError:
        info = np.iinfo(dtype)
        raise BadRequest(
            f"input {name!r}: values [{min(flat)}, {max(flat)}] do not fit {datatype} "
            f"(range [{info.min}, {info.max}])."
        ) from None


def _kind_name(kind: str) -> str:
    return {"b": "true/false", "U": "strings", "S": "strings", "O": "mixed values or objects",
            "f": "fractional numbers", "i": "integers", "u": "integers"}.get(kind, "other values")


def _bytes_from_json(name: str, data: Any) -> np.ndarray:
    if isinstance(data, str):
        data = [data]
    if not isinstance(data, list):
        raise BadRequest(f"input {name!r} is BYTES: \"data\" must be a JSON list of strings.")
    flat = _flatten(data)
    if not all(isinstance(v, str) for v in flat):
        raise BadRequest(f"input {name!r} is BYTES: every element must be a JSON string.")
    arr = np.empty(len(flat), dtype=object)
    arr[:] = flat
    return arr


def _flatten(data: list) -> list:
    if not any(isinstance(v, list) for v in data):
        return data
    out: list = []
    for v in data:
        out.extend(_flatten(v) if isinstance(v, list) else (v,))
    return out


def _bytes_from_binary(name: str, raw: bytes | memoryview) -> np.ndarray:
    mv, out, pos = memoryview(raw), [], 0
    while pos < len(mv):
        if pos + 4 > len(mv):
            raise BadRequest(
                f"input {name!r}: BYTES binary data ends inside a 4-byte length prefix; each element "
                "must be <uint32 little-endian length><bytes>."
            )
        n = int.from_bytes(mv[pos:pos + 4], "little")
        pos += 4
        if pos + n > len(mv):
            raise BadRequest(f"input {name!r}: a BYTES element claims {n} bytes but the data ends first.")
        b = bytes(mv[pos:pos + n])
        pos += n
        try:
            out.append(b.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(b)
    arr = np.empty(len(out), dtype=object)
    arr[:] = out
    return arr


def _as_json_str(name: str, v: Any) -> str:
    if isinstance(v, str):
        return v
    try:
        return bytes(v).decode("utf-8")
    except (UnicodeDecodeError, TypeError):
        raise BadRequest(
            f"output {name!r} holds bytes that are not UTF-8 text and cannot be sent as JSON; "
            f"request it with {{\"name\": \"{name}\", \"parameters\": {{\"binary_data\": true}}}}."
        ) from None


def _reshape(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    n = element_count(shape)
    if arr.size != n:
        raise BadRequest(
            f"input {name!r} has {arr.size} elements but shape {list(shape)} needs {n}; "
            "make data and shape agree."
        )
    return arr.reshape(shape)
