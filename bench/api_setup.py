"""What the API benchmarks share (``bench/bench_api.py``, ``bench/api_pieces.py``,
``bench/bench_coldstart.py``, …): small models built with ``onnx.helper``, the handler loaded
as Lambda loads it, HTTP API 2.0 events, and paired timing. Kept apart so the benchmark
scripts import it rather than each other.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.report import percentile_ms

HANDLER = "functions.api.handler"


# --- models ------------------------------------------------------------------------------------


def build_mlp(path: Path, in_features: int, hidden: list[int], out_features: int, seed: int = 0) -> Path:
    """Gemm+Relu layers, input ``x`` [N, in_features] → ``y`` [N, out_features]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, prev, width = [], [], "x", in_features
    for i, h in enumerate([*hidden, out_features]):
        w = (rng.standard_normal((width, h)) / np.sqrt(width)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(np.zeros(h, np.float32), f"B{i}")]
        out = "y" if i == len(hidden) else f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"W{i}", f"B{i}"], [out if i == len(hidden) else f"g{i}"]))
        if i < len(hidden):
            nodes.append(helper.make_node("Relu", [f"g{i}"], [out]))
        prev, width = out, h
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", in_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out_features])], initializer=inits)
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path,
                 [{"name": "x", "datatype": "FP32", "shape": [-1, in_features]}],
                 [{"name": "y", "datatype": "FP32", "shape": [-1, out_features]}])


def build_image_head(path: Path) -> Path:
    """[N, 3, 224, 224] → global average pool → Gemm → softmax [N, 10]: cheap, image-sized input."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 10)).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(10, np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["p"]),
         helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "W", "B"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probs"], axis=1)],
        "image_head", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])], initializer=[w, b])
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path,
                 [{"name": "image", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
                 [{"name": "probs", "datatype": "FP32", "shape": [-1, 10]}])


def _save(model, model_dir: Path, inputs: list[dict], outputs: list[dict]) -> Path:
    import onnx

    from tests.conftest import write_manifest

    model.ir_version = 9
    model_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(model, model_dir / "model.onnx")
    return write_manifest(model_dir, model_dir.name, inputs, outputs)


# --- the handler, as Lambda calls it -----------------------------------------------------------


def load_handler(model_dir: Path, sink):
    from layers.model import reset_model

    os.environ["MODEL_DIR"] = str(model_dir)
    reset_model()
    sys.modules.pop(HANDLER, None)
    with contextlib.redirect_stdout(sink):
        return importlib.import_module(HANDLER)


def http_event(model: str, body: bytes, header_length: int | None = None) -> dict:
    path = f"/v2/models/{model}/infer"
    headers = {"content-type": "application/json" if header_length is None else "application/octet-stream"}
    if header_length is not None:
        headers["inference-header-content-length"] = str(header_length)
        text, b64 = base64.b64encode(body).decode(), True
    else:
        text, b64 = body.decode(), False
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": headers, "body": text, "isBase64Encoded": b64,
            "requestContext": {"http": {"method": "POST", "path": path, "protocol": "HTTP/1.1",
                                        "sourceIp": "127.0.0.1", "userAgent": "bench"},
                               "requestId": "bench", "routeKey": "$default", "stage": "$default"}}


def json_body(name: str, x: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.ravel().tolist()}]}).encode()


def binary_body(name: str, x: np.ndarray) -> tuple[bytes, int]:
    header = json.dumps({"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return header + x.astype("<f4").tobytes(), len(header)


class Ctx:
    function_name = "bench"
    memory_limit_in_mb = 1769
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"


CPU_TIMES: dict[str, list[float]] = {}
"""Per variant of the last :func:`paired` call: this thread's CPU seconds per call."""


def paired(fns: dict, *, warmup: int, repeat: int) -> dict[str, list[float]]:
    """Wall seconds per call of each function, calls interleaved round-robin so that load
    changes on a shared machine hit every variant alike (their ratios stay meaningful).

    Also records the calling thread's CPU time per call in :data:`CPU_TIMES`: on a loaded
    machine wall time includes waiting for a CPU, thread CPU time does not, so it estimates
    what an unloaded CPU (a Lambda vCPU) would take for single-threaded Python work.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    CPU_TIMES.clear()
    CPU_TIMES.update({k: [] for k in fns})
    clock, cpu = time.perf_counter, time.thread_time
    for _ in range(repeat):
        for k, fn in fns.items():
            c0, t0 = cpu(), clock()
            fn()
            out[k].append(clock() - t0)
            CPU_TIMES[k].append(cpu() - c0)
    return out


def p50_us(samples: list[float]) -> float:
    return percentile_ms(samples, 50) * 1000.0


def blocks(fns: dict, *, rounds: int, block: int) -> dict[str, list[float]]:
    """Wall seconds per call, variants alternating in blocks of ``block`` calls for ``rounds``
    rounds: load drift hits all alike, and a variant's leftover thread activity (spinning)
    only touches the first calls of the next block instead of every call."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    clock = time.perf_counter
    for _ in range(rounds):
        for k, fn in fns.items():
            fn()  # warm after the switch
            for _ in range(block):
                t0 = clock()
                fn()
                out[k].append(clock() - t0)
    return out
