"""Class scores → ``scores`` (FP32) and ``label`` (BYTES), optionally the top k only.

``scores`` are the softmax of the raw output (or the raw values with ``softmax: false``: the
build sets it from the model, infra/build/scores.py — false where the model outputs
probabilities already),
``label`` the class names of the highest scores: ``[N]`` (or ``[N, K]`` with ``top_k``,
best first, ``scores`` then ``[N, K]`` in the same order). Without label names a class is
named by its index (``"0"``, ``"1"``, ...).

Registered as the ``classification`` task (:mod:`layers.kinds`), the task of every
``postprocess`` block without a ``task`` key; the raw outputs stay requestable beside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from layers import names
from layers.kinds import Context, Task, register
from layers.kinds import Postprocessor as TaskPostprocessor


def softmax(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.float32) - x.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


class Postprocessor:
    """Raw outputs → ``{label, scores}`` (computed only when one of them is asked for)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.output: str = config["output"]
        self.softmax = config.get("softmax") is not False  # unset (older manifests): logits
        self.top_k: int | None = config.get("top_k")
        self.labels = np.asarray(list(config["labels"]), dtype=object)

    @property
    def names(self) -> tuple[str, str]:
        return names.LABEL_OUTPUT, names.SCORES_OUTPUT

    def __call__(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        scores = softmax(raw) if self.softmax else raw.astype(np.float32)
        if self.top_k is None:
            best = scores.argmax(axis=-1)
            return {names.LABEL_OUTPUT: self.labels[best], names.SCORES_OUTPUT: scores}
        k = min(self.top_k, scores.shape[-1])
        order = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
        return {names.LABEL_OUTPUT: self.labels[order],
                names.SCORES_OUTPUT: np.take_along_axis(scores, order, axis=-1)}


def output_specs(config: dict[str, Any], classes: int) -> list[dict[str, Any]]:
    """The V2 specs of the added outputs (build and runtime share them)."""
    k = config.get("top_k")
    if k is None:
        return [{"name": names.LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
                {"name": names.SCORES_OUTPUT, "datatype": "FP32", "shape": [-1, classes]}]
    k = min(k, classes)
    return [{"name": names.LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1, k]},
            {"name": names.SCORES_OUTPUT, "datatype": "FP32", "shape": [-1, k]}]


class _ClassificationPost(TaskPostprocessor):
    def __init__(self, config: Mapping[str, Any]) -> None:
        self.scorer = Postprocessor(dict(config))
        self.needs = (self.scorer.output,)

    def __call__(self, raw: dict[str, np.ndarray], context: Context) -> dict[str, np.ndarray]:
        return self.scorer(raw[self.scorer.output])


class ClassificationTask(Task):
    name = "classification"

    def public_outputs(self, raw_outputs: list[dict[str, Any]],
                       config: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [*raw_outputs, *output_specs(dict(config), len(config["labels"]))]

    def postprocessor(self, config: Mapping[str, Any]) -> TaskPostprocessor:
        return _ClassificationPost(config)


CLASSIFICATION = register(ClassificationTask())
