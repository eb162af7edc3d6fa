"""What every torch → ONNX export in the build shares: the opset, silencing the exporters, and
stripping the dynamo exporter's per-node debug metadata (convert.py's torch sources and hf.py's
Hugging Face directories both export with these)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import onnx

#: The opset torch exports target (dynamo exporter).
TORCH_OPSET = 18


def strip_trace_metadata(model: onnx.ModelProto) -> None:
    """Drop the per-node debug metadata the dynamo exporter writes (Python stack traces with
    absolute paths of the build machine, FX node dumps). It would leak local paths into the
    shipped artifact and make its sha256, and so its version, depend on where it was built."""
    def graphs(g: onnx.GraphProto):
        yield g
        for node in g.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from graphs(attr.g)
                for sub in attr.graphs:
                    yield from graphs(sub)

    nodes = [n for g in graphs(model.graph) for n in g.node]
    nodes += [n for f in model.functions for n in f.node]
    for node in nodes:
        del node.metadata_props[:]
        node.doc_string = ""


@contextlib.contextmanager
def quiet():
    """The exporters print progress and warnings on stdout/stderr; the build has its own UI."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)
