"""Generative models: modelfn (onnxruntime-genai behind the API function) vs llama-cpp-python on
a GGUF of the same weights, side by side in one run, at each precision: modelfn fp32 vs GGUF
f32, modelfn ``quantize: int4`` vs llama.cpp Q4_0, ``quantize: int8`` vs Q8_0.

The reference is AWS's write-up of a small language model on Lambda, which ran llama-cpp-python
on a 4-bit GGUF of a 1.5B-parameter model. For each size (:data:`SIZES`: the sample catalog's
``tiny-decoder``, seeded random Llamas, Qwen2-1.5B's shape with random weights; nothing
downloaded) the benchmark makes the model directory, builds it with ``modelfn build`` at each
precision (the build's own generation gate records top-1 agreement and perplexity ratio against
fp32), converts the same directory with llama.cpp's ``convert_hf_to_gguf.py`` (``--outtype f32``)
and quantizes that with llama.cpp's own quantizer, computes the same gate figures for llama.cpp's
quantized GGUF against its f32 one (``generation_side.py gate``), then, alternating the sides,
starts each in a fresh process (``bench/generation_side.py``) and times:

* **process start → first token**: from the parent starting the process to the first streamed
  text (imports, model load and verification, prompt, first token: a Lambda cold start's work
  without the sandbox; what the write-up measured as cold start);
* **time to first token** and **decode tokens/s** of warm requests in the same process
  (``--warm`` of them, their median; greedy, ``--tokens`` new tokens, one streamed chunk per
  token);
* **size**: the artifact (``generation/`` folder vs ``.gguf``) and the engine's installed
  packages (onnxruntime + onnxruntime-genai vs llama_cpp; numpy, which both need, left out);
  and how long each build/conversion took.

Both sides get the same thread count (``--threads``, default 1: a 1,769 MB Lambda has one
vCPU) and the same prompt; the table says whether their greedy texts agree at each precision.
Figures are medians over ``--repeats`` with the range, the CPU and the load average beside them.
Each size's section is kept in the results file until a later run measures that size again, so
the 1.5B size can run on its own (``--sizes qwen2-1.5b --precisions int4``).

llama-cpp-python lives in its own virtual environment (``MODELFN_BENCH_LLAMA_VENV``, default
``~/.cache/modelfn-bench/llama-cpp-venv``; it has no wheel for this platform on PyPI, so
``pip install`` compiles llama.cpp: tens of minutes on 2 cores), and the converter comes from
its sdist (``MODELFN_BENCH_LLAMA_SRC``: the unpacked ``llama_cpp_python-<v>`` directory, whose
``vendor/llama.cpp`` holds it).

    python -m bench.bench_generation [--sizes sample,small] [--precisions fp32,int4,int8]
        [--repeats 3] [--tokens 48] [--threads 1] [--work DIR]
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
#: family, hidden, layers, heads, kv heads, intermediate, config vocabulary (None: the tokenizer's);
#: "sample" is the sample catalog's tiny-decoder itself (Qwen2 family, hidden 64, 2 layers)
SIZES: dict[str, tuple | None] = {
    "sample": None,
    "tiny": ("llama", 64, 2, 4, 2, 128, None),
    "small": ("llama", 512, 8, 8, 4, 1408, None),
    # Qwen2-1.5B's config (hidden 1536, 28 layers, 12 heads / 2 KV heads, MLP 8960, vocabulary
    # 151,936, tied embeddings): 1.54B parameters; "-2l" is its first 2 layers, to time the build
    "qwen2-1.5b-2l": ("qwen2", 1536, 2, 12, 2, 8960, 151936),
    "qwen2-1.5b": ("qwen2", 1536, 28, 12, 2, 8960, 151936),
}
DESCRIBE = {
    "sample": "the sample catalog's `tiny-decoder` (Qwen2 family, hidden 64, 2 layers, trained by `make samples`; "
              "it ends the prompt's sentence at EOS after 6 tokens, so its decode tokens/s time a handful of "
              "sub-millisecond steps: read its cold start and gate)",
    "tiny": "random Llama of the sample's shape (hidden 64, 2 layers)",
    "small": "random Llama, hidden 512, 8 layers (~25M parameters)",
    "qwen2-1.5b-2l": "Qwen2-1.5B's config cut to 2 layers (random weights, ~330M parameters, most in the "
                     "151,936-token embedding)",
    "qwen2-1.5b": "Qwen2-1.5B's config (random weights, 1.54B parameters): the AWS write-up's size",
}
#: modelfn precision → the GGUF type it is compared with
LLAMA_TYPES = {"fp32": "F32", "int4": "Q4_0", "int8": "Q8_0"}
CORPUS = ["the quick brown fox jumps over the lazy dog.", "hello world, this is a tiny model.",
          "serverless models answer on lambda.", "one two three four five six seven eight nine ten."]
SAMPLE_PROMPTS = ["the quick brown", "hello world,", "one two three", "serverless models"]
FOOTER = [
    "Random weights (seeded) for every size but `sample`: speed does not depend on them, and the greedy texts "
    "show both engines run the same weights; their gate figures say how each quantizer treats weights with "
    "no structure, a harder case than a trained model's (the `sample` rows are a trained model).",
    "",
    "Build (s): modelfn's whole `modelfn build` (an int4/int8 build also exports fp32, runs the gate and the "
    "build's own speed measurement); llama.cpp's f32 row is `convert_hf_to_gguf.py`, its Q4_0/Q8_0 rows the "
    "quantizer alone, on top of the conversion (its gate run not counted).",
]

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


def make_random(path: Path, size: str, seed: int = 0) -> Path:
    """A seeded random-weight decoder of ``size`` (:data:`SIZES`) with a byte-level BPE tokenizer
    trained on :data:`CORPUS`; a config vocabulary larger than the tokenizer's (Qwen2-1.5B's
    151,936) keeps its shape, the rows no token reaches zeroed."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    family, hidden, layers, heads, kv, inter, vocab = SIZES[size]
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
    shape = dict(vocab_size=vocab or len(fast), hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                 num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=512, bos_token_id=0,
                 eos_token_id=0)
    if family == "qwen2":  # Qwen2-1.5B's own settings (tied embeddings, rope theta 1e6, q/k/v biases)
        model = Qwen2ForCausalLM(Qwen2Config(**shape, tie_word_embeddings=True, rope_theta=1e6,
                                             rms_norm_eps=1e-6)).eval()
    else:
        model = LlamaForCausalLM(LlamaConfig(**shape)).eval()
    with torch.no_grad():  # random weights: keep greedy decoding off EOS so every run decodes --tokens
        head = model.get_output_embeddings().weight
        head[0] = 0.0
        head[1:] *= 4.0
        head[len(fast):] = 0.0
    model.save_pretrained(path)
    (path / "val.txt").write_text("\n".join([*SAMPLE_PROMPTS, *CORPUS]) + "\n")
    return path


