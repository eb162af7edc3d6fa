"""The V2 signature (names, datatypes, shapes) read from an ONNX graph.

The runtime validates every request against this signature, so it is taken from the graph
that ships, never re-typed by hand. Symbolic or unknown dims become -1 (dynamic).
"""

from __future__ import annotations

from typing import Any

import onnx

from layers import datatypes

#: ONNX element type → Open Inference Protocol datatype.
ONNX_TO_V2 = datatypes.FROM_ONNX


class SignatureError(ValueError):
    """The graph has an input or output the runtime cannot serve as a V2 tensor."""


def _tensor(value: onnx.ValueInfoProto, role: str) -> dict[str, Any]:
    if not value.type.HasField("tensor_type"):
        kind = value.type.WhichOneof("value")
        raise SignatureError(
            f"{role} {value.name!r} is a {kind}, not a tensor; the V2 protocol serves tensors "
            "only. Make the model return tensors (sklearn classifiers: convert with "
            "zipmap disabled; torch: return a tensor or a tuple of tensors)"
        )
    tt = value.type.tensor_type
    if tt.elem_type not in ONNX_TO_V2:
        name = onnx.TensorProto.DataType.Name(tt.elem_type)
        raise SignatureError(f"{role} {value.name!r} has element type {name}, which has no "
                             "V2 datatype; cast it to a numeric type in the model")
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
    return {"name": value.name, "datatype": ONNX_TO_V2[tt.elem_type], "shape": shape}


def signature(model: onnx.ModelProto) -> dict[str, list[dict[str, Any]]]:
    """``{"inputs": [...], "outputs": [...]}`` for the graph; initializers are not inputs."""
    inits = {i.name for i in model.graph.initializer}
    return {
        "inputs": [_tensor(v, "input") for v in model.graph.input if v.name not in inits],
        "outputs": [_tensor(v, "output") for v in model.graph.output],
    }


def dim_hints(model: onnx.ModelProto) -> dict[str, list[int | str | None]]:
    """Per graph input (initializers excluded), each dim as the graph declares it: a fixed
    size (int), a symbolic name (``dim_param``, str) or None (unknown). The build probes a
    model that came without example data with sizes chosen from these hints."""
    inits = {i.name for i in model.graph.initializer}
    hints: dict[str, list[int | str | None]] = {}
    for value in model.graph.input:
        if value.name in inits or not value.type.HasField("tensor_type"):
            continue
        hints[value.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                             for d in value.type.tensor_type.shape.dim]
    return hints


def dynamic_batch_lost(model: onnx.ModelProto) -> list[str]:
    """Inputs whose first (batch) dim is a fixed size instead of symbolic; [] when all are dynamic."""
    return [f"{name} (batch fixed at {dims[0]})" for name, dims in dim_hints(model).items()
            if dims and isinstance(dims[0], int)]
