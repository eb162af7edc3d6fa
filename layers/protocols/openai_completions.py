"""OpenAI's completions and chat completions, served by a generative model (part of the
``openai`` protocol: its routes and operations are added in :mod:`layers.protocols.openai`).

Routes: ``POST /openai/{name}/v1/completions`` and ``/openai/{name}/v1/chat/completions``
pinned to one model; ``POST /openai/v1/completions`` and ``/openai/v1/chat/completions``
routed by the body's ``"model"`` (``Scope.BODY``).

What the stock ``openai`` client sends and expects (API reference, "Completions" and "Chat"):

* completions ``{"model", "prompt": str | [str], "max_tokens" (default 16), "temperature"
  (default 1), "top_p", "stop", "seed", "stream", "stream_options": {"include_usage"},
  "echo", "n": 1, "user"}`` → ``{"id": "cmpl-…", "object": "text_completion", "created",
  "model", "system_fingerprint", "choices": [{"text", "index", "logprobs": null,
  "finish_reason": "stop" | "length"}], "usage": {"prompt_tokens", "completion_tokens",
  "total_tokens"}}``; one choice per prompt.
* chat ``{"model", "messages": [{"role", "content": str | [{"type": "text", "text"}]}],
  "max_completion_tokens" | "max_tokens" (default: the rest of the context), …}`` →
  ``{"id": "chatcmpl-…", "object": "chat.completion", …, "choices": [{"index", "message":
  {"role": "assistant", "content", "refusal": null}, "logprobs": null, "finish_reason"}],
  "usage"}``. The prompt is the model's chat template applied to the messages.
* ``stream: true``: server-sent events, one ``data: <chunk JSON>`` per text delta (completions:
  ``text_completion`` objects with ``choices[].text``; chat: ``chat.completion.chunk`` with
  ``choices[].delta``, the first carrying ``role``), then a chunk with the ``finish_reason``,
  with ``stream_options.include_usage`` a last chunk with ``"choices": []`` and the usage
  (``"usage": null`` on the others), then ``data: [DONE]``. A delta never splits a character.
  A failure after the first event is sent as ``data: {"error": {…}}`` (the status is gone).
* ``top_k`` is accepted as an extension (as vLLM does; the client sends it with
  ``extra_body``). Settings this runtime does not implement (``logprobs``, ``n`` > 1,
  penalties, ``logit_bias``, ``suffix``, tools, a JSON ``response_format``) are a 400 naming
  them, never silently ignored.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from layers import openai_wire as wire
from layers.dataplane import DataPlane
from layers.jsonfast import dumps
from layers.messages import Reply, Request, json_body, json_reply

SSE = "text/event-stream; charset=utf-8"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DONE = "data: [DONE]\n\n"
_SIZE_FIX = "Send a shorter prompt, or drop a .jsonl of prompts into the batch bucket."
_COMMON = {"model", "temperature", "top_p", "top_k", "stop", "seed", "stream", "stream_options", "n", "user",
           "logprobs", "presence_penalty", "frequency_penalty", "logit_bias", "max_tokens"}
COMPLETION_KEYS = _COMMON | {"prompt", "echo", "best_of", "suffix"}
CHAT_KEYS = _COMMON | {"messages", "max_completion_tokens", "top_logprobs", "response_format", "tools",
                       "tool_choice", "parallel_tool_calls", "store", "metadata", "modalities"}


def _engine(plane: DataPlane):
    model = plane.model
    if getattr(model, "task_name", None) != "generation":
        task = (getattr(model, "task", None) or {}).get("task") or getattr(model, "task_name", None) or "tensors"
        hint = (f"POST /openai/{model.name}/v1/embeddings" if task in ("embeddings", "feature-extraction")
                else f"POST /v2/models/{model.name}/infer")
        raise wire.OpenAIError(f"Model `{model.name}` is not a generative model (it serves {task}); use {hint}.",
                               param="model")
    return model


def _body(plane: DataPlane, req: Request, allowed: set[str]) -> dict[str, Any]:
    pinned = req.params.get("name")
    if pinned is not None and pinned != plane.model.name:
        raise wire.model_not_found(pinned, [plane.model.name])
    doc = json_body(req, size_fix=_SIZE_FIX, not_json=wire.not_json)
    if not isinstance(doc, dict):
        raise wire.OpenAIError("The request body must be a JSON object.")
    name = doc.get("model")
    if not isinstance(name, str) or not name:
        raise wire.OpenAIError("'model' is required: the name of the model (GET /openai/v1/models lists them).",
                               param="model")
    if name != plane.model.name:
        raise wire.model_not_found(name, [plane.model.name])
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise wire.OpenAIError(f"Unrecognized request argument(s) supplied: {', '.join(unknown)}.", param=unknown[0])
    _refuse_unsupported(doc)
    return doc


def _refuse_unsupported(doc: dict[str, Any]) -> None:
    def refuse(key: str, what: str) -> None:
        raise wire.OpenAIError(f"'{key}' {what} is not supported by this endpoint; leave it out.", param=key)

    if doc.get("n") not in (None, 1):
        refuse("n", f"= {doc['n']!r} (one choice per prompt)")
    if doc.get("best_of") not in (None, 1):
        refuse("best_of", f"= {doc['best_of']!r}")
    if doc.get("logprobs") not in (None, False):
        refuse("logprobs", "(token log-probabilities)")
    if doc.get("top_logprobs") is not None:
        refuse("top_logprobs", "(token log-probabilities)")
    for key in ("presence_penalty", "frequency_penalty"):
        if doc.get(key) not in (None, 0, 0.0):
            refuse(key, f"= {doc[key]!r} (only 0)")
    if doc.get("logit_bias"):
        refuse("logit_bias", "")
    if doc.get("suffix"):
        refuse("suffix", "(insertion)")
    if doc.get("tools"):
        refuse("tools", "(function calling)")
    fmt = doc.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        refuse("response_format", f"= {fmt!r} (only {{\"type\": \"text\"}})")
    stream, opts = doc.get("stream"), doc.get("stream_options")
    if stream not in (None, True, False):
        raise wire.OpenAIError(f"'stream' must be true or false; got {stream!r}.", param="stream")
    if opts is not None:
        if not stream:
            raise wire.OpenAIError("'stream_options' is only allowed when 'stream' is true.", param="stream_options")
        if not isinstance(opts, dict) or set(opts) - {"include_usage", "include_obfuscation"}:
            raise wire.OpenAIError("'stream_options' must be an object like {\"include_usage\": true}.",
                                   param="stream_options")


def _sampling(doc: dict[str, Any], keys: tuple[str, ...]):
    from layers.generation.options import ParamError, sampling

    try:
        return sampling(doc, max_tokens_keys=keys)
    except ParamError as exc:
        raise wire.OpenAIError(exc.message, param=exc.param) from None


def _prompts(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if value is None or not isinstance(items, list) or not items:
        raise wire.OpenAIError("'prompt' is required: a string, or a list of strings (one choice each).",
                               param="prompt")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise wire.OpenAIError(f"'prompt'[{i}] is {type(item).__name__}; send text (token ids from another "
                                   "tokenizer would not mean the same words).", param="prompt")
        if not item:
            raise wire.OpenAIError(f"'prompt'[{i}] is an empty string; send the text to continue.", param="prompt")
    if len(items) > wire.MAX_INPUTS:
        raise wire.OpenAIError(f"'prompt' has {len(items)} items; send at most {wire.MAX_INPUTS}.", param="prompt")
    return items


def _messages(value: Any) -> list[dict[str, Any]]:
    from layers.generation.options import ParamError, messages

    try:
        return messages(value)
    except ParamError as exc:
        raise wire.OpenAIError(exc.message, param=exc.param) from None


def _meta(plane: DataPlane, prefix: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"{prefix}-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": doc["model"],
            "system_fingerprint": f"fp_{plane.model.version}"}


def _include_usage(doc: dict[str, Any]) -> bool:
    return bool((doc.get("stream_options") or {}).get("include_usage"))


def _event(doc: dict[str, Any]) -> str:
    return f"data: {dumps(doc)}\n\n"


def _sse(events: Iterator[str], plane: DataPlane, request_id: str) -> Reply:
    def guarded() -> Iterator[str]:
        try:
            yield from events
        except Exception as exc:  # after the first event the status is sent: report in the stream
            plane.hooks.on_internal_error(exc, request_id)
            yield _event(wire.error_body(500, f"The server had an error while generating; request id "
                                              f"{request_id}."))
            return
        yield DONE
    return Reply(200, SSE, "", dict(SSE_HEADERS), stream=guarded())


def completions(plane: DataPlane, req: Request) -> Reply:
    doc = _body(plane, req, COMPLETION_KEYS)
    model = _engine(plane)
    prompts = _prompts(doc.get("prompt"))
    sampling = _sampling(doc, ("max_tokens",))
    echo = doc.get("echo") is True
    gens = [model.complete(p, sampling) for p in prompts]  # every prompt checked before a token
    meta = {**_meta(plane, "cmpl", doc), "object": "text_completion"}
    if not doc.get("stream"):
        choices = []
        for i, (prompt, gen) in enumerate(zip(prompts, gens, strict=True)):
            gen.run()
            choices.append({"text": (prompt if echo else "") + gen.text, "index": i, "logprobs": None,
                            "finish_reason": gen.finish_reason})
        return json_reply(200, {**meta, "choices": choices, "usage": _total(gens)})
    usage = _include_usage(doc)

    def events() -> Iterator[str]:
        def chunk(i: int, text: str, finish: str | None) -> str:
            out = {**meta, "choices": [{"text": text, "index": i, "logprobs": None, "finish_reason": finish}]}
            return _event({**out, "usage": None} if usage else out)
        for i, (prompt, gen) in enumerate(zip(prompts, gens, strict=True)):
            if echo:
                yield chunk(i, prompt, None)
            for delta in gen:
                yield chunk(i, delta, None)
            yield chunk(i, "", gen.finish_reason)
        if usage:
            yield _event({**meta, "choices": [], "usage": _total(gens)})
    return _sse(events(), plane, req.request_id)


def chat_completions(plane: DataPlane, req: Request) -> Reply:
    doc = _body(plane, req, CHAT_KEYS)
    model = _engine(plane)
    messages = _messages(doc.get("messages"))
    sampling = _sampling(doc, ("max_completion_tokens", "max_tokens"))
    prompt_ids = model.chat_prompt(messages)
    sampling = model.chat_sampling(prompt_ids, sampling)
    gen = model.generate(prompt_ids, sampling)
    meta = _meta(plane, "chatcmpl", doc)
    if not doc.get("stream"):
        gen.run()
        return json_reply(200, {**meta, "object": "chat.completion", "choices": [{
            "index": 0, "message": {"role": "assistant", "content": gen.text, "refusal": None},
            "logprobs": None, "finish_reason": gen.finish_reason}], "usage": gen.usage})
    usage = _include_usage(doc)
    meta = {**meta, "object": "chat.completion.chunk"}

    def events() -> Iterator[str]:
        def chunk(delta: dict[str, Any], finish: str | None) -> str:
            out = {**meta, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            return _event({**out, "usage": None} if usage else out)
        yield chunk({"role": "assistant", "content": "", "refusal": None}, None)
        for delta in gen:
            yield chunk({"content": delta}, None)
        yield chunk({}, gen.finish_reason)
        if usage:
            yield _event({**meta, "choices": [], "usage": gen.usage})
    return _sse(events(), plane, req.request_id)


def _total(gens) -> dict[str, int]:
    p = sum(g.prompt_tokens for g in gens)
    c = sum(g.completion_tokens for g in gens)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


OPERATIONS: dict[str, Callable[[DataPlane, Request], Reply]] = {
    "completions": completions, "chat_completions": chat_completions}


def document(model, route_path: str, errors: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI operation of one completions route (``errors``: OpenAI's error responses)."""
    chat = route_path.endswith("/chat/completions")
    text = {"type": "string", "minLength": 1}
    common = {"model": {"enum": [model.name]}, "temperature": {"type": "number", "minimum": 0, "maximum": 2},
              "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
              "top_k": {"type": "integer", "minimum": 0, "description": "extension (as vLLM's): 0 = off"},
              "max_tokens": {"type": "integer", "minimum": 1}, "seed": {"type": "integer"},
              "stop": {"oneOf": [text, {"type": "array", "items": text, "maxItems": 4}]},
              "stream": {"type": "boolean"},
              "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
              "n": {"const": 1}, "user": {"type": "string"}}
    usage = {"type": "object", "properties": {k: {"type": "integer"} for k in
                                              ("prompt_tokens", "completion_tokens", "total_tokens")}}
    finish = {"enum": ["stop", "length"]}
    if chat:
        # imported here: the generation package is not needed to route a classifier's requests
        from layers.generation.options import ROLES

        message = {"type": "object", "required": ["role", "content"], "properties": {
            "role": {"enum": list(ROLES)}, "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {
                "type": "object", "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}}]}}}
        props = {**common, "messages": {"type": "array", "items": message, "minItems": 1},
                 "max_completion_tokens": {"type": "integer", "minimum": 1}}
        required, example = ["model", "messages"], {"model": model.name,
                                                    "messages": [{"role": "user", "content": "Hello"}]}
        choice = {"type": "object", "properties": {"index": {"type": "integer"}, "finish_reason": finish,
                                                   "message": {"type": "object", "properties": {
                                                       "role": {"const": "assistant"},
                                                       "content": {"type": "string"}}}}}
        summary = "OpenAI chat completions (the model's chat template; 400 when it has none)"
    else:
        props = {**common, "prompt": {"oneOf": [text, {"type": "array", "items": text, "minItems": 1}]},
                 "echo": {"type": "boolean"}}
        required, example = ["model", "prompt"], {"model": model.name, "prompt": "Once upon a time",
                                                  "max_tokens": 16}
        choice = {"type": "object", "properties": {"index": {"type": "integer"}, "text": {"type": "string"},
                                                   "finish_reason": finish}}
        summary = "OpenAI completions"
    ok = {"200": {"description": "the completion (JSON), or with stream: true server-sent events ending in "
                                 "data: [DONE]. Streamed on the local stack, the model's streaming function URL "
                                 "(Lambda) and SageMaker's InvokeEndpointWithResponseStream; where the transport "
                                 "cannot stream (API Gateway's HTTP API) the events arrive together in one "
                                 "response.",
                  "content": {"application/json": {"schema": {"type": "object", "properties": {
                      "id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"},
                      "model": {"type": "string"}, "choices": {"type": "array", "items": choice},
                      "usage": usage}}},
                              "text/event-stream": {"schema": {"type": "string"}}}}}
    return {"summary": summary, "tags": ["openai"],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"type": "object", "required": required, "properties": props}, "example": example}}},
            "responses": {**ok, **errors}}
