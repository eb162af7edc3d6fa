"""Embeddings: modelfn's served model vs sentence-transformers (torch, and its ONNX backend).

The same model on the same CPU, side by side in one run: a MiniLM-L6-shaped encoder (hidden
384, 6 layers, 12 heads; random seeded weights, nothing downloaded) saved as a
sentence-transformers directory with mean pooling + Normalize. modelfn builds it
(``quantize: auto`` behind the embeddings gate) and serves it through its runtime
(``layers.model.load_model``: tokenizer + one onnxruntime session, pooling and normalization
in the graph); sentence-transformers loads the same directory with torch, and with its ONNX
backend (``backend="onnx"``, optimum + onnxruntime, installed into a side venv on first run
because optimum pins an older transformers). Each backend runs in a fresh process, one
thread, two alternating rounds (the median is shown): single-text p50, batch-32 throughput,
and cold start (spawn of a fresh interpreter to the first vector, imports included).
A second table measures pooling in the graph against pooling in numpy after onnxruntime.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.report import Report, host_line

ROOT = Path(__file__).resolve().parents[1]
SIDE = Path(__file__).with_name("embeddings_side.py")
VENV = Path(os.environ.get("MODELFN_BENCH_ST_ONNX_VENV", Path.home() / ".cache" / "modelfn-bench" / "st-onnx-venv"))
SIDE_REQUIREMENTS = ("torch==2.13.0", "sentence-transformers>=5,<6", "optimum[onnxruntime]>=1.23", "onnxruntime==1.31.1")
ROUNDS = 2


def side_python() -> Path | None:
    """The side venv's interpreter (created on first run); None if it cannot be made."""
    py = VENV / "bin" / "python"
    if not py.exists():
        print(f"installing sentence-transformers' ONNX backend into {VENV} (first run only)", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
            subprocess.run([str(py), "-m", "pip", "install", "-q", *SIDE_REQUIREMENTS], check=True)
        except subprocess.CalledProcessError:
            return None
    return py


def make_model(work: Path) -> Path:
    """The sentence-transformers directory, in the layout every release loads (5.x in the side venv)."""
    import torch
    from transformers import BertConfig, BertModel

    from bench.embeddings_side import WORDS
    from samples.tasks import write_st_layout
    from samples.text import SPECIAL, make_tokenizer

    st = work / "st"
    vocab = SPECIAL + sorted(set(WORDS))
    make_tokenizer(vocab, st)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512)
    BertModel(config).eval().save_pretrained(st)
    write_st_layout(st, config.hidden_size, max_seq_length=256)
    return st


def build(work: Path, st: Path) -> dict:
    from bench.embeddings_side import texts
    from infra.catalog import load_catalog
    from infra.pipeline import build_catalog

    (work / "val.txt").write_text("\n".join(texts(96, 7)) + "\n")
    (work / "models.yaml").write_text(f"models:\n  - name: emb\n    source: hf:{st}\n    quantize: auto\n"
                                      f"    validation: val.txt\n")
    (result,) = build_catalog(load_catalog(work / "models.yaml"), work / "build")
    if not result.ok:
        raise SystemExit(f"modelfn build failed: {result.error}")
    return result.manifest


def run_side(python: Path, backend: str, directory: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT) if backend == "modelfn" else ""}
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(python), str(SIDE), backend, str(directory)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    first = None
    out = {}
    for line in proc.stdout:
        if line.startswith("FIRST") and first is None:
            first = time.perf_counter() - t0
        elif line.startswith("{"):
            out = json.loads(line)
    proc.wait()
    if proc.returncode != 0 or first is None:
        raise RuntimeError(f"{backend} exited {proc.returncode}")
    return {**out, "cold_s": first}


