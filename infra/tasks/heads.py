"""Torch wrappers exported as the served graph: pooling and normalization inside the ONNX.

Pooling in the graph and pooling in numpy after onnxruntime measured the same within noise
(``bench/bench_embeddings.py``, MiniLM-shaped encoder, one thread on a loaded 2-vCPU host:
batch 1 122 vs 119 ms, batch 32 3.18 vs 3.45 s interleaved); the graph keeps it because the
function then fetches one ``[N, dim]`` output instead of the ``[N, T, H]`` hidden state, and
the int8 gate judges exactly the vectors clients get. The pooling modes are sentence-transformers' own
(``sentence_transformers.models.Pooling``), computed the same way on right-padded batches.
"""

from __future__ import annotations

from layers.names import EMBEDDING_OUTPUT  # noqa: F401  (the exported output's name)


def pool(hidden, mask, modes: tuple[str, ...]):
    """``hidden`` [N, T, H], ``mask`` [N, T] (1 = token) → [N, H × len(modes)], concatenated
    in sentence-transformers' order (cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken)."""
    import torch

    m = mask.unsqueeze(-1).to(hidden.dtype)
    count = torch.clamp(m.sum(dim=1), min=1e-9)
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(hidden[:, 0])
        elif mode == "max":
            parts.append(torch.where(m > 0, hidden, torch.full_like(hidden, -1e9)).max(dim=1).values)
        elif mode == "mean":
            parts.append((hidden * m).sum(dim=1) / count)
        elif mode == "mean_sqrt_len_tokens":
            parts.append((hidden * m).sum(dim=1) / torch.sqrt(count))
        elif mode == "weightedmean":
            positions = torch.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype, device=hidden.device)
            w = m * positions.view(1, -1, 1)
            parts.append((hidden * w).sum(dim=1) / torch.clamp(w.sum(dim=1), min=1e-9))
        elif mode == "lasttoken":
            last = (mask.sum(dim=1) - 1).clamp(min=0).long()
            parts.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
        else:
            raise ValueError(f"unknown pooling mode {mode!r}")
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


def pooled(module, names: list[str], modes: tuple[str, ...], normalize: bool):
    """``forward(*tensors)`` → pooled (and L2-normalized) ``[N, D]`` from the encoder's last
    hidden state; ``module`` may be a bare encoder or a model with a head (its base model is used)."""
    import torch

    encoder = getattr(module, "base_model", module)
    if "attention_mask" not in names:
        raise ValueError("pooling needs the model to take attention_mask")

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, *args):
            kwargs = dict(zip(names, args, strict=True))
            out = self.encoder(**kwargs, return_dict=True)
            hidden = out.last_hidden_state if getattr(out, "last_hidden_state", None) is not None else out[0]
            vec = pool(hidden, kwargs["attention_mask"], modes)
            if normalize:
                vec = torch.nn.functional.normalize(vec, p=2, dim=1)
            return vec

    return Pooled().eval()
