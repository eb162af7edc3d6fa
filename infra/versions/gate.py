"""The promotion gate: a candidate version against the live one, on the model's validation set.

(A generative model is judged on its validation text instead: :mod:`.generation_gate`.)

Both artifacts run in this process, side by side, on the same rows and the same batch-1
feeds, so the ratios compare like with like (figures from two builds at different times on a
shared machine would not). The candidate replaces the live version only if:

* its inputs are the live version's (names, datatypes, shapes): clients must not break;
* its accuracy against the validation ``labels`` is at most ``promotion.max_accuracy_drop``
  below the live version's;
* its batch-1 p50 latency is at most ``promotion.max_latency_ratio`` × the live one's;
* its artifact is at most ``promotion.max_size_ratio`` × the live one's size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from infra.build import accuracy, measure
from infra.build.builder import V2_TO_NUMPY
from infra.build.data import DataError, load_dataset
from infra.catalog import ModelSpec
from layers.manifest import read_manifest
from layers.names import MODEL_FILE


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)


def _inputs(manifest) -> list[dict]:
    return [t.to_dict() for t in manifest.inputs]


def _describe(t: dict) -> str:
    return f"{t['name']!r} {t['datatype']} {t['shape']}"


def signature_break(candidate, live) -> str | None:
    """What clients of ``live`` would break on if ``candidate`` replaced it (None: nothing).

    Inputs: a request built for the live version must still be accepted (same names,
    datatypes and shapes). Outputs: every output a client can ask for by name must still be
    there with the same datatype and shape. Manifests (``layers.manifest.Manifest``) in."""
    problems = []
    for side, cand, old in (("input", _inputs(candidate), _inputs(live)),
                            ("output", [t.to_dict() for t in candidate.outputs], [t.to_dict() for t in live.outputs])):
        now = {t["name"]: t for t in cand}
        before = {t["name"]: t for t in old}
        for name, t in before.items():
            if name not in now:
                problems.append(f"{side} {_describe(t)} is gone" + (
                    " (requests naming it get a 400)" if side == "output" else " (requests sending it get a 400)"))
            elif now[name] != t:
                problems.append(f"{side} {_describe(t)} becomes {_describe(now[name])}")
        added = [_describe(t) for n, t in now.items() if n not in before]
        if added and side == "input":
            problems.append(f"new required input(s) {', '.join(added)} that live clients do not send")
        elif added:
            problems.append(f"new output(s) {', '.join(added)}")
    return "; ".join(problems) or None


def judge(spec: ModelSpec, candidate_dir: Path, live_dir: Path | None) -> Verdict:
    """Whether the version in ``candidate_dir`` may replace the one in ``live_dir``."""
    cand = read_manifest(candidate_dir, verify=True)
    if live_dir is None:
        return Verdict(True, f"first version of {spec.name}: nothing live to compare with")
    live = read_manifest(live_dir, verify=True)
    if cand.sha256 == live.sha256:
        return Verdict(False, f"identical to the live version {live.version} (same artifact)")
    if (broken := signature_break(cand, live)) is not None:
        return Verdict(False, f"its signature differs from the live version {live.version}'s: {broken}; "
                              "clients of the live version would break (deploy it as a new model name, or "
                              "`modelfn promote --force` once every client is updated)")
    if cand.extra.get("task") == "generation":
        from infra.versions import generation_gate

        return generation_gate.judge(spec, cand, candidate_dir, live, live_dir)
    if spec.validation is None:
        return Verdict(False, "the catalog entry has no 'validation' set to gate it on; add one with 'labels'")
    names = [t.name for t in cand.inputs]
    dtypes = {t.name: np.dtype(V2_TO_NUMPY[t.datatype]) for t in cand.inputs if t.datatype in V2_TO_NUMPY}
    try:
        data = load_dataset(spec.validation, names, dtypes, key="validation")
    except DataError as exc:
        return Verdict(False, f"the validation set cannot be used: {exc}")
    if data.labels is None:
        return Verdict(False, f"validation {spec.validation.name} has no 'labels', so accuracy cannot be "
                              "compared; save the expected class per row under 'labels'")
    live_sess = measure.session(live_dir / MODEL_FILE)
    cand_sess = measure.session(candidate_dir / MODEL_FILE)
    figures = accuracy.compare(measure.run_all(live_sess, data), measure.run_all(cand_sess, data), data.labels)
    if "accuracy" not in figures or "fp32_accuracy" not in figures:
        return Verdict(False, "accuracy cannot be computed from this model's outputs (no class scores "
                              "or labels output); the gate needs a classifier's outputs")
    feeds = data.batch(0, 1)
    # A, B, A, B and the better of each: one burst of load on a shared machine cannot decide it
    runs = [(measure.latency(live_sess, feeds), measure.latency(cand_sess, feeds)) for _ in range(2)]
    live_lat = min((r[0] for r in runs), key=lambda lat: lat.p50_ms)
    cand_lat = min((r[1] for r in runs), key=lambda lat: lat.p50_ms)
    live_size, cand_size = (live_dir / MODEL_FILE).stat().st_size, (candidate_dir / MODEL_FILE).stat().st_size
    p = spec.promotion
    metrics = {
        "live_version": live.version, "rows": data.rows,
        "accuracy": round(figures["accuracy"], 6), "live_accuracy": round(figures["fp32_accuracy"], 6),
        "agreement_with_live": round(figures.get("top1_agreement", float("nan")), 6),
        "p50_ms": round(cand_lat.p50_ms, 4), "live_p50_ms": round(live_lat.p50_ms, 4),
        "latency_ratio": round(cand_lat.p50_ms / max(live_lat.p50_ms, 1e-9), 3),
        "size_bytes": cand_size, "live_size_bytes": live_size,
        "size_ratio": round(cand_size / max(live_size, 1), 3),
        "bounds": p.model_dump(),
    }
    failures = []
    drop = metrics["live_accuracy"] - metrics["accuracy"]
    if drop > p.max_accuracy_drop + 1e-12:
        failures.append(f"accuracy {metrics['accuracy']:.4f} is {drop:.4f} below the live version's "
                        f"{metrics['live_accuracy']:.4f} (allowed drop {p.max_accuracy_drop:g})")
    if metrics["latency_ratio"] > p.max_latency_ratio:
        failures.append(f"p50 {metrics['p50_ms']:.3f} ms is ×{metrics['latency_ratio']:.2f} the live "
                        f"version's {metrics['live_p50_ms']:.3f} ms (bound ×{p.max_latency_ratio:g})")
    if metrics["size_ratio"] > p.max_size_ratio:
        failures.append(f"size {cand_size:,} B is ×{metrics['size_ratio']:.2f} the live version's "
                        f"{live_size:,} B (bound ×{p.max_size_ratio:g})")
    summary = (f"accuracy {metrics['accuracy']:.4f} vs live {metrics['live_accuracy']:.4f}, "
               f"p50 ×{metrics['latency_ratio']:.2f}, size ×{metrics['size_ratio']:.2f} "
               f"on {data.rows} validation rows")
    if failures:
        return Verdict(False, f"not promoted over {live.version}: " + "; ".join(failures), metrics)
    return Verdict(True, f"promoted over {live.version}: {summary}", metrics)
