"""Cold start: a fresh process importing the API handler (tracing on, as deployed) and answering
one request, against a bare ``import numpy, onnxruntime; InferenceSession; run``.

Each sample is a new Python process (as a new Lambda sandbox). "Deployed" sets what Lambda
sets (``LAMBDA_TASK_ROOT``, ``AWS_LAMBDA_FUNCTION_NAME``, an X-Ray trace header) so the
Powertools Tracer is really on; its segments go to the X-Ray daemon address over UDP, which is
fire-and-forget. Times are measured inside the process from its first line to the response
(interpreter start-up, the same for both, is reported apart). Variants run interleaved.

Run: ``python -m bench coldstart`` → ``bench/results/coldstart.md`` + ``coldstart.png``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_api import build_mlp
from bench.report import Report

REPO = Path(__file__).resolve().parents[1]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))

BARE = """
import time; t0 = time.perf_counter()
import numpy as np, onnxruntime as ort
s = ort.InferenceSession({model!r}, providers=["CPUExecutionProvider"])
s.run(None, {{"x": np.ones((1, {features}), np.float32)}})
print("MS", (time.perf_counter() - t0) * 1000)
"""

HANDLER = """
import time; t0 = time.perf_counter()
import json
from functions.api.handler import handler
class Ctx:
    function_name = "bench"; memory_limit_in_mb = 1769; aws_request_id = "cold"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
body = json.dumps({{"inputs": [{{"name": "x", "shape": [1, {features}], "datatype": "FP32",
                               "data": [0.5] * {features}}}]}})
event = {{"version": "2.0", "rawPath": "/v2/models/{name}/infer", "rawQueryString": "",
         "headers": {{"content-type": "application/json"}}, "body": body, "isBase64Encoded": False,
         "requestContext": {{"http": {{"method": "POST", "path": "/v2/models/{name}/infer"}},
                            "requestId": "cold", "stage": "$default"}}}}
r = handler(event, Ctx())
assert r["statusCode"] == 200, r
print("MS", (time.perf_counter() - t0) * 1000)
"""

IMPORT_COST = """
import time; t0 = time.perf_counter()
{stmt}
print("MS", (time.perf_counter() - t0) * 1000)
"""


def lambda_env(model_dir: Path, task_root: Path, *, tracing: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "AWS_", "_X_AMZN"))}
    env.update({
        "PYTHONPATH": str(REPO), "MODEL_DIR": str(model_dir), "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_LAMBDA_FUNCTION_NAME": "bench", "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "modelfn-bench", "POWERTOOLS_METRICS_NAMESPACE": "modelfn",
        "_X_AMZN_TRACE_ID": "Root=1-6740a1b2-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000", "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    })
    if not tracing:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def run_once(code: str, env: dict[str, str]) -> tuple[float, float]:
    """(in-process ms, whole-process wall ms) of one fresh interpreter."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=False)
    wall = (time.perf_counter() - t0) * 1000
    if out.returncode != 0:
        raise RuntimeError(f"cold-start sample failed:\n{out.stdout}\n{out.stderr}")
    ms = [float(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("MS ")]
    return ms[-1], wall


def sample(variants: dict[str, tuple[str, dict]]) -> dict[str, dict[str, float]]:
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for _ in range(ROUNDS):
        for k, (code, env) in variants.items():
            got[k].append(run_once(code, env))
    return {k: {"ms": statistics.median(v[0] for v in s), "wall": statistics.median(v[1] for v in s)}
            for k, s in got.items()}


def main() -> None:
    report = Report("coldstart", "Cold start: handler import + first request vs bare onnxruntime")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        task_root = root / "task"
        task_root.mkdir()
        rows, plot = [], {}
        for name, hidden in (("mlp-small", [256, 256]), ("mlp-3x1024", [1024, 1024, 1024])):
            model_dir = build_mlp(root / name, 64, hidden, 10)
            model = str(model_dir / "model.onnx")
            bare_env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}
            fmt = {"model": model, "features": 64, "name": name}
            res = sample({
                "bare": (BARE.format(**fmt), bare_env),
                "handler, tracing on (deployed)": (HANDLER.format(**fmt), lambda_env(model_dir, task_root)),
                "handler, tracing off": (HANDLER.format(**fmt), lambda_env(model_dir, task_root, tracing=False)),
            })
            bare = res["bare"]["ms"]
            for k, v in res.items():
                rows.append([name, k, round(v["ms"], 1), round(v["wall"], 1), round(v["ms"] / bare, 2)])
                plot.setdefault(k, []).append(v["ms"])
        report.table(f"Import + init + first request, median of {ROUNDS} fresh processes (ms)",
                     ["model", "variant", "in-process ms", "process wall ms", "× bare"], rows)
        report.note("Target: handler with tracing on ≤ 1.5× bare (aim 1.15×). 'process wall' adds the "
                    "interpreter start-up, the same for every variant.")

        env = lambda_env(root / "mlp-small", task_root)
        costs = sample({
            "python -c pass": (IMPORT_COST.format(stmt="pass"), env),
            "Powertools Logger+Metrics": (IMPORT_COST.format(
                stmt="from aws_lambda_powertools import Logger, Metrics"), env),
            "+ event handler (APIGatewayHttpResolver)": (IMPORT_COST.format(
                stmt="from aws_lambda_powertools import Logger, Metrics\n"
                     "from aws_lambda_powertools.event_handler import APIGatewayHttpResolver"), env),
            "Tracer(auto_patch=False), in Lambda": (IMPORT_COST.format(
                stmt="from aws_lambda_powertools import Tracer\nTracer(service='b', auto_patch=False)"), env),
            "Tracer() default auto-patch, in Lambda": (IMPORT_COST.format(
                stmt="from aws_lambda_powertools import Tracer\nTracer(service='b')"), env),
            "Tracer() outside Lambda (SDK builds a sampling client)": (IMPORT_COST.format(
                stmt="from aws_lambda_powertools import Tracer\nTracer(service='b')"),
                {k: v for k, v in env.items() if k not in ("LAMBDA_TASK_ROOT", "AWS_LAMBDA_FUNCTION_NAME")}),
            "numpy + onnxruntime": (IMPORT_COST.format(stmt="import numpy, onnxruntime"), env),
        })
        base = costs["python -c pass"]["ms"]
        report.table("Import costs in a fresh process (ms, median)", ["import", "ms"],
                     [[k, round(v["ms"] - base, 1)] for k, v in costs.items() if k != "python -c pass"])
    report.note(f"Load average when the run started: {load:.1f} on {os.cpu_count()} CPUs (shared machine).")
    labels = ["mlp-small", "mlp-3x1024"]
    report.bar_plot("coldstart.png", "Cold start: import + init + first request", labels, plot, "ms")
    report.write()
    print(json.dumps({r[1] + " " + r[0]: r[4] for r in rows}))


if __name__ == "__main__":
    main()
