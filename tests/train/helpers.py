"""A user's training module, its data and a catalog naming it, all written into ``tmp_path``.

The trainer is real user code (torch, sklearn, or a hand-written ONNX); the data are three
Gaussian blobs in 4 features whose classes the models must actually learn.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import yaml

TRAINER = textwrap.dedent('''
    """A user's training code: every function is an entry point train(data_dir, hp, model_dir)."""
    from pathlib import Path

    import numpy as np


    def _load(data_dir):
        files = sorted(Path(data_dir).glob("*.npz"))
        if not files:
            raise ValueError(f"no .npz in {data_dir}")
        parts = [np.load(f) for f in files]
        for f, p in zip(files, parts):
            if "x" not in p or "y" not in p:
                raise ValueError(f"{f.name} needs arrays x and y")
        return (np.concatenate([p["x"] for p in parts]).astype(np.float32),
                np.concatenate([p["y"] for p in parts]).astype(np.int64))


    def train_torch(data_dir, hp, model_dir):
        import torch
        from torch import nn

        x, y = _load(data_dir)
        torch.manual_seed(int(hp.get("seed", 0)))
        model = Net(x.shape[1], int(hp.get("hidden", 16)))
        opt = torch.optim.Adam(model.parameters(), lr=float(hp.get("lr", 0.05)))
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        for _ in range(int(hp.get("epochs", 40))):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt), yt).backward()
            opt.step()
        (Path(model_dir) / "seen.txt").write_text(repr(sorted(hp.items())))
        return model.eval()


    try:
        import torch as _torch

        class Net(_torch.nn.Module):
            def __init__(self, features, hidden):
                super().__init__()
                self.net = _torch.nn.Sequential(_torch.nn.Linear(features, hidden), _torch.nn.ReLU(),
                                                _torch.nn.Linear(hidden, 3))

            def forward(self, x):
                return self.net(x)
    except ImportError:
        pass


    def train_sklearn(data_dir, hp, model_dir):
        from sklearn.linear_model import LogisticRegression

        x, y = _load(data_dir)
        return LogisticRegression(max_iter=int(hp.get("max_iter", 200))).fit(x, y)


    def train_onnx(data_dir, hp, model_dir):
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        x, y = _load(data_dir)
        centers = np.stack([x[y == k].mean(axis=0) for k in range(3)]).astype(np.float32)
        w = numpy_helper.from_array((2 * centers).T.copy(), "W")
        b = numpy_helper.from_array(-(centers ** 2).sum(axis=1), "B")
        graph = helper.make_graph(
            [helper.make_node("Gemm", ["x", "W", "B"], ["logits"])], "centroids",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", x.shape[1]])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], initializer=[w, b])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, str(Path(model_dir) / "model.onnx"))


    def train_nothing(data_dir, hp, model_dir):
        return None


    def train_string(data_dir, hp, model_dir):
        return "a model, honestly"
''')


def blobs(n: int, *, seed: int, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.array([[0, 0, 0, 0], [4, 4, 0, 0], [0, 4, 4, 4]], np.float32)
    y = rng.integers(0, 3, size=n)
    x = centers[y] + rng.normal(0, noise, size=(n, 4))
    return x.astype(np.float32), y.astype(np.int64)


def write_data(folder: Path, n: int, *, seed: int, name: str = "part-0.npz") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    x, y = blobs(n, seed=seed)
    np.savez(folder / name, x=x, y=y)
    return folder


def write_training_catalog(root: Path, *, entry: str = "trainer:train_torch", source: str | None = None,
                           **training: Any) -> Path:
    """``root/models.yaml`` with model ``blobs``: trainer.py, validation and example sets."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "trainer.py").write_text(TRAINER)
    xv, yv = blobs(300, seed=99)
    np.savez(root / "val.npz", x=xv, labels=yv)
    np.savez(root / "example.npz", x=xv[:4])
    entry_spec: dict[str, Any] = {"name": "blobs", "example_input": "example.npz", "validation": "val.npz",
                                  "quantize": "none",
                                  "training": {"entry_point": entry, "hyperparameters": {"epochs": 40},
                                               **training},
                                  # tiny models measure in microseconds on a shared machine
                                  "promotion": {"max_latency_ratio": 20.0}}
    if source is not None:
        entry_spec["source"] = source
    path = root / "models.yaml"
    path.write_text(yaml.safe_dump({"models": [entry_spec]}))
    return path
