"""The accuracy gate's figures for embeddings: what search and retrieval users rely on.

Argmax agreement means nothing for a vector, so an embedding model is judged by

* ``min_cosine`` / ``mean_cosine``: each validation text's int8 vector against its fp32
  vector (the smallest and the mean);
* ``retrieval_top10``: for each validation text, the share of its 10 nearest neighbours
  (cosine, among the other validation texts) that int8 finds as fp32 does, averaged: the
  fraction of search results that survive quantization;
* ``top1_agreement``: the share of texts whose single nearest neighbour is unchanged.

With fewer than 11 texts the neighbour lists are shorter (all other texts); with one text
there are no neighbours and only the cosines are reported.
"""

from __future__ import annotations

import numpy as np

TOP_K = 10


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64).reshape(len(x), -1)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def neighbours(vectors: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Each row's ``k`` nearest other rows by cosine, nearest first ([N, min(k, N-1)])."""
    unit = _unit(vectors)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    k = min(k, len(vectors) - 1)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def figures(reference: np.ndarray, candidate: np.ndarray, k: int = TOP_K) -> dict[str, float]:
    """Gate figures for fp32 (``reference``) vs int8 (``candidate``) vectors of the same texts."""
    ref, cand = _unit(reference), _unit(candidate)
    cos = np.sum(ref * cand, axis=1)
    out = {"min_cosine": float(np.min(cos)), "mean_cosine": float(np.mean(cos))}
    if len(ref) < 2:
        return out
    nr, nc = neighbours(reference, k), neighbours(candidate, k)
    overlap = [len(set(a) & set(b)) / len(a) for a, b in zip(nr.tolist(), nc.tolist(), strict=True)]
    out["retrieval_top10"] = float(np.mean(overlap))
    out["top1_agreement"] = float(np.mean(nr[:, 0] == nc[:, 0]))
    return out
