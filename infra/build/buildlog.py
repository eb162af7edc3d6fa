"""What libraries print during a build goes to the model's build log, summarized, not to the user.

onnxruntime's quantization and transformer tools ``print`` (``failed in shape inference <class
'Exception'>``) and raise ``RuntimeWarning``\\ s (numpy over calibration ranges) while working
correctly; on the terminal they read like failures between progress lines. While a model
builds, everything its thread writes to ``sys.stdout``/``sys.stderr`` and every warning raised
on it is written to ``<out>/logs/<model>.log``; the build table shows one line per model
(how many, the most common ones, where the log is). Builds run on several threads in the local
stack, so the capture is per thread: other threads (progress lines, the stack's own log) write
through as before.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOGS_DIR = "logs"
_local = threading.local()
_install_lock = threading.Lock()


@dataclass
class BuildLog:
    """One model's captured library output."""

    path: Path
    lines: list[str] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)
    pending: dict[str, str] = field(default_factory=dict)  # per stream: text after the last newline

    def write(self, stream: str, text: str) -> None:
        """``print`` writes its arguments piece by piece: keep whole lines together."""
        *complete, rest = (self.pending.get(stream, "") + text).split("\n")
        self.pending[stream] = rest
        for line in complete:
            if line.strip():
                self.add(f"[{stream}] {line}", _kind(line))

    def flush_pending(self) -> None:
        for stream in list(self.pending):
            self.write(stream, "\n")

    def add(self, line: str, kind: str) -> None:
        self.lines.append(line)
        self.kinds[kind] += 1

    def summary(self) -> str | None:
        """``3 library messages in build/logs/m.log (2× RuntimeWarning: …, 1× failed in shape
        inference)``, or None when nothing was captured."""
        if not self.kinds:
            return None
        total = sum(self.kinds.values())
        top = ", ".join(f"{n}× {k}" for k, n in self.kinds.most_common(3))
        more = "" if len(self.kinds) <= 3 else f", {len(self.kinds) - 3} other kind(s)"
        return f"{total} library message(s) captured in {self.path} ({top}{more})"


class _Router(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: a capturing thread's writes go to its log."""

    def __init__(self, original, stream: str) -> None:
        self.original, self.stream = original, stream

    def write(self, text: str) -> int:
        log: BuildLog | None = getattr(_local, "log", None)
        if log is None:
            return self.original.write(text)
        log.write(self.stream, text)
        return len(text)

    def flush(self) -> None:
        self.original.flush()

    def isatty(self) -> bool:
        return self.original.isatty()

    def fileno(self) -> int:
        return self.original.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


def _kind(line: str) -> str:
    """A short family name for a message, so repeats count together."""
    text = line.strip()
    for cut in (" <class", ":", " ("):
        if cut in text[:80]:
            return text[: text.index(cut)][:60]
    return text[:60]


def _showwarning_for(shown):
    def showwarning(message, category, filename, lineno, file=None, line=None):
        log: BuildLog | None = getattr(_local, "log", None)
        if log is None:
            return shown(message, category, filename, lineno, file, line)
        log.add(f"[warning] {category.__name__}: {message} ({filename}:{lineno})",
                f"{category.__name__}: {str(message)[:50]}")
        return None

    showwarning.modelfn_router = True
    return showwarning


def _install() -> None:
    """Route sys.stdout/sys.stderr and warnings through this module (again, if something such
    as a test harness replaced them since)."""
    with _install_lock:
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router(sys.stderr, "stderr")
        if not getattr(warnings.showwarning, "modelfn_router", False):
            warnings.showwarning = _showwarning_for(warnings.showwarning)


@contextlib.contextmanager
def capture(out_dir: Path, name: str):
    """Capture this thread's library output while building ``name``; yields the :class:`BuildLog`
    (written to ``<out_dir>/logs/<name>.log`` on the way out, when anything was captured)."""
    _install()
    log = BuildLog(Path(out_dir) / LOGS_DIR / f"{name}.log")
    previous = getattr(_local, "log", None)
    _local.log = log
    try:
        yield log
    finally:
        _local.log = previous
        log.flush_pending()
        if log.lines:
            log.path.parent.mkdir(parents=True, exist_ok=True)
            log.path.write_text("\n".join(log.lines) + "\n")


@contextlib.contextmanager
def passthrough():
    """Inside a capture: what this thread writes goes to the terminal again (progress lines)."""
    previous = getattr(_local, "log", None)
    _local.log = None
    try:
        yield
    finally:
        _local.log = previous
