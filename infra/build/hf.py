"""``source: hf:<dir>``: a saved Hugging Face model directory → fp32 ONNX, dynamic batch and sequence.

The directory is what ``save_pretrained`` wrote (``config.json``, weights, tokenizer files);
it is loaded with ``local_files_only`` and ``HF_HUB_OFFLINE=1``, so nothing is ever fetched
from the hub. The class named in ``config.architectures`` is loaded and exported with the
torch exporter (dynamo, the legacy TorchScript exporter if dynamo cannot trace it), with
``batch`` (and, for token inputs, ``sequence``) dynamic, returning its ``logits``.

Why not ``optimum``/``optimum-onnx``: it adds a dependency tree pinned to narrow
``transformers``/``torch`` ranges (torch here must stay 2.13.0), and what it adds (its own
ONNX configs per architecture, past-key-value plumbing for generation) does not serve a
classifier pipeline; the plain exporter gives the same graph with one forward() wrapper.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx

TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
IMAGE_INPUT = "pixel_values"
OUTPUT = "logits"
EXAMPLE_BATCH, EXAMPLE_SEQUENCE = 2, 8  # > 1 each, so the exporter keeps both dims symbolic


class HfError(ValueError):
    """The directory cannot be exported; the message says how to fix it."""


@contextlib.contextmanager
def _offline():
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({k: "1" for k in saved})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_config(directory: Path) -> dict[str, Any]:
    """``config.json`` as a dict (what ``id2label`` and sizes are read from)."""
    import json

    try:
        return json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise HfError(f"{directory}/config.json is not readable JSON ({exc})") from exc


def load_module(directory: Path, **options: Any):
    """The model class ``config.architectures`` names, from the directory only (``options``:
    ``from_pretrained`` keywords, e.g. ``attn_implementation``)."""
    try:
        import transformers
    except ImportError as exc:
        raise HfError(f"hf: sources need transformers ({exc}); pip install -e '.[dev,torch]'") from exc
    config = load_config(directory)
    archs = config.get("architectures") or []
    cls = getattr(transformers, archs[0], None) if archs else None
    if cls is None:
        raise HfError(f"{directory}/config.json names architectures {archs}; it needs one "
                      "transformers model class (save it with model.save_pretrained)")
    try:
        with _offline(), contextlib.redirect_stderr(io.StringIO()):
            module = cls.from_pretrained(str(directory), local_files_only=True, **options)
    except Exception as exc:
        raise HfError(f"{archs[0]}.from_pretrained({directory}) failed: {exc}") from exc
    return module.eval(), config


def _example(module, config: dict[str, Any]) -> tuple[list[str], tuple]:
    import torch

    params = inspect.signature(module.forward).parameters
    if IMAGE_INPUT in params:
        size = config.get("image_size", 224)
        h, w = (size, size) if isinstance(size, int) else size
        x = torch.rand(EXAMPLE_BATCH, config.get("num_channels", 3), h, w, generator=torch.Generator().manual_seed(0))
        return [IMAGE_INPUT], (x,)
    names = [n for n in TOKEN_INPUTS if n in params]
    if names[:1] != ["input_ids"]:
        raise HfError(f"{type(module).__name__}.forward takes {list(params)[:5]}...; hf: sources export "
                      f"text models ({', '.join(TOKEN_INPUTS)}) or image models ({IMAGE_INPUT})")
    vocab = int(config.get("vocab_size", 100))
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(min(5, vocab - 1), vocab, (EXAMPLE_BATCH, EXAMPLE_SEQUENCE), generator=gen)
    tensors = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    return names, tuple(tensors[n] for n in names)


class _Logits:
    """forward(*tensors) → logits, whatever output object the model returns."""

    @staticmethod
    def wrap(module, names: list[str]):
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = module

            def forward(self, *args):
                out = self.model(**dict(zip(names, args, strict=True)), return_dict=True)
                return out.logits if getattr(out, "logits", None) is not None else out[0]

        return Wrapper().eval()


def export(directory: Path, task=None, *, exporter: str = "auto") -> tuple[onnx.ModelProto, dict[str, str]]:
    """The fp32 ONNX graph of the model in ``directory``, and notes for the manifest.
    ``task`` (:class:`infra.tasks.detect.HfTask`): pooled tasks export the pooled (and
    normalized) ``embedding`` instead of the logits (:mod:`infra.tasks.heads`).
    ``exporter="torchscript"``: the TorchScript exporter only, whose BERT-family graphs
    onnxruntime's transformer optimizer fuses into ``Attention`` (:mod:`infra.build.transformer`)."""
    import torch

    from infra.build.torch_export import TORCH_OPSET, quiet, strip_trace_metadata
    from infra.tasks.detect import POOLED
    from infra.tasks.heads import EMBEDDING_OUTPUT, pooled

    # eager attention for the TorchScript export: its softmax(QK^T)V pattern is the one
    # onnxruntime's optimizer fuses (SDPA's is not); the same function either way
    options = {"attn_implementation": "eager"} if exporter == "torchscript" else {}
    module, config = load_module(task.model_dir if task is not None else directory, **options)
    names, args = _example(module, config)
    output = OUTPUT
    if task is not None and task.task in POOLED:
        if IMAGE_INPUT in names:
            raise HfError(f"task {task.task!r} pools token embeddings; {type(module).__name__} takes images")
        if "attention_mask" not in names:
            raise HfError(f"{type(module).__name__}.forward takes no attention_mask, which pooling needs")
        wrapper, output = pooled(module, names, task.pooling, task.normalize), EMBEDDING_OUTPUT
    else:
        wrapper = _Logits.wrap(module, names)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dims = [{0: batch} if n == IMAGE_INPUT else {0: batch, 1: seq} for n in names]
    buf, used = io.BytesIO(), "dynamo"
    try:
        if exporter == "torchscript":
            raise RuntimeError("not tried: the TorchScript exporter was asked for")
        with quiet(), torch.no_grad():
            program = torch.onnx.export(wrapper, args, None, input_names=names, output_names=[output],
                                        opset_version=TORCH_OPSET, dynamo=True, external_data=False,
                                        dynamic_shapes=tuple(dims), verbose=False)
        buf.write(program.model_proto.SerializeToString())
    except Exception as dynamo_exc:
        used = "torchscript" if exporter == "torchscript" else "torchscript (dynamo failed)"
        buf = io.BytesIO()
        axes = {n: ({0: "batch"} if n == IMAGE_INPUT else {0: "batch", 1: "sequence"}) for n in names}
        axes[output] = {0: "batch", 1: "sequence"} if task is not None and task.task == "token-classification" \
            else {0: "batch"}
        try:
            with quiet(), torch.no_grad():
                torch.onnx.export(wrapper, args, buf, input_names=names, output_names=[output],
                                  opset_version=17, dynamo=False, dynamic_axes=axes)
        except Exception as exc:
            raise HfError(f"torch.onnx.export failed with both exporters (dynamo: {dynamo_exc}; "
                          f"torchscript: {exc})") from exc
    model = onnx.load_from_string(buf.getvalue())
    strip_trace_metadata(model)
    if output != OUTPUT:  # the vector's size is fixed: say so in the signature ([-1, dim])
        with torch.no_grad():
            dim = int(wrapper(*args).shape[-1])
        model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value = dim
    _check_against_torch(model, wrapper, args, names)
    return model, {"converter": f"torch.onnx.export ({used}) of {type(module).__name__}",
                   "opset": str(max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")))}


def _check_against_torch(model: onnx.ModelProto, wrapper, args, names: list[str]) -> None:
    """The exported graph gives torch's logits on the example (a broken export fails the build)."""
    import onnxruntime as ort
    import torch

    with torch.no_grad():
        want = wrapper(*args).numpy()
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: a.numpy() for n, a in zip(names, args, strict=True)})[0]
    if got.shape != want.shape or not np.allclose(got, want, atol=1e-3, rtol=1e-3):
        raise HfError(f"the exported ONNX disagrees with torch on the example (max error "
                      f"{float(np.max(np.abs(got - want))) if got.shape == want.shape else 'shape'}); "
                      "report the model class")
