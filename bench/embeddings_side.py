"""One backend of ``bench_embeddings`` in a fresh process: first vector, then p50 and throughput.

``python -m bench.embeddings_side BACKEND DIR`` (or run as a file by the side venv's
interpreter) prints ``FIRST <seconds since the interpreter started>`` as soon as the first
vector exists, then one JSON line with ``p50_ms`` (one text) and ``texts_per_s`` (batches of
32). One thread everywhere (``OMP_NUM_THREADS``/torch/onnxruntime), as a small Lambda has.
Backends: ``modelfn`` (the served runtime: ``layers.model.load_model`` → text in, embedding
out), ``st-torch`` (``SentenceTransformer(dir)``), ``st-onnx`` (``SentenceTransformer(dir,
backend="onnx")``, the directory's ``onnx/model.onnx``).
"""

from __future__ import annotations

import json
import os
import sys
import time

START = time.perf_counter()  # before any import of the backend
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MODELFN_INTRA_OP_THREADS", "1")

WORDS = ["the", "movie", "was", "great", "and", "the", "acting", "really", "moving", "but", "the", "plot", "is", "dull", "boring", "too", "i", "thought", "this", "film", "is", "wonderful", "superb", "brilliant", "music", "story", "ending", "honestly", "awful"]
SINGLE_REPEAT, BATCH, BATCH_REPEAT = 200, 32, 15


def texts(n: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 24))) for _ in range(n)]


def encoder(backend: str, directory: str):
    import numpy as np

    if backend == "modelfn":
        from layers.model import load_model

        model = load_model(directory)
        return lambda batch: model.infer({"text": np.array(batch, dtype=object)})["embedding"]
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    if backend == "st-torch":
        st = SentenceTransformer(directory, device="cpu")
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        st = SentenceTransformer(directory, device="cpu", backend="onnx",
                                 model_kwargs={"session_options": options, "provider": "CPUExecutionProvider"})
    return lambda batch: st.encode(batch, batch_size=BATCH, normalize_embeddings=True, convert_to_numpy=True)


def main(backend: str, directory: str) -> None:
    encode = encoder(backend, directory)
    first = encode(["the movie was great"])
    print(f"FIRST {time.perf_counter() - START:.4f} {first.shape[-1]}", flush=True)
    singles = texts(SINGLE_REPEAT + 20, 1)
    for t in singles[:20]:
        encode([t])
    times = []
    for t in singles[20:]:
        t0 = time.perf_counter()
        encode([t])
        times.append(time.perf_counter() - t0)
    batches = [texts(BATCH, 100 + i) for i in range(BATCH_REPEAT + 2)]
    for b in batches[:2]:
        encode(b)
    t0 = time.perf_counter()
    for b in batches[2:]:
        encode(b)
    elapsed = time.perf_counter() - t0
    times.sort()
    print(json.dumps({"p50_ms": 1000 * times[len(times) // 2], "texts_per_s": BATCH * BATCH_REPEAT / elapsed}),
          flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
