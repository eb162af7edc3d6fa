"""Softmax only where a classifier's output is logits: decided from the model, not assumed.

``postprocess.softmax`` defaults to ``auto`` (unset): the build looks at the model itself and
the manifest's processing block records the decision and why:

* the class-score output comes from a ``Softmax`` or ``Sigmoid`` node (through shape-only ops
  such as ``Reshape``/``Flatten``/``Identity``) → it already holds probabilities: **no softmax**;
* otherwise, the output on the build's probe input (the first example row, or the synthetic
  input) is non-negative and each row sums to 1 (±1e-3) → probabilities: **no softmax**;
* otherwise → logits: **softmax** (``LogSoftmax`` outputs count as logits: softmax of
  log-probabilities gives the probabilities back).

``softmax: true`` or ``false`` in the catalog is obeyed; ``true`` over an output that already
holds probabilities is a build warning (the scores would be softmaxed twice: a correct top
label scored 1.0 comes out near 1/classes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

#: Ops that only move values around: a Softmax behind them still decides the output.
PASS_THROUGH = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Transpose", "Slice",
                "Gather", "Concat"}
PROBABILITY_OPS = {"Softmax", "Sigmoid"}
SUM_TOLERANCE = 1e-3


def final_op(model: onnx.ModelProto, output: str) -> str | None:
    """The op that decides ``output``'s values (shape-only ops skipped), or None if unknown."""
    producers = {o: n for n in model.graph.node for o in n.output}
    name, seen = output, set()
    while (node := producers.get(name)) is not None and name not in seen:
        seen.add(name)
        if node.op_type not in PASS_THROUGH or not node.input:
            return node.op_type
        name = node.input[0]
    return None


def are_probabilities(values: np.ndarray) -> bool:
    """Every row non-negative and summing to 1 (a [N, C] float array, C ≥ 2)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[-1] < 2 or v.size == 0 or not np.isfinite(v).all():
        return False
    return bool((v >= -SUM_TOLERANCE).all() and np.allclose(v.sum(axis=-1), 1.0, atol=SUM_TOLERANCE))


def decide(requested: bool | None, model: onnx.ModelProto, output: str,
           probe: np.ndarray | None) -> tuple[bool, str, str | None]:
    """``(softmax, why, warning or None)`` for the class-score ``output``."""
    op = final_op(model, output)
    if op in PROBABILITY_OPS:
        holds = f"probabilities (output {output!r} comes from a {op} node)"
    elif probe is not None and are_probabilities(probe):
        holds = f"probabilities (output {output!r} is non-negative and sums to 1 per row on the probe input)"
    else:
        holds = None
    if requested is None:
        if holds:
            return False, f"no softmax: the model already outputs {holds}", None
        return True, f"softmax: output {output!r} holds logits (no Softmax/Sigmoid node, rows do not sum to 1)", None
    if requested and holds:
        return True, "softmax: true in the catalog", (
            f"postprocess.softmax: true, but the model already outputs {holds}; the scores are "
            "softmaxed twice (a top class at 1.0 comes out near 1/classes). Remove 'softmax' from "
            "postprocess (the build then decides from the model) or set softmax: false.")
    return bool(requested), f"softmax: {str(bool(requested)).lower()} in the catalog", None


def settle(post: dict[str, Any], requested: bool | None, model: onnx.ModelProto, sess,
           feeds: dict[str, np.ndarray] | None) -> str | None:
    """Write the decision into the processing block's ``postprocess``; returns a warning or None."""
    probe = None
    if feeds is not None:
        try:
            (probe,) = sess.run([post["output"]], feeds)
        except Exception:  # the probe ran on all outputs before; the graph check still applies
            probe = None
    post["softmax"], post["softmax_reason"], warning = decide(requested, model, post["output"], probe)
    return warning
