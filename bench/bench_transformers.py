"""Transformers on the CPUs Lambda runs: what int8 ships, and modelfn next to what users would
deploy instead, on the same saved models in one run.

Models (random weights from configs, heads fitted to a synthetic task so top-1 agreement
means something; nothing downloaded):

* **DistilBERT-sized classifier**: ``DistilBertForSequenceClassification`` (6 layers, hidden
  768, 12 heads, FFN 3072), a WordPiece tokenizer over a generated vocabulary, saved with
  ``save_pretrained``; ``source: hf:<dir>`` with the tokenizer and softmax, 200 texts to gate
  with, 64 to calibrate.
* **BERT-shaped encoder**: ``nn.Embedding`` + ``nn.TransformerEncoder`` (4 layers, d 384,
  12 heads, FFN 1536), token ids in, mean-pooled → 10 classes; a torch factory source.

Each is built twice by ``infra.build.build_catalog``: ``quantize: none`` (fp32) and
``quantize: auto`` behind a top-1 agreement ≥ 99.5% gate. Table 1: every candidate auto
measured (from the manifest) and the shipped int8 vs fp32, re-timed here side by side
(batch 1, one intra-op thread, interleaved rounds).

Table 2, the pipeline-vs-modelfn side by side: transformers' ``pipeline("text-classification")``
in a fresh process (what the aws-samples Hugging Face-on-Lambda function runs) against
modelfn's API handler in a fresh process (``functions.api.handler.handler`` fed recorded
HTTP API 2.0 events), both on the same saved DistilBERT: cold start (process start → first
answer), warm p50 for 1 and 8 sentences (interleaved rounds between the live processes), each
process pinned to the same one CPU (one vCPU, as Lambda gives up to 1,769 MB),
labels compared on the 200 texts, and installed runtime size (the packages each function
imports, from the venv's installed files).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from bench.report import Report, host_line, percentile_ms

REPO = Path(__file__).resolve().parents[1]
GATE = 0.995
LABELS = ("negative", "positive")
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ROUNDS, PER_ROUND = 5, 20
#: MODELFN_BENCH_SMOKE=1: tiny sizes, to check the benchmark itself runs (figures meaningless)
SMOKE = os.environ.get("MODELFN_BENCH_SMOKE") == "1"
DISTIL = dict(dim=64, n_layers=1, n_heads=2, hidden_dim=128) if SMOKE else dict(dim=768, n_layers=6, n_heads=12,
                                                                              hidden_dim=3072)
ENCODER = (64, 2, 128, 1) if SMOKE else (384, 12, 1536, 4)  # d, heads, FFN, layers

ENCODER_FACTORY = """
    from pathlib import Path

    import torch
    from torch import nn

    HERE = Path(__file__).parent

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(2000, {d})
            layer = nn.TransformerEncoderLayer({d}, {heads}, {ffn}, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, {layers}, enable_nested_tensor=False)
            self.head = nn.Linear({d}, 10)

        def forward(self, input_ids):
            return self.head(self.encoder(self.embed(input_ids)).mean(dim=1))

    def make(trained=True):
        torch.manual_seed(0)
        module = Encoder()
        if trained:
            module.load_state_dict(torch.load(HERE / "encoder.pt", weights_only=True))
        return module.eval()
"""


# --- the models --------------------------------------------------------------------------------


def vocabulary(n: int = 1500) -> list[str]:
    """Pronounceable made-up words (the tokenizer's whole words)."""
    rng = random.Random(0)
    cons, vows = "bcdfghklmnprstvz", "aeiou"
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.randint(1, 3))))
    return sorted(words)


