"""Keras / TensorFlow sources: ``.keras``, legacy ``.h5`` with architecture, SavedModel directories.

The conversion runs in a child process (:mod:`infra.build.keras_worker`) so TensorFlow is
never imported by the build or the local stack. TensorFlow and tf2onnx are build-side extras
(``pip install -e '.[keras]'``), installed into the running interpreter on first use, pinned
together with every package already installed so nothing the venv has changes (set
``MODELFN_NO_INSTALL=1`` to get an error naming the command instead). They never reach a
runtime image: images install ``layers/requirements.lock`` only.

Before anything ships, the ONNX graph is run with onnxruntime on the catalog's
``example_input`` and compared with the framework's own predictions (``model.predict`` or the
SavedModel's signature) on the same batch; a disagreement fails the conversion.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from infra.catalog import keras_source_problem
from layers.datatypes import FROM_ORT, TO_NUMPY

#: the ``keras`` extra in pyproject.toml (a test keeps the two equal)
REQUIREMENTS = ("tensorflow-cpu==2.21.0", "tf2onnx==1.17.0")
#: import names the worker needs
MODULES = ("tensorflow", "tf2onnx", "keras", "h5py")
NO_INSTALL_ENV = "MODELFN_NO_INSTALL"
#: ONNX vs framework on the example batch (fp32 both sides; kernels differ in summation order)
RTOL, ATOL = 1e-3, 1e-4
WORKER_TIMEOUT_S = 1800
REPO_ROOT = Path(__file__).resolve().parents[2]


class KerasError(ValueError):
    """The Keras/TensorFlow source cannot become ONNX; the message says how to fix it."""


def missing_modules() -> list[str]:
    return [m for m in MODULES if importlib.util.find_spec(m) is None]


def _constraints() -> str:
    """Every installed distribution at its installed version: pip may add, never change."""
    pins = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata.get("Name")
        if not name or (dist.read_text("direct_url.json") or "").find('"editable": true') >= 0:
            continue
        pins[name.lower()] = dist.version
    return "".join(f"{n}=={v}\n" for n, v in sorted(pins.items()))


def ensure_installed(log: Callable[[str], None] = print) -> None:
    """Install the ``keras`` extra into this interpreter if it is missing."""
    if not (missing := missing_modules()):
        return
    command = f"{sys.executable} -m pip install {' '.join(REQUIREMENTS)}"
    if os.environ.get(NO_INSTALL_ENV, "") not in ("", "0"):
        raise KerasError(f"Keras/TensorFlow sources need {', '.join(missing)}, which are not installed "
                         f"({NO_INSTALL_ENV} is set, so modelfn does not install them); run "
                         f"pip install -e '.[keras]' (or: {command})")
    log(f"Keras/TensorFlow sources need {', '.join(missing)}: installing {' '.join(REQUIREMENTS)} "
        "(build side only, once; a few minutes)")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="modelfn-constraints-") as c:
        c.write(_constraints())
        c.flush()
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "-c", c.name, *REQUIREMENTS], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise KerasError(f"installing {' '.join(REQUIREMENTS)} failed without changing installed packages "
                         f"({tail}); install them yourself: pip install -e '.[keras]'")
    importlib.invalidate_caches()
    if still := missing_modules():
        raise KerasError(f"{', '.join(still)} still cannot be imported after installing; run {command}")


def export(source: Path, example: dict[str, np.ndarray], *, log: Callable[[str], None] = print,
           ) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The fp32 ONNX graph of ``source``, checked against the framework on ``example``."""
    if (problem := keras_source_problem(source)) is not None:
        raise KerasError(problem)
    ensure_installed(log)
    with tempfile.TemporaryDirectory(prefix="modelfn-keras-") as tmp:
        work = Path(tmp)
        np.savez(work / "example.npz", **example)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
               "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
        try:
            proc = subprocess.run([sys.executable, "-m", "infra.build.keras_worker", str(source),
                                   str(work / "example.npz"), str(work)], env=env, capture_output=True,
                                  text=True, timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise KerasError(f"converting {source.name} took over {WORKER_TIMEOUT_S} s and was stopped") from None
        result = _result(work, proc)
        if not result.get("ok"):
            raise KerasError(result.get("error") or "the conversion failed without a reason")
        model = onnx.load(work / "model.onnx")
        with np.load(work / "reference.npz") as z:
            reference = {k: z[k] for k in z.files}
    notes: dict[str, str] = {k: str(v) for k, v in result["notes"].items()}
    notes.update(agreement(model, example, reference))
    return model, notes


def _result(work: Path, proc: subprocess.CompletedProcess) -> dict[str, Any]:
    try:
        return json.loads((work / "result.json").read_text())
    except (OSError, ValueError):
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-8:])
        return {"ok": False, "error": f"the Keras conversion process exited with status {proc.returncode}: {tail}"}


def agreement(model: onnx.ModelProto, example: dict[str, np.ndarray],
              reference: dict[str, np.ndarray]) -> dict[str, str]:
    """Run the graph on ``example``; raise unless it matches ``reference`` (the framework's)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    arrays = list(example.values()) if len(inputs) == 1 and len(example) == 1 else [example[i.name] for i in inputs]
    feed = {i.name: np.asarray(a).astype(TO_NUMPY[FROM_ORT[i.type]], copy=False)
            for i, a in zip(inputs, arrays, strict=True)}
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed), strict=True))
    worst, top1 = 0.0, []
    for name, ref in reference.items():
        out = got[name]
        if out.shape != ref.shape:
            raise KerasError(f"output {name!r}: ONNX gives shape {out.shape}, the framework {ref.shape}")
        if np.issubdtype(ref.dtype, np.floating):
            err = float(np.max(np.abs(out.astype(np.float64) - ref))) if ref.size else 0.0
            worst = max(worst, err)
            if not np.allclose(out, ref, rtol=RTOL, atol=ATOL):
                raise KerasError(f"output {name!r}: the ONNX conversion disagrees with the framework's own "
                                 f"predictions on example_input (max abs error {err:.3g} > {ATOL} + {RTOL}·|ref|); "
                                 "nothing was shipped; report the model's layers to the tf2onnx project or "
                                 "export model.onnx yourself")
            if ref.ndim == 2 and ref.shape[1] > 1:
                top1.append(float(np.mean(out.argmax(1) == ref.argmax(1))))
        elif not np.array_equal(out, ref):
            raise KerasError(f"output {name!r}: the ONNX conversion disagrees with the framework on example_input")
    notes = {"framework_max_abs_error": f"{worst:.3g}", "framework_rows": str(len(next(iter(feed.values()))))}
    if top1:
        notes["framework_top1_agreement"] = f"{min(top1):.4f}"
    return notes
