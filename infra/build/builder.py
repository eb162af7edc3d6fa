"""One catalog entry → one published artifact: convert, quantize, gate, measure, fit, package.

The int8 variant that ships is the fastest candidate that (1) onnxruntime loads, (2) passes
the accuracy gate, and (3) is at least :data:`MIN_SPEEDUP` faster than fp32 at batch 1, timed
side by side with it (a closer tie is measurement noise, and fp32 is then the safer artifact). Otherwise fp32 ships, with a
``fallback_reason`` in the manifest; with ``strict: true`` a gate failure fails the build.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from infra import kinds as build_kinds
from infra.build import (
    accuracy,
    artifact,
    buildlog,
    compose,
    fit,
    int8_search,
    measure,
    ort_offline,
    processing,
    quantize,
    sample_input,
    scores,
    transformer,
)
from infra.build.convert import convert
from infra.build.cpu import Int8Host, int8_host
from infra.build.data import Dataset, load_dataset
from infra.build.signature import dim_hints, signature
from infra.catalog import EMBEDDING_TOLERANCE, ModelSpec
from layers import datatypes
from layers import names as layer_names
from layers.manifest import sha256_file
from layers.processing import public_signature
from layers.snapstart import EXAMPLE_SHAPES_KEY

StageCallback = Callable[[str, str], None]
#: V2 datatype → numpy dtype, for the fixed-size datatypes (inputs the build can make up)
V2_TO_NUMPY = {name: dt for name, dt in datatypes.TO_NUMPY.items() if name != datatypes.BYTES}
#: The stages a build reports, in order (progress bars count them).
STAGES = ("convert", "quantize", "gate", "measure", "package")


class BuildError(RuntimeError):
    """The model cannot be built as the catalog asks; the message names the model and the fix."""


#: Share of fp32's batch-1 p50 an int8 candidate must save to ship. Without a margin, near-ties
#: (small Conv models) flipped between fp32, dynamic and static from one build to the next.
MIN_SPEEDUP = 0.03
#: Largest relative output change a fused fp32 graph may show (float reassociation only).
FUSED_MAX_ERROR = 1e-3


@dataclass(frozen=True)
class BuildSettings:
    """Knobs that are not catalog keys. ``require_speedup`` off only for tests of the modes."""

    require_speedup: bool = True


@dataclass
class BuildResult:
    name: str
    ok: bool
    reused: bool = False
    model_dir: Path | None = None
    manifest: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    log: str | None = None  # what libraries printed, summarized (infra/build/buildlog.py)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "reused": self.reused,
                "model_dir": str(self.model_dir) if self.model_dir else None,
                "error": self.error, "seconds": round(self.seconds, 2), "manifest": self.manifest}


def _dataset(spec: ModelSpec, key: str, sig: dict, block: dict | None = None,
             side_files: dict[str, Path] | None = None) -> Dataset | None:
    path = getattr(spec, key)
    if path is None:
        return None
    if block is not None and processing.is_raw(path):  # texts/images through the runtime's preprocess
        return processing.load_raw(path, block, side_files or {}, key=key)
    names = [t["name"] for t in sig["inputs"]]
    dtypes = {t["name"]: np.dtype(V2_TO_NUMPY[t["datatype"]]) for t in sig["inputs"]
              if t["datatype"] in V2_TO_NUMPY}
    return load_dataset(path, names, dtypes, key=key)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _data_feeds(sess, data: Dataset, data_name: str, sig: dict) -> dict[str, np.ndarray]:
    """The smallest leading batch of ``data`` the model runs on (1 row unless it rejects 1)."""
    first: Exception | None = None
    quiet = sample_input.quiet_run_options()
    sizes = sorted({*(2**i for i in range(data.rows.bit_length()) if 2**i <= data.rows), data.rows})
    for rows in sizes:
        feeds = data.batch(0, rows)
        try:
            sess.run(None, feeds, quiet)
            return feeds
        except Exception as exc:  # onnxruntime's own error types
            first = first or exc
    inputs = ", ".join(f"{t['name']} {t['datatype']} {t['shape']}" for t in sig["inputs"])
    raise BuildError(f"the model does not run on {data_name} ({_first_line(first)}); its inputs "
                     f"are {inputs} (-1 = any size): fix the arrays' shapes or dtypes")


#: What makes a data-less model's figures real (the table, the manifest and ``fit`` say it).
MEASURE_FOR_REAL = ("add 'example_input' (an .npz with one request's arrays keyed by input name, at the "
                    "shapes clients send) or 'validation' to the catalog entry and rebuild")


def _synthetic_feeds(sess, fp32: Path, sig: dict,
                     block: dict | None) -> tuple[dict[str, np.ndarray] | None, dict[str, Any]]:
    """No data at all: probe with the graph's own hints at the documented default sizes (the
    pre-processing's max_length/size when the catalog has one); (None, why) when nothing runs."""
    dtypes = {t["name"]: V2_TO_NUMPY[t["datatype"]] for t in sig["inputs"] if t["datatype"] in V2_TO_NUMPY}
    pre = (block or {}).get("preprocess") or {}
    defaults = build_kinds.kind(pre["kind"]).probe_sizes(pre) if pre.get("kind") else {}
    probe = sample_input.find(sess, dim_hints(onnx.load(fp32, load_external_data=False)), dtypes,
                              defaults=defaults)
    info: dict[str, Any] = {"from": "synthetic", "tries": probe.tries}
    if probe.feeds is not None:
        return probe.feeds, {**info, "sizes": probe.sizes, "estimate": True,
                             "to_measure_for_real": MEASURE_FOR_REAL}
    info["unmeasured"] = (
        f"no synthetic input ran ({probe.tries} tried from the graph's dims; last error: "
        f"{probe.last_error}); latency and batch memory are unmeasured. Add 'example_input' (an "
        ".npz with one batch keyed by input name) to the catalog entry so the build can measure them")
    return None, info