def texts(words: list[str], n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Texts of 8-30 words; each class draws 30% of its words from its own 40-word topic."""
    rng = np.random.default_rng(seed)
    topics = [words[:40], words[40:80]]
    out, labels = [], rng.integers(0, 2, n)
    for y in labels:
        k = int(rng.integers(8, 31))
        own = rng.random(k) < 0.3
        out.append(" ".join(topics[y][rng.integers(0, 40)] if o else words[rng.integers(80, len(words))]
                            for o in own))
    return out, labels


def make_distilbert(root: Path) -> Path:
    import torch
    from transformers import (
        DistilBertConfig,
        DistilBertForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    from samples.text import make_tokenizer

    directory = root / "distilbert"
    words = vocabulary()
    vocab = SPECIAL + words
    make_tokenizer(vocab, directory)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"), unk_token="[UNK]",
                                  pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    tok.save_pretrained(directory)
    config = DistilBertConfig(vocab_size=len(vocab), **DISTIL, max_position_embeddings=512, num_labels=2, id2label=dict(enumerate(LABELS)),
                              label2id={n: i for i, n in enumerate(LABELS)})
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification(config).eval()
    fit_texts, fit_y = texts(words, 600, seed=1)
    seen = []
    hook = model.classifier.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0]))
    with torch.no_grad():
        for s in range(0, len(fit_texts), 32):
            enc = tok(fit_texts[s:s + 32], padding=True, return_tensors="pt")
            model(**enc)
    hook.remove()
    f = torch.cat(seen).numpy().astype(np.float64)
    f = np.hstack([f, np.ones((len(f), 1))])
    w = np.linalg.solve(f.T @ f + 1e-2 * len(f) * np.eye(f.shape[1]), f.T @ np.eye(2)[fit_y])
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(w[:-1].T.astype(np.float32)))
        model.classifier.bias.copy_(torch.from_numpy(w[-1].astype(np.float32)))
    model.save_pretrained(directory)
    val, _ = texts(words, 200, seed=2)
    cal, _ = texts(words, 64, seed=3)
    (root / "distil_val.txt").write_text("\n".join(val) + "\n")
    (root / "distil_cal.txt").write_text("\n".join(cal) + "\n")
    return directory


def make_encoder(root: Path) -> float:
    import importlib
    import sys as _sys

    import torch

    from bench.quantize_models import SEED, fit_head, task

    d, heads, ffn, layers = ENCODER
    (root / "benchenc.py").write_text(textwrap.dedent(ENCODER_FACTORY).format(d=d, heads=heads, ffn=ffn, layers=layers))
    _sys.path.insert(0, str(root))
    module = importlib.import_module("benchenc").make(trained=False)
    accuracy = fit_head(module, "bert", 600)  # token ids, 64 per row, vocabulary 2000
    torch.save(module.state_dict(), root / "encoder.pt")
    xv, yv = task("bert", 400, np.random.default_rng(SEED + 2))
    xc, _ = task("bert", 128, np.random.default_rng(SEED + 3))
    np.savez(root / "enc_val.npz", input_ids=xv, labels=yv)
    np.savez(root / "enc_cal.npz", input_ids=xc)
    np.savez(root / "enc_ex.npz", input_ids=xc[:2])
    return accuracy


def catalog(root: Path) -> None:
    import yaml

    text = {"source": "hf:distilbert", "validation": "distil_val.txt", "calibration": "distil_cal.txt",
            "preprocess": {"tokenizer": "distilbert", "max_length": 128, "padding": "longest", "truncation": True},
            "postprocess": {"softmax": True}, "auth": "none", "target": "lambda"}
    enc = {"source": "benchenc:make", "example_input": "enc_ex.npz", "validation": "enc_val.npz",
           "calibration": "enc_cal.npz", "auth": "none", "target": "lambda"}
    entries = []
    for name, base in (("distil", text), ("encoder", enc)):
        entries.append({"name": f"{name}-fp32", **base, "quantize": "none"})
        entries.append({"name": f"{name}-int8", **base, "quantize": "auto", "tolerance": {"top1_agreement": GATE}})
    (root / "models.yaml").write_text(yaml.safe_dump({"models": entries}, sort_keys=False))


# --- table 1: int8 ------------------------------------------------------------------------------


def feeds_for(model_dir: Path, sentence: str | None, root: Path) -> dict[str, np.ndarray]:
    if sentence is None:
        with np.load(root / "enc_val.npz") as z:
            return {"input_ids": z["input_ids"][:1]}
    from tokenizers import Tokenizer

    enc = Tokenizer.from_file(str(model_dir / "tokenizer.json")).encode(sentence)
    return {"input_ids": np.array([enc.ids], np.int64), "attention_mask": np.array([enc.attention_mask], np.int64)}


def interleaved(sessions: dict[str, object], feeds: dict[str, dict[str, np.ndarray]]) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for k, s in sessions.items():
        for _ in range(3):
            s.run(None, feeds[k])
    for _ in range(ROUNDS):
        for k, s in sessions.items():
            for _ in range(PER_ROUND):
                t0 = time.perf_counter()
                s.run(None, feeds[k])
                times[k].append(time.perf_counter() - t0)
    return {k: percentile_ms(v, 50) for k, v in times.items()}


def int8_table(report: Report, built: dict, root: Path, sentence: str) -> dict[str, float]:
    from infra.build.measure import session

    sessions, feeds = {}, {}
    for model in ("distil", "encoder"):
        for variant in ("fp32", "int8"):
            r = built[f"{model}-{variant}"]
            name = f"{model}-{variant}"
            graph = r.manifest.get("graph_optimization", {})  # loaded as the runtime loads it
            sessions[name] = session(r.model_dir / "model.onnx",
                                     disabled_optimizers=tuple(graph.get("disabled_optimizers", ())))
            feeds[name] = feeds_for(r.model_dir, sentence if model == "distil" else None, root)
    p50 = interleaved(sessions, feeds)
    rows, ratios = [], {}
    for model, label in (("distil", "DistilBERT-sized (6×768)"), ("encoder", "BERT-shaped nn.TransformerEncoder (4×384)")):
        m = built[f"{model}-int8"].manifest
        q = m["quantization"]
        fp32 = m["metrics"]["fp32"]
        for c in q.get("candidates", []):
            rows.append([label, c["mode"], "build", c.get("size_bytes", 0) / 1e6,
                         (c.get("size_bytes") or 0) / fp32["size_bytes"], c.get("p50_ms"),
                         c.get("p50_ratio") or ((c["p50_ms"] / fp32["p50_ms"]) if c.get("p50_ms") and fp32["p50_ms"] else None),
                         c.get("figures", {}).get("top1_agreement", c.get("figures", {}).get("label_agreement")),
                         len(c.get("excluded_nodes", [])), c["verdict"][:70]])
        shipped = built[f"{model}-int8"].model_dir / "model.onnx"
        ratio = p50[f"{model}-int8"] / p50[f"{model}-fp32"]
        ratios[model] = ratio
        figs = m["metrics"]["shipped"]
        rows.append([label, f"shipped: {q['mode']}", "re-timed here", shipped.stat().st_size / 1e6,
                     shipped.stat().st_size / fp32["size_bytes"], p50[f"{model}-int8"], ratio,
                     figs.get("top1_agreement", figs.get("label_agreement")), len(q.get("excluded_nodes", [])),
                     f"fp32 p50 {p50[f'{model}-fp32']:.2f} ms; target ≤ 0.50×: {'met' if ratio <= 0.5 else 'MISSED'}"])
        dyn = next((c for c in q.get("candidates", []) if c["mode"] == "dynamic"), {})
        search = dyn.get("int8_search")
        if search:
            steps = ", ".join(f"{st['fp32_nodes']} fp32 → {'pass' if st['passed'] else 'fail'} "
                              f"({st.get('label_agreement', st.get('top1_agreement'))}, {st['seconds']:.0f} s)"
                              for st in search.get("steps", []))
            report.note(f"{label}: dynamic int8 search: full int8 failed ({search['full_int8']['reason']}); "
                        f"sensitivity of {search['quantizable_nodes']} nodes in {search.get('sensitivity_s', '?')} s; "
                        f"steps: {steps or 'none'}{'; ' + search['stopped'] if search.get('stopped') else ''}")
        report.note(f"{label}: int8 build took {built[f'{model}-int8'].seconds:.0f} s "
                    f"(fp32 build {built[f'{model}-fp32'].seconds:.0f} s)")
        opt = q.get("transformer_optimizer", {})
        report.note(f"{label}: transformer optimizer {json.dumps(opt.get('fused', opt.get('skipped')))}"
                    f"{' from the ' + opt['export'] if opt.get('export') else ''}; "
                    f"int8 target: {q.get('int8_target', {}).get('assumption', '')[:90]}…")
        for variant in ("fp32", "int8"):
            graph = built[f"{model}-{variant}"].manifest.get("graph_optimization", {})
            report.note(f"{label} {variant}: saved at build as onnxruntime optimizes it: {json.dumps(graph)}")
    report.table(f"int8 candidates and what auto shipped behind a top-1 ≥ {GATE} gate (batch 1, one thread; "
                 "the build's p50 ×fp32 is timed side by side with fp32)",
                 ["model", "candidate", "figures from", "size MB", "size ×fp32", "p50 ms", "p50 ×fp32",
                  "top-1 agree", "fp32 nodes", "verdict"], rows)
    return ratios


# --- the pipeline side and its child process, shared with bench/bench_pipeline.py ---------

PIPELINE_SETUP = """
import json, sys, time
real = sys.stdout
from transformers import pipeline
clf = pipeline("text-classification", model=sys.argv[1], tokenizer=sys.argv[1], device=-1)
def call(texts):
    out = clf(texts if len(texts) > 1 else texts[0], batch_size=len(texts), truncation=True)
    return [o["label"] for o in (out if isinstance(out, list) else [out])]
"""

CHILD_LOOP = """
first = call([sys.argv[2]])
real.write(json.dumps({"labels": first}) + "\\n"); real.flush()
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd.get("labels"):
        real.write(json.dumps({"labels": [l for t in cmd["texts"] for l in call([t])]}) + "\\n"); real.flush()
        continue
    times = []
    for _ in range(cmd["repeat"]):
        t0 = time.perf_counter(); call(cmd["texts"]); times.append(time.perf_counter() - t0)
    real.write(json.dumps({"times": times}) + "\\n"); real.flush()
"""


def _one_cpu() -> None:
    """Every function process on the same single CPU: one vCPU, as Lambda gives up to 1,769 MB,
    and no thread pool (torch's OpenMP, onnxruntime's) fighting the shared machine's load."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})


class Child:
    """A live function process: started, first answer timed, then driven over stdin."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(argv, env=env, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, preexec_fn=_one_cpu)
        first = self._read()
        self.cold_s = time.perf_counter() - self.t0
        self.first_labels = first["labels"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child {self.proc.args[:3]} exited ({self.proc.wait()})")
        return json.loads(line)

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def dist_closure_bytes(roots: list[str], nodeps: list[str] = ()) -> tuple[int, list[str]]:
    """Installed bytes of ``roots`` and everything they require, plus ``nodeps`` alone
    (installed with ``--no-deps``), from the venv's files."""
    import re
    from importlib import metadata

    def norm(req: str) -> str:
        return re.split(r"[ ;<>=!\[~(]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")

    seen: dict[str, int] = {}
    todo = list(roots) + list(nodeps)
    alone = {norm(r) for r in nodeps}
    while todo:
        name = norm(todo.pop())
        if not name or name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        size = 0
        for f in dist.files or []:
            with contextlib.suppress(OSError):
                size += f.locate().stat().st_size
        seen[name] = size
        if name not in alone:
            todo += [r for r in (dist.requires or []) if "extra ==" not in r]
    return sum(seen.values()), sorted(seen)


def main() -> None:
    from infra.build import build_catalog
    from infra.catalog import load_catalog

    int8_report = Report("transformers_int8", "Transformers int8 on this host: every candidate, what ships")
    start_load = " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    with tempfile.TemporaryDirectory(prefix="bench-transformers-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_distilbert(root)
        enc_acc = make_encoder(root)
        catalog(root)
        print(f"models made in {time.perf_counter() - t0:.0f} s (encoder held-out accuracy {enc_acc:.3f})", flush=True)
        t0 = time.perf_counter()
        results = build_catalog(load_catalog(root / "models.yaml"), root / "build", force=True)
        build_s = time.perf_counter() - t0
        built = {r.name: r for r in results}
        failed = [r.error for r in results if not r.ok]
        if failed:
            raise SystemExit(f"build failed: {failed}")
        val = (root / "distil_val.txt").read_text().splitlines()
        sentence = val[0]
        ratios = int8_table(int8_report, built, root, sentence)
        int8_report.note(f"Builds of all 4 entries took {build_s:.0f} s. One-sentence input: {len(sentence.split())} "
                         f"words. Latency: median of {ROUNDS}×{PER_ROUND} interleaved batch-1 runs, one thread.")
        int8_report.note(f"Load average (1/5/15 min) at the start: {start_load}.")
        int8_report.note(host_line())
        int8_report.write()
    print(json.dumps({"int8_p50_ratio": ratios}, indent=1))


if __name__ == "__main__":
    main()
