"""Generative models: modelfn (onnxruntime-genai behind the API function) vs llama-cpp-python on
a GGUF of the same weights, side by side in one run.

The reference is AWS's write-up of a small language model on Lambda, which ran llama-cpp-python
on a GGUF. For each model size the benchmark makes one Llama directory from a config (seeded,
nothing downloaded), builds it with ``modelfn build`` (fp32, what ships) and converts the same
directory with llama.cpp's ``convert_hf_to_gguf.py`` (``--outtype f32``: the same weights, the
same precision), then, alternating the sides, starts each in a fresh process
(``bench/generation_side.py``) and times:

* **process start → first token**: from the parent starting the process to the first streamed
  text (imports, model load and verification, prompt, first token: a Lambda cold start's work
  without the sandbox);
* **time to first token** and **decode tokens/s** of a warm request in the same process
  (greedy, ``--tokens`` new tokens, one streamed chunk per token);
* **size**: the artifact (``generation/`` folder vs ``.gguf``) and the engine's installed
  packages (onnxruntime + onnxruntime-genai vs llama_cpp; numpy, which both need, left out).

Both sides get the same thread count (``--threads``, default 1: a 1,769 MB Lambda has one
vCPU) and the same prompt; the table says whether their greedy texts agree. Figures are
medians over ``--repeats`` with the range, the CPU and the load average beside them.

llama-cpp-python lives in its own virtual environment (``MODELFN_BENCH_LLAMA_VENV``, default
``~/.cache/modelfn-bench/llama-cpp-venv``; it has no wheel for this platform on PyPI, so
``pip install`` compiles llama.cpp: tens of minutes on 2 cores), and the converter comes from
its sdist (``MODELFN_BENCH_LLAMA_SRC``: the unpacked ``llama_cpp_python-<v>`` directory, whose
``vendor/llama.cpp`` holds it).

    python -m bench.bench_generation [--sizes tiny,small] [--repeats 3] [--tokens 48] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "generation.md"
LLAMA_VERSION = "0.3.36"
CACHE = Path.home() / ".cache" / "modelfn-bench"
VENV = Path(os.environ.get("MODELFN_BENCH_LLAMA_VENV", CACHE / "llama-cpp-venv"))
SRC = Path(os.environ.get("MODELFN_BENCH_LLAMA_SRC", CACHE / f"llama_cpp_python-{LLAMA_VERSION}"))
PROMPT = "the quick brown fox"
#: hidden, layers, heads, kv heads, intermediate: "tiny" is the size of the sample decoder,
#: "small" ~25M parameters (100 MB fp32)
SIZES = {"tiny": (64, 2, 4, 2, 128), "small": (512, 8, 8, 4, 1408)}
CORPUS = ["the quick brown fox jumps over the lazy dog.", "hello world, this is a tiny model.",
          "serverless models answer on lambda.", "one two three four five six seven eight nine ten."]

#: the converter names a BPE pre-tokenizer by a hash over vocabularies it knows; ours is GPT-2's
#: byte-level regex over a vocabulary it has never seen, so it is named here (the same split)
CONVERT = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv.pop(1))
import convert_hf_to_gguf as conv
from conversion import base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
_sp = base.TextModel._set_vocab_sentencepiece
def _no_sp(self, *a, **k):
    if not (Path(self.dir_model) / "tokenizer.model").is_file():
        raise FileNotFoundError("no tokenizer.model")
    return _sp(self, *a, **k)
base.TextModel._set_vocab_sentencepiece = _no_sp
sys.exit(conv.main())
"""


def llama_python() -> Path:
    return VENV / "bin" / "python"