def _perf(path: Path, lat: measure.Latency | None) -> dict[str, Any]:
    if lat is None:  # no input ran: unmeasured, never a made-up figure
        return {"size_bytes": path.stat().st_size, "p50_ms": None, "p95_ms": None}
    return {"size_bytes": path.stat().st_size, "p50_ms": round(lat.p50_ms, 4), "p95_ms": round(lat.p95_ms, 4)}


#: os.chdir is per process: builds on several threads (the local stack) take turns
_CWD_LOCK = threading.Lock()


@contextlib.contextmanager
def _cwd(path: Path):
    """Run onnxruntime's quantization tools inside the build's staging directory: they write
    temporaries into the current directory (``sym_shape_infer_temp.onnx`` and its external
    data when symbolic shape inference is incomplete), which must not land where the user ran
    ``modelfn build``, nor collide between two builds there."""
    with _CWD_LOCK:
        before = os.getcwd()
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(before)


def _round(figures: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in figures.items()}


def build_model(spec: ModelSpec, root: Path, out_dir: Path, *, force: bool = False,
                on_stage: StageCallback | None = None, settings: BuildSettings | None = None) -> BuildResult:
    """Build ``spec``; never raises for a model problem (the result carries the error)."""
    started = time.perf_counter()
    result = BuildResult(name=spec.name, ok=False)
    try:
        with buildlog.capture(Path(out_dir), spec.name) as log, \
                tempfile.TemporaryDirectory(prefix=f"modelfn-{spec.name}-") as tmp:
            job = _Job(spec=spec, root=root, out_dir=Path(out_dir), work=Path(tmp), force=force,
                       stage=_passthrough(on_stage), settings=settings or BuildSettings(), result=result)
            _build(job)
        result.ok = True
    except Exception as exc:  # one model's failure must not stop the others
        msg = str(exc)
        result.error = msg if msg.startswith(f"model {spec.name!r}") else f"model {spec.name!r}: {msg}"
    result.log = log.summary()
    result.seconds = time.perf_counter() - started
    return result


