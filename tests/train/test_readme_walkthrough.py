"""The README's training section, run as written on what a fresh clone makes: build, then
`modelfn train digits-trained`, more data, train again: every retrained version is promoted.

It failed for every user: version 1 named its output ``logits``, the entry point's module
became ``output``, and the promotion gate (rightly) refused the changed signature."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from infra.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # two trainings + builds + gates
ROOT = Path(__file__).resolve().parents[2]


def readme_training_commands() -> list[str]:
    """The command lines of the README's "Training: `modelfn train`" bash block, comments cut."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Training: `modelfn train`", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


@pytest.fixture
def fresh_clone(tmp_path, monkeypatch):
    """The sample catalog's digits-trained entry, verbatim, with the data `make samples` writes."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import make_samples
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    xt, yt, xv, yv = make_samples._split((x / 16.0).astype(np.float32), y.astype(np.int64))
    out = tmp_path / "samples" / "generated"
    out.mkdir(parents=True)
    np.savez(out / "digits_example.npz", x=xt[:4])
    np.savez(out / "digits_val.npz", x=xv, labels=yv)
    make_samples.make_trained(out, xt, yt, xv, yv)
    for f in ("__init__.py", "train_digits.py"):
        shutil.copy(ROOT / "samples" / f, tmp_path / "samples" / f)
    entry = next(m for m in yaml.safe_load((ROOT / "models.yaml").read_text())["models"]
                 if m["name"] == "digits-trained")
    entry["training"]["hyperparameters"]["epochs"] = 30
    (tmp_path / "models.yaml").write_text(yaml.safe_dump({"models": [entry]}, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(line: str) -> int:
    argv = shlex.split(line)
    if argv[0] == "cp":
        *sources, dest = argv[1:]
        for pattern in sources:
            for f in Path().glob(pattern):
                shutil.copy(f, dest)
        return 0
    assert argv[0] == "modelfn", line
    return main(argv[1:])


def test_the_readme_training_section_as_written_promotes_each_version(fresh_clone, capsys):
    commands = readme_training_commands()
    assert any(c.startswith("modelfn train") for c in commands)
    assert main(["build", "--json"]) == 0  # what `make up` does first
    capsys.readouterr()
    trained = 0
    for line in commands:
        assert run(line) == 0, line
        if line.startswith("modelfn train"):
            trained += 1
            capsys.readouterr()
            assert main(["versions", "digits-trained", "--json"]) == 0
            versions = json.loads(capsys.readouterr().out)
            newest = versions["versions"][-1]
            # then each retrained version passed the gate against the one before and is live
            assert newest["promoted"] is True, newest["reason"]
            assert versions["live"] == newest["version"] and len(versions["versions"]) == trained + 1


def test_the_readme_https_training_example_as_written_on_the_local_stack(fresh_clone, capsys):
    """README "Training over HTTPS": its ``requests`` block, run as written against ``modelfn up``
    (the URL is the test's stack): a run starts (202), is followed to ``succeeded`` with a
    promoted version, and the rollback answers."""
    import contextlib
    import io

    from infra.local.stack import LocalStack

    text = (ROOT / "README.md").read_text()
    section = text.split("## Training over HTTPS", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    assert 'base = "http://127.0.0.1:3000"' in block
    assert main(["build", "--json"]) == 0  # what `make up` does first
    capsys.readouterr()
    stack = LocalStack(catalog_path=fresh_clone / "models.yaml", out_dir=fresh_clone / "build", port=0, s3_port=0,
                       warm=1)
    out, namespace = io.StringIO(), {}
    try:
        stack.start()
        with contextlib.redirect_stdout(out):
            exec(compile(block.replace("http://127.0.0.1:3000", stack.url), "README", "exec"), namespace)
        versions = namespace["requests"].get(f"{stack.url}/v2/models/digits-trained/versions", timeout=30).json()
    finally:
        stack.stop()
    assert namespace["r"].status_code == 202 and namespace["run"]["status"] == "queued"
    status = namespace["status"]
    # the run succeeded with the request's hyperparameters, typed, and printed what the README says
    assert status["status"] == "succeeded", status
    assert status["hyperparameters"]["epochs"] == 40 and status["hyperparameters"]["lr"] == 0.01
    assert out.getvalue().split()[:3] == ["succeeded", status["version"], str(status["promoted"])]
    assert len(versions["versions"]) == 2, versions
    if status["promoted"]:  # the README's rollback put the version before it back live
        assert versions["live"] != status["version"] and versions["live"] == versions["versions"][0]["version"]
    else:  # kept as an artifact with the gate's reason; live is still version 1
        assert status["reason"] and versions["live"] == versions["versions"][0]["version"]
