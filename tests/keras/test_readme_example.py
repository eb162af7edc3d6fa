"""The README's Keras example, run as written: the CIFAR-10 CNN saved as ``.keras``, the catalog
entry, ``modelfn build``, the local stack, and the ``requests`` call, whose answers must be
``model.predict``'s.

The README's blocks are read from README.md (not copied here), so the test fails when the
README drifts. Its ``x_test``/``y_test`` (CIFAR-10 in the README) are random images here, and
its ``model.fit`` line is a comment there: nothing is downloaded. The model is made in a child
process (TensorFlow stays out of pytest) and converted by the build's own child process.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from infra.build import keras as keras_source

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.xdist_group("keras")]
#: what stands in for CIFAR-10 in the README's blocks (random NHWC images, labels like keras')
DATA = ("import numpy as np\n_rng = np.random.default_rng(0)\n"
        "x_test = _rng.random((500, 32, 32, 3), dtype=np.float32)\n"
        "y_test = _rng.integers(0, 10, (500, 1))\n")


def readme_blocks() -> dict[str, list[str]]:
    """The fenced blocks of README's "Keras and TensorFlow models" section, by language."""
    text = (REPO / "README.md").read_text()
    section = text.split("### Keras and TensorFlow models", 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, list[str]] = {}
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, re.S):
        blocks.setdefault(lang, []).append(body)
    return blocks


def test_the_readme_keras_example_builds_serves_and_answers_as_model_predict(tmp_path):
    from infra.build import BuildSettings, build_catalog
    from infra.catalog import load_catalog
    from infra.local.stack import LocalStack

    blocks = readme_blocks()
    make, request = blocks["python"]
    [catalog] = blocks["yaml"]
    [bash] = blocks["bash"]
    assert bash.strip() == "modelfn build --model cifar10-cnn && modelfn up"
    # given the README's model, saved as it says (in a child process: TensorFlow)
    keras_source.ensure_installed()
    predict = "\nnp.savez('predict.npz', y=model.predict(x_test[:2], verbose=0))\n"
    proc = subprocess.run([sys.executable, "-c", DATA + make + predict], cwd=tmp_path, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (tmp_path / "models.yaml").write_text(catalog)
    # when it is built as the README's command does
    [result] = build_catalog(load_catalog(tmp_path / "models.yaml"), tmp_path / "build", models=["cifar10-cnn"],
                             settings=BuildSettings(require_speedup=False))
    assert result.ok, result.error
    # and the README's request goes to the local stack
    stack = LocalStack(catalog_path=tmp_path / "models.yaml", out_dir=tmp_path / "build", port=0, s3_port=0,
                       warm=1)
    out = io.StringIO()
    try:
        stack.start()
        namespace: dict = {}
        exec(compile(DATA, "data", "exec"), namespace)
        with contextlib.redirect_stdout(out):
            exec(compile(request.replace("http://127.0.0.1:3000", stack.url), "README", "exec"), namespace)
    finally:
        stack.stop()
    # then it answers: the label of each image and the scores model.predict gives
    r = namespace["r"]
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    labels = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with np.load(tmp_path / "predict.npz") as z:
        predicted = z["y"]
    scores = np.asarray(outputs["scores"]["data"], np.float32).reshape(outputs["scores"]["shape"])
    np.testing.assert_allclose(scores, predicted, atol=0.05)  # int8 behind the gate, or fp32
    assert outputs["label"]["data"] == [labels[i] for i in predicted.argmax(1)]
    printed = out.getvalue()
    assert "'label'" in printed and "'scores'" in printed