def _passthrough(on_stage: StageCallback | None) -> StageCallback:
    """The caller's stage callback, its output not captured into the build log."""
    def stage(model: str, what: str) -> None:
        if on_stage is not None:
            with buildlog.passthrough():
                on_stage(model, what)
    return stage


@dataclass
class _Job:
    """One model's build: what it was asked, where it works, whom it tells."""

    spec: ModelSpec
    root: Path
    out_dir: Path
    work: Path
    force: bool
    stage: StageCallback
    settings: BuildSettings
    result: BuildResult

    @property
    def models_dir(self) -> Path:
        return artifact.models_dir(self.out_dir)

    @property
    def target(self) -> Path:
        return self.models_dir / self.spec.name

    def reuse(self, manifest: dict[str, Any]) -> None:
        self.result.reused, self.result.manifest, self.result.model_dir = True, manifest, self.target


@dataclass
class _Converted:
    """The convert stage's output: the fp32 graph, its signature and processing block."""

    spec: ModelSpec  # the job's, with the task's default tolerance where the catalog sets none
    fp32_path: Path
    conversion: dict[str, Any]
    steps: list | None  # a pipeline's (name, manifest) steps
    fp32_sha: str
    host: Int8Host
    key: str
    sig: dict[str, Any]
    block: dict[str, Any] | None
    side_files: dict[str, Path]


@dataclass
class _Baseline:
    """The fp32 model measured: the data sets, the feeds latency and the probe use, the gate's
    reference outputs."""

    calibration: Dataset | None
    gate_name: str | None
    gate_data: Dataset | None
    feeds: dict[str, np.ndarray] | None
    feeds_info: dict[str, Any]
    warnings: list[str]
    fp32_out: list[np.ndarray] | None
    fp32_lat: measure.Latency | None
    run_gate: Callable[[Any], list[np.ndarray]]


@dataclass
class _Choice:
    """The gate's decision: what ships, in which mode, with which figures."""

    quant: dict[str, Any]
    shipped_path: Path
    figures: dict[str, float]
    best: dict[str, Any] | None
    graph: dict[str, Any] = field(default_factory=dict)  # ort_offline's record


@dataclass
class _Measured:
    perf: dict[str, Any]
    target: str
    reasons: list[str]
    fit: dict[str, Any]


def _build(job: _Job) -> None:
    """The stages in order; each returns what the next ones need."""
    if _live_version_kept(job):
        return
    if (hf := _generation(job.spec)) is not None:  # a causal LM: its own folder and gate
        from infra.build import generation

        generation.build(job, hf)
        return
    if job.spec.quantize in ("int4", "int8"):
        raise BuildError(f"model {job.spec.name!r}: quantize: {job.spec.quantize} (weight-only) is for "
                         "generation models (causal language models); use auto, dynamic, static or none")
    job.stage(job.spec.name, "convert")
    conv = _convert(job)
    if conv is None:  # this exact build is already published
        return
    base = _baseline(job, conv)
    job.stage(job.spec.name, "quantize")
    quant, cands, no_data = _quantize(job, conv, base)
    job.stage(job.spec.name, "gate")
    choice = _gate(job, conv, base, quant, cands, no_data)
    _optimize_offline(job, conv, base, choice)
    job.stage(job.spec.name, "measure")
    measured = _measure(job, conv, base, choice)
    job.stage(job.spec.name, "package")
    _package(job, conv, base, choice, measured)


def _generation(spec: ModelSpec):
    """The detected task of an ``hf:`` source when it is generation, else None (a directory
    the detection refuses is refused again, with the same message, by the tensor path)."""
    if spec.source_kind != "hf":
        return None
    from infra.tasks.build import hf_task
    from infra.tasks.detect import GENERATION, TaskError

    try:
        hf = hf_task(spec)
    except TaskError:
        return None
    if hf is not None and hf.task != GENERATION and spec.generation is not None:
        raise BuildError(f"model {spec.name!r}: the 'generation' key sets how a causal language model "
                         f"generates; {hf.architecture} serves {hf.task}: remove it")
    return hf if hf is not None and hf.task == GENERATION else None


