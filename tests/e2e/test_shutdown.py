"""``modelfn up`` as a user runs it: SIGTERM stops every child and frees the ports; a port
already taken is named together with the flag that changes it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from infra.local.processes import free_port
from tests.e2e.tiny_models import make_catalog

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO_ROOT = Path(__file__).resolve().parents[2]


def up(catalog: Path, out: Path, port: int, s3_port: int, *extra: str) -> subprocess.Popen:
    """``modelfn up`` as a child; its stderr (function logs) goes to ``<catalog dir>/up.err``."""
    err = open(catalog.parent / "up.err", "w")  # noqa: SIM115 - lives as long as the child
    return subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "up", "--catalog", str(catalog), "--out", str(out),
         "--port", str(port), "--s3-port", str(s3_port), *extra],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=err, text=True)


def read_until(proc: subprocess.Popen, marker: str, err: Path, timeout_s: float = 120) -> str:
    """stdout up to the line holding ``marker`` (a reader thread: no select on a buffered pipe)."""
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            seen.append(line)
            if marker in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout_s):
        raise AssertionError(f"no {marker!r} from modelfn up; stdout: {''.join(seen)}; "
                             f"stderr: {err.read_text()[-3000:]}")
    return "".join(seen)


def test_sigterm_stops_every_child_process_and_frees_the_ports(tmp_path):
    from infra.build import build_catalog
    from infra.catalog import load_catalog

    # given a stack serving one model from a build made beforehand (--no-build)
    make_catalog(tmp_path, sagemaker=False)
    one = tmp_path / "one.yaml"
    one.write_text("models:\n  - {name: dyn, source: src/dyn.onnx, quantize: none, auth: none, target: lambda}\n")
    assert all(r.ok for r in build_catalog(load_catalog(one), tmp_path / "build"))
    port, s3_port = free_port(), free_port()
    proc = up(one, tmp_path / "build", port, s3_port, "--no-build", "--warm", "2")
    try:
        banner = read_until(proc, "Ctrl-C stops everything", tmp_path / "up.err")
        assert f"http://127.0.0.1:{port}" in banner and f"http://127.0.0.1:{s3_port}" in banner
        assert "curl -s -X POST" in banner
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # two api instances + one batch instance
        # when
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # then
    assert rc == 0
    _, still = psutil.wait_procs(children, timeout=10)
    assert still == []
    for p in (port, s3_port):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p))


def test_port_in_use_is_named_with_the_flag_to_change_it(tmp_path):
    catalog = make_catalog(tmp_path, sagemaker=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = up(catalog, tmp_path / "build", port, free_port(), "--no-build")
        proc.communicate(timeout=60)
    err = (tmp_path / "up.err").read_text()
    assert proc.returncode == 2
    assert f"port {port}" in err and "--port" in err
