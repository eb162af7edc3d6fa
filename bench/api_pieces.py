"""Sections of ``bench/bench_api.py``: what each per-request observability piece costs, and the
session options the runtime chooses against a default ``InferenceSession``.

The Tracer only runs inside Lambda (``layers/observability.py``), so its cost is measured in a
fresh process with Lambda's environment (``bench.bench_coldstart.lambda_env``): the X-Ray SDK
keeps global state that must not leak into the rest of the benchmark.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.report import Report, percentile_ms

# Wall µs per call of the shared entry point with and without the Tracer, in Lambda's env.
TRACER_CODE = """
import json, os, sys, time
sink = open(os.devnull, "w")
real_stdout, sys.stdout = sys.stdout, sink
from layers.observability import Observability
traced_obs = Observability("bench")
assert traced_obs.tracer is not None, "tracing must be on in this process"
traced_obs.bind_model("bench", "0123456789ab")
class Ctx:
    function_name = "bench"; memory_limit_in_mb = 1769; aws_request_id = "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
def work(event, context):
    traced_obs.count("BatchSize", 1)
traced = traced_obs.entry_point(work)
traced_obs.tracer, tracer = None, traced_obs.tracer
untraced = traced_obs.entry_point(work)
fns = {"untraced": lambda: untraced({}, Ctx()), "traced": lambda: traced({}, Ctx())}
out = {k: [] for k in fns}
for _ in range(300):
    for fn in fns.values():
        fn()
for _ in range(3000):
    for k, fn in fns.items():
        t0 = time.perf_counter(); fn(); out[k].append(time.perf_counter() - t0)
sys.stdout = real_stdout
print(json.dumps({k: sorted(v)[len(v) // 2] * 1e6 for k, v in out.items()}))
"""


def observability_pieces(report: Report, h, event: dict, ctx, sink) -> dict[str, float]:
    """µs of each piece of the per-request record on the deployed handler module ``h``."""
    import contextlib

    from bench.bench_api import p50_us, paired

    obs = h.obs

    def noop(event, context):
        return None

    def emf_record(event=None, context=None):
        obs.count("BatchSize", 1)
        obs.count("PayloadBytes", 300, unit="Bytes")
        obs.record_request(latency_ms=0.1, request_id="bench", status=200, path="/v2/models/m/infer")

    def emf_flushed():
        emf_record()
        obs.metrics.flush_metrics()

    logger_ctx = obs.logger.inject_lambda_context(noop, clear_state=False)
    whole = obs.entry_point(emf_record)  # logger context + record + flush + cold-start check
    with contextlib.redirect_stdout(sink):
        r = paired({"noop": lambda: noop(event, ctx), "logger": lambda: logger_ctx(event, ctx),
                    "emf": emf_flushed, "whole": lambda: whole(event, ctx)}, warmup=300, repeat=3000)
    base = p50_us(r["noop"])
    figures = {"Logger context (inject_lambda_context)": p50_us(r["logger"]) - base,
               "EMF record: 3 metrics + 4 metadata + flush": p50_us(r["emf"]),
               "entry point, no tracer (Logger + EMF + ColdStart check)": p50_us(r["whole"]) - base}
    figures["Tracer subsegment + 2 annotations (in Lambda)"] = _tracer_us()
    report.table("Per-request observability, piece by piece (µs p50, same run)",
                 ["piece", "µs"], [[k, round(v, 1)] for k, v in figures.items()])
    report.note("The Tracer runs only inside Lambda; its figure comes from a fresh process with "
                "Lambda's environment (traced vs untraced entry point, interleaved).")
    return figures


def _tracer_us() -> float:
    from bench.bench_coldstart import REPO, lambda_env

    with tempfile.TemporaryDirectory() as tmp:
        env = lambda_env(Path(tmp), Path(tmp))
        out = subprocess.run([sys.executable, "-c", TRACER_CODE], env=env, cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    return got["traced"] - got["untraced"]


def session_options_vs_default(report: Report, root: Path) -> dict[str, float]:
    """Raw ``session.run`` p50 for the options the runtime chooses vs onnxruntime's defaults."""
    import onnxruntime as ort

    from bench.bench_api import blocks, p50_us
    from layers.model import available_cpus, session_options

    cpus = available_cpus()
    path = str(root / "mlp-3x1024" / "model.onnx")
    variants = {
        "runtime-chosen (threads=CPUs, no spinning, sequential)": session_options(),
        "onnxruntime default InferenceSession": None,
        "runtime-chosen + spinning on": session_options(spinning=True),
        "runtime-chosen, 1 intra-op thread": session_options(threads=1),
    }
    sessions = {k: ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
                if so is not None else ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                for k, so in variants.items()}
    rows, figures = [], {}
    results = {}
    for batch, block in ((1, 200), (32, 40)):
        x = np.random.default_rng(batch).standard_normal((batch, 64)).astype(np.float32)
        fns = {k: (lambda s=s, x=x: s.run(None, {"x": x})) for k, s in sessions.items()}
        results[batch] = blocks(fns, rounds=10, block=block)
    default = "onnxruntime default InferenceSession"
    for k in variants:
        row = [k]
        for batch in (1, 32):
            v, d = results[batch][k], results[batch][default]
            row += [round(p50_us(v), 1), round(percentile_ms(v, 95) * 1000, 1), round(p50_us(v) / p50_us(d), 3)]
            figures[f"{k} b{batch}"] = p50_us(v)
        rows.append(row)
    report.table(f"Session options, MLP 64-1024-1024-1024-10, raw session.run ({cpus} CPUs available; "
                 "variants alternating in blocks)",
                 ["options", "b1 p50 µs", "b1 p95 µs", "b1 / default", "b32 p50 µs", "b32 p95 µs", "b32 / default"],
                 rows)
    return figures