def _live_version_kept(job: _Job) -> bool:
    """A model with ``training:`` whose live version `modelfn train`/`promote` chose keeps it."""
    spec = job.spec
    if spec.training is None:
        return False
    live = artifact.managed_live(job.target)  # `modelfn train`/`promote` decide what is live, not a build
    if live is not None:
        job.reuse(live)
        job.result.notes.append(f"version {live['version']} is live through `modelfn promote`/`train`; "
                                "the build leaves it in place")
        return True
    if not spec.source:
        raise BuildError(f"model {spec.name!r} has no 'source' and no trained version yet; run "
                         f"`modelfn train {spec.name}` to make version 1")
    return False


def _convert(job: _Job) -> _Converted | None:
    """Any source (or a pipeline's steps) → the checked fp32 graph, its cache key, signature
    and processing block (the input kind's and task's, infra/kinds); None when an intact
    artifact with the same cache key is already published (reused, nothing rebuilt)."""
    spec = job.spec
    fp32_path = job.work / "fp32.onnx"
    steps = None
    if spec.source_kind == "pipeline":  # the steps' shipped graphs, merged (infra/build/compose.py)
        merged, conversion, steps = compose.compose_steps(spec, job.models_dir)
        onnx.save(merged, fp32_path)
    else:
        conversion = convert(spec, job.root, fp32_path)
    fp32_sha = sha256_file(fp32_path)
    host = int8_host(architecture=spec.architecture, cpu_features=spec.cpu_features)
    key = artifact.cache_key(spec, fp32_sha, reduce_range=host.reduce_range)
    if not job.force and (cached := artifact.reusable(job.target, key)):
        job.reuse(cached)
        return None
    sig = signature(onnx.load(fp32_path))
    block, side_files = (compose.inherited_block(spec, sig, steps, job.models_dir) if steps
                         else processing.build_block(spec, sig))
    if ((block or {}).get("task") or {}).get("task") in ("embeddings", "feature-extraction") \
            and "tolerance" not in spec.model_fields_set:  # argmax means nothing for a vector
        spec = spec.model_copy(update={"tolerance": EMBEDDING_TOLERANCE})
    return _Converted(spec=spec, fp32_path=fp32_path, conversion=conversion, steps=steps, fp32_sha=fp32_sha,
                      host=host, key=key, sig=sig, block=block, side_files=side_files)


def _baseline(job: _Job, conv: _Converted) -> _Baseline:
    """Load the data sets and measure fp32: feeds (data, else synthetic), latency, gate reference."""
    spec, sig, block, side_files = conv.spec, conv.sig, conv.block, conv.side_files
    example = _dataset(spec, "example_input", sig, block, side_files)
    calibration = _dataset(spec, "calibration", sig, block, side_files)
    validation = _dataset(spec, "validation", sig, block, side_files)
    out_names = [t["name"] for t in sig["outputs"]]
    gate_name, gate_data = next(((n, d) for n, d in (("validation", validation), ("calibration", calibration),
                                                     ("example_input", example)) if d is not None), (None, None))

    def run_gate(sess) -> list[np.ndarray]:  # raw outputs, + what the task adds (label/scores)
        return processing.with_postprocess(block, out_names, processing.run_gate_data(sess, gate_data, block))

    try:
        fp32_sess = measure.session(conv.fp32_path)
    except measure.LoadError as exc:
        raise BuildError(f"the converted fp32 model does not load: {exc}") from exc
    if (data := example or gate_data) is not None:
        data_name = "example_input" if example is not None else gate_name
        feeds: dict[str, np.ndarray] | None = _data_feeds(fp32_sess, data, data_name, sig)
        feeds_info: dict[str, Any] = {"from": data_name}
    else:
        feeds, feeds_info = _synthetic_feeds(fp32_sess, conv.fp32_path, sig, block)
        if "unmeasured" in feeds_info:
            job.result.notes.append(feeds_info["unmeasured"])
    if feeds:
        first = next(iter(feeds.values()))
        feeds_info["batch"] = int(first.shape[0]) if first.ndim else 1
        feeds_info["shapes"] = {n: [int(d) for d in a.shape] for n, a in feeds.items()}
    warnings: list[str] = []
    post_block = (block or {}).get("postprocess")
    if post_block is not None and post_block.get("task", "classification") == "classification" and not conv.steps:
        # softmax only over logits (a directory's classifier may have no catalog postprocess: null = decide)
        warning = scores.settle(post_block, spec.postprocess.softmax if spec.postprocess else None,
                                onnx.load(conv.fp32_path, load_external_data=False), fp32_sess, feeds)
        warnings += [warning] if warning else []
    try:
        fp32_out = run_gate(fp32_sess) if gate_data else None
    except Exception as exc:  # the gate's rows in batches of EVAL_BATCH
        raise BuildError(f"the model does not run on all of {gate_name} ({_first_line(exc)}); "
                         "check every row's shape and dtype") from exc
    fp32_lat = measure.latency(fp32_sess, feeds) if feeds is not None else None
    del fp32_sess
    return _Baseline(calibration=calibration, gate_name=gate_name, gate_data=gate_data, feeds=feeds,
                     feeds_info=feeds_info, warnings=warnings, fp32_out=fp32_out, fp32_lat=fp32_lat,
                     run_gate=run_gate)


