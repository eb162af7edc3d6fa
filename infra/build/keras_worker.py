"""Keras/TensorFlow → ONNX, run in its own process by :mod:`infra.build.keras`.

``python -m infra.build.keras_worker SOURCE EXAMPLE.npz WORK_DIR`` writes into WORK_DIR:
``model.onnx`` (tf2onnx, the converter Keras' own ``export(format="onnx")`` uses, on the
model's serving function), ``reference.npz`` (the framework's own predictions on the example
batch, keyed by ONNX output name) and ``result.json`` (``{"ok": true, "notes": {…}}`` or
``{"ok": false, "error": "…"}``). TensorFlow is imported only here, so the build and the
local stack never load it (nor its threads, memory and protobuf runtime) in their process.

Sources: a Keras 3 ``.keras`` file, a legacy HDF5 ``.h5``/``.hdf5`` holding the architecture
(``model.save('m.h5')``), or a TensorFlow SavedModel directory (its ``serving_default``
signature, else ``serve``, else its only one). The batch axis becomes dynamic whatever the
model declares; channels-last inputs stay as declared (no transposition is requested).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17
H5_SUFFIXES = (".h5", ".hdf5")
_KEEP: list[Any] = []


class KerasSourceError(ValueError):
    """The source cannot be converted; the message says how to fix it."""


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["KERAS_BACKEND"] = "tensorflow"  # tf2onnx converts TensorFlow graphs
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # conversion is CPU work


def check_h5_architecture(path: Path) -> None:
    """A ``save_weights`` file has no ``model_config``: nothing to rebuild the model from."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            has_config = "model_config" in f.attrs
    except OSError as exc:
        raise KerasSourceError(f"{path} is not a readable HDF5 file ({exc}); save the model with "
                               "model.save('model.keras') or model.save('model.h5')") from exc
    if not has_config:
        raise KerasSourceError(
            f"{path} holds weights only (no model_config: it was written by save_weights), so the "
            "architecture needed to convert it is missing; save the whole model with "
            "model.save('model.keras') (or model.save('model.h5') for legacy HDF5), or export a "
            "SavedModel directory, and point source: at that")


def _signature_from_keras(model) -> tuple[list[str], list[Any]]:
    import tensorflow as tf

    inputs = list(model.inputs)
    if not inputs:
        raise KerasSourceError("the Keras model has no defined inputs (a subclassed model that was "
                               "never built); build it with keras.Input(...) or call it once before saving")
    names = [_clean(getattr(t, "name", None) or f"input_{i}") for i, t in enumerate(inputs)]
    specs = [tf.TensorSpec((None, *tuple(t.shape)[1:]), t.dtype, name=n) for t, n in zip(inputs, names, strict=True)]
    return names, specs


def _clean(name: str) -> str:
    return name.split(":")[0].replace("/", "_")


def _output_names(model, count: int) -> list[str]:
    """``output_names`` (a functional model's layer names), else the output layers' names."""
    names = [str(n) for n in (getattr(model, "output_names", None) or [])]
    if len(names) != count or all(re.fullmatch(r"output_\d+", n) for n in names):
        history = [getattr(getattr(t, "_keras_history", None), "operation", None) for t in model.outputs or []]
        names = [getattr(op, "name", "") for op in history]
    names = [_clean(n) for n in names]
    if len(names) != count or len(set(names)) != count or not all(names):
        names = [f"output_{i}" for i in range(count)]
    return names


def _from_keras(path: Path, example: dict[str, np.ndarray]):
    import keras
    import tensorflow as tf

    if path.suffix in H5_SUFFIXES:
        check_h5_architecture(path)
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise KerasSourceError(f"keras.models.load_model({path.name}) failed ({type(exc).__name__}: {exc}); "
                               "custom layers must be registered with @keras.saving.register_keras_serializable "
                               "and importable, or save a SavedModel directory with model.export(dir)") from exc
    names, specs = _signature_from_keras(model)
    batch = _ordered(example, names, [s.dtype.as_numpy_dtype for s in specs])
    reference = model.predict(batch if len(batch) > 1 else batch[0], verbose=0)
    reference = list(reference.values()) if isinstance(reference, dict) else (
        list(reference) if isinstance(reference, list | tuple) else [reference])
    out_names = _output_names(model, len(reference))

    @tf.function(input_signature=specs)
    def serve(*args):
        result = model(list(args) if len(args) > 1 else args[0], training=False)
        result = list(result.values()) if isinstance(result, dict) else (
            list(result) if isinstance(result, list | tuple) else [result])
        return dict(zip(out_names, result, strict=True))

    head = _head(model)
    return serve, specs, out_names, reference, {"format": "keras (.keras)" if path.suffix == ".keras"
                                                else "keras legacy HDF5", "head": head}


