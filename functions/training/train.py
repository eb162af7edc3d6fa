"""SageMaker training entry point: train a small PyTorch classifier, export ``model.onnx``.

Runs in the training image (functions/training/Dockerfile) as ``train`` on a GPU instance,
on CUDA when present and CPU otherwise (tests run it on CPU with tiny epochs). SageMaker's
conventions, each overridable for tests by flag or env var:

- hyperparameters: ``/opt/ml/input/config/hyperparameters.json`` (all values are strings)
- training data: ``/opt/ml/input/data/train/*.npz`` with arrays ``x`` [N, F] and ``y`` [N]
  (class ids); with no data, a seeded synthetic blob data set (so the pipeline is testable)
- model output: ``/opt/ml/model`` → ``model.onnx`` (input ``x``, output ``probs``; the build
  pipeline quantizes and gates it), ``weights.pt``, ``metrics.json``
- failure reason: ``/opt/ml/output/failure`` (shown by DescribeTrainingJob)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

DEFAULTS = {
    "hyperparameters": "/opt/ml/input/config/hyperparameters.json",
    "data_dir": "/opt/ml/input/data/train",
    "model_dir": "/opt/ml/model",
    "output_dir": "/opt/ml/output",
}


@dataclass(frozen=True)
class Hyperparameters:
    epochs: int = 20
    lr: float = 0.01
    hidden: int = 32
    batch_size: int = 64
    seed: int = 0
    samples: int = 1024
    """Synthetic samples when there is no training data."""
    in_features: int = 4
    classes: int = 3

    @classmethod
    def from_json(cls, path: Path) -> Hyperparameters:
        raw = json.loads(path.read_text()) if path.is_file() else {}
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {sorted(unknown)}; known: "
                             f"{sorted(cls.__dataclass_fields__)}")
        kwargs = {}
        for key, value in raw.items():
            typ = type(getattr(cls(), key))
            try:
                kwargs[key] = typ(value)
            except ValueError:
                raise ValueError(f"hyperparameter {key}={value!r} must be {typ.__name__}") from None
        return cls(**kwargs)


def load_data(data_dir: Path, hp: Hyperparameters) -> tuple[np.ndarray, np.ndarray]:
    """(x float32 [N, F], y int64 [N]) from ``*.npz`` files, or seeded synthetic blobs."""
    files = sorted(data_dir.glob("*.npz")) if data_dir.is_dir() else []
    if files:
        xs, ys = [], []
        for f in files:
            with np.load(f) as npz:
                if "x" not in npz or "y" not in npz:
                    raise ValueError(f"{f.name} must hold arrays 'x' (features) and 'y' (labels)")
                xs.append(npz["x"].astype(np.float32))
                ys.append(npz["y"].astype(np.int64))
        return np.concatenate(xs), np.concatenate(ys)
    rng = np.random.default_rng(hp.seed)
    centers = rng.normal(0, 3, size=(hp.classes, hp.in_features))
    y = rng.integers(0, hp.classes, size=hp.samples)
    x = centers[y] + rng.normal(0, 1, size=(hp.samples, hp.in_features))
    return x.astype(np.float32), y.astype(np.int64)


class Classifier(nn.Module):
    def __init__(self, in_features: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class WithSoftmax(nn.Module):
    """The served graph outputs probabilities, like the catalog's other classifiers."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


def train(x: np.ndarray, y: np.ndarray, hp: Hyperparameters, device: torch.device) -> tuple[nn.Module, dict]:
    torch.manual_seed(hp.seed)
    classes = int(max(hp.classes, int(y.max()) + 1))
    model = Classifier(x.shape[1], hp.hidden, classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=hp.lr)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    gen = torch.Generator().manual_seed(hp.seed)
    loss = torch.tensor(0.0)
    for _ in range(hp.epochs):
        order = torch.randperm(len(xt), generator=gen).to(device)
        for i in range(0, len(xt), hp.batch_size):
            idx = order[i:i + hp.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(xt).argmax(1) == yt).float().mean())
    return model, {"final_loss": float(loss.detach()), "train_accuracy": accuracy, "classes": classes,
                   "in_features": int(x.shape[1]), "samples": len(x), "device": str(device)}


def export_onnx(model: nn.Module, in_features: int, path: Path) -> None:
    """``x`` [batch, F] float32 → ``probs`` [batch, classes], batch dimension dynamic."""
    wrapped = WithSoftmax(model.cpu()).eval()
    example = torch.zeros(2, in_features, dtype=torch.float32)
    torch.onnx.export(
        wrapped, (example,), str(path), input_names=["x"], output_names=["probs"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, external_data=False,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", nargs="?", default="train", help="SageMaker passes 'train'")
    for key, default in DEFAULTS.items():
        env = {"data_dir": "SM_CHANNEL_TRAIN", "model_dir": "SM_MODEL_DIR",
               "output_dir": "SM_OUTPUT_DIR", "hyperparameters": "SM_HPS_FILE"}[key]
        p.add_argument(f"--{key.replace('_', '-')}", type=Path, default=Path(os.environ.get(env, default)))
    args = p.parse_args(argv)
    try:
        hp = Hyperparameters.from_json(args.hyperparameters)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        x, y = load_data(args.data_dir, hp)
        model, metrics = train(x, y, hp, device)
        args.model_dir.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.model_dir / "weights.pt")
        export_onnx(model, x.shape[1], args.model_dir / "model.onnx")
        (args.model_dir / "metrics.json").write_text(json.dumps(
            {**metrics, "hyperparameters": asdict(hp)}, indent=2))
        print(json.dumps(metrics))
        return 0
    except Exception as exc:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        (args.output_dir / "failure").write_text(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