def _quantize(job: _Job, conv: _Converted, base: _Baseline) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """The int8 candidates the catalog asks for, each made and judged (``_candidate``):
    (quantization record, candidates, whether int8 was skipped for want of gate data)."""
    spec, work, fp32_path = conv.spec, job.work, conv.fp32_path
    quant: dict[str, Any] = {"requested": spec.quantize}
    modes: list[str]
    if spec.quantize == "none" or conv.steps:  # a pipeline's steps were each quantized and gated
        modes = []
    elif spec.quantize == "auto":
        fp32_model = onnx.load(fp32_path)
        modes, quant["auto"] = quantize.candidates(fp32_model, base.calibration is not None,
                                                   transformer.is_transformer(fp32_model))
    else:
        modes = [spec.quantize]
    no_data = bool(modes) and base.gate_data is None
    if no_data:
        modes = []
    cands: list[dict[str, Any]] = []
    if modes:
        pre = work / "pre.onnx"
        with _cwd(work):
            quant["preprocess"] = quantize.preprocess(fp32_path, pre)
        quant.update(conv.host.to_dict())
        pres = {mode: pre for mode in modes}
        fusable = [m for m in modes if m == "dynamic" or m in quantize.WEIGHT_ONLY]
        if fusable and transformer.is_transformer(onnx.load(pre)):
            sizes, reexport = transformer.source_hints(spec)

            def same_function(path: Path) -> str | None:  # a fused graph must compute what fp32 does
                err = int8_search.relative_error(base.fp32_out, base.run_gate(measure.session(path)))
                return None if err <= FUSED_MAX_ERROR else f"relative output error {err:.2e} on the gate rows"

            with _cwd(work):
                fused, quant["transformer_optimizer"] = transformer.prepare(
                    pre, work, same_function=same_function, sizes=sizes, reexport=reexport,
                    preprocess=quantize.preprocess)
            pres.update(dict.fromkeys(fusable, fused) if fused is not None else {})
        for mode in modes:
            job.stage(spec.name, f"quantize {mode}")
            with _cwd(work):
                cands.append(_candidate(mode, pres[mode], work, base.calibration, base.gate_data, base.feeds,
                                        base.fp32_out, base.fp32_lat, spec, job.settings, job.stage,
                                        base.run_gate, conv.block, conv.host, conv.fp32_path))
    return quant, cands, no_data