def ensure_llama() -> str:
    """llama-cpp-python's venv (compiled on first use) and its sdist's converter."""
    if not llama_python().exists():
        print(f"installing llama-cpp-python {LLAMA_VERSION} into {VENV} (compiles llama.cpp)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(llama_python()), "-m", "pip", "install", "-q", f"llama-cpp-python=={LLAMA_VERSION}"],
                       check=True)
    if not (SRC / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py").is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={LLAMA_VERSION}", "-d", str(CACHE)], check=True)
        subprocess.run(["tar", "-xzf", str(CACHE / f"llama_cpp_python-{LLAMA_VERSION}.tar.gz"), "-C", str(SRC.parent)],
                       check=True)
    out = subprocess.run([str(llama_python()), "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def make_llama(path: Path, size: str, seed: int = 0) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    hidden, layers, heads, kv, inter = SIZES[size]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # the vocabulary holds only the corpus's (ASCII) characters: every token decodes to printable
    # text, so the two engines' greedy texts compare exactly (no half characters)
    tok.train_from_iterator(CORPUS * 20, trainers.BpeTrainer(vocab_size=160, special_tokens=["<|endoftext|>"],
                                                             show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    fast.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=512,
                      bos_token_id=0, eos_token_id=0)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # random weights: keep greedy decoding off EOS so every run decodes --tokens
        model.lm_head.weight[0] = 0.0
        model.lm_head.weight[1:] *= 4.0
    model.save_pretrained(path)
    return path


def modelfn_build(hf: Path, work: Path, name: str) -> Path:
    catalog = work / "models.yaml"
    catalog.write_text(f"models:\n  - {{name: {name}, source: 'hf:{hf}', quantize: none, auth: iam}}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "infra.cli", "build", "--catalog", str(catalog), "--out", str(work / "build"),
                    "--model", name], check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    return work / "build" / "models" / name


def gguf(hf: Path, out: Path) -> Path:
    script = out.parent / "convert.py"
    script.write_text(CONVERT)
    llama_cpp = SRC / "vendor" / "llama.cpp"
    env = {**os.environ, "PYTHONPATH": str(llama_cpp / "gguf-py")}
    subprocess.run([sys.executable, str(script), str(llama_cpp), str(hf), "--outfile", str(out), "--outtype", "f32"],
                   check=True, env=env, capture_output=True)
    return out


def run_side(side: str, path: Path, tokens: int, threads: int) -> dict:
    py = str(llama_python()) if side == "llama" else sys.executable
    env = {**os.environ, "PYTHONPATH": str(REPO) if side == "modelfn" else "", "OMP_NUM_THREADS": str(threads),
           "POWERTOOLS_METRICS_NAMESPACE": "modelfn-bench", "POWERTOOLS_TRACE_DISABLED": "true"}
    t0 = time.time()
    proc = subprocess.Popen([py, str(REPO / "bench" / "generation_side.py"), side, str(path), PROMPT, str(tokens),
                             str(threads)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO)
    first, done = None, None
    for line in proc.stdout:
        if not line.startswith("{"):
            continue
        doc = json.loads(line)
        if doc["event"] == "first_token" and first is None:
            first = doc["t"] - t0
        elif doc["event"] == "done":
            done = doc
    proc.wait()
    if done is None:
        raise RuntimeError(f"{side} failed: {proc.stderr.read()[-2000:]}")
    return {"start_to_first_s": first, **done}


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def site_packages(python: str, *modules: str) -> int:
    code = ("import importlib.util, os, sys; print(sum(sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in "
            "os.walk(os.path.dirname(importlib.util.find_spec(m).origin)) for f in fs) for m in sys.argv[1:]))")
    return int(subprocess.run([python, "-c", code, *modules], capture_output=True, text=True, check=True).stdout)


def spread(values: list[float], fmt: str) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def cpu() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    have = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]
    return f"{model} ({os.cpu_count()} vCPU; {', '.join(have) or 'no avx2'})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_generation")
    parser.add_argument("--sizes", default="tiny,small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the models here and reuse them on the next run (default: a temp dir)")
    parser.add_argument("--prepare-only", action="store_true", help="make and build the models, time nothing")
    args = parser.parse_args([] if argv is None else argv)  # `python -m bench generation`: defaults
    llama_version = "" if args.prepare_only else ensure_llama()
    import onnxruntime
    import onnxruntime_genai

    load_before = os.getloadavg()
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        for size in args.sizes.split(","):
            work = (args.work or Path(tmp)) / size
            work.mkdir(parents=True, exist_ok=True)
            built, model = work / "build" / "models" / f"bench-{size}", work / f"{size}-f32.gguf"
            if not (built / "manifest.json").is_file() or not model.is_file():
                hf = make_llama(work / "hf", size)
                built = modelfn_build(hf, work, f"bench-{size}")
                model = gguf(hf, work / f"{size}-f32.gguf")
            if args.prepare_only:
                continue
            results: dict[str, list[dict]] = {"modelfn": [], "llama": []}
            for i in range(args.repeats):
                for side in (("modelfn", "llama") if i % 2 == 0 else ("llama", "modelfn")):
                    path = built if side == "modelfn" else model
                    results[side].append(run_side(side, path, args.tokens, args.threads))
                    print(size, side, i, json.dumps({k: v for k, v in results[side][-1].items() if k != "warm"}),
                          flush=True)
            sizes = {"modelfn": du(built / "generation"), "llama": model.stat().st_size}
            texts = {s: results[s][0]["warm"]["text"] for s in results}
            for side in ("modelfn", "llama"):
                rs = results[side]
                rows.append((size, side, sizes[side],
                             spread([r["start_to_first_s"] for r in rs], "{:.2f}"),
                             spread([r["load_s"] for r in rs], "{:.2f}"),
                             spread([r["warm"]["ttft_ms"] for r in rs], "{:.1f}"),
                             spread([r["warm"]["decode_tok_s"] for r in rs], "{:.0f}"),
                             statistics.median([r["warm"]["tokens"] for r in rs])))
            med = {s: statistics.median([r["start_to_first_s"] for r in results[s]]) for s in results}
            tps = {s: statistics.median([r["warm"]["decode_tok_s"] or 0 for r in results[s]]) for s in results}
            ttft = {s: statistics.median([r["warm"]["ttft_ms"] or 0 for r in results[s]]) for s in results}
            def ratio(d: dict) -> str:
                return f"{d['modelfn'] / d['llama']:.2f}×" if d["llama"] else "n/a"

            notes.append(f"- **{size}**: modelfn / llama-cpp-python: process start → first token "
                         f"{ratio(med)}, warm time to first token {ratio(ttft)}, decode tokens/s {ratio(tps)}, "
                         f"artifact {sizes['modelfn'] / sizes['llama']:.2f}×; greedy texts "
                         f"{'agree' if texts['modelfn'] == texts['llama'] else 'differ'} "
                         f"(modelfn {texts['modelfn'][:40]!r}, llama.cpp {texts['llama'][:40]!r})")
    if args.prepare_only:
        return 0
    engines = {"modelfn": site_packages(sys.executable, "onnxruntime", "onnxruntime_genai"),
               "llama": site_packages(str(llama_python()), "llama_cpp")}
    load_after = os.getloadavg()
    lines = [
        "# Generative models: modelfn vs llama-cpp-python (same weights)", "",
        f"`python -m bench.bench_generation --sizes {args.sizes} --repeats {args.repeats} --tokens {args.tokens} "
        f"--threads {args.threads}` on {platform.node() or 'this host'}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"CPU: {cpu()}. Load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (shared host: "
        "the sides alternate, figures are medians [min–max]).",
        f"modelfn: onnxruntime {onnxruntime.__version__}, onnxruntime-genai {onnxruntime_genai.__version__} "
        f"(`modelfn build`, fp32; through `functions.api.handler` and the OpenAI completions route, streamed). "
        f"llama-cpp-python {llama_version} (GGUF f32 from `convert_hf_to_gguf.py`). Greedy, {args.threads} "
        f"thread(s) each, prompt {PROMPT!r}, up to {args.tokens} new tokens.",
        f"Engine packages installed: modelfn's onnxruntime + onnxruntime-genai {engines['modelfn'] / 1e6:.0f} MB, "
        f"llama_cpp {engines['llama'] / 1e6:.0f} MB ({engines['modelfn'] / engines['llama']:.1f}×; numpy not counted).", "",
        "| model | side | artifact | process start → first token (s) | in-process load (s) | "
        "warm time to first token (ms) | decode tokens/s | tokens |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {size} | {side} | {nbytes / 1e6:.1f} MB | {cold} | {load} | {ttft} | {tps} | {n:.0f} |"
          for size, side, nbytes, cold, load, ttft, tps, n in rows],
        "", *notes, "",
        "Sizes: tiny = the sample decoder's shape (Llama, hidden 64, 2 layers); small = hidden 512, 8 layers "
        "(~25M parameters). Weights are random (seeded): speed does not depend on them, and the greedy texts "
        "show both engines run the same weights.",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
