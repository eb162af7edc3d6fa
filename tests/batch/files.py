"""Small input files in every batch format, built in memory."""

from __future__ import annotations

import io
import json

import numpy as np


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def npz(*, compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def csv(rows, header: list[str] | None = None) -> bytes:
    lines = [",".join(header)] if header else []
    lines += [",".join(str(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def v2_request(x: np.ndarray, **extra) -> dict:
    x = np.asarray(x, dtype=np.float32)
    return {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}], **extra}


def jsonl(requests) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in requests).encode()


def rows(n: int, seed: int = 0, features: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, features)).astype(np.float32)