def make_model(work: Path, size: str) -> tuple[Path, Path]:
    """(model directory, validation .txt) for ``size``; ``sample`` is the sample catalog's
    ``tiny-decoder`` exactly as ``make samples`` makes it (seeded: the same weights)."""
    if size == "sample":
        from samples.decoder import make_sample

        make_sample(work)
        return work / "decoder", work / "decoder_val.txt"
    hf = make_random(work / "hf", size)
    return hf, hf / "val.txt"


def modelfn_build(hf: Path, validation: Path, work: Path, name: str, precision: str) -> tuple[Path, float]:
    """``modelfn build`` at ``precision`` (fp32 = ``quantize: none``). The int4/int8 builds keep
    their candidate whatever the gate says (tolerance opened), so the bench times the precision it
    names; the gate's figures are in the manifest and judged against the default tolerance here."""
    catalog = work / f"models-{precision}.yaml"
    quantize = {"fp32": "none"}.get(precision, precision)
    context = 128 if hf.name == "decoder" else 256
    catalog.write_text(
        f"models:\n  - name: {name}\n    source: 'hf:{hf}'\n    quantize: {quantize}\n    auth: iam\n"
        f"    validation: '{validation}'\n    generation: {{max_context: {context}}}\n"
        "    tolerance: {top1_agreement: 0.0, max_perplexity_ratio: 1.0e9}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "infra.cli", "build", "--catalog", str(catalog), "--out", str(work / "build"),
                    "--model", name], check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    return work / "build" / "models" / name, time.perf_counter() - started


