"""Any catalog source → one checked fp32 ONNX file, with a dynamic batch axis.

* ``.onnx``: checked with ``onnx.checker`` and upgraded to :data:`MIN_OPSET` when older
  (int8 per-channel QDQ needs opset 13).
* sklearn ``.joblib``/``.pkl``: skl2onnx with the example input's name, dtype and feature
  shape; classifiers get ``zipmap: False`` so probabilities are a tensor, not a map.
* ``hf:<dir>``: a saved Hugging Face model directory, see :mod:`infra.build.hf`.
* Keras ``.keras``, legacy ``.h5`` with architecture, a TensorFlow SavedModel directory:
  tf2onnx in a child process, checked against the framework's predictions, see
  :mod:`infra.build.keras`.
* torch ``.pt``: a whole ``nn.Module`` saved with ``torch.save`` (what ``modelfn train``
  makes of a returned module), exported like a factory's module.
* torch ``"pkg.module:factory"``: the factory (imported with the catalog's directory on
  ``sys.path``) returns an ``nn.Module``; exported with ``torch.onnx.export``'s dynamo
  exporter (the supported one in torch 2.x, deterministic byte for byte), the legacy
  TorchScript exporter only when dynamo cannot trace the module.
"""

from __future__ import annotations

import importlib
import io
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import version_converter

from infra.build.data import read_arrays
from infra.build.signature import dynamic_batch_lost, signature
from infra.build.torch_export import TORCH_OPSET, quiet, strip_trace_metadata
from infra.catalog import ModelSpec

MIN_OPSET = 13
#: rows torch exports trace with: torch.export specializes a dim of size 1 to a constant
EXPORT_MIN_ROWS = 2
SKLEARN_OPSET = 17


class ConversionError(ValueError):
    """The source cannot become a servable ONNX model; the message says how to fix it."""


def convert(spec: ModelSpec, root: Path, out: Path) -> dict[str, str]:
    """Write the fp32 ONNX for ``spec`` to ``out``; return notes (e.g. which exporter ran)."""
    kind = spec.source_kind
    if kind == "onnx":
        model, notes = _from_onnx(Path(spec.source))
    elif kind == "sklearn":
        model, notes = _from_sklearn(Path(spec.source), _example(spec))
    elif kind == "hf":
        from infra.build.hf import HfError, export
        from infra.tasks.build import hf_task
        from infra.tasks.detect import TaskError

        try:
            task = hf_task(spec)
            model, notes = export(spec.source_path, task)
            notes["task"] = task.task
        except (HfError, TaskError) as exc:
            raise ConversionError(f"model {spec.name!r}: {exc}") from exc
    elif kind == "keras":
        from infra.build.keras import KerasError
        from infra.build.keras import export as keras_export

        try:
            model, notes = keras_export(Path(spec.source), _example(spec),
                                        log=lambda m: print(f"  {spec.name}: {m}", file=sys.stderr, flush=True))
        except KerasError as exc:
            raise ConversionError(f"model {spec.name!r}: {exc}") from exc
    else:
        model, notes = _from_torch(spec.source, root, _example(spec))
    _check(model, spec)
    if kind != "onnx":  # a conversion must keep the batch axis the README promises
        _check_dynamic_batch(model, f"model {spec.name!r}")
    onnx.save(model, out)
    return notes


def _example(spec: ModelSpec) -> dict[str, np.ndarray]:
    if spec.example_input is None:
        raise ConversionError(f"model {spec.name!r}: key 'example_input' is required to convert "
                              f"a {spec.source_kind} model; add an .npz with one example batch")
    arrays = read_arrays(spec.example_input)
    arrays.pop("labels", None)
    if not arrays:
        raise ConversionError(f"model {spec.name!r}: example_input {spec.example_input.name} holds "
                              "no arrays; save one array per model input")
    return arrays


def _check(model: onnx.ModelProto, spec: ModelSpec) -> None:
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ConversionError(f"model {spec.name!r}: the ONNX graph is invalid: {exc}") from exc
    try:
        signature(model)
    except ValueError as exc:
        raise ConversionError(f"model {spec.name!r}: {exc}") from exc


