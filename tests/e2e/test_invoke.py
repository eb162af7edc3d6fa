"""``modelfn invoke`` against the local stack: JSON requests and tensor files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from infra.cli import main

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("local-stack")]


def run(capsys, *argv: str) -> tuple[int, dict | str, str]:
    rc = main(["invoke", *argv])
    out, err = capsys.readouterr()
    try:
        return rc, json.loads(out), err
    except ValueError:
        return rc, out, err


def test_invoke_with_a_v2_json_request(stack, tmp_path, capsys):
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
                                           "data": [-1, 0, 2]}]}))
    rc, out, _ = run(capsys, "dyn", "--input", str(req), "--url", stack.url)
    assert rc == 0 and out["outputs"][0]["data"] == [0, 0, 2]


def test_invoke_encodes_npz_for_a_multi_input_model(stack, tmp_path, capsys):
    np.savez(tmp_path / "in.npz", a=np.ones((2, 3)), b=np.full((2, 3), 3.0))
    rc, out, _ = run(capsys, "pair", "--input", str(tmp_path / "in.npz"), "--url", stack.url)
    assert rc == 0
    assert {o["name"]: o["data"] for o in out["outputs"]}["sum"] == [4.0] * 6


def test_invoke_encodes_csv_and_npy_for_a_single_input_model(stack, tmp_path, capsys):
    (tmp_path / "rows.csv").write_text("f0,f1,f2,f3\n1,2,3,4\n0,0,0,1\n")
    rc, out, _ = run(capsys, "tiny", "--input", str(tmp_path / "rows.csv"), "--url", stack.url)
    assert rc == 0 and out["outputs"][0]["shape"] == [2, 3]
    np.save(tmp_path / "rows.npy", np.zeros((3, 4), dtype=np.float32))
    rc, out, _ = run(capsys, "tiny", "--input", str(tmp_path / "rows.npy"), "--url", stack.url)
    assert rc == 0 and out["outputs"][0]["shape"] == [3, 3]


def test_invoke_exits_non_zero_on_an_error_status(stack, tmp_path, capsys):
    req = tmp_path / "bad.json"
    req.write_text(json.dumps({"inputs": [{"name": "nope", "shape": [1], "datatype": "FP32", "data": [1]}]}))
    rc, out, err = run(capsys, "tiny", "--input", str(req), "--url", stack.url)
    assert rc == 1 and out["error"] and "HTTP 400" in err
    np.save(tmp_path / "rows.npy", np.zeros((1, 4), dtype=np.float32))
    rc, _, err = run(capsys, "ghost", "--input", str(tmp_path / "rows.npy"), "--url", stack.url)
    assert rc == 2 and "404" in err
