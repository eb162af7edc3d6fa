"""One side of ``bench_generation``: a fresh process that loads a generative model and streams
a greedy completion, printing JSON lines the parent times.

    python bench/generation_side.py modelfn <build/models/NAME> PROMPT TOKENS THREADS
    python bench/generation_side.py llama   <model.gguf>       PROMPT TOKENS THREADS

Standard library at the top: the ``llama`` side runs under llama-cpp-python's own virtual
environment, which has no modelfn. Lines: ``{"event": "first_token", "t": <epoch s>}`` as
soon as the first text arrives (the parent subtracts the time it started the process), then
one ``{"event": "done", ...}`` with the cold request's and a second, warm request's time to
first token (ms), decode tokens/s and text.
"""

from __future__ import annotations

import json
import os
import sys
import time


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
    side, path, prompt, tokens, threads = argv[0], argv[1], argv[2], int(argv[3]), int(argv[4])
    t_import = time.time()
    run = (modelfn_stream if side == "modelfn" else llama_stream)(path, prompt, tokens, threads)
    loaded = time.time()
    cold = timed(run)
    warm = timed(run)
    emit(event="done", load_s=loaded - t_import, cold=cold, warm=warm)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
