"""Torch factories for the sample catalog: a MatMul-heavy MLP and a small CNN on sklearn's
bundled 8×8 digits. Each factory returns the module with its trained weights loaded."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

GENERATED = Path(__file__).parent / "generated"
FEATURES, CLASSES, HIDDEN = 64, 10, 1024


class DigitsMLP(nn.Module):
    """64 → 1024 → 1024 → 10: big enough matrices that int8 MatMul pays off."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN),
                                 nn.ReLU(), nn.Linear(HIDDEN, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class DigitsCNN(nn.Module):
    """[N, 1, 8, 8] → two 3×3 conv blocks → 10 logits: Conv-dominated, for static QDQ."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(128 * 2 * 2, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def _load(module: nn.Module, filename: str) -> nn.Module:
    path = GENERATED / filename
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `make samples` (scripts/make_samples.py) first")
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return module.eval()


def mlp() -> nn.Module:
    return _load(DigitsMLP(), "digits_mlp.pt")


def cnn() -> nn.Module:
    return _load(DigitsCNN(), "digits_cnn.pt")
