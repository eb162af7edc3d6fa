"""BentoML ``serve`` on the same ONNX model, for ``bench_local``'s side-by-side figures.

BentoML lives in its own virtual environment, made by the benchmark on first use from PyPI
(:data:`VENV`, outside the repository, reused by later runs), so the project's own
environment never depends on it. The service is what a BentoML user writes for an ONNX
model: one ``onnxruntime.InferenceSession`` per worker, a sync ``@bentoml.api`` taking the
same V2 JSON body at the same path and answering a V2 response.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

VENV = Path(os.environ.get("MODELFN_BENCH_BENTOML_VENV", Path.home() / ".cache" / "modelfn-bench" / "bentoml-venv"))
REQUIREMENTS = ("bentoml==1.4.40", "onnxruntime==1.31.1", "numpy")
PATH = "/v2/models/bench/infer"

SERVICE = '''
import os

import bentoml
import numpy as np
import onnxruntime as ort


@bentoml.service(workers=int(os.environ["BENCH_WORKERS"]), traffic={"timeout": 30})
class Bench:
    def __init__(self) -> None:
        self.session = ort.InferenceSession(os.environ["BENCH_MODEL"], providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    @bentoml.api(route="ROUTE")
    def infer(self, inputs: list[dict]) -> dict:
        t = inputs[0]
        x = np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])
        (y,) = self.session.run(None, {self.input: x})
        return {"model_name": "bench", "outputs": [{"name": "y", "datatype": "FP32", "shape": list(y.shape),
                                                    "data": y.ravel().tolist()}]}
'''.replace("ROUTE", PATH)


def python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> str:
    """Create/refresh the BentoML venv; returns BentoML's version."""
    if not python().exists():
        print(f"installing BentoML into {VENV} (first run only)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python()), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    out = subprocess.run([str(python()), "-c", "import bentoml; print(bentoml.__version__)"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BentoServer:
    """``bentoml serve`` in a process group of its own on 127.0.0.1; stopped by :meth:`stop`."""

    def __init__(self, model: Path, work: Path, workers: int) -> None:
        (work / "service.py").write_text(SERVICE)
        self.port = free_port()
        env = {**os.environ, "BENCH_MODEL": str(model), "BENCH_WORKERS": str(workers),
               "BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": str(work / "bentoml-home")}
        env.pop("PYTHONPATH", None)
        self._log = open(work / f"bentoml-{workers}.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([str(VENV / "bin" / "bentoml"), "serve", "service:Bench", "--host",
                                      "127.0.0.1", "--port", str(self.port)], cwd=work, env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout_s: float = 120) -> None:
        import http.client

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited ({self.proc.returncode}); see {self._log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/readyz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"bentoml serve not ready in {timeout_s:.0f} s; see {self._log.name}")

    def stop(self) -> None:
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
