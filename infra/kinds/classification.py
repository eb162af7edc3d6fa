"""Build side of the ``classification`` task: ``postprocess: {softmax, labels | labels_file, top_k, output}``.

The block names the raw ``[N, C]`` float output holding class scores and the class names (the
catalog's, a labels file's, or an ``hf:`` source's ``id2label``). The gate compares the scores
and labels the function returns, too: ``label_agreement`` and ``max_score_error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from infra.kinds import BuildTask, ProcessingError, register
from layers import names
from layers.kinds.classification import Postprocessor


class ClassificationBuildTask(BuildTask):
    name = "classification"

    def block(self, post: Any, sig: dict[str, Any], model_config: Mapping[str, Any]) -> dict[str, Any]:
        outputs = {t["name"]: t for t in sig["outputs"]}
        clash = [n for n in (names.LABEL_OUTPUT, names.SCORES_OUTPUT) if n in outputs]
        if clash:
            raise ProcessingError(f"the model already has output(s) {clash}; postprocess adds outputs by "
                                  "those names, so rename the model's outputs")
        scored = [t for t in sig["outputs"] if t["datatype"] in ("FP32", "FP16", "FP64") and len(t["shape"]) == 2]
        if post.output is not None and post.output not in outputs:
            raise ProcessingError(f"postprocess.output {post.output!r} is not an output; the model gives {list(outputs)}")
        target = outputs[post.output] if post.output else (scored[0] if scored else None)
        if target is None or target not in scored:
            raise ProcessingError(f"postprocess needs a float [N, C] class-score output; the model gives "
                                  f"{[(t['name'], t['shape']) for t in sig['outputs']]} (set postprocess.output)")
        classes = target["shape"][1]
        labels = _labels(post, classes, model_config)
        if classes >= 0 and len(labels) != classes:
            raise ProcessingError(f"postprocess has {len(labels)} labels but output {target['name']!r} scores "
                                  f"{classes} classes; give one label per class, class 0 first")
        return {"output": target["name"], "softmax": post.softmax, "labels": labels, "top_k": post.top_k}

    def gate_outputs(self, post: Mapping[str, Any], output_names: list[str],
                     outputs: list[np.ndarray]) -> list[np.ndarray]:
        """+ the full scores (no top-k) and the label indices the function would return."""
        scores = Postprocessor({**post, "top_k": None})(outputs[output_names.index(post["output"])])
        return [*outputs, scores[names.SCORES_OUTPUT], scores[names.SCORES_OUTPUT].argmax(axis=-1)]

    def gate_figures(self, post: Mapping[str, Any], reference: list[np.ndarray],
                     candidate: list[np.ndarray]) -> dict[str, float]:
        return {"label_agreement": float(np.mean(reference[-1] == candidate[-1])),
                "max_score_error": float(np.max(np.abs(reference[-2] - candidate[-2]), initial=0.0))}


def _labels(post: Any, classes: int, model_config: Mapping[str, Any]) -> list[str]:
    if post.labels is not None:
        return list(post.labels)
    if post.labels_file is not None:
        return [line.strip() for line in post.labels_file.read_text().splitlines() if line.strip()]
    id2label = model_config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        return [str(id2label[k]) for k in sorted(id2label, key=int)]
    if classes < 0:
        raise ProcessingError("the class count is dynamic; give postprocess.labels or labels_file")
    return [str(i) for i in range(classes)]


CLASSIFICATION = register(ClassificationBuildTask())
