"""Training and versions over HTTP on the local stack (issue 21): ``requests.post(…/train)``
answers 202, the status URL ends in ``succeeded`` with a promoted version, the stack then
serves it without a restart; versions/promote/rollback answer as the CLI's ``--json``; bad
requests are 4xx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import numpy as np
import pytest
import requests
import yaml

from infra.cli import main
from infra.local.stack import LocalStack
from tests.conftest import make_tiny_onnx
from tests.train.helpers import blobs, write_data, write_training_catalog

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("train-api-stack")]


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[dict]:
    from tests.e2e.conftest import descendants

    tmp = tmp_path_factory.mktemp("trainapi")
    catalog = write_training_catalog(tmp / "cat", entry="trainer:train_sklearn",
                                     hyperparameters={"max_iter": 200}, data="data")
    write_data(tmp / "cat" / "data", 300, seed=1)
    make_tiny_onnx(tmp / "cat" / "plain.onnx")
    doc = yaml.safe_load(catalog.read_text())
    doc["models"].append({"name": "plain", "source": "plain.onnx"})
    catalog.write_text(yaml.safe_dump(doc))
    before = descendants()
    stack = LocalStack(catalog_path=catalog, out_dir=tmp / "build", port=0, s3_port=0, warm=1,
                       watch_interval_s=0.2)
    try:
        stack.start()
        yield {"base": stack.url, "stack": stack, "catalog": catalog, "out": tmp / "build", "tmp": tmp}
    finally:
        if stack.control is not None:
            stack.control.wait(120)
        stack.stop()
    assert not descendants() - before


def wait_done(url: str, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        run = requests.get(url, timeout=30).json()
        if not seen or seen[-1] != run["status"]:
            seen.append(run["status"])
        if run["status"] in ("succeeded", "failed"):
            run["seen"] = seen
            return run
        time.sleep(0.2)
    raise AssertionError(f"run never finished: {seen}")


def infer(base: str) -> requests.Response:
    x, _ = blobs(2, seed=5)
    return requests.post(f"{base}/v2/models/blobs/infer", timeout=60, json={
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": x.ravel().tolist()}]})


def test_train_over_http_promotes_and_the_stack_serves_it_without_restart(api, capsys):
    base = api["base"]
    assert infer(base).status_code == 503  # no version yet
    started = time.perf_counter()
    # when a client starts training with typed query parameters
    r = requests.post(f"{base}/v2/models/blobs/train", params={"max_iter": 300}, timeout=30)
    assert r.status_code == 202, r.text
    run = r.json()
    assert run["model"] == "blobs" and run["status"] == "queued" and run["run_id"]
    assert run["status_url"] == f"{base}/v2/models/blobs/train/{run['run_id']}"
    assert r.headers["Location"] == run["status_url"]
    # then a second run while this one is in progress is a 409
    again = requests.post(f"{base}/v2/models/blobs/train", json={"hyperparameters": {"max_iter": 5}}, timeout=30)
    assert again.status_code == 409 and "already in progress" in again.json()["error"]
    # and the status URL ends in succeeded with a promoted version 1
    done = wait_done(run["status_url"])
    assert done["status"] == "succeeded", done
    assert done["promoted"] is True and done["version"] and done["number"] == 1
    assert done["hyperparameters"] == {"max_iter": 300}  # a number, not "300"
    assert done["started_at"] and done["finished_at"] and done["reason"]
    round_trip = time.perf_counter() - started
    # and the running stack serves that version (started late, no restart)
    deadline = time.monotonic() + 60
    while (resp := infer(base)).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert resp.status_code == 200 and resp.json()["model_version"] == done["version"]
    print(f"train API round trip (POST → succeeded): {round_trip:.1f} s")
    # the runs are listed, newest first
    runs = requests.get(f"{base}/v2/models/blobs/train", timeout=30).json()["runs"]
    assert [x["run_id"] for x in runs] == [run["run_id"]] and runs[0]["status_url"] == run["status_url"]
    # versions over HTTP answer what the CLI prints with --json
    versions = requests.get(f"{base}/v2/models/blobs/versions", timeout=30).json()
    capsys.readouterr()
    assert main(["versions", "blobs", "--out", str(api["out"]), "--json"]) == 0
    assert versions == json.loads(capsys.readouterr().out)
    assert versions["live"] == done["version"]


def live_versions(api) -> dict:
    """The versions document once a version is live: the round-trip test's when it ran first on
    this stack, else one trained here (xdist may run these tests on another worker's stack)."""
    base = api["base"]
    first = requests.get(f"{base}/v2/models/blobs/versions", timeout=30).json()
    if not first.get("live"):
        r = requests.post(f"{base}/v2/models/blobs/train", params={"max_iter": 300}, timeout=30)
        assert r.status_code == 202, r.text
        assert wait_done(r.json()["status_url"])["promoted"] is True
        first = requests.get(f"{base}/v2/models/blobs/versions", timeout=30).json()
    assert first["live"], first
    return first


def test_promote_and_rollback_over_http(api):
    base = api["base"]
    first = live_versions(api)
    r = requests.post(f"{base}/v2/models/blobs/train", json={"hyperparameters": {"max_iter": 150}}, timeout=30)
    assert r.status_code == 202, r.text
    second = wait_done(r.json()["status_url"])
    assert second["status"] == "succeeded", second
    if second["promoted"]:
        back = requests.post(f"{base}/v2/models/blobs/rollback", timeout=30)
        assert back.status_code == 200 and back.json() == {"model": "blobs", "live": first["live"],
                                                           "previous": second["version"], "changed": True}
    again = requests.post(f"{base}/v2/models/blobs/versions/{second['version']}/promote", timeout=30)
    assert again.status_code == 200 and again.json()["live"] == second["version"]
    assert requests.get(f"{base}/v2/models/blobs/versions", timeout=30).json()["live"] == second["version"]
    missing = requests.post(f"{base}/v2/models/blobs/versions/ffffffffffff/promote", timeout=30)
    assert missing.status_code == 404 and "error" in missing.json()


@pytest.mark.parametrize(("path", "kwargs", "status", "words"), [
    ("/v2/models/plain/train", {}, 400, "no 'training:' entry"),
    ("/v2/models/nope/train", {}, 404, "no model named 'nope'"),
    ("/v2/models/blobs/train", {"params": {"learning_rate": 0.1}}, 400, "unknown hyperparameter(s) ['learning_rate']"),
    ("/v2/models/blobs/train", {"data": "not json"}, 400, "not JSON"),
    ("/v2/models/blobs/train", {"json": {"epochs": 3}}, 400, "unknown body member(s) ['epochs']"),
    ("/v2/models/blobs/train", {"json": {"data": "s3://elsewhere/x"}}, 400, "not on this stack's S3"),
    ("/v2/models/blobs/train/19990101T000000-deadbeef", {"method": "GET"}, 404, "no training run"),
    ("/v2/models/blobs/rollback", {"method": "GET"}, 405, "use POST"),
])
def test_bad_requests_are_clear_4xx(api, path, kwargs, status, words):
    method = kwargs.pop("method", "POST")
    r = requests.request(method, api["base"] + path, timeout=30, **kwargs)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_training_data_from_the_stacks_bucket(api):
    stack = api["stack"]
    live_versions(api)
    import io

    x, y = blobs(200, seed=11)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    stack.aws.client("s3").put_object(Bucket=stack.aws.bucket, Key="datasets/blobs-v3/part-0.npz",
                                      Body=buf.getvalue())
    r = requests.post(f"{api['base']}/v2/models/blobs/train",
                      json={"data": f"s3://{stack.aws.bucket}/datasets/blobs-v3/"}, timeout=30)
    assert r.status_code == 202, r.text
    done = wait_done(r.json()["status_url"])
    assert done["status"] == "succeeded", done
    assert done["training"]["data"]["files"] == 1