def _check_dynamic_batch(model: onnx.ModelProto, who: str) -> None:
    if lost := dynamic_batch_lost(model):
        raise ConversionError(
            f"{who}: the converted graph lost its dynamic batch axis on "
            f"{', '.join(lost)}, so it would refuse any other number of rows; make the model's "
            "code independent of the batch size (torch: x.shape[0] or x.flatten(1), not a "
            "constant, in view/reshape/expand) and rebuild")


def _batch_of(arrays: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """``rows`` rows per input, from the example's first row (scalars as they are)."""
    return {n: np.repeat(a[:1], rows, axis=0) if a.ndim else a for n, a in arrays.items()}


def _default_opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _from_onnx(path: Path) -> tuple[onnx.ModelProto, dict[str, str]]:
    try:
        model = onnx.load(path)
    except Exception as exc:  # onnx raises DecodeError and friends for garbage
        raise ConversionError(f"{path} is not a readable ONNX model ({exc})") from exc
    opset = _default_opset(model)
    notes = {"converter": "onnx passthrough", "opset": str(opset)}
    if opset < MIN_OPSET:
        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:
            raise ConversionError(f"{path} uses opset {opset}, which int8 quantization cannot use, "
                                  f"and upgrading to {MIN_OPSET} failed ({exc}); re-export it "
                                  f"with opset ≥ {MIN_OPSET}") from exc
        notes["opset"] = f"{opset} → {MIN_OPSET}"
    return model, notes


def _from_sklearn(path: Path, example: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, dict[str, str]]:
    try:
        import joblib
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, Int64TensorType
    except ImportError as exc:
        raise ConversionError(f"converting sklearn models needs skl2onnx and scikit-learn ({exc}); "
                              "pip install -e '.[dev]'") from exc

    if len(example) != 1:
        raise ConversionError(f"sklearn models take one input; example_input has {sorted(example)}")
    (name, x), = example.items()
    types = {"f4": FloatTensorType, "f8": DoubleTensorType, "i8": Int64TensorType}
    tensor_type = types.get(x.dtype.str[1:])
    if tensor_type is None or x.ndim != 2:
        raise ConversionError(f"example_input {name!r} is {x.dtype} with shape {x.shape}; sklearn "
                              "conversion needs a 2-D float32, float64 or int64 array [rows, features]")
    try:
        estimator = joblib.load(path)
    except Exception as exc:
        raise ConversionError(f"{path} could not be loaded with joblib ({exc}); save the fitted "
                              "estimator with joblib.dump") from exc
    try:
        model = to_onnx(estimator, initial_types=[(name, tensor_type([None, x.shape[1]]))],
                        options={"zipmap": False}, target_opset=SKLEARN_OPSET)
    except Exception as exc:
        raise ConversionError(f"skl2onnx cannot convert {type(estimator).__name__} ({exc}); use an "
                              "estimator skl2onnx supports or export it to .onnx yourself") from exc
    _dedupe_opsets(model)
    return model, {"converter": "skl2onnx", "opset": str(SKLEARN_OPSET)}


def _dedupe_opsets(model: onnx.ModelProto) -> None:
    seen: dict[str, int] = {}
    for o in model.opset_import:
        seen[o.domain] = max(o.version, seen.get(o.domain, 0))
    del model.opset_import[:]
    model.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in seen.items())


def _load_factory(source: str, root: Path):
    module_name, func_name = source.split(":")
    added = str(root) not in sys.path
    if added:
        sys.path.insert(0, str(root))
    try:
        importlib.invalidate_caches()
        module = importlib.import_module(module_name)
        if getattr(module, "__file__", None):  # a long-lived process (local stack) sees edits
            module = importlib.reload(module)
        factory = getattr(module, func_name)
    except (ImportError, AttributeError) as exc:
        raise ConversionError(f"cannot import {source!r} ({exc}); the module must be importable "
                              f"from {root} (the catalog's directory) and define {func_name}()") from exc
    finally:
        if added:
            sys.path.remove(str(root))
    return factory