def gguf(hf: Path, out: Path) -> float:
    """``hf`` as an f32 GGUF by llama.cpp's converter; returns the seconds it took."""
    script = out.parent / "convert.py"
    script.write_text(CONVERT)
    llama_cpp = SRC / "vendor" / "llama.cpp"
    env = {**os.environ, "PYTHONPATH": str(llama_cpp / "gguf-py")}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script), str(llama_cpp), str(hf), "--outfile", str(out), "--outtype",
                           "f32"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"convert_hf_to_gguf failed: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def llama_tool(*args: str) -> dict:
    """``generation_side.py quantize|gate ...`` under llama-cpp-python; its ``done`` line."""
    done = subprocess.run([str(llama_python()), str(REPO / "bench" / "generation_side.py"), *args],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""}, cwd=REPO)
    for line in done.stdout.splitlines():
        if line.startswith("{") and (doc := json.loads(line))["event"] == "done":
            return doc
    raise RuntimeError(f"llama.cpp {args[0]} failed: {done.stderr[-2000:]}")


def gate_ids(hf: Path, validation: Path, context: int, path: Path) -> Path:
    """The validation prompts and texts as the model directory's tokenizer encodes them, cut as
    modelfn's gate cuts them, for llama.cpp's side of the gate (the same ids both read)."""
    from tokenizers import Tokenizer

    from infra.build import generation_gate

    tok = Tokenizer.from_file(str(hf / "tokenizer.json"))
    prompts, texts = generation_gate.validation(validation)
    keep = max(1, context - generation_gate.CONTINUATION)
    path.write_text(json.dumps({
        "continuation": generation_gate.CONTINUATION,
        "prompts": [ids[:keep] for p in prompts if (ids := tok.encode(p).ids)],
        "texts": [ids[:context] for t in texts if len(ids := tok.encode(t).ids) >= 2]}))
    return path


def verdict(figures: dict) -> str:
    """The gate's figures as ``agreement / perplexity ratio`` and whether the default tolerance
    (what ``modelfn build`` applies without a catalog ``tolerance``) passes them."""
    from infra.catalog import GENERATION_TOLERANCE as tol

    if not figures:
        return "—"
    ok = (figures["top1_agreement"] >= tol.top1_agreement
          and figures["perplexity_ratio"] <= tol.max_perplexity_ratio)
    return (f"{figures['top1_agreement']:.3f} / {figures['perplexity_ratio']:.4f} "
            f"({'passes' if ok else 'fails'})")