def _gate(job: _Job, conv: _Converted, base: _Baseline, quant: dict[str, Any],
          cands: list[dict[str, Any]], no_data: bool) -> _Choice:
    """The fastest candidate that passed, else fp32 with the reason (or, ``strict``, an error)."""
    spec = conv.spec
    passing = [c for c in cands if c["verdict"] == "ok"]
    best = min(passing, key=lambda c: c["p50_ratio"]) if passing else None
    gate_failed = [c for c in cands if c["verdict"].startswith("gate")]
    if best is None and spec.strict and gate_failed:
        raise BuildError(
            f"model {spec.name!r}: strict: true and int8 failed the accuracy gate "
            f"({'; '.join(c['mode'] + ': ' + c['verdict'] for c in gate_failed)}); loosen 'tolerance', "
            "give a more representative 'calibration' set, or set strict: false to ship fp32")
    if best is None:
        shipped_path, mode = conv.fp32_path, "none"
        if conv.steps:
            quant["steps"] = {s["name"]: s["quantization"] for s in conv.conversion["steps"]}
        elif spec.quantize != "none":
            if no_data:
                why = "no validation, calibration or example data to gate int8 with; add 'validation'"
            elif not cands:
                why = quant.get("auto", "no candidates")
            else:
                why = "; ".join(f"{c['mode']}: {c['verdict']}" for c in cands)
            quant["fallback_reason"] = f"shipped fp32: {why}"
        fp32_out, gate_data = base.fp32_out, base.gate_data
        figures = accuracy.compare(fp32_out, fp32_out, gate_data.labels) if gate_data else {}
        figures.update(processing.label_figures(conv.block, fp32_out, fp32_out) if gate_data else {})
    else:
        shipped_path, mode = job.work / f"{best['mode']}.onnx", best["mode"]
        figures = best["figures"]
        quant["excluded_nodes"] = best.get("excluded_nodes", [])
    quant["mode"] = mode
    quant["candidates"] = cands
    return _Choice(quant=quant, shipped_path=shipped_path, figures=figures, best=best)


def _optimize_offline(job: _Job, conv: _Converted, base: _Baseline, choice: _Choice) -> None:
    """Ship the chosen graph as onnxruntime's CPU provider optimizes it (:mod:`ort_offline`):
    the function's session then does less at init. Where it has ``SkipLayerNormalization``,
    the unfused graph ships instead if it passes the gate and is measurably faster, timed
    side by side."""
    dst = job.work / "shipped_optimized.onnx"
    choice.graph = ort_offline.optimize(choice.shipped_path, dst, gpu=job.spec.instance_type.startswith(fit.GPU_FAMILIES),
                                        feeds=base.feeds, relative_error=int8_search.relative_error)
    if "skipped" in choice.graph:
        return
    choice.shipped_path = dst
    unfused = job.work / "shipped_unfused.onnx"
    if not base.feeds or base.gate_data is None or not ort_offline.unfuse_skip_layer_norm(dst, unfused):
        return
    job.stage(conv.spec.name, "measure SkipLayerNormalization vs Add + LayerNormalization")
    off = (ort_offline.SKIP_LAYER_NORM_FUSION,)
    sess = measure.session(unfused, disabled_optimizers=off)
    result = _judge(sess, base.run_gate, base.fp32_out, base.gate_data, conv.block, conv.spec)
    lat, ref = measure.paired_latency(sess, measure.session(dst), base.feeds)
    faster = lat.p50_ms < ref.p50_ms * (1 - MIN_SPEEDUP)
    choice.graph["skip_layer_norm"] = {
        "fused_p50_ms": round(ref.p50_ms, 4), "unfused_p50_ms": round(lat.p50_ms, 4),
        "unfused_gate": "passed" if result.passed else result.reason,
        "shipped": "unfused (Add + LayerNormalization)" if result.passed and faster else "fused"}
    if result.passed and faster:
        choice.shipped_path, choice.figures = unfused, result.figures
        choice.graph[layer_names.DISABLED_OPTIMIZERS] = list(off)
        if choice.best is not None:  # metrics.shipped: this graph's timing; the candidate's record stays
            choice.best = {**choice.best, "p50_ms": round(lat.p50_ms, 4), "p95_ms": round(lat.p95_ms, 4),
                           "p99_ms": round(lat.p99_ms, 4)}


