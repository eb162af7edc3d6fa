"""The models ``bench_quantize`` builds, and synthetic tasks that give them real class margins.

Bodies are PyTorch-initialized (random weights, no download); the classification head is a
ridge regression fitted in closed form on the body's features for a synthetic task, so the
fp32 model is a confident classifier on most rows with some rows near the boundaries, where
int8 error can flip a prediction: top-1 agreement then means something.

* ``mlp``: 1024 → 3×1024 → 100;
* ``transformer``: ``nn.TransformerEncoder``, 4 layers, d_model 256, 4 heads, FFN 1024,
  sequences of 64 vectors → 10 classes;
* ``bert``: a ``transformers`` ``BertModel`` from a ``BertConfig`` (hidden 384, 12 heads,
  4 layers, FFN 1536, vocabulary 2000), token ids in (attention mask derived from padding id
  0, as a serving model computes it), mean-pooled → 10 classes;
* ``cnn``: three Conv/ReLU/pool blocks → 10 classes.
"""

from __future__ import annotations

import numpy as np

SEED = 0
SEQ, VOCAB = 64, 2000
TOPIC_SHARE = 0.25  # share of a row's tokens from its class topic: ~90-95% accurate fits


def build_mlp():
    from torch import nn

    layers, width = [], 1024
    for _ in range(3):
        layers += [nn.Linear(width, 1024), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(1024, 100))


def build_transformer():
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layer = nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
            self.head = nn.Linear(256, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(x).mean(dim=1))

    return Encoder()


def build_bert():
    import torch
    from torch import nn
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=VOCAB, hidden_size=384, num_hidden_layers=4, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=128, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, attn_implementation="eager")

    class BertClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = BertModel(config, add_pooling_layer=False)
            self.head = nn.Linear(384, 10)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            mask = (input_ids != 0).long()
            hidden = self.bert(input_ids=input_ids, attention_mask=mask).last_hidden_state
            return self.head((hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True))

    return BertClassifier()


def build_cnn():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(128 * 16, 10),
    )


BUILDERS = {"mlp": build_mlp, "transformer": build_transformer, "bert": build_bert, "cnn": build_cnn}


def task(kind: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic classification data shaped for each model. Dense inputs: class prototypes +
    noise. Token ids: each class draws :data:`TOPIC_SHARE` of its tokens from its own 60-token topic, the rest
    uniformly from the vocabulary (ids ≥ 1; 0 is padding)."""
    if kind == "bert":
        topics = np.random.default_rng(SEED + 1).integers(1, VOCAB, (10, 60))
        y = rng.integers(0, 10, n)
        ids = rng.integers(1, VOCAB, (n, SEQ))
        own = rng.random((n, SEQ)) < TOPIC_SHARE
        ids[own] = topics[np.repeat(y, SEQ).reshape(n, SEQ)[own], rng.integers(0, 60, own.sum())]
        return ids.astype(np.int64), y.astype(np.int64)
    # signal scaled so the fitted models are ~90-96% accurate
    shapes = {"mlp": ((1024,), 100, 0.5), "transformer": ((64, 256), 10, 0.35), "cnn": ((3, 32, 32), 10, 0.5)}
    shape, classes, signal = shapes[kind]
    protos = np.random.default_rng(SEED + 1).standard_normal((classes, *shape)).astype(np.float32)
    y = rng.integers(0, classes, n)
    x = signal * protos[y] + rng.standard_normal((n, *shape)).astype(np.float32)
    return x.astype(np.float32), y.astype(np.int64)


def fit_head(module, kind: str, rows: int) -> float:
    """Fit ``module``'s last Linear as a ridge regression on the body's features for
    :func:`task`; returns held-out accuracy."""
    import torch

    head = [m for m in module.modules() if isinstance(m, torch.nn.Linear)][-1]
    module.eval()

    def features(x: np.ndarray) -> np.ndarray:
        seen = []
        hook = head.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0]))
        with torch.no_grad():
            for start in range(0, len(x), 128):
                module(torch.from_numpy(x[start:start + 128]))
        hook.remove()
        f = torch.cat(seen).numpy().astype(np.float64)
        return np.hstack([f, np.ones((len(f), 1))])

    x, y = task(kind, rows, np.random.default_rng(SEED))
    f = features(x)
    w = np.linalg.solve(f.T @ f + 1e-2 * len(f) * np.eye(f.shape[1]), f.T @ np.eye(head.out_features)[y])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(w[:-1].T.astype(np.float32)))
        head.bias.copy_(torch.from_numpy(w[-1].astype(np.float32)))
    xt, yt = task(kind, 300, np.random.default_rng(SEED + 7))
    with torch.no_grad():
        return float((module(torch.from_numpy(xt)).argmax(1).numpy() == yt).mean())
