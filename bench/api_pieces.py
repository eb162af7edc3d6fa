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

from bench.report import Report

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

    from bench.api_setup import p50_us, paired

    obs = h.obs

    def noop(event, context):
        return None

    def emf_record(event=None, context=None):
        obs.count("BatchSize", 1)
        obs.count("PayloadBytes", 300, unit="Bytes")
        obs.record_request(latency_ms=0.1, request_id="bench", status=200, path="/v2/models/m/infer")

    def emf_flushed():
        emf_record()
        obs.flush()

    def emf_powertools():
        m = obs.metrics
        m.add_metric(name="BatchSize", unit="Count", value=1)
        m.add_metric(name="PayloadBytes", unit="Bytes", value=300)
        m.add_metric(name="Latency", unit="Milliseconds", value=0.1)
        for key, value in (("request_id", "bench"), ("model_version", obs.model_version),
                           ("path", "/v2/models/m/infer"), ("status", 200)):
            m.add_metadata(key=key, value=value)
        m.flush_metrics()

    powertools_ctx = obs.logger.inject_lambda_context(noop, clear_state=False)
    logger_ctx = obs._lambda_context_keys(noop)  # what the entry point does instead
    whole = obs.entry_point(emf_record)  # logger context + record + flush + cold-start check
    with contextlib.redirect_stdout(sink):
        r = paired({"noop": lambda: noop(event, ctx), "powertools logger": lambda: powertools_ctx(event, ctx),
                    "logger": lambda: logger_ctx(event, ctx), "powertools emf": emf_powertools,
                    "emf": emf_flushed, "whole": lambda: whole(event, ctx)}, warmup=300, repeat=3000)
    base = p50_us(r["noop"])
    figures = {"Logger context: Powertools' inject_lambda_context": p50_us(r["powertools logger"]) - base,
               "Logger context: the entry point's keys": p50_us(r["logger"]) - base,
               "EMF record: Powertools add_metric ×3 + add_metadata ×4 + flush_metrics": p50_us(r["powertools emf"]),
               "EMF record: the entry point's (Powertools' template, orjson)": p50_us(r["emf"]),
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


def _spin_until_return():
    """Spinning workers inside a run (no wake-up between ops), stopped when ``run`` returns, so
    they do not spin on the CPU the Python thread needs for JSON (onnxruntime's
    ``session.force_spinning_stop``)."""
    from layers.model import session_options

    so = session_options(spinning=True)
    so.add_session_config_entry("session.force_spinning_stop", "1")
    return so


def session_options_vs_default(report: Report, root: Path) -> dict[str, float]:
    """p50 of the options the runtime chooses vs onnxruntime's defaults, raw ``session.run`` and
    through the V2 JSON request path (parse, protocol, run, write), at batch 1 and 32."""
    import onnxruntime as ort

    from bench.api_setup import blocks, json_body, p50_us
    from layers.manifest import read_manifest
    from layers.model import Model, available_cpus, session_options
    from layers.v2_wire import infer, join_body, split_body

    cpus = available_cpus()
    model_dir = root / "mlp-3x1024"
    path, manifest = str(model_dir / "model.onnx"), read_manifest(model_dir)
    default = "onnxruntime default InferenceSession"
    variants = {
        "runtime-chosen (threads=CPUs, no spinning, sequential)": session_options(),
        default: None,
        "runtime-chosen + spinning on": session_options(spinning=True),
        "runtime-chosen + spinning, stopped when run returns": _spin_until_return(),
        "runtime-chosen, 1 intra-op thread": session_options(threads=1),
    }
    models = {}
    for k, so in variants.items():
        kwargs = {"sess_options": so} if so is not None else {}
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"], **kwargs)
        models[k] = Model(manifest=manifest, session=session, threads=cpus)
    results = {}
    for batch, block in ((1, 100), (32, 20)):
        x = np.random.default_rng(batch).standard_normal((batch, 64)).astype(np.float32)
        body = json_body("x", x)
        fns = {}
        for k, m in models.items():
            fns[("raw", k)] = lambda m=m, x=x: m.session.run(None, {"x": x})
            fns[("V2", k)] = lambda m=m, body=body: join_body(infer(m, split_body(body, None)[0]))
        results[batch] = blocks(fns, rounds=10, block=block)
    rows, figures = [], {}
    for k in variants:
        row = [k]
        for batch in (1, 32):
            for kind in ("raw", "V2"):
                v, d = results[batch][(kind, k)], results[batch][(kind, default)]
                row += [round(p50_us(v), 1), round(p50_us(v) / p50_us(d), 3)]
                figures[f"{k} {kind} b{batch}"] = p50_us(v)
        rows.append(row)
    report.table(f"Session options, MLP 64-1024-1024-1024-10 ({cpus} CPUs available; p50 µs and ratio to the "
                 "default session; raw session.run and the V2 JSON request path; variants alternating in blocks)",
                 ["options", "b1 raw µs", "b1 raw / default", "b1 V2 µs", "b1 V2 / default",
                  "b32 raw µs", "b32 raw / default", "b32 V2 µs", "b32 V2 / default"], rows)
    return figures
