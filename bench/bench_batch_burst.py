"""The batch load test: 2,000 objects dropped at once on the local stack.

The local stack's event source works as deployed (infra/local/s3.py): at most
``batch.max_concurrency`` batch invocations at once, up to ``batch.batch_size`` S3 objects
each, failures retried per message. Reported: objects, results, lost, written twice (extra
versions in the versioned bucket), error records, messages left in the queue and its DLQ,
peak concurrent invocations, invocations and wall time; then, side by side in the same stack,
the same burst with ``batch_size: 1`` (one object per invocation, the old setting) vs 10.
The suite runs a 300-object version (tests/e2e/test_stack_s3.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from bench.report import Report

OBJECTS = 2000
SIDE_BY_SIDE = 500


def _catalog(root: Path) -> Path:
    from tests.conftest import make_tiny_onnx

    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    make_tiny_onnx(src / "tiny.onnx")
    np.savez(src / "tiny_example.npz", x=np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32))
    common = "source: src/tiny.onnx, example_input: src/tiny_example.npz, quantize: none, auth: none, target: lambda"
    path = root / "models.yaml"
    path.write_text("models:\n"
                    f"  - {{name: tiny, {common}, batch: {{max_concurrency: 2, batch_size: 10}}}}\n"
                    f"  - {{name: tiny-one, {common}, batch: {{max_concurrency: 2, batch_size: 1}}}}\n")
    return path


def _burst(stack, model: str, n: int, label: str):
    from rich.progress import Progress

    from tests.e2e.burst import drop_burst

    with Progress(transient=True) as bar:
        task = bar.add_task(f"{label}: {n} objects", total=n)
        return drop_burst(stack, model, n, timeout_s=1800, progress=lambda done: bar.update(task, completed=done))


def main() -> None:
    from infra.local.stack import LocalStack

    root = Path(tempfile.mkdtemp(prefix="modelfn-bench-burst-"))
    report = Report("batch_burst", "Batch load test: a burst of uploads on the local stack")
    with LocalStack(catalog_path=_catalog(root), out_dir=root / "build", port=0, s3_port=0) as stack:
        big = _burst(stack, "tiny", OBJECTS, "burst")
        report.table(f"{OBJECTS:,} objects dropped at once (max_concurrency 2, batch_size 10)",
                     ["objects", "results", "lost", "written twice", "error records", "left in queue",
                      "dead letters", "peak concurrent invocations", "invocations", "wall s", "objects/s"],
                     [[big.objects, big.results, big.lost, big.duplicates, big.errors, big.left_in_queue,
                       big.dead_letters, f"{big.peak_concurrency} (limit {big.max_concurrency})", big.invocations,
                       big.wall_s, round(big.objects / big.wall_s, 1)]])
        ten = _burst(stack, "tiny", SIDE_BY_SIDE, "batch_size 10")
        one = _burst(stack, "tiny-one", SIDE_BY_SIDE, "batch_size 1")
    rows = [[label, r.objects, r.invocations, r.peak_concurrency, r.lost, r.duplicates, r.wall_s,
             round(r.objects / r.wall_s, 1)] for label, r in (("batch_size 1", one), ("batch_size 10", ten))]
    report.table(f"side by side, {SIDE_BY_SIDE} objects each, same stack (max_concurrency 2)",
                 ["setting", "objects", "invocations", "peak concurrent", "lost", "written twice", "wall s",
                  "objects/s"], rows)
    report.note(f"batch_size 10 vs 1: {one.wall_s / ten.wall_s:.2f}x the throughput, "
                f"{one.invocations / max(1, ten.invocations):.1f}x fewer invocations. Local stack: every "
                "invocation is a real Lambda runtime process (awslambdaric) against an embedded moto S3/SQS/"
                "DynamoDB in the same machine; the machine was shared with other jobs.")
    report.bar_plot("batch_burst.png", f"{SIDE_BY_SIDE} objects dropped at once", ["batch_size 1", "batch_size 10"],
                    {"objects/s": [r[-1] for r in rows]}, "objects/s")
    report.write()


if __name__ == "__main__":
    main()