def _judge(sess, run_gate: Callable[[Any], list[np.ndarray]], fp32_out: list[np.ndarray], gate_data: Dataset,
           block: dict[str, Any] | None, spec: ModelSpec) -> accuracy.GateResult:
    """The build's gate on a session: its outputs vs fp32's on the gate data, under the tolerance."""
    outs = run_gate(sess)
    figures = {**accuracy.compare(fp32_out, outs, gate_data.labels), **processing.label_figures(block, fp32_out, outs)}
    return accuracy.check(figures, spec.tolerance)


def _measure(job: _Job, conv: _Converted, base: _Baseline, choice: _Choice) -> _Measured:
    """What ships, measured in a fresh process (init, memory) and fitted to a deploy target."""
    spec, block, feeds_info = conv.spec, conv.block, base.feeds_info
    if choice.best is None:
        perf = _perf(conv.fp32_path, base.fp32_lat)
        p99 = base.fp32_lat.p99_ms if base.fp32_lat is not None else None
    else:
        perf = {k: choice.best[k] for k in ("size_bytes", "p50_ms", "p95_ms")}
        p99 = choice.best["p99_ms"]
    perf["size_bytes"] = choice.shipped_path.stat().st_size  # as shipped (ort_offline rewrites it)
    facts = measure.probe(choice.shipped_path, base.feeds, job.work, (block, conv.side_files))
    target_name, reasons, fit_info = fit.recommend(
        artifact_bytes=choice.shipped_path.stat().st_size, peak_rss_mb=facts["peak_rss_mb"],
        init_s=facts["init_s"], hash_s=facts.get("hash_s"), p99_ms=p99, signature=conv.sig,
        measured_at=fit.shape_label(feeds_info.get("shapes")), estimate=bool(feeds_info.get("estimate")),
        instance_type=spec.instance_type, requested=spec.target, timeout_s=spec.timeout_s)
    fit_info["baseline_rss_mb"] = facts["baseline_rss_mb"]
    if block is not None and block.get("preprocess"):  # in init_s; the library's share of the image
        kind = block["preprocess"]["kind"]
        fit_info["preprocess_init_s"] = facts.get("preprocess_init_s", 0.0)
        fit_info["preprocess_library_bytes"] = fit.library_bytes(kind)
        reasons.append(f"· {kind} pre-processing: {', '.join(fit.preprocess_libraries(kind))} "
                       f"{fit_info['preprocess_library_bytes'] / 1e6:.1f} MB of the image, "
                       f"{fit_info['preprocess_init_s']:.3f} s of the init above")
    return _Measured(perf=perf, target=target_name, reasons=reasons, fit=fit_info)