def run_side(side: str, path: Path, tokens: int, threads: int, warm: int) -> dict:
    py = str(llama_python()) if side == "llama" else sys.executable
    env = {**os.environ, "PYTHONPATH": str(REPO) if side == "modelfn" else "", "OMP_NUM_THREADS": str(threads),
           "POWERTOOLS_METRICS_NAMESPACE": "modelfn-bench", "POWERTOOLS_TRACE_DISABLED": "true"}
    t0 = time.time()
    proc = subprocess.Popen([py, str(REPO / "bench" / "generation_side.py"), side, str(path), PROMPT, str(tokens),
                             str(threads), str(warm)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO)
    first, done = None, None
    for line in proc.stdout:
        if not line.startswith("{"):
            continue
        doc = json.loads(line)
        if "event" not in doc:  # the function's own JSON log lines (Powertools Logger) share stdout
            continue
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


def prepare(work: Path, size: str, precisions: list[str], threads: int, log) -> dict:
    """Make ``size``'s model, build it with modelfn at each precision, convert and quantize the
    GGUFs with llama.cpp, and compute both gates; reuses what an earlier run left in ``work``."""
    state_file = work / "prepared.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    if not state.get("hf"):
        started = time.perf_counter()
        hf, validation = make_model(work, size)
        state.update(hf=str(hf), validation=str(validation), make_s=time.perf_counter() - started)
        log(f"{size}: model made in {state['make_s']:.0f} s")
    hf, validation = Path(state["hf"]), Path(state["validation"])
    for precision in precisions:
        key = f"modelfn-{precision}"
        if key not in state:
            built, took = modelfn_build(hf, validation, work, f"bench-{size.replace('.', '-')}-{precision}",
                                        precision)
            manifest = json.loads((built / "manifest.json").read_text())
            cands = manifest["quantization"].get("candidates") or [{}]
            state[key] = {"path": str(built), "build_s": took, "size": du(built / "generation"),
                          "precision": manifest["generation"]["precision"], "gate": cands[0].get("figures", {})}
            state_file.write_text(json.dumps(state))
            log(f"{size}: modelfn build {precision} in {took:.0f} s (ships {state[key]['precision']})")
    if "llama-fp32" not in state:
        f32 = work / f"{size}-f32.gguf"
        took = gguf(hf, f32)
        state["llama-fp32"] = {"path": str(f32), "build_s": took, "size": f32.stat().st_size, "gate": {}}
        state_file.write_text(json.dumps(state))
        log(f"{size}: GGUF f32 converted in {took:.0f} s")
    f32 = state["llama-fp32"]["path"]
    for precision in precisions:
        key = f"llama-{precision}"
        if key in state:
            continue
        kind = LLAMA_TYPES[precision]
        out = work / f"{size}-{kind.lower()}.gguf"
        took = llama_tool("quantize", f32, str(out), kind, str(threads))["quantize_s"]
        ids = gate_ids(hf, validation, json.loads((Path(state[f"modelfn-{precision}"]["path"]) / "manifest.json")
                                                  .read_text())["generation"]["max_context"], work / "gate_ids.json")
        gate = {k: v for k, v in llama_tool("gate", f32, str(out), str(ids), str(threads)).items() if k != "event"}
        state[key] = {"path": str(out), "build_s": took, "size": out.stat().st_size, "gate": gate}
        state_file.write_text(json.dumps(state))
        log(f"{size}: llama.cpp {kind} quantized in {took:.1f} s, gate {verdict(gate)}")
    return state


def measure(state: dict, precisions: list[str], repeats: int, tokens: int, threads: int, warm: int, size: str,
            log) -> dict:
    """Alternating fresh processes, modelfn and llama.cpp at each precision (the order flips
    every repeat, so a load swing hits both sides)."""
    results: dict[str, list[dict]] = {f"{side}-{p}": [] for p in precisions for side in ("modelfn", "llama")}
    for i in range(repeats):
        for precision in precisions:
            for side in (("modelfn", "llama") if i % 2 == 0 else ("llama", "modelfn")):
                key = f"{side}-{precision}"
                results[key].append(run_side(side, Path(state[key]["path"]), tokens, threads, warm))
                log(f"{size} {key} {i} " + json.dumps({k: v for k, v in results[key][-1].items() if k != "warm"}))
    return results


def section(size: str, state: dict, results: dict, precisions: list[str]) -> list[str]:
    """``size``'s table and ratio lines (kept between runs by its ``<!-- size -->`` markers)."""
    lines = [f"<!-- size:{size} -->", f"### {size}: {DESCRIBE[size]}", "",
             "| precision | side | artifact | build (s) | process start → first token (s) | in-process load (s) | "
             "warm time to first token (ms) | decode tokens/s | tokens | gate vs own fp32: agreement / ppl ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for precision in precisions:
        med: dict[str, dict[str, float]] = {}
        for side in ("modelfn", "llama"):
            key, rs = f"{side}-{precision}", results[f"{side}-{precision}"]
            info = state[key]
            label = precision if side == "modelfn" else ("f32" if precision == "fp32" else LLAMA_TYPES[precision])
            if side == "modelfn" and info["precision"] != precision:
                label += f" (shipped {info['precision']})"
            lines.append(
                f"| {label} | {'modelfn' if side == 'modelfn' else 'llama.cpp'} | {info['size'] / 1e6:.1f} MB | "
                f"{info['build_s']:.0f} | {spread([r['start_to_first_s'] for r in rs], '{:.2f}')} | "
                f"{spread([r['load_s'] for r in rs], '{:.2f}')} | "
                f"{spread([r['warm']['ttft_ms'] for r in rs], '{:.1f}')} | "
                f"{spread([r['warm']['decode_tok_s'] for r in rs], '{:.0f}')} | "
                f"{statistics.median([r['warm']['tokens'] for r in rs]):.0f} | "
                f"{verdict(info['gate']) if precision != 'fp32' else '—'} |")
            med[side] = {m: statistics.median([v for r in rs if (v := get(r)) is not None] or [0]) for m, get in (
                ("cold", lambda r: r["start_to_first_s"]), ("ttft", lambda r: r["warm"]["ttft_ms"]),
                ("tps", lambda r: r["warm"]["decode_tok_s"]))}
            med[side]["size"] = info["size"]

        def ratio(m: str, med: dict = med) -> str:
            return f"{med['modelfn'][m] / med['llama'][m]:.2f}×" if med["llama"][m] else "n/a"

        texts = {s: results[f"{s}-{precision}"][0]["warm"]["text"] for s in ("modelfn", "llama")}
        a, b = texts["modelfn"], texts["llama"]
        same = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        if texts["modelfn"] == texts["llama"]:
            agreement = "agree"
        else:  # where they part says more than "differ": a quantizer's rounding flips a near tie late or early
            agreement = f"differ after {same} of {max(len(t) for t in texts.values())} characters"
        notes.append(f"- **{precision} vs {'f32' if precision == 'fp32' else LLAMA_TYPES[precision]}**, modelfn / "
                     f"llama.cpp: process start → first token {ratio('cold')}, warm time to first token "
                     f"{ratio('ttft')}, decode tokens/s {ratio('tps')}, artifact {ratio('size')}; greedy texts "
                     f"{agreement} (modelfn {texts['modelfn'][:40]!r}, llama.cpp {texts['llama'][:40]!r})")
    return [*lines, "", *notes, f"<!-- /size:{size} -->"]


def merge(out: Path, head: list[str], sections: dict[str, list[str]]) -> str:
    """The results file: this run's header and sections, plus the sections of sizes this run did
    not measure kept from the file as it was (each says the run it came from)."""
    kept: dict[str, list[str]] = {}
    if out.is_file():
        lines = out.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("<!-- size:") and (name := line[10:-4]) not in sections:
                end = lines.index(f"<!-- /size:{name} -->", i)
                kept[name] = lines[i:end + 1]
    order = [s for s in SIZES if s in sections or s in kept]
    body = [line for s in order for line in [*(sections.get(s) or kept[s]), ""]]
    return "\n".join([*head, "", *body, *FOOTER]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_generation")
    parser.add_argument("--sizes", default="sample,small", help=f"of {', '.join(SIZES)}")
    parser.add_argument("--precisions", default="fp32,int4,int8", help="of fp32, int4, int8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warm", type=int, default=5, help="warm requests per process (their median is the figure)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the models here and reuse them on the next run (default: a temp dir)")
    parser.add_argument("--prepare-only", action="store_true", help="make, build and gate the models, time nothing")
    args = parser.parse_args([] if argv is None else argv)  # `python -m bench generation`: defaults
    sizes, precisions = args.sizes.split(","), args.precisions.split(",")
    if unknown := sorted(set(sizes) - set(SIZES)) + sorted(set(precisions) - set(LLAMA_TYPES)):
        parser.error(f"unknown size or precision {unknown}; sizes: {', '.join(SIZES)}; precisions: fp32, int4, int8")
    llama_version = ensure_llama()
    import onnxruntime
    import onnxruntime_genai

    def log(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {line}", flush=True)

    load_before = os.getloadavg()
    sections: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        for size in sizes:
            work = (args.work or Path(tmp)) / size
            work.mkdir(parents=True, exist_ok=True)
            state = prepare(work, size, precisions, args.threads, log)
            if args.prepare_only:
                continue
            size_load = os.getloadavg()[0]
            results = measure(state, precisions, args.repeats, args.tokens, args.threads, args.warm, size, log)
            sections[size] = section(size, state, results, precisions)
            sections[size].insert(2, f"Load average while measured: {size_load:.1f} → {os.getloadavg()[0]:.1f}; "
                                     f"{args.repeats} repeats × {args.warm} warm requests, `--tokens {args.tokens} "
                                     f"--threads {args.threads}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")
    if args.prepare_only:
        return 0
    engines = {"modelfn": site_packages(sys.executable, "onnxruntime", "onnxruntime_genai"),
               "llama": site_packages(str(llama_python()), "llama_cpp")}
    load_after = os.getloadavg()
    head = [
        "# Generative models: modelfn vs llama-cpp-python (same weights, each precision)", "",
        f"Last run: `python -m bench.bench_generation --sizes {args.sizes} --precisions {args.precisions} --repeats "
        f"{args.repeats} --warm {args.warm} --tokens {args.tokens} --threads {args.threads}` on {platform.node() or 'this host'}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; each size's section names the run it "
        "came from, its load average and settings.",
        f"CPU: {cpu()}. Load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (shared host: "
        "the sides alternate in fresh processes, figures are medians [min–max]; read the ratios).",
        f"modelfn: onnxruntime {onnxruntime.__version__}, onnxruntime-genai {onnxruntime_genai.__version__} "
        "(`modelfn build` with `quantize: none|int4|int8`: weight-only MatMulNBits; served through "
        "`functions.api.handler` and the OpenAI completions route, streamed). "
        f"llama-cpp-python {llama_version} (GGUF f32 from `convert_hf_to_gguf.py`, Q4_0/Q8_0 from it by "
        f"llama.cpp's quantizer, `llama_model_quantize`). Greedy, the same thread count each, prompt "
        f"{PROMPT!r}.",
        f"Engine packages installed: modelfn's onnxruntime + onnxruntime-genai {engines['modelfn'] / 1e6:.0f} MB, "
        f"llama_cpp {engines['llama'] / 1e6:.0f} MB ({engines['modelfn'] / engines['llama']:.1f}×; numpy not "
        "counted).",
        "",
        "Gate: modelfn's generation gate (`infra/build/generation_gate.py`) for each stack against its own "
        "full precision: fp32 continues each validation prompt greedily 16 tokens, the quantized model reads "
        "those sequences (top-1 agreement at each continued position), and the perplexity ratio over the "
        "validation lines; `passes` = the default tolerance (agreement ≥ 0.95, ratio ≤ 1.10). The bench's "
        "builds open the tolerance so each precision ships and is timed; a user's build with the default "
        "tolerance would ship a failing candidate's fallback instead.",
    ]
    text = merge(args.out, head, sections)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