def pooling_in_graph_vs_numpy(work: Path, st: Path, model_dir: Path) -> list[list]:
    """batch-32 through onnxruntime: the served graph (pooling + normalize inside) vs the
    encoder's last hidden state pooled and normalized in numpy."""
    import onnx
    import onnxruntime as ort

    from bench.embeddings_side import texts
    from infra.build.hf import export
    from layers.model import load_model

    hidden, _ = export(st)  # no task: the encoder's [N, T, H] output
    onnx.save(hidden, work / "hidden.onnx")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    raw = ort.InferenceSession(str(work / "hidden.onnx"), so, providers=["CPUExecutionProvider"])
    fp32 = ort.InferenceSession(str(work / "fp32_pooled.onnx"), so, providers=["CPUExecutionProvider"])
    served = load_model(model_dir)
    feed = served.pre(texts(32, 3))
    feed = {k: v for k, v in feed.items() if k in {i.name for i in raw.get_inputs()}}

    def numpy_pooled():
        h = raw.run(None, feed)[0]
        m = feed["attention_mask"][..., None].astype(np.float32)
        v = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def in_graph():
        return fp32.run(None, feed)[0]

    assert np.allclose(numpy_pooled(), in_graph(), atol=1e-4)
    for fn in (in_graph, numpy_pooled):
        for _ in range(3):
            fn()
    samples: dict[str, list[float]] = {"pooling in the graph": [], "pooling in numpy": []}
    for _ in range(15):  # interleaved, so load drifting on a shared host hits both alike
        for name, fn in (("pooling in the graph", in_graph), ("pooling in numpy", numpy_pooled)):
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    rows = [[name, round(1000 * statistics.median(v), 2)] for name, v in samples.items()]
    rows[1].append(f"{rows[1][1] / rows[0][1]:.2f}x")
    rows[0].append("1.00x")
    return rows


def main() -> None:
    report = Report("embeddings", "Embeddings: modelfn vs sentence-transformers (torch, ONNX backend)")
    report.note(host_line())
    work = Path(tempfile.mkdtemp(prefix="modelfn-bench-emb-"))
    try:
        st = make_model(work)
        manifest = build(work, st)
        model_dir = work / "build" / "models" / "emb"
        quant, shipped = manifest["quantization"], manifest["metrics"]["shipped"]
        report.note(f"modelfn shipped `{quant['mode']}`{' (' + quant['fallback_reason'] + ')' if quant.get('fallback_reason') else ''}; "
                    f"gate: min_cosine {shipped.get('min_cosine')}, retrieval_top10 {shipped.get('retrieval_top10')}, "
                    f"nearest-neighbour agreement {shipped.get('top1_agreement')}")
        side = side_python()
        onnx_dir = None
        if side is not None:
            onnx_dir = work / "st-onnx"
            subprocess.run([str(side), "-c", "import sys; from sentence_transformers import SentenceTransformer; "
                            "SentenceTransformer(sys.argv[1], device='cpu', backend='onnx').save(sys.argv[2])",
                            str(st), str(onnx_dir)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "PYTHONPATH": ""})
        else:
            report.note("sentence-transformers' ONNX backend could not be installed; its column is left out")
        backends = [("modelfn", Path(sys.executable), model_dir), ("st-torch", Path(sys.executable), st)]
        if onnx_dir is not None:
            backends.append(("st-onnx", side, onnx_dir))
        runs: dict[str, list[dict]] = {b: [] for b, _, _ in backends}
        for _ in range(ROUNDS):
            for name, py, d in backends:
                runs[name].append(run_side(py, name, d))
        med = {b: {k: statistics.median(r[k] for r in rs) for k in ("p50_ms", "texts_per_s", "cold_s")}
               for b, rs in runs.items()}
        rows = []
        for b in med:
            rows.append([b, round(med[b]["p50_ms"], 2), round(med[b]["texts_per_s"], 1), round(med[b]["cold_s"], 2)])
        report.table("Same model, one thread, fresh process per backend (median of 2 rounds)",
                     ["backend", "single-text p50 ms", "batch-32 texts/s", "cold start to first vector s"], rows)
        ratio_rows = []
        for other in [b for b in med if b != "modelfn"]:
            ratio_rows.append([f"modelfn vs {other}",
                               f"{med[other]['p50_ms'] / med['modelfn']['p50_ms']:.2f}x faster",
                               f"{med['modelfn']['texts_per_s'] / med[other]['texts_per_s']:.2f}x",
                               f"{med[other]['cold_s'] / med['modelfn']['cold_s']:.2f}x faster"])
        report.table("Ratios (>1: modelfn better)", ["pair", "p50", "throughput", "cold start"], ratio_rows)
        shutil.copy(work / "build" / "models" / "emb" / "model.onnx", work / "shipped.onnx")
        import onnx

        from infra.build.hf import export
        from infra.tasks.detect import detect

        pooled, _ = export(st, detect(st))
        onnx.save(pooled, work / "fp32_pooled.onnx")
        report.table("Where pooling runs (fp32, batch 32, one thread, median of 15)",
                     ["variant", "ms", "vs in-graph"], pooling_in_graph_vs_numpy(work, st, model_dir))
        report.write()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
