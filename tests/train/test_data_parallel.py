"""``training.instance_count: N``: the entry point runs data-parallel on N processes (gloo on
CPU here, N instances on SageMaker) and gives a model equal in contract to one process's."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from functions.training.train import TrainingFailed, World, world
from infra.catalog import load_catalog
from infra.train.lifecycle import train_and_promote
from infra.train.local import TrainingError
from tests.train.helpers import blobs, write_data, write_training_catalog

DDP_TRAINER = textwrap.dedent('''
    """Data-parallel torch training: each rank takes its shard, DDP averages the gradients."""
    from pathlib import Path

    import numpy as np
    import torch
    import torch.distributed as dist
    from torch import nn


    def train(data_dir, hp, model_dir):
        parts = [np.load(f) for f in sorted(Path(data_dir).glob("*.npz"))]
        x = np.concatenate([p["x"] for p in parts]).astype(np.float32)
        y = np.concatenate([p["y"] for p in parts]).astype(np.int64)
        rank, size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        if int(hp.get("fail_rank", -1)) == rank:
            raise RuntimeError(f"rank {rank} broke on purpose")
        xs, ys = torch.from_numpy(x[rank::size]), torch.from_numpy(y[rank::size])
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        net = nn.parallel.DistributedDataParallel(model) if size > 1 else model
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        for _ in range(int(hp.get("epochs", 30))):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xs), ys).backward()
            opt.step()
        return net
''')


def _catalog(root, count: int, **hp):
    path = write_training_catalog(root, entry="ddp_trainer:train", hyperparameters={"epochs": 30, **hp},
                                  instance_count=count)
    (root / "ddp_trainer.py").write_text(DDP_TRAINER)
    return load_catalog(path)


def test_world_from_torchrun_vars_sagemaker_hosts_or_none():
    assert world({}) == World()
    assert world({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"}) == \
        World(1, 2, "10.0.0.1", 1234)
    assert world({"SM_HOSTS": '["algo-2", "algo-1", "algo-3"]', "SM_CURRENT_HOST": "algo-2"}) == \
        World(1, 3, "algo-1", 29500)
    with pytest.raises(TrainingFailed, match="not among SM_HOSTS"):
        world({"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-9"})
    with pytest.raises(TrainingFailed, match="outside a world of 2"):
        world({"RANK": "2", "WORLD_SIZE": "2"})


@pytest.mark.slow
def test_two_processes_train_a_model_equal_in_contract_to_one_process(tmp_path):
    data = write_data(tmp_path / "data", 300, seed=1)
    outcomes, served = {}, {}
    for count in (1, 2):
        catalog = _catalog(tmp_path / f"cat{count}", count)
        out = tmp_path / f"build{count}"
        outcomes[count] = train_and_promote(catalog, "blobs", out, data=data)
        sess = ort.InferenceSession(str(out / "models" / "blobs" / "model.onnx"))
        served[count] = (sess, json.loads((out / "models" / "blobs" / "manifest.json").read_text()))
    one, two = outcomes[1], outcomes[2]
    # the same result contract: a promoted version from a saved torch module, one signature
    assert one.promoted and two.promoted, (one.reason, two.reason)
    assert one.training["artifact"] == two.training["artifact"] == "model.pt"
    assert (one.training["world_size"], two.training["world_size"]) == (1, 2)
    assert served[1][1]["signature"] == served[2][1]["signature"]
    assert set(one.training) == set(two.training)
    # and, with equal shards, DDP's averaged gradients are the one-process gradients
    x, y = blobs(64, seed=3)
    name = served[1][0].get_inputs()[0].name
    a, b = (served[c][0].run(None, {name: x})[0] for c in (1, 2))
    np.testing.assert_allclose(a, b, atol=1e-3)
    assert np.mean(b.argmax(1) == y) >= 0.9  # and it learned


@pytest.mark.slow
def test_a_failing_rank_fails_the_job_and_nothing_is_promoted(tmp_path):
    data = write_data(tmp_path / "data", 60, seed=1)
    catalog = _catalog(tmp_path / "cat", 2, fail_rank=-1)
    doc = yaml.safe_load((tmp_path / "cat" / "models.yaml").read_text())
    assert doc["models"][0]["training"]["instance_count"] == 2
    with pytest.raises(TrainingError, match="rank 1"):
        train_and_promote(catalog, "blobs", tmp_path / "build", data=data, hyperparameters={"fail_rank": 1})
    assert not (tmp_path / "build" / "models" / "blobs" / "model.onnx").exists()


def test_an_instance_with_several_gpus_relaunches_through_torchrun_one_process_per_gpu():
    from functions.training.train import launcher

    # given the second of two SageMaker instances, each with 4 GPUs
    env = {"SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-2", "SM_NUM_GPUS": "4"}
    cmd = launcher(["train"], env)
    assert cmd[1:] == ["-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=4", "--node_rank=1",
                       "--master_addr=algo-1", "--master_port=29500", "-m", "functions.training.train", "train"]
    # one GPU, or a process torchrun started: it trains itself
    assert launcher(["train"], {**env, "SM_NUM_GPUS": "1"}) is None
    assert launcher(["train"], {**env, "LOCAL_RANK": "0", "WORLD_SIZE": "8"}) is None
    with pytest.raises(TrainingFailed, match="SM_NUM_GPUS='x' is not an integer"):
        launcher(["train"], {"SM_NUM_GPUS": "x"})


@pytest.mark.slow
def test_two_processes_per_instance_through_torchrun_train_what_one_process_trains(tmp_path):
    """The relaunch for real, on CPU (SM_NUM_GPUS says 2; gloo): the runner's own command line."""
    import os
    import subprocess
    import sys

    import torch

    data = write_data(tmp_path / "data", 200, seed=1)
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "ddp_trainer.py").write_text(DDP_TRAINER)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "hyperparameters.json").write_text(json.dumps({"epochs": "20"}))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SM_HOSTS")}
    models = {}
    for gpus in ("1", "2"):
        out = tmp_path / f"run{gpus}"
        proc = subprocess.run(
            [sys.executable, "-m", "functions.training.train", "train", "--entry-point", "ddp_trainer:train",
             "--code-dir", str(tmp_path / "code"), "--config-dir", str(tmp_path / "config"),
             "--data-dir", str(data), "--model-dir", str(out / "model"), "--output-dir", str(out / "output")],
            env={**env, "SM_NUM_GPUS": gpus, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
            timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        report = json.loads((out / "model" / "training.json").read_text())
        assert (report["world_size"], report["processes_per_instance"]) == (int(gpus), int(gpus))
        models[gpus] = torch.load(out / "model" / "model.pt", weights_only=False)
    x, _ = blobs(32, seed=3)
    with torch.no_grad():
        a, b = (models[g](torch.from_numpy(x)).numpy() for g in ("1", "2"))
    np.testing.assert_allclose(a, b, atol=1e-3)
