"""Measured facts about a model file: loads?, outputs, latency, size, init time, peak RSS.

Latency is single-threaded batch-1 wall time after warm-up (what one Lambda vCPU sees, and
a fair fp32-vs-int8 comparison). Init time and peak RSS come from a fresh subprocess
(:mod:`infra.build.probe`), because the build process has torch and friends loaded and
would report its own memory instead of the function's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infra.build.data import Dataset

WARMUP = 10
MIN_RUNS = 30
MAX_RUNS = 300
TIME_BUDGET_S = 1.5
EVAL_BATCH = 64
PROBE_TIMEOUT_S = 120


class LoadError(RuntimeError):
    """onnxruntime refuses the model (e.g. an op with no CPU kernel)."""


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    runs: int


def session(path: Path, threads: int = 1, disabled_optimizers: tuple[str, ...] = ()):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(disabled_optimizers))
    except Exception as exc:  # ORT raises its own Fail/NotImplemented types
        raise LoadError(f"onnxruntime cannot load it: {str(exc).splitlines()[0]}") from exc


def session_from(model, threads: int = 1):
    """A session on an in-memory ``onnx.ModelProto`` (e.g. one with extra outputs exposed)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_all(sess, data: Dataset, batch: int = EVAL_BATCH) -> list[np.ndarray]:
    """All rows through the model in batches; one concatenated array per output."""
    chunks = [sess.run(None, feeds) for feeds in data.batches(batch)]
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def latency(sess, feeds: dict[str, np.ndarray]) -> Latency:
    """Batch-1 latency percentiles, after :data:`WARMUP` runs, within a small time budget."""
    for _ in range(WARMUP):
        sess.run(None, feeds)
    times: list[float] = []
    deadline = time.perf_counter() + TIME_BUDGET_S
    while len(times) < MAX_RUNS and (len(times) < MIN_RUNS or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1000.0
    return Latency(*(float(np.percentile(ms, q)) for q in (50, 95, 99)), runs=len(times))


#: Paired timing: runs per turn, and turns at least (each session gets MIN_RUNS runs or more).
PAIRED_TURN = 5


def paired_latency(sess, reference, feeds: dict[str, np.ndarray]) -> tuple[Latency, Latency]:
    """Batch-1 latency of ``sess`` and ``reference`` measured side by side: short alternating
    turns (the order swapped each turn), so load on a shared host falls on both alike and
    their ratio holds where two separate measurements minutes apart would not."""
    for s in (sess, reference):
        for _ in range(WARMUP):
            s.run(None, feeds)
    times: tuple[list[float], list[float]] = ([], [])
    deadline = time.perf_counter() + 2 * TIME_BUDGET_S
    turn = 0
    while len(times[0]) < MAX_RUNS and (len(times[0]) < MIN_RUNS or time.perf_counter() < deadline):
        order = (0, 1) if turn % 2 == 0 else (1, 0)
        for i in order:
            s = (sess, reference)[i]
            for _ in range(PAIRED_TURN):
                t0 = time.perf_counter()
                s.run(None, feeds)
                times[i].append(time.perf_counter() - t0)
        turn += 1
    out = []
    for t in times:
        ms = np.asarray(t) * 1000.0
        out.append(Latency(*(float(np.percentile(ms, q)) for q in (50, 95, 99)), runs=len(t)))
    return out[0], out[1]


def probe(model: Path, feeds: dict[str, np.ndarray] | None, work: Path,
          processing: tuple[dict, dict[str, Path]] | None = None) -> dict[str, float]:
    """Init time and peak RSS of serving ``model`` at batch 1, in a fresh Python process.
    Without ``feeds`` (no input the model runs on) the RSS is after loading only. With
    ``processing`` (block, side files) init includes building the tokenizer/image decoder."""
    feeds_path = work / "probe_feeds.npz"
    if feeds is None:
        feeds_path = Path("-")
    else:
        np.savez(feeds_path, **feeds)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    args = [str(model), str(feeds_path)]
    if processing is not None and processing[0] is not None:
        (work / "probe_processing.json").write_text(json.dumps(
            {"block": processing[0], "files": {k: str(v) for k, v in processing[1].items()}}))
        args.append(str(work / "probe_processing.json"))
    proc = subprocess.run([sys.executable, "-m", "infra.build.probe", *args],
                          capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise LoadError(f"a fresh process could not serve it: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
