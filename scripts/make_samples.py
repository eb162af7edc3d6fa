"""Train the sample catalog's models and write their data, deterministically, in seconds.

Writes into ``samples/generated/`` (git-ignored), everything from sklearn's bundled
datasets (no download):

* ``iris.joblib`` (StandardScaler + LogisticRegression) + ``iris_{example,val}.npz``
* ``digits_mlp.pt`` / ``digits_cnn.pt`` (weights for ``samples.digits:mlp`` / ``:cnn``)
* ``digits_{example,calib,val}.npz`` (flat [N, 64]) and ``digits_img_{example,calib,val}.npz``
  ([N, 1, 8, 8]); validation files carry ``labels``.
* ``sentiment/`` (a tiny BERT text classifier, trained on template sentences, saved as a
  Hugging Face directory with its tokenizer) + ``sentiment_val.jsonl`` / ``sentiment_calib.txt``
  (see ``samples/text.py``); ``embedder/`` (a sentence-transformers directory over the
  sentiment encoder) + ``embedder_val.txt`` and ``tagger/`` (a BertForTokenClassification
  tagging people and places) + ``tagger_val.txt`` (see ``samples/tasks.py``).
* for ``digits-trained`` (a model with ``training:``): ``digits_train/part-000.npz`` (its
  training data: the first 300 training rows, ``x`` + ``y``), ``digits_train_more/part-001.npz``
  (the rest: copy it into ``digits_train/`` and ``modelfn train digits-trained`` again), and
  ``digits_trained_v1.onnx``, version 1, trained on ``digits_train/`` by the catalog's own entry
  point ``samples.train_digits:train``.
* ``decoder/`` (a tiny Qwen2-family causal language model with a chat template, trained on a
  few sentences so greedy text is words) + ``decoder_val.txt`` (its gate's prompts), see
  ``samples/decoder.py``.

Run: ``python scripts/make_samples.py [--out DIR]`` (``make samples`` does).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED = 0


def _split(x: np.ndarray, y: np.ndarray, val_fraction: float = 0.25):
    rng = np.random.default_rng(SEED)
    idx = rng.permutation(len(x))
    n_val = int(len(x) * val_fraction)
    return x[idx[n_val:]], y[idx[n_val:]], x[idx[:n_val]], y[idx[:n_val]]


def make_iris(out: Path) -> str:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    xt, yt, xv, yv = _split(x, y)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=SEED)).fit(xt, yt)
    joblib.dump(model, out / "iris.joblib")
    np.savez(out / "iris_example.npz", input=xt[:4])
    np.savez(out / "iris_val.npz", input=xv, labels=yv.astype(np.int64))
    return f"iris: accuracy {model.score(xv, yv):.3f} on {len(xv)} held-out rows"


def _train(module, xt: np.ndarray, yt: np.ndarray, epochs: int, lr: float) -> None:
    import torch

    opt = torch.optim.Adam(module.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt_t, yt_t = torch.from_numpy(xt), torch.from_numpy(yt)
    gen = torch.Generator().manual_seed(SEED)
    module.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(xt_t), generator=gen).split(64):
            opt.zero_grad()
            loss_fn(module(xt_t[batch]), yt_t[batch]).backward()
            opt.step()
    module.eval()


def _accuracy(module, x: np.ndarray, y: np.ndarray) -> float:
    import torch

    with torch.no_grad():
        return float((module(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def make_digits(out: Path) -> list[str]:
    import torch
    from sklearn.datasets import load_digits

    sys.path.insert(0, str(ROOT))
    from samples.digits import DigitsCNN, DigitsMLP

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    xt, yt, xv, yv = _split(x, y.astype(np.int64))
    lines = []
    for name, module, shape, epochs in (("mlp", DigitsMLP(), (-1, 64), 8), ("cnn", DigitsCNN(), (-1, 1, 8, 8), 6)):
        t0 = time.perf_counter()
        xt_s, xv_s = xt.reshape(shape), xv.reshape(shape)
        _train(module, xt_s, yt, epochs=epochs, lr=1e-3)
        torch.save(module.state_dict(), out / f"digits_{name}.pt")
        prefix = "digits" if name == "mlp" else "digits_img"
        np.savez(out / f"{prefix}_example.npz", x=xt_s[:4])
        np.savez(out / f"{prefix}_calib.npz", x=xt_s[:256])
        np.savez(out / f"{prefix}_val.npz", x=xv_s, labels=yv)
        lines.append(f"digits-{name}: {time.perf_counter() - t0:.1f} s, accuracy {_accuracy(module, xv_s, yv):.3f} on {len(xv)} held-out rows")
    lines.append(make_trained(out, xt, yt, xv, yv))
    return lines


def make_text(out: Path) -> str:
    sys.path.insert(0, str(ROOT))
    from samples.tasks import make_embedder, make_tagger
    from samples.text import make_sentiment

    return "\n".join([make_sentiment(out), make_embedder(out), make_tagger(out)])


def make_decoder_sample(out: Path) -> str:
    sys.path.insert(0, str(ROOT))
    from samples.decoder import make_sample

    return make_sample(out)


FIRST_ROWS = 300


def make_trained(out: Path, xt: np.ndarray, yt: np.ndarray, xv: np.ndarray, yv: np.ndarray) -> str:
    """Training data for ``digits-trained`` and its version 1, made by its own entry point."""
    import torch

    from samples.train_digits import train

    t0 = time.perf_counter()
    first, more = out / "digits_train", out / "digits_train_more"
    for d in (first, more):
        d.mkdir(exist_ok=True)
        for f in d.glob("*.npz"):
            f.unlink()
    np.savez(first / "part-000.npz", x=xt[:FIRST_ROWS], y=yt[:FIRST_ROWS])
    np.savez(more / "part-001.npz", x=xt[FIRST_ROWS:], y=yt[FIRST_ROWS:])
    module = train(first, {"epochs": 30}, out)
    # "output": the name modelfn's torch conversion gives a returned module's one output
    # (infra/build/convert.py), so version 1 and every retrained version share one signature
    # and the promotion gate compares them instead of refusing a changed output name
    torch.onnx.export(module.cpu(), (torch.from_numpy(xt[:2]),), str(out / "digits_trained_v1.onnx"),
                      input_names=["x"], output_names=["output"], dynamo=True, external_data=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    return (f"digits-trained: {time.perf_counter() - t0:.1f} s, v1 accuracy {_accuracy(module, xv, yv):.3f} "
            f"from {FIRST_ROWS} rows ({len(xt) - FIRST_ROWS} more in {more.name}/)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "samples" / "generated")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    steps = (("iris (sklearn)", lambda: [make_iris(args.out)]),
             ("digits (torch: MLP, CNN, the trained model's version 1)", lambda: make_digits(args.out)),
             ("text (tiny BERT sentiment, embedder, tagger)", lambda: make_text(args.out).splitlines()),
             ("decoder (tiny Qwen2 causal LM)", lambda: [make_decoder_sample(args.out)]))
    for i, (what, make) in enumerate(steps, 1):
        # one stage line as each starts and what it made as it ends: minutes of work are never silent
        print(f"{time.strftime('%H:%M:%S')} make samples [{i}/{len(steps)}] {what} …", flush=True)
        for line in make():
            print(f"{time.strftime('%H:%M:%S')}   {line}", flush=True)
    print(f"{time.strftime('%H:%M:%S')} wrote {args.out} in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
