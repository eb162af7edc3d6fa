"""One side of ``bench_generation``: a fresh process that loads a generative model and streams
a greedy completion, printing JSON lines the parent times.

    python bench/generation_side.py modelfn <build/models/NAME> PROMPT TOKENS THREADS [WARM]
    python bench/generation_side.py llama   <model.gguf>       PROMPT TOKENS THREADS [WARM]
    python bench/generation_side.py quantize <f32.gguf> <out.gguf> Q4_0|Q8_0 THREADS
    python bench/generation_side.py gate <f32.gguf> <quantized.gguf> <ids.json> THREADS

Standard library at the top: the ``llama`` side runs under llama-cpp-python's own virtual
environment, which has no modelfn. Lines: ``{"event": "first_token", "t": <epoch s>}`` as
soon as the first text arrives (the parent subtracts the time it started the process), then
one ``{"event": "done", ...}`` with the cold request's and the warm requests' (``WARM`` more in
the same process, their median) time to first token (ms), decode tokens/s and text.

``quantize`` and ``gate`` run under llama-cpp-python too: llama.cpp's own quantizer
(``llama_model_quantize``, what its ``llama-quantize`` tool calls), and modelfn's generation gate
(:mod:`infra.build.generation_gate`) computed on llama.cpp's logits, so both stacks' quantized
weights are judged by the same figures against their own full-precision model.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path


def emit(**doc) -> None:
    print(json.dumps(doc), flush=True)


def modelfn_stream(model_dir: str, prompt: str, tokens: int, threads: int):
    """What the function does at init and per request: ``functions.api.handler`` (the model
    verified and loaded) and the OpenAI completions route's streamed reply."""
    os.environ["MODEL_DIR"] = model_dir
    os.environ["MODELFN_INTRA_OP_THREADS"] = str(threads)
    from functions.api import handler as api
    from layers.messages import Request

    def run():
        body = json.dumps({"model": api.model.name, "prompt": prompt, "max_tokens": tokens, "temperature": 0,
                           "stream": True, "stream_options": {"include_usage": True}})
        reply = api.binding.handle(Request(method="POST", path="/openai/v1/completions", raw_body=body,
                                           headers={"content-type": "application/json"}, limit=api.binding.limit))
        assert reply.status == 200, reply.body
        for event in reply.stream:
            for line in event.splitlines():
                if line.startswith("data: {"):
                    doc = json.loads(line[6:])
                    if doc.get("choices") and doc["choices"][0].get("text"):
                        yield doc["choices"][0]["text"], None
                    if doc.get("usage"):
                        yield "", doc["usage"]["completion_tokens"]
    return run


def llama_stream(gguf: str, prompt: str, tokens: int, threads: int):
    """llama-cpp-python's ``Llama`` (the write-up's stack) on the GGUF of the same weights."""
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=512, n_threads=threads, n_threads_batch=threads, verbose=False, seed=0)

    def run():
        for chunk in llm.create_completion(prompt, max_tokens=tokens, temperature=0.0, top_k=1, stream=True):
            choice = chunk["choices"][0]
            if choice["text"] or choice.get("finish_reason") is None:  # the last chunk only ends it
                yield choice["text"], None  # one chunk per generated token
    return run


