"""Batch inference: vectorised rows/s vs one row at a time, and peak RSS vs input size.

1. **Rows/s** (target ≥ 20×): the batch job's compute loop — read a chunk from a local
   ``.npy``, run the model, encode the output lines — with chunks sized from the memory
   budget, vs the same loop with one row per model call. Same reader, model and encoder.
2. **Peak RSS** (target: 10 MB and 500 MB inputs within 64 MB of each other): the whole job
   (download, validate, chunks, multipart upload) in a fresh subprocess per input, against
   a moto S3 server on 127.0.0.1 so the object's bytes live in another process. Peak RSS is
   the child's ``VmHWM`` from ``/proc/self/status`` (the high-water mark of the process doing
   the work, reset at exec); ``ru_maxrss`` would not do: on Linux it carries the parent's
   peak across fork+exec, which is why an earlier run read 275 MB for both inputs. Its RSS
   after loading the model is shown as the baseline.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.report import Report

FEATURES, CLASSES = 256, 10  # 1 KiB of FP32 per input row
BUCKET = "modelfn-batch"
REPO = Path(__file__).resolve().parents[1]


def build_model(root: Path, name: str = "wide", features: int = FEATURES, classes: int = CLASSES) -> Path:
    from tests.conftest import make_tiny_onnx, write_manifest

    onnx_path = make_tiny_onnx(root / name / "model.onnx", in_features=features, out_features=classes)
    return write_manifest(onnx_path.parent, name,
                          [{"name": "x", "datatype": "FP32", "shape": [-1, features]}],
                          [{"name": "probs", "datatype": "FP32", "shape": [-1, classes]}])


def write_npy(path: Path, rows: int, features: int = FEATURES) -> Path:
    """A float32 [rows, features] .npy written in slices (the bench never holds it whole)."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (rows, features)})
        for start in range(0, rows, 8192):
            n = min(8192, rows - start)
            f.write(np.random.default_rng(start).standard_normal((n, features), dtype=np.float32).tobytes())
    return path


# --- 1. rows/s -------------------------------------------------------------------------------


def compute_rows_per_s(model, path: Path, chunk_rows: int) -> tuple[float, float]:
    """(rows/s of the whole loop, rows/s of the model calls alone)."""
    from layers.batch.encode import encode_batch
    from layers.batch.readers import open_reader

    reader = open_reader(path, ".npy", model)
    try:
        reader.validate(chunk_rows)
        t0 = time.perf_counter()
        in_model = 0.0
        for batch in reader.batches(chunk_rows):
            t1 = time.perf_counter()
            results = model.infer(batch.inputs)
            in_model += time.perf_counter() - t1
            encode_batch(batch, results)
        return reader.rows / (time.perf_counter() - t0), reader.rows / in_model
    finally:
        reader.close()


MODELS = {  # label: (features, classes)
    "tiny 4 → 3 (the tests' classifier)": (4, 3),
    "wide 256 → 10": (256, 10),
}


def bench_rows(report: Report, root: Path) -> None:
    from layers.batch.chunking import memory_budget_bytes, rows_per_chunk
    from layers.model import load_model

    table, labels, speedups = [], [], []
    for i, (label, (features, classes)) in enumerate(MODELS.items()):
        model = load_model(build_model(root, f"rows{i}", features, classes))
        chunk = rows_per_chunk(input_row_bytes=features * 4, output_row_bytes=classes * 28,
                               budget_bytes=memory_budget_bytes(), batch=None)
        big = write_npy(root / "rows-big.npy", 200_000, features)
        small = write_npy(root / "rows-small.npy", 3_000, features)
        try:
            vec, vec_model = (max(v) for v in zip(*(compute_rows_per_s(model, big, chunk) for _ in range(3)), strict=True))
            one, one_model = (max(v) for v in zip(*(compute_rows_per_s(model, small, 1) for _ in range(3)), strict=True))
        finally:
            big.unlink()
            small.unlink()
        table += [[label, "one row per call", 3_000, 1, one, 1.0, "", one_model, 1.0],
                  [label, "chunked (64 MB budget)", 200_000, chunk, vec, vec / one, "≥ 20×",
                   vec_model, vec_model / one_model]]
        labels.append(label)
        speedups.append(vec / one)
    report.table("Rows/s: chunked vs one row per model call (read + infer + encode lines)",
                 ["model", "mode", "rows", "rows per call", "rows/s", "speed-up", "target",
                  "model-call rows/s", "model-call speed-up"], table)
    report.note("Chunked throughput is bound by writing the output floats as JSON text (orjson, "
                "paid per float in both modes), so the end-to-end speed-up falls as the output "
                "widens; the model-call columns show the part chunking removes: one onnxruntime "
                "call, validation and input check per row.")
    report.bar_plot("batch_speedup.png", "Chunked vs one row per call", labels,
                    {"speed-up ×": speedups}, "×")