def _load_torch_file(path: Path, root: Path):
    """A whole module saved with ``torch.save`` (a trained entry point's result). Unpickling
    runs code: only files modelfn's own training runner wrote belong here. Its classes are
    imported from the catalog's directory."""
    import torch

    added = str(root) not in sys.path
    if added:
        sys.path.insert(0, str(root))
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ConversionError(f"{path} could not be loaded with torch.load ({type(exc).__name__}: {exc}); "
                              "the module's classes must be importable from the catalog's directory") from exc
    finally:
        if added:
            sys.path.remove(str(root))


def _from_torch(source: str, root: Path, example: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, dict[str, str]]:
    try:
        import torch
    except ImportError as exc:
        raise ConversionError(f"converting a torch factory needs torch ({exc}); "
                              "pip install -e '.[torch]'") from exc

    if source.endswith(".pt"):
        module = _load_torch_file(Path(source), root)
    else:
        factory = _load_factory(source, root)
        try:
            module = factory()
        except Exception as exc:
            raise ConversionError(f"{source}() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, torch.nn.Module):
        raise ConversionError(f"{source}() returned {type(module).__name__}; it must return a "
                              "torch.nn.Module (with its trained weights loaded)")
    module.eval()
    names = list(example)
    # the exporter specializes size-1 dims: export from at least two rows, whatever the example has
    if any(a.ndim and len(a) < EXPORT_MIN_ROWS for a in example.values()):
        example = _batch_of(example, EXPORT_MIN_ROWS)
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[n])) for n in names)
    with torch.no_grad():
        result = module(*args)
    outputs = result if isinstance(result, tuple | list) else (result,)
    if not outputs or not all(isinstance(o, torch.Tensor) for o in outputs):
        kinds = type(result).__name__ if not isinstance(result, tuple | list) else [type(o).__name__ for o in result]
        raise ConversionError(f"{source}: forward() returns {kinds}; the V2 protocol serves tensors "
                              "only: return a tensor or a tuple of tensors")
    out_names = ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
    buf = io.BytesIO()
    try:
        exporter = "dynamo"
        _export_dynamo(module, args, names, out_names, buf)
    except Exception as dynamo_exc:
        exporter = "torchscript (dynamo failed)"
        buf = io.BytesIO()
        try:
            _export_legacy(module, args, names, out_names, buf)
        except Exception as exc:
            raise ConversionError(f"{source}: torch.onnx.export failed with both exporters "
                                  f"(dynamo: {dynamo_exc}; torchscript: {exc})") from exc
    model = onnx.load_from_string(buf.getvalue())
    strip_trace_metadata(model)
    _check_dynamic_batch(model, source)
    _check_runs_at_other_batches(model, source, example)
    return model, {"converter": f"torch.onnx.export ({exporter})", "opset": str(_default_opset(model))}


def _check_runs_at_other_batches(model: onnx.ModelProto, source: str, example: dict[str, np.ndarray]) -> None:
    """A graph whose inputs say ``batch`` may still bake the export's row count into a
    Reshape (the TorchScript fallback does when forward() uses a constant): run it at
    batch 1 and 3 and refuse it, naming the inputs and the fix, if it does not run."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception:
        return  # the build's own load check reports a model onnxruntime cannot load
    run = ort.RunOptions()
    run.log_severity_level = 4
    for rows in (1, 3):
        try:
            sess.run(None, _batch_of(example, rows), run)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConversionError(
                f"{source}: the exported graph runs only at the export's batch size, not at "
                f"{rows} row(s) of input(s) {', '.join(example)} ({first}); forward() fixes the "
                "batch: use x.shape[0] or x.flatten(1), not a constant, in view/reshape/expand") from exc


def _export_dynamo(module, args, names, out_names, f) -> None:
    import torch

    batch = torch.export.Dim("batch")
    with quiet():
        program = torch.onnx.export(
            module, args, None, input_names=names, output_names=out_names,
            opset_version=TORCH_OPSET, dynamo=True, external_data=False, verbose=False,
            dynamic_shapes=tuple({0: batch} for _ in args),
        )
    f.write(program.model_proto.SerializeToString())


def _export_legacy(module, args, names, out_names, f) -> None:
    import torch

    axes = {n: {0: "batch"} for n in [*names, *out_names]}
    with quiet():
        torch.onnx.export(module, args, f, input_names=names, output_names=out_names,
                          opset_version=17, dynamo=False, dynamic_axes=axes)
