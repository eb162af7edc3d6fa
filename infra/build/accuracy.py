"""The accuracy gate: fp32 vs an int8 candidate on the validation set.

Figures (each computed only where it means something):

* ``top1_agreement``: share of rows whose argmax (classification outputs: ≥2 classes on the
  last axis) or integer label output is the same for fp32 and the candidate;
* ``max_abs_error``: largest absolute difference over all float outputs;
* ``label_agreement`` / ``max_score_error``: with ``postprocess``, the share of rows whose
  ``label`` is the same and the largest difference of ``scores`` (see
  :func:`infra.build.processing.label_figures`);
* ``min_cosine``: smallest per-row cosine similarity of float outputs (embeddings/regression);
* ``accuracy`` / ``fp32_accuracy``: against the validation set's ``labels``.

A tolerance key whose figure cannot be computed for this model is not checked (and said so).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from infra.catalog import Tolerance


@dataclass(frozen=True)
class GateResult:
    figures: dict[str, float]
    passed: bool
    failures: tuple[str, ...] = ()
    skipped: tuple[str, ...] = field(default=())

    @property
    def reason(self) -> str:
        return "; ".join(self.failures)


def _is_class_scores(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" and a.ndim >= 2 and a.shape[-1] > 1


def _is_label(a: np.ndarray) -> bool:
    return a.dtype.kind in "iub" and (a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1))


def _predictions(outputs: list[np.ndarray]) -> np.ndarray | None:
    for a in outputs:
        if _is_class_scores(a) and a.ndim == 2:
            return a.argmax(axis=-1)
    for a in outputs:
        if _is_label(a):
            return a.reshape(len(a))
    return None


def compare(reference: list[np.ndarray], candidate: list[np.ndarray],
            labels: np.ndarray | None = None) -> dict[str, float]:
    """Gate figures for two runs of the same rows (outputs in the model's output order)."""
    figures: dict[str, float] = {}
    agreements = []
    for r, c in zip(reference, candidate, strict=True):
        if _is_class_scores(r):
            agreements.append(float(np.mean(r.argmax(axis=-1) == c.argmax(axis=-1))))
        elif _is_label(r):
            agreements.append(float(np.mean(r.reshape(-1) == c.reshape(-1))))
    if agreements:
        figures["top1_agreement"] = min(agreements)
    floats = [(r.astype(np.float64), c.astype(np.float64)) for r, c in zip(reference, candidate, strict=True)
              if r.dtype.kind == "f"]
    if floats:
        figures["max_abs_error"] = max(float(np.max(np.abs(r - c), initial=0.0)) for r, c in floats)
        cosines = []
        for r, c in floats:
            r2, c2 = r.reshape(len(r), -1), c.reshape(len(c), -1)
            norms = np.linalg.norm(r2, axis=1) * np.linalg.norm(c2, axis=1)
            dots = np.sum(r2 * c2, axis=1)
            both_zero = norms == 0
            cos = np.where(both_zero, 1.0, dots / np.where(both_zero, 1.0, norms))
            cosines.append(float(np.min(cos)) if len(cos) else 1.0)
        figures["min_cosine"] = min(cosines)
    if labels is not None:
        flat = labels.reshape(len(labels))
        for key, outs in (("fp32_accuracy", reference), ("accuracy", candidate)):
            pred = _predictions(outs)
            if pred is not None:
                figures[key] = float(np.mean(pred == flat))
    return figures


def check(figures: dict[str, float], tolerance: Tolerance) -> GateResult:
    """Apply the catalog's tolerance to the figures."""
    failures, skipped = [], []
    limits = [("top1_agreement", tolerance.top1_agreement, ">="),
              ("min_cosine", tolerance.min_cosine, ">="),
              ("max_abs_error", tolerance.max_abs_error, "<="),
              ("max_score_error", tolerance.max_score_error, "<="),
              ("accuracy", tolerance.min_accuracy, ">="),
              ("retrieval_top10", tolerance.min_retrieval_top10, ">="),
              ("perplexity_ratio", tolerance.max_perplexity_ratio, "<=")]
    for key, limit, op in limits:
        if limit is None:
            continue
        value = figures.get(key)
        if value is None:
            skipped.append(key)
            continue
        ok = value >= limit if op == ">=" else value <= limit
        if not ok:
            failures.append(f"{key} {value:.4g} {'<' if op == '>=' else '>'} {limit:g}")
    return GateResult(figures=figures, passed=not failures, failures=tuple(failures),
                      skipped=tuple(skipped))
