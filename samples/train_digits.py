"""The sample catalog's training entry point (model ``digits-trained``): the user's own code.

``modelfn train digits-trained`` runs it locally and a SageMaker training job runs it on AWS,
both as ``train(data_dir, hyperparameters, model_dir)``. It reads every ``*.npz`` in
``data_dir`` (arrays ``x`` [N, 64] float, ``y`` [N] class ids, as
``scripts/make_samples.py`` writes them), trains a small MLP (on CUDA when there is one) and
returns it; modelfn converts, quantizes, gates and versions it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


class SmallMLP(nn.Module):
    """64 → hidden → 10 logits for sklearn's 8×8 digits, flattened."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def load(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    files = sorted(Path(data_dir).rglob("*.npz"))
    if not files:
        raise ValueError(f"no .npz files in {data_dir}; each needs arrays 'x' [N, 64] and 'y' [N]")
    xs, ys = [], []
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            if "x" not in z or "y" not in z:
                raise ValueError(f"{f.name} holds {sorted(z.files)}; it needs arrays 'x' and 'y'")
            xs.append(z["x"].astype(np.float32).reshape(len(z["x"]), -1))
            ys.append(z["y"].astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def train(data_dir: Path, hyperparameters: dict, model_dir: Path) -> nn.Module:
    epochs = int(hyperparameters.get("epochs", 30))
    lr = float(hyperparameters.get("lr", 3e-3))
    seed = int(hyperparameters.get("seed", 0))
    x, y = load(data_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    model = SmallMLP(int(hyperparameters.get("hidden", 64))).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            idx = idx.to(device)
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()
