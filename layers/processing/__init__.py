"""Pre- and post-processing in the image: text or image bytes in, labels and scores out.

A model built with ``preprocess``/``postprocess`` carries a ``processing`` block in its
manifest (:data:`layers.names.MANIFEST_PROCESSING`)::

    {"model_signature": {"inputs": [...], "outputs": [...]},   # what model.onnx takes/gives
     "preprocess": {"kind": "text", "tokenizer": "tokenizer.json", "max_length": 128,
                    "padding": "longest", "truncation": true}
                 | {"kind": "image", "size": [H, W], "mean": [...], "std": [...], "layout": "NCHW"},
     "postprocess": {"output": "logits", "softmax": true, "labels": [...], "top_k": null},
                                                               # + "task": NAME (default classification)
     "files": {"tokenizer.json": "<sha256>"}}                  # verified like model.onnx

and its manifest ``signature`` is what clients see (:func:`public_signature`): one BYTES input
``[-1]`` named after its input kind (``text``, ``image``), and the outputs its task gives
(classification: the raw outputs plus ``label`` (BYTES) and ``scores`` (FP32)). The kinds and
tasks are registered in :mod:`layers.kinds`; nothing here names one.
:class:`layers.processing.processed.ProcessedModel` wraps the raw model with the same
:class:`~layers.servable.Servable` interface as :class:`layers.model.Model`, so the HTTP path,
SageMaker and batch call one inference path.
"""

from __future__ import annotations

from typing import Any

from layers import kinds


def public_signature(block: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The V2 signature clients see for a model with this processing block."""
    raw = block["model_signature"]
    pre, post = block.get("preprocess"), block.get("postprocess")
    if pre is None:
        inputs = list(raw["inputs"])
    else:
        inputs = [{"name": kinds.input_kind(pre["kind"]).name, "datatype": "BYTES", "shape": [-1]}]
    outputs = list(raw["outputs"])
    if post is not None:
        outputs = kinds.task_of(post).public_outputs(outputs, post)
    return {"inputs": inputs, "outputs": outputs}