def llama_quantize(f32: str, out: str, kind: str, threads: int) -> dict:
    """``f32`` quantized to ``kind`` by llama.cpp's quantizer (its default mix for the type:
    e.g. Q4_0 keeps the output matrix at Q6_K where the row size allows)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"Q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, "Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}[kind]
    params.nthread = threads
    start = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(f32.encode(), out.encode(), params)
    if rc != 0:
        raise SystemExit(f"llama_model_quantize({f32} → {kind}) returned {rc}")
    return {"quantize_s": time.perf_counter() - start}


def llama_gate(f32: str, quantized: str, ids_file: str, threads: int) -> dict:
    """The generation gate's figures for llama.cpp: the f32 GGUF continues each prompt greedily
    (``continuation`` tokens, stopping at EOS like onnxruntime-genai), the quantized GGUF reads
    those sequences teacher-forced (top-1 agreement at the continuation's positions), and both
    score the validation texts (perplexity ratio). Token ids come from the parent (the model
    directory's own tokenizer), the same ids modelfn's gate reads."""
    import math

    import numpy as np
    from llama_cpp import Llama

    spec = json.loads(Path(ids_file).read_text(encoding="utf-8"))
    longest = max(len(s) for s in spec["prompts"] + spec["texts"]) + spec["continuation"] + 8

    def load(path: str) -> Llama:
        return Llama(model_path=path, n_ctx=longest, n_batch=longest, logits_all=True, n_threads=threads,
                     n_threads_batch=threads, verbose=False)

    def logits(llm: Llama, ids: list[int]) -> np.ndarray:
        llm.reset()
        llm.eval(ids)
        return np.array(llm.scores[:len(ids)], dtype=np.float64)

    def nll(z: np.ndarray, ids: list[int]) -> tuple[float, int]:
        z = z[:-1] - z[:-1].max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        return float(-logp[np.arange(len(ids) - 1), ids[1:]].sum()), len(ids) - 1

    ref = load(f32)
    eos = ref.token_eos()
    seqs = []
    for ids in spec["prompts"]:
        ref.reset()
        ref.eval(ids)
        out = list(ids)
        for _ in range(spec["continuation"]):
            token = int(np.argmax(ref.scores[ref.n_tokens - 1]))
            out.append(token)
            if token == eos:
                break
            ref.eval([token])
        seqs.append((len(ids), out))
    ref_nll = [nll(logits(ref, ids), ids) for ids in spec["texts"]]
    del ref
    cand = load(quantized)
    agree = total = 0
    for start, seq in seqs:
        pred = logits(cand, seq).argmax(axis=-1)
        want = np.asarray(seq[start:])
        agree += int((pred[start - 1:len(seq) - 1] == want).sum())
        total += len(want)
    cand_nll = [nll(logits(cand, ids), ids) for ids in spec["texts"]]
    tokens = sum(n for _, n in ref_nll)
    ppl_ref = math.exp(sum(s for s, _ in ref_nll) / tokens)
    ppl = math.exp(sum(s for s, _ in cand_nll) / tokens)
    return {"top1_agreement": agree / total, "agreement_positions": total, "fp32_perplexity": ppl_ref,
            "perplexity": ppl, "perplexity_ratio": ppl / ppl_ref, "perplexity_tokens": tokens}


def timed(run) -> dict:
    start = time.perf_counter()
    first = last = None
    pieces, count, usage = [], 0, None
    for text, used in run():
        if used is not None:
            usage = used
            continue
        count += 1
        now = time.perf_counter()
        if first is None and text:
            first = now
            yield_first = time.time()
            emit(event="first_token", t=yield_first)
        last = now
        pieces.append(text)
    n = usage if usage is not None else count
    decode_s = (last - first) if first is not None and last is not None else 0.0
    return {"ttft_ms": (first - start) * 1000 if first else None, "tokens": n,
            "decode_tok_s": (n - 1) / decode_s if decode_s > 0 and n > 1 else None,
            "total_s": (last - start) if last else None, "text": "".join(pieces)}


def main(argv: list[str]) -> int:
    if argv[0] == "quantize":
        emit(event="done", **llama_quantize(argv[1], argv[2], argv[3], int(argv[4])))
        return 0
    if argv[0] == "gate":
        emit(event="done", **llama_gate(argv[1], argv[2], argv[3], int(argv[4])))
        return 0
    side, path, prompt, tokens, threads = argv[0], argv[1], argv[2], int(argv[3]), int(argv[4])
    t_import = time.time()
    run = (modelfn_stream if side == "modelfn" else llama_stream)(path, prompt, tokens, threads)
    loaded = time.time()
    cold = timed(run)
    runs = [timed(run) for _ in range(int(argv[5]) if len(argv) > 5 else 1)]
    warm = {k: statistics.median(v) if (v := [r[k] for r in runs if r[k] is not None]) else None
            for k in ("ttft_ms", "tokens", "decode_tok_s", "total_s")}
    emit(event="done", load_s=loaded - t_import, cold=cold, warm={**warm, "text": runs[0]["text"], "runs": len(runs)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
