"""What every benchmark uses to show its figures: a printed table, a Markdown file, a plot.

Benchmarks are not tests: they measure and print. Targets from the issues are shown next to
the measured figure (``target`` column) so a person sees at a glance what was met.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


def percentile_ms(samples_s: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(samples_s) * 1000.0, q))


def timeit(fn, *, warmup: int = 20, repeat: int = 200) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls to ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


@dataclass
class Report:
    """A benchmark's results: sections of tables plus optional plots, written together."""

    name: str
    title: str
    notes: list[str] = field(default_factory=list)
    _sections: list[tuple[str, list[str], list[list[Any]]]] = field(default_factory=list)
    _plots: list[str] = field(default_factory=list)

    def table(self, heading: str, headers: list[str], rows: list[list[Any]]) -> None:
        self._sections.append((heading, headers, rows))
        self._print(heading, headers, rows)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(text)

    def bar_plot(self, filename: str, title: str, labels: list[str],
                 series: dict[str, list[float]], ylabel: str) -> Path:
        """Grouped bars: one group per label, one bar per series."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        x = np.arange(len(labels))
        width = 0.8 / max(1, len(series))
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels) + 3), 4))
        for i, (sname, values) in enumerate(series.items()):
            ax.bar(x + i * width - 0.4 + width / 2, values, width, label=sname)
        ax.set_xticks(x, labels, rotation=20, ha="right")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        return self._save(fig, filename)

    def figure(self, filename: str, fig) -> Path:
        return self._save(fig, filename)

    def _save(self, fig, filename: str) -> Path:
        import matplotlib.pyplot as plt

        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / filename
        fig.savefig(path, dpi=110)
        plt.close(fig)
        self._plots.append(filename)
        print(f"plot: {path}")
        return path

    def write(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        lines = [f"# {self.title}", "",
                 f"_Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
                 f"{platform.machine()}, {_cpu_count()} CPUs, Python {platform.python_version()}._", ""]
        for heading, headers, rows in self._sections:
            lines += [f"## {heading}", "", "| " + " | ".join(headers) + " |",
                      "|" + "|".join("---" for _ in headers) + "|"]
            lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
            lines.append("")
        for n in self.notes:
            lines += [n, ""]
        for p in self._plots:
            lines += [f"![{p}]({p})", ""]
        path = RESULTS_DIR / f"{self.name}.md"
        path.write_text("\n".join(lines))
        print(f"results: {path}")
        return path

    @staticmethod
    def _print(heading: str, headers: list[str], rows: list[list[Any]]) -> None:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=heading)
        for h in headers:
            t.add_column(h)
        for row in rows:
            t.add_row(*[_fmt(c) for c in row])
        console = Console()
        (console if console.is_terminal else Console(width=160)).print(t)


def host_line() -> str:
    """The CPU a figure ran on (model name, int8-relevant flags) and the load while it ran."""
    import os

    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model == "unknown CPU":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    shown = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in wanted)
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"Host: {model}, {_cpu_count()} CPUs; flags: {shown}; load average (1/5/15 min) at the end: {load}."


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
