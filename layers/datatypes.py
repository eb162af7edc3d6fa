"""The Open Inference Protocol (V2) datatypes, defined once for the whole project.

Each row names a V2 datatype with its numpy dtype, its size in bytes per element in the
binary tensor extension (BYTES has none: each element is a 4-byte length and its bytes), the
ONNX element type (``TensorProto`` number, so the runtime need not import ``onnx``) and
onnxruntime's type string. The codec, the model loader, the manifest reader, the build
(signature, example inputs, fit report) and the OpenAPI document all read this table;
``tests/unit/test_single_definitions.py`` checks that none keeps its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from layers import names

#: the binary tensor extension's header (defined with the other names, stdlib-only, so the
#: proxy's zip can read it too)
HEADER_LENGTH = names.HEADER_LENGTH
#: the one variable-size datatype (strings/bytes; numpy ``object``)
BYTES = "BYTES"


@dataclass(frozen=True)
class Datatype:
    name: str
    numpy: np.dtype
    itemsize: int  # bytes per element in the binary extension; 0 for BYTES (variable)
    onnx: int  # onnx.TensorProto element type
    ort: str  # onnxruntime's type string

    @property
    def is_integer(self) -> bool:
        return self.numpy.kind in "iu"

    @property
    def is_float(self) -> bool:
        return self.numpy.kind == "f"


def _row(name: str, dtype, onnx: int, ort: str) -> Datatype:
    dt = np.dtype(dtype)
    return Datatype(name, dt, 0 if name == BYTES else dt.itemsize, onnx, ort)


#: in the order the V2 specification lists them
TABLE: tuple[Datatype, ...] = (
    _row("BOOL", np.bool_, 9, "tensor(bool)"),
    _row("UINT8", np.uint8, 2, "tensor(uint8)"),
    _row("UINT16", np.uint16, 4, "tensor(uint16)"),
    _row("UINT32", np.uint32, 12, "tensor(uint32)"),
    _row("UINT64", np.uint64, 13, "tensor(uint64)"),
    _row("INT8", np.int8, 3, "tensor(int8)"),
    _row("INT16", np.int16, 5, "tensor(int16)"),
    _row("INT32", np.int32, 6, "tensor(int32)"),
    _row("INT64", np.int64, 7, "tensor(int64)"),
    _row("FP16", np.float16, 10, "tensor(float16)"),
    _row("FP32", np.float32, 1, "tensor(float)"),
    _row("FP64", np.float64, 11, "tensor(double)"),
    _row(BYTES, object, 8, "tensor(string)"),
)

BY_NAME: dict[str, Datatype] = {d.name: d for d in TABLE}
#: every V2 datatype name, in the specification's order
V2_DATATYPES: tuple[str, ...] = tuple(BY_NAME)
#: V2 name → numpy dtype (BYTES → ``object``)
TO_NUMPY: dict[str, np.dtype] = {d.name: d.numpy for d in TABLE}
#: numpy dtype → V2 name, for the fixed-size datatypes
FROM_NUMPY: dict[np.dtype, str] = {d.numpy: d.name for d in TABLE if d.name != BYTES}
#: onnxruntime type string → V2 name
FROM_ORT: dict[str, str] = {d.ort: d.name for d in TABLE}
#: ONNX ``TensorProto`` element type → V2 name
FROM_ONNX: dict[int, str] = {d.onnx: d.name for d in TABLE}
#: bytes per element in the binary extension (BYTES: 0, variable)
ITEMSIZE: dict[str, int] = {d.name: d.itemsize for d in TABLE}