# --- 2. peak RSS ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.terminate()
    raise RuntimeError("moto server did not start")


CHILD = r"""
import json, sys, time
from layers.model import load_model
from layers.batch.clients import s3_client
from layers.batch.deadline import Deadline
from layers.batch.job import BatchJob
from layers.batch.layout import ObjectRef, route

def status_mb(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":")) / 1024

model = load_model(sys.argv[1])
ref = ObjectRef(bucket=sys.argv[2], key=sys.argv[3])
s3 = s3_client()
s3.head_object(Bucket=ref.bucket, Key=ref.key)
baseline = status_mb("VmRSS")
job = BatchJob(model, s3)
t0 = time.perf_counter()
result = job.run(ref, route(ref.key, model.name), request_id="bench", deadline=Deadline(None))
seconds = time.perf_counter() - t0
print(json.dumps({"status": result.status, "rows": result.rows, "seconds": seconds, "chunks": job.chunks_run,
                  "baseline_mb": baseline, "peak_mb": status_mb("VmHWM")}))
"""


def run_child(model_dir: Path, key: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(model_dir), BUCKET, key], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_rss(report: Report, root: Path, model_dir: Path) -> None:
    import boto3

    port = free_port()
    moto = start_moto(port)
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1", "TMPDIR": str(root)}
    env.pop("MODELFN_BATCH_MEMORY_BUDGET_MB", None)
    rows = []
    try:
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
        s3.create_bucket(Bucket=BUCKET)
        for label, mb in (("10 MB", 10), ("500 MB", 500)):
            path = write_npy(root / f"in-{mb}.npy", mb * 1024)
            key = f"wide/in/rss-{mb}mb.npy"
            s3.upload_file(str(path), BUCKET, key)
            path.unlink()
            r = run_child(model_dir, key, env)
            s3.delete_object(Bucket=BUCKET, Key=key)
            s3.delete_object(Bucket=BUCKET, Key=f"wide/out/rss-{mb}mb.npy.jsonl")
            rows.append([label, r["rows"], r["chunks"], r["baseline_mb"], r["peak_mb"],
                         r["peak_mb"] - r["baseline_mb"], r["rows"] / r["seconds"], r["status"]])
    finally:
        moto.terminate()
        moto.wait(timeout=30)
    delta = rows[1][4] - rows[0][4]
    report.table("Peak RSS of the whole batch job (subprocess; S3 = moto server)",
                 ["input", "rows", "chunks", "RSS after model load MB", "peak RSS MB", "job's own MB",
                  "rows/s end to end", "status"], rows)
    report.note(f"Peak RSS 500 MB input − 10 MB input: **{delta:+.1f} MB** (target: within 64 MB).")
    report.bar_plot("batch_peak_rss.png", "Batch job peak RSS", [r[0] for r in rows],
                    {"peak RSS MB": [r[4] for r in rows]}, "MB")


def main() -> None:
    report = Report("batch", "Batch inference: vectorised throughput and bounded memory")
    with tempfile.TemporaryDirectory(prefix="modelfn-bench-batch-") as tmp:
        root = Path(tmp)
        model_dir = build_model(root)
        bench_rows(report, root)
        bench_rss(report, root, model_dir)
    report.note("Model: Gemm+Softmax, input x FP32 [-1, 256] (1 KiB/row), output probs FP32 [-1, 10]; "
                "memory budget: the default 64 MB (MODELFN_BATCH_MEMORY_BUDGET_MB unset).")
    report.write()


if __name__ == "__main__":
    main()
