"""A generative model's lifecycle through the command line and the local stack: ``modelfn build``
makes version 1, ``modelfn train`` fine-tunes the tiny decoder (the entry point returns a
transformers model) into version 2, the generation gate promotes it on perplexity, a scrambled
run loses with the reason, ``promote``/``rollback`` move the ``generation/`` folder, and the
running stack swaps to each live version and serves it under ``/versions/{v}/generate``."""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.cli import main
from tests.generation.lifecycle import NAME, write_catalog

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # three genai exports, two gates, one stack



def versions_json(capsys, out: Path) -> dict:
    capsys.readouterr()
    assert main(["versions", NAME, "--out", str(out), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def train(capsys, catalog: Path, out: Path, data: Path, *extra: str) -> dict:
    capsys.readouterr()
    assert main(["train", NAME, "--catalog", str(catalog), "--out", str(out), "--data", str(data), "--json",
                 *extra]) == 0
    return json.loads(capsys.readouterr().out)


def post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def served_version(stack, timeout_s: float = 90) -> str:
    with urllib.request.urlopen(f"{stack.url}/v2/models/{NAME}", timeout=30) as r:
        return json.loads(r.read())["versions"][0]


def wait_for(stack, version: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while (seen := served_version(stack)) != version:
        assert time.monotonic() < deadline, f"the stack still serves {seen}, not {version}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("genlife"))


@pytest.fixture(scope="module")
def stack(catalog) -> Iterator:
    from infra.local.stack import LocalStack

    out = catalog.parent / "build"
    assert main(["build", "--catalog", str(catalog), "--out", str(out)]) == 0
    s = LocalStack(catalog_path=catalog, out_dir=out, port=0, s3_port=0, warm=1, build=False,
                   log_sink=logging.getLogger("modelfn.test.genlife").info, integration_timeout_s=60)
    try:
        s.start()
        assert s.services[NAME].failure is None, s.services[NAME].failure
        yield s
    finally:
        s.stop()


def test_train_gate_promote_rollback_of_a_generative_model_while_serving(catalog, stack, capsys):
    out = catalog.parent / "build"
    v1 = versions_json(capsys, out)["live"]
    # when a fine-tuning run on the validation lines finishes
    won = train(capsys, catalog, out, catalog.parent / "data")
    # then the generation gate promotes it on perplexity, with the figures side by side
    assert won["promoted"] is True, won["reason"]
    assert won["parent_version"] == v1 and won["metrics"]["perplexity_ratio"] < 1.0
    assert won["metrics"]["live_version"] == v1 and won["metrics"]["latency_ms"] > 0
    v2 = won["version"]
    state = versions_json(capsys, out)
    assert state["live"] == v2 and [v["version"] for v in state["versions"]] == [v1, v2]
    live = out / "models" / NAME
    kept = live / "versions" / v2
    assert (kept / "generation" / "genai_config.json").is_file() and not (kept / "model.onnx").exists()
    assert json.loads((live / "manifest.json").read_text())["version"] == v2
    # and the running stack swaps to it and serves it under its version
    wait_for(stack, v2)
    status, doc = post(f"{stack.url}/v2/models/{NAME}/versions/{v2}/generate",
                       {"text_input": "the quick", "parameters": {"max_tokens": 3, "temperature": 0}})
    assert status == 200 and doc["model_version"] == v2 and doc["usage"]["completion_tokens"] <= 3, doc
    status, doc = post(f"{stack.url}/v2/models/{NAME}/versions/{v1}/generate", {"text_input": "the quick"})
    assert status == 404 and v2 in doc["error"], doc
    # and its streaming endpoint swapped with it
    req = urllib.request.Request(f"{stack.url}/v2/models/{NAME}/versions/{v2}/generate_stream",
                                 json.dumps({"text_input": "the quick", "max_tokens": 3}).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        events = [json.loads(line[len("data: "):]) for line in r.read().decode().split("\n\n") if line]
    assert {e["model_version"] for e in events} == {v2} and events[-1]["finish_reason"] in ("stop", "length")
    # when a run ruins the weights
    lost = train(capsys, catalog, out, catalog.parent / "data", "--hyperparameters", "scramble=true")
    # then it is kept, not promoted, and the reason names the perplexity
    assert lost["promoted"] is False and "perplexity" in lost["reason"], lost["reason"]
    assert versions_json(capsys, out)["live"] == v2
    # rollback and promote move the generation/ folder, and the stack follows
    assert main(["rollback", NAME, "--out", str(out)]) == 0
    assert versions_json(capsys, out)["live"] == v1
    wait_for(stack, v1)
    assert main(["promote", NAME, v2[:6], "--out", str(out)]) == 0
    assert versions_json(capsys, out)["live"] == v2
    wait_for(stack, v2)
    # and the table prints tokens/s for the generative versions
    capsys.readouterr()
    assert main(["versions", NAME, "--out", str(out)]) == 0
    assert "tok/s" in capsys.readouterr().out
