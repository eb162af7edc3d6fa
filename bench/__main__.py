"""Run the benchmarks: ``python -m bench`` (all) or ``python -m bench NAME ...``.

Each ``bench/bench_<name>.py`` defines ``main() -> None`` that prints tables and writes
``bench/results/<name>.md`` (and plots) through :class:`bench.report.Report`. With more than
one name, each runs in its own interpreter: a benchmark's loggers, imported handlers and
servers must not leak into the next one's figures.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    if len(names) == 1:
        print(f"\n=== bench {names[0]} ===", flush=True)
        importlib.import_module(f"bench.bench_{names[0]}").main()
        return 0
    failed = [n for n in names if subprocess.run([sys.executable, "-m", "bench", n]).returncode != 0]
    if failed:
        print(f"benchmark(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