def _head(model) -> str | None:
    """The last layer's activation name (``softmax`` heads already give probabilities)."""
    layers = getattr(model, "layers", None) or []
    act = getattr(layers[-1], "activation", None) if layers else None
    return getattr(act, "__name__", None) if act is not None else None


def _from_saved_model(path: Path, example: dict[str, np.ndarray]):
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise KerasSourceError(f"tf.saved_model.load({path}) failed ({type(exc).__name__}: {exc})") from exc
    signatures = dict(loaded.signatures)
    key = next((k for k in ("serving_default", "serve") if k in signatures), None)
    if key is None and len(signatures) == 1:
        key = next(iter(signatures))
    if key is None:
        raise KerasSourceError(f"SavedModel {path} has signatures {sorted(signatures) or 'none'}; it needs "
                               "'serving_default' (Keras: model.export(dir); TF: tf.saved_model.save(..., "
                               "signatures=...))")
    fn = signatures[key]
    inputs = fn.structured_input_signature[1]
    names = list(inputs)
    specs = [tf.TensorSpec((None, *tuple(inputs[n].shape)[1:]), inputs[n].dtype, name=_clean(n)) for n in names]
    out_names = sorted(fn.structured_outputs)
    batch = _ordered(example, [s.name for s in specs], [s.dtype.as_numpy_dtype for s in specs])
    got = fn(**{n: tf.constant(a) for n, a in zip(names, batch, strict=True)})
    reference = [got[n].numpy() for n in out_names]

    _KEEP.append(loaded)  # the signature holds its variables weakly

    @tf.function(input_signature=specs)
    def serve(*args):
        result = fn(**dict(zip(names, args, strict=True)))
        return {_clean(n): result[n] for n in out_names}

    return serve, specs, [_clean(n) for n in out_names], reference, {"format": f"SavedModel ({key})"}


def _ordered(example: dict[str, np.ndarray], names: list[str], dtypes: list[Any]) -> list[np.ndarray]:
    """The example's arrays in the model's input order (a single input takes any one key)."""
    if len(names) == 1 and len(example) == 1:
        arrays = list(example.values())
    else:
        missing = [n for n in names if n not in example]
        if missing:
            raise KerasSourceError(f"example_input has {sorted(example)} but the model's inputs are {names}; "
                                   "save one array per input, keyed by input name")
        arrays = [example[n] for n in names]
    return [np.asarray(a).astype(d, copy=False) for a, d in zip(arrays, dtypes, strict=True)]


def convert(source: Path, example: dict[str, np.ndarray], work: Path) -> dict[str, Any]:
    _quiet_tf()
    started = time.perf_counter()
    import tensorflow as tf
    import tf2onnx

    imported = time.perf_counter()
    if source.is_dir():
        serve, specs, out_names, reference, notes = _from_saved_model(source, example)
    else:
        serve, specs, out_names, reference, notes = _from_keras(source, example)
    try:
        model_proto, _ = tf2onnx.convert.from_function(serve, input_signature=specs, opset=OPSET,
                                                       output_path=str(work / "model.onnx"))
    except Exception as exc:
        raise KerasSourceError(f"tf2onnx could not convert the model ({type(exc).__name__}: {exc}); "
                               "an op without an ONNX equivalent needs replacing, or export model.onnx yourself") from exc
    graph_outputs = [o.name for o in model_proto.graph.output]
    if sorted(graph_outputs) != sorted(out_names):  # tf2onnx names outputs after the dict's keys
        raise KerasSourceError(f"the converted graph's outputs {graph_outputs} do not match the model's {out_names}")
    np.savez(work / "reference.npz", **{n: np.asarray(r) for n, r in zip(out_names, reference, strict=True)})
    import keras

    notes.update({"converter": f"tf2onnx {tf2onnx.__version__} (TensorFlow {tf.__version__}, Keras {keras.__version__})",
                  "opset": str(OPSET), "import_s": f"{imported - started:.1f}",
                  "convert_s": f"{time.perf_counter() - imported:.1f}"})
    return {k: v for k, v in notes.items() if v is not None}


def main(argv: list[str]) -> int:
    source, example_path, work = Path(argv[0]), Path(argv[1]), Path(argv[2])
    try:
        with np.load(example_path) as z:
            example = {k: z[k] for k in z.files}
        result = {"ok": True, "notes": convert(source, example, work)}
    except KerasSourceError as exc:
        result = {"ok": False, "error": str(exc)}
    except Exception as exc:
        traceback.print_exc()
        result = {"ok": False, "error": f"converting {source.name} failed ({type(exc).__name__}: {exc})"}
    (work / "result.json").write_text(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
