"""Acceptance (issue 12): train twice through ``modelfn train``, gate and promote v2 over v1,
roll back, while the local stack serves each version in turn with no failed request; and a
burst of a hundred files under ``<model>/train/`` in the local bucket retrains once."""

from __future__ import annotations

import http.client
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from infra.cli import main
from infra.local.stack import LocalStack
from tests.train.helpers import blobs, write_data, write_training_catalog

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("versions-stack")]


class RequestLoop:
    """Back-to-back V2 infer requests on 127.0.0.1, recording (status, served version)."""

    def __init__(self, url: str) -> None:
        u = urlsplit(url)
        self.host, self.port = u.hostname, u.port
        x, _ = blobs(2, seed=5)
        self.body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4],
                                            "data": x.ravel().tolist()}]}).encode()
        self.seen: list[tuple[int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        while not self._stop.is_set():
            try:
                conn.request("POST", "/v2/models/blobs/infer", body=self.body,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = json.loads(resp.read())
                self.seen.append((resp.status, data.get("model_version")))
            except (OSError, http.client.HTTPException) as exc:  # a dropped connection counts as failed
                self.seen.append((-1, repr(exc)))
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def __enter__(self) -> RequestLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)

    def wait_for(self, version: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.seen and self.seen[-1][1] == version:
                return
            time.sleep(0.1)
        raise AssertionError(f"the stack never served {version}; last seen {self.seen[-3:]}")


def post(url: str) -> tuple[int, dict]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.request("POST", "/v2/models/blobs/infer", body=RequestLoop(url).body,
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def train_json(capsys, catalog: Path, out: Path, data: Path) -> dict:
    capsys.readouterr()
    assert main(["train", "blobs", "--catalog", str(catalog), "--out", str(out), "--data", str(data), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory) -> Iterator[dict]:
    """The local stack on a catalog whose one model has training: and no version yet."""
    from tests.e2e.conftest import descendants

    tmp = tmp_path_factory.mktemp("lifecycle")
    catalog = write_training_catalog(tmp / "cat", entry="trainer:train_torch")
    before = descendants()
    stack = LocalStack(catalog_path=catalog, out_dir=tmp / "build", port=0, s3_port=0, warm=2,
                       watch_interval_s=0.2)
    try:
        stack.start()
        yield {"tmp": tmp, "catalog": catalog, "out": tmp / "build", "stack": stack}
    finally:
        stack.stop()
    left = descendants() - before
    assert not left, f"processes left after stop: {left}"


def test_train_twice_gate_promote_rollback_while_serving_without_a_failed_request(lifecycle, capsys):
    tmp, catalog, out = lifecycle["tmp"], lifecycle["catalog"], lifecycle["out"]
    # given the local stack up before the model (which has no source) has any version
    stack = lifecycle["stack"]
    status, body = post(stack.url)
    assert status == 503 and "run `modelfn train blobs` to make version 1" in body["error"]
    # when version 1 is trained on a little data, the stack starts serving it
    small = write_data(tmp / "small", 24, seed=1)
    v1 = train_json(capsys, catalog, out, small)
    assert v1["promoted"] and v1["number"] == 1 and v1["parent_version"] is None
    deadline = time.monotonic() + 120
    while post(stack.url)[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    status, body = post(stack.url)  # then the stack serves it, started late
    assert status == 200 and body["model_version"] == v1["version"]
    with RequestLoop(stack.url) as loop:
        loop.wait_for(v1["version"])
        # when version 2 is trained on more data
        more = write_data(tmp / "more", 24, seed=1)
        write_data(more, 400, seed=2, name="part-1.npz")
        v2 = train_json(capsys, catalog, out, more)
        # then it was gated against version 1 on the validation set and promoted
        assert v2["parent_version"] == v1["version"] and v2["number"] == 2
        assert v2["promoted"], v2["reason"]
        gate = v2["metrics"]
        assert gate["live_version"] == v1["version"] and gate["rows"] == 300
        assert gate["accuracy"] >= gate["live_accuracy"] - 0.01
        # and the stack swaps to it, then back on rollback
        loop.wait_for(v2["version"])
        assert main(["rollback", "blobs", "--out", str(out)]) == 0
        loop.wait_for(v1["version"])
        time.sleep(0.5)
    # no request failed or was dropped while swapping, and each version served in turn
    statuses = [s for s, _ in loop.seen]
    assert len(statuses) > 20 and set(statuses) == {200}, [x for x in loop.seen if x[0] != 200][:3]
    order = [v for i, (_, v) in enumerate(loop.seen) if i == 0 or loop.seen[i - 1][1] != v]
    assert order == [v1["version"], v2["version"], v1["version"]]


def live_version_count(lifecycle, capsys) -> int:
    """How many versions the model has once one is live: the acceptance test's when it ran first
    on this stack, else one trained here (xdist may put this test on another worker's stack)."""
    stack, out = lifecycle["stack"], lifecycle["out"]
    if not stack.services["blobs"].api:
        v1 = train_json(capsys, lifecycle["catalog"], out, write_data(lifecycle["tmp"] / "own", 24, seed=1))
        assert v1["promoted"], v1["reason"]
        deadline = time.monotonic() + 120
        while post(stack.url)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert post(stack.url)[0] == 200
    capsys.readouterr()
    assert main(["versions", "blobs", "--out", str(out), "--json"]) == 0
    return len(json.loads(capsys.readouterr().out)["versions"])


def test_a_burst_of_files_under_train_prefix_retrains_once(lifecycle, capsys):
    stack = lifecycle["stack"]
    kept = live_version_count(lifecycle, capsys)
    s3 = stack.aws.client("s3")
    x, y = blobs(1000, seed=7)
    for i in range(100):  # when a burst of a hundred files lands under blobs/train/
        buf = io.BytesIO()
        np.savez(buf, x=x[i * 10:(i + 1) * 10], y=y[i * 10:(i + 1) * 10])
        s3.put_object(Bucket=stack.aws.bucket, Key=f"blobs/train/part-{i:03d}.npz", Body=buf.getvalue())
    retrainer = stack.retrainers["blobs"]
    deadline = time.monotonic() + 180
    while not retrainer.outcomes and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(retrainer.debounce_s + 2)  # no second run follows
    # then one training run used all hundred files
    assert len(retrainer.outcomes) == 1, retrainer.outcomes
    outcome = retrainer.outcomes[0]
    assert not isinstance(outcome, Exception), outcome
    assert outcome.training["data"]["files"] == 100 and outcome.number == kept + 1
    if outcome.promoted:  # and the stack serves what is live
        deadline = time.monotonic() + 60
        while stack.services["blobs"].manifest.version != outcome.version and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stack.services["blobs"].manifest.version == outcome.version
