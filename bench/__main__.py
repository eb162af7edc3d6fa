"""Run the benchmarks: ``python -m bench`` (all) or ``python -m bench NAME ...``.

Each ``bench/bench_<name>.py`` defines ``main() -> None`` that prints tables and writes
``bench/results/<name>.md`` (and plots) through :class:`bench.report.Report`.
"""

from __future__ import annotations

import importlib
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
    for name in names:
        print(f"\n=== bench {name} ===")
        importlib.import_module(f"bench.bench_{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