def _package(job: _Job, conv: _Converted, base: _Baseline, choice: _Choice, measured: _Measured) -> None:
    """The manifest, and the artifact published atomically with its side files."""
    spec, block, feeds, feeds_info, gate_data = conv.spec, conv.block, base.feeds, base.feeds_info, base.gate_data
    digest = sha256_file(choice.shipped_path)
    manifest = {
        "name": spec.name, "version": digest[:12], "sha256": digest,
        "source": spec.source if spec.source_path is None else _relative(Path(spec.source), job.root),
        "signature": public_signature(block) if block else conv.sig,
        "quantization": choice.quant,
        "metrics": {
            "fp32": _perf(conv.fp32_path, base.fp32_lat),
            "shipped": {**measured.perf, **_round(choice.figures)},
            "gate": {"data": base.gate_name, "rows": gate_data.rows if gate_data else 0,
                     "tolerance": spec.tolerance.model_dump(exclude_none=True)},
            "input": {k: v for k, v in feeds_info.items() if k != "unmeasured"},
            **({"unmeasured": feeds_info["unmeasured"]} if "unmeasured" in feeds_info else {}),
        },
        **({"warnings": base.warnings} if base.warnings else {}),
        layer_names.MANIFEST_GRAPH_OPTIMIZATION: choice.graph,
        "target": measured.target, "target_reasons": measured.reasons,
        "built_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fit": measured.fit,
        # the shapes the build measured with (the probe's, for a model with no data);
        # SnapStart primes the function with them
        EXAMPLE_SHAPES_KEY: {n: list(a.shape) for n, a in (feeds or {}).items()},
        "build": {"cache_key": conv.key, "pipeline_version": artifact.PIPELINE_VERSION,
                  "fp32_sha256": conv.fp32_sha, **conv.conversion},
    }
    if block is not None:
        manifest[layer_names.MANIFEST_PROCESSING] = block
    artifact.publish(choice.shipped_path, manifest, job.target, conv.side_files)
    job.result.manifest, job.result.model_dir = manifest, job.target


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _candidate(mode: str, pre: Path, work: Path, calibration: Dataset | None, gate_data: Dataset,
               feeds: dict[str, np.ndarray], fp32_out: list[np.ndarray], fp32_lat: measure.Latency, spec: ModelSpec,
               settings: BuildSettings, stage: StageCallback, run_gate: Callable[[Any], list[np.ndarray]],
               block: dict[str, Any] | None, host: Int8Host, fp32_path: Path) -> dict[str, Any]:
    """Make and judge one int8 variant; ``verdict`` is "ok" or why it cannot ship. Dynamic
    int8 that fails the gate is retried with its most sensitive nodes kept fp32."""
    path = work / f"{mode}.onnx"
    info: dict[str, Any] = {"mode": mode}

    def judge(candidate: Path) -> accuracy.GateResult:
        return _judge(measure.session(candidate), run_gate, fp32_out, gate_data, block, spec)

    try:
        if mode == "dynamic":
            search = int8_search.search_dynamic(
                pre, path, work, judge=judge, feeds=_sensitivity_feeds(gate_data, block),
                reduce_range=host.reduce_range, progress=lambda what: stage(spec.name, f"quantize {mode}: {what}"))
            result = search.result
            info["excluded_nodes"] = list(search.excluded)
            if search.record:
                info["int8_search"] = search.record
        else:
            quantize.quantize(mode, pre, path, calibration, reduce_range=host.reduce_range,
                              transformer=mode == "static" and transformer.is_transformer(onnx.load(pre)))
        sess = measure.session(path)
    except (quantize.QuantizationError, measure.LoadError) as exc:
        info["verdict"] = f"not shippable: {exc}"
        return info
    stage(spec.name, f"gate {mode}")
    if mode != "dynamic":
        result = judge(path)
    # timed side by side with fp32: on a loaded host, figures taken minutes apart flip the verdict
    lat, ref = measure.paired_latency(sess, measure.session(fp32_path), feeds)
    info.update(_perf(path, lat), p99_ms=round(lat.p99_ms, 4), figures=_round(result.figures),
                fp32_p50_ms_paired=round(ref.p50_ms, 4), p50_ratio=round(lat.p50_ms / ref.p50_ms, 4))
    if not result.passed:
        info["verdict"] = f"gate failed ({result.reason})"
        if stopped := info.get("int8_search", {}).get("stopped"):
            info["verdict"] += f"; {stopped}"
    elif settings.require_speedup and lat.p50_ms > ref.p50_ms * (1 - MIN_SPEEDUP):
        info["verdict"] = (f"slower than fp32 or within {MIN_SPEEDUP:.0%} of it (p50 {lat.p50_ms:.3f} ms "
                           f"vs {ref.p50_ms:.3f} ms, timed side by side); int8 ships only when measurably faster")
    else:
        info["verdict"] = "ok"
    return info


def _sensitivity_feeds(gate_data: Dataset, block: dict[str, Any] | None) -> list[dict[str, np.ndarray]]:
    """What the fallback's sensitivity is measured on, run as the gate runs it: the first gate
    rows in the gate's batches, or the first texts one request at a time."""
    if processing.one_by_one(gate_data, block):
        return processing.row_feeds(gate_data, int8_search.SENSITIVITY_TEXTS)
    rows = Dataset(inputs=gate_data.batch(0, min(gate_data.rows, int8_search.SENSITIVITY_ROWS)))
    return list(rows.batches(measure.EVAL_BATCH))
