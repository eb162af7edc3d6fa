"""Child processes of the local stack: started in their own process group, logs pumped, and
stopped with the whole group so nothing is left behind (no orphans, ports freed)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence

LogSink = Callable[[str], None]


def spawn(argv: Sequence[str], *, env: Mapping[str, str], cwd: str, log: LogSink | None) -> subprocess.Popen:
    """Start ``argv`` in a new session (own process group); its output goes to ``log``."""
    proc = subprocess.Popen(
        list(argv), env=dict(env), cwd=cwd, start_new_session=True, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if log else subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    if log:
        threading.Thread(target=_pump, args=(proc, log), daemon=True, name=f"log-{proc.pid}").start()
    return proc


def _pump(proc: subprocess.Popen, log: LogSink) -> None:
    assert proc.stdout is not None
    for raw in iter(proc.stdout.readline, b""):
        with contextlib.suppress(Exception):
            log(raw.decode("utf-8", "replace").rstrip("\n"))
    proc.stdout.close()


def stop_group(proc: subprocess.Popen, *, grace_s: float = 3.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace_s``; reap it."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace_s)
    # the leader may be gone while children of its group live on: kill the group regardless
    _signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace_s)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PortInUse(RuntimeError):
    """A fixed port the user asked for is taken; the message names it and the flag."""


def check_port(host: str, port: int, flag: str) -> None:
    """Raise :class:`PortInUse` naming ``port`` and ``flag`` if ``host:port`` cannot be bound."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PortInUse(
                f"port {port} on {host} is already in use ({exc.strerror}); stop whatever "
                f"listens there or choose another port with {flag} N"
            ) from None
