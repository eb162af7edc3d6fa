"""Synth at scale: templates, largest template and synth time for 15 / 60 / 200 / 500 models.

Each catalog is fabricated (tests/infra/fabricate.py: one tiny ONNX file hard-linked into
every model's build directory, a manifest per model) and synthesized by the CDK app in a
fresh interpreter with every check on (cdk-nag on the whole app), as ``make synth`` does.
Printed per size: stacks, the largest template (resources, KB), every template's total, the
seconds of the synth (``build_app`` + ``app.synth()``) and of a second synth of the same
catalog (staged contexts reused), and seconds per model, so linearity reads off one table.

Run: ``python -m bench synth`` (``BENCH_SYNTH_SIZES=15,60`` to choose sizes) →
``bench/results/synth.md``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Report

REPO = Path(__file__).resolve().parents[1]
SIZES = tuple(int(s) for s in os.environ.get("BENCH_SYNTH_SIZES", "15,60,200,500").split(","))
CHECKS = os.environ.get("BENCH_SYNTH_CHECKS", "1") != "0"
#: the second synth (staging reuse) only up to this many models: it costs a whole synth again
AGAIN_MAX = int(os.environ.get("BENCH_SYNTH_AGAIN_MAX", "60"))

_CHILD = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.infra.fabricate import fabricate, model_entries
from infra.cdk.app import build_app
root, n, checks = Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
catalog, build = fabricate(root, model_entries(lambda_models=n))
t0 = time.perf_counter()
app, _ = build_app(context={"modelfn:catalog": str(catalog), "modelfn:build_dir": str(build)},
                   outdir=str(root / "cdk.out"), checks=checks)
t1 = time.perf_counter()
app.synth()
t2 = time.perf_counter()
print(json.dumps({"construct_s": t1 - t0, "synth_s": t2 - t0}))
"""


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _synth(root: Path, n: int) -> dict:
    t0, c0 = time.perf_counter(), _cpu_s()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(REPO), str(root), str(n), "1" if CHECKS else "0"],
                          cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"})
    if proc.returncode != 0:
        raise SystemExit(f"synth of {n} models failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t0
    out["cpu_s"] = _cpu_s() - c0  # the interpreter and its jsii node process, all cores
    return out


def _templates(outdir: Path) -> list[tuple[str, int, int]]:
    manifest = json.loads((outdir / "manifest.json").read_text())
    found = []
    for name, art in manifest["artifacts"].items():
        if art["type"] == "aws:cloudformation:stack":
            path = outdir / art["properties"]["templateFile"]
            found.append((name, len(json.loads(path.read_text())["Resources"]), path.stat().st_size))
    return found


def _cpu() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    return f"{name} ({', '.join(f for f in ('avx2', 'avx512_vnni', 'avx_vnni') if f' {f}' in flags) or 'no avx2'})"


def main() -> None:
    report = Report("synth", "Synth at scale: one shared stack + one stack per model")
    rows = []
    with tempfile.TemporaryDirectory(prefix="modelfn-bench-synth-") as tmp:
        for n in SIZES:
            root = Path(tmp) / f"n{n}"
            first = _synth(root, n)
            templates = _templates(root / "cdk.out")
            # same catalog again: staged contexts unchanged
            second = _synth(root, n) if n <= AGAIN_MAX else {"synth_s": float("nan"), "cpu_s": float("nan")}
            largest = max(templates, key=lambda t: (t[1], t[2]))
            rows.append([n, len(templates), largest[0], largest[1], round(largest[2] / 1024, 1),
                         sum(t[1] for t in templates), round(first["synth_s"], 1),
                         round(first["cpu_s"], 1), round(first["cpu_s"] / n, 2),
                         round(second["synth_s"], 1), round(second["cpu_s"], 1)])
            print(f"{n} models: {rows[-1]}", flush=True)
            _write(report, rows)
    _write(report, rows)


def _write(report: Report, rows: list) -> None:
    """Write what is measured so far (a long run keeps its first sizes if it is stopped)."""
    report._sections.clear()
    report.notes.clear()
    report.table("Models → templates (cdk-nag on)" if CHECKS else "Models → templates (cdk-nag off)",
                 ["models", "templates", "largest", "its resources", "its KB", "resources, all",
                  "synth s (wall)", "CPU s", "CPU s/model", "again: wall s", "again: CPU s"], rows)
    report.note(f"CPU: {_cpu()}; load average while measuring: {os.getloadavg()[0]:.1f} on "
                f"{os.cpu_count()} cores (the wall seconds depend on it, the CPU seconds much less). "
                "Lambda-target models, fabricated build outputs; `synth s` is `build_app` + "
                "`app.synth()` in one interpreter; CPU s: that interpreter and its jsii node process, "
                "from start to exit. `again`: the same catalog synthesized a second time (staged "
                "contexts unchanged, not copied again).")
    report.write()


if __name__ == "__main__":
    main()
