"""The local stack under load, and how long ``modelfn up`` takes to be ready.

* Throughput and latency through the whole local path (HTTP → local API Gateway → HTTP API
  2.0 event → Runtime API → awslambdaric process → handler → back) on a small model, at 1, 8
  and 32 concurrent keep-alive clients (threads with ``http.client``, 127.0.0.1 only, each
  run bounded by a request count and a time limit), with 1 and 4 warm instances.
* Time from starting ``modelfn up`` on the sample catalog to its banner: cold (empty build
  directory: every model converted, quantized and gated) and warm (build cache reused).

Run: ``python -m bench local`` → ``bench/results/local.md`` + ``local.png``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.report import Report, percentile_ms

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = (1, 8, 32)
WARM = (1, 4)
MAX_REQUESTS = 3000  # per run
MAX_SECONDS = 8.0  # per run


def _client_loop(port: int, body: bytes, stop_at: float, budget: list[int], lock: threading.Lock,
                 latencies: list[float], errors: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    while time.perf_counter() < stop_at:
        with lock:
            if budget[0] <= 0:
                break
            budget[0] -= 1
        t0 = time.perf_counter()
        conn.request("POST", "/v2/models/bench/infer", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        dt = time.perf_counter() - t0
        with lock:
            (latencies if resp.status == 200 else errors).append(dt if resp.status == 200 else resp.status)
    conn.close()


def load_run(port: int, body: bytes, clients: int) -> dict:
    latencies: list[float] = []
    errors: list[int] = []
    lock, budget = threading.Lock(), [MAX_REQUESTS]
    for _ in range(20):  # warm-up
        _client_loop(port, body, time.perf_counter() + 5, [1], lock, [], [])
    t0 = time.perf_counter()
    threads = [threading.Thread(target=_client_loop, args=(port, body, t0 + MAX_SECONDS, budget, lock,
                                                           latencies, errors)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"n": len(latencies), "errors": len(errors), "rps": len(latencies) / wall,
            "p50": percentile_ms(latencies, 50), "p99": percentile_ms(latencies, 99)}


def _bench_catalog(root: Path) -> tuple[Path, bytes]:
    """A small MLP (64 → 128 → 10) as model ``bench``; request: 1 row."""
    from onnx import TensorProto, helper, numpy_helper

    from tests.e2e.tiny_models import _save

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((64, 128)).astype(np.float32) / 8, "W1")
    w2 = numpy_helper.from_array(rng.standard_normal((128, 10)).astype(np.float32) / 11, "W2")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "W2"], ["y"])], "bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], initializer=[w1, w2])
    _save(graph, root / "bench.onnx")
    catalog = root / "models.yaml"
    catalog.write_text("models:\n  - {name: bench, source: bench.onnx, quantize: none, auth: none, "
                       "target: lambda}\n")
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32",
                                   "data": rng.standard_normal(64).round(4).tolist()}]}).encode()
    return catalog, body


def throughput(report: Report) -> dict[str, list[float]]:
    from infra.local.stack import LocalStack

    rows, series = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        catalog, body = _bench_catalog(Path(tmp))
        for warm in WARM:
            stack = LocalStack(catalog_path=catalog, out_dir=Path(tmp) / "build", port=0, s3_port=0,
                               warm=warm).start()
            try:
                port = int(stack.url.rsplit(":", 1)[1])
                rps = []
                for clients in CLIENTS:
                    r = load_run(port, body, clients)
                    rps.append(r["rps"])
                    rows.append([warm, clients, r["n"], r["errors"], r["rps"], r["p50"], r["p99"]])
                series[f"{warm} warm"] = rps
            finally:
                stack.stop()
    report.table("Requests through the local stack (model 64→128→10 MLP, 1 row, JSON)",
                 ["warm instances", "clients", "requests", "errors", "req/s", "p50 ms", "p99 ms"], rows)
    return series


def _time_up(catalog: Path, out: Path, *extra: str, limit_s: float = 900) -> float:
    """Seconds from starting ``modelfn up`` to its banner's last line."""
    from infra.local.processes import free_port

    ready = threading.Event()
    log = open(out.parent / f"up-{time.time():.0f}.log", "w")  # noqa: SIM115 - closed below
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "infra.cli", "up", "--catalog", str(catalog),
                             "--out", str(out), "--port", str(free_port()), "--s3-port", str(free_port()), *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)

    def read() -> None:
        for line in proc.stdout:
            if "Ctrl-C stops everything" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        return time.perf_counter() - t0 if ready.wait(limit_s) else float("nan")
    finally:
        proc.terminate()
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            log.flush()
            print(f"modelfn up did not stop within 120 s after SIGTERM; its log: {log.name}")
            raise
        finally:
            log.close()


def time_to_ready(report: Report) -> None:
    catalog = ROOT / "models.yaml"
    if not (ROOT / "samples" / "generated").is_dir():
        subprocess.run([sys.executable, "scripts/make_samples.py"], cwd=ROOT, check=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-local-"))  # kept if a run fails: its logs are there
    cold = _time_up(catalog, tmp / "build")
    warm = _time_up(catalog, tmp / "build")
    serve_only = _time_up(catalog, tmp / "build", "--no-build")
    shutil.rmtree(tmp, ignore_errors=True)
    n = len([ln for ln in catalog.read_text().splitlines() if ln.strip().startswith("- name:")])
    report.table(f"`modelfn up` to ready, sample catalog ({n} models)",
                 ["build", "seconds to banner"],
                 [["cold (empty build/: convert, quantize, gate)", cold],
                  ["warm (build cache reused)", warm], ["--no-build (serve build/ as it is)", serve_only]])
    report.note("Warm still runs each model's conversion step (the build cache key is the fp32 "
                "artifact's sha256): that is the gap to --no-build. --no-build is start-up "
                "itself: moto, the gateway and every api/batch process's init (model load).")


def main() -> None:
    report = Report("local", "Local stack: throughput, latency and time to ready")
    load = os.getloadavg()[0]
    series = throughput(report)
    time_to_ready(report)
    report.bar_plot("local.png", "Local stack throughput", [f"{c} clients" for c in CLIENTS], series, "req/s")
    report.note(f"Load average when the run started: {load:.1f} on {os.cpu_count()} CPUs; the "
                "clients, the gateway and the function processes share those CPUs: indicative, "
                "not a capacity statement.")
    report.note("Every request takes the deployed path: HTTP → local API Gateway (HTTP API 2.0 "
                "event) → Lambda Runtime API → awslambdaric process → functions.api.handler. "
                "An instance handles one request at a time, as a Lambda execution environment "
                "does, so throughput scales with warm instances (Lambda scales out instead).")
    report.write()


if __name__ == "__main__":
    main()
