"""Triton's generate extension on the V2 routes: ``POST /v2/models/{name}/generate`` and
``generate_stream`` (part of the ``v2`` protocol; its routes are added in :mod:`.`).

Request: ``{"text_input": "<prompt>", "parameters": {"max_tokens", "temperature", "top_p",
"top_k", "seed", "stop"}}``; as Triton does, a setting may also be a top-level member beside
``text_input`` (``"max_tokens": 8``). ``generate`` answers ``{"model_name", "model_version",
"text_output", "finish_reason", "usage"}``; ``generate_stream`` answers server-sent events,
one ``data: {"model_name", "model_version", "text_output": <delta>}`` per text delta, the last
carrying ``finish_reason`` and ``usage`` (Triton sends no ``[DONE]``; the stream ends). Errors
are V2's ``{"error": …}`` with its statuses; one after the first event is sent as ``data:
{"error": …}``. A model that does not generate answers 400 pointing at ``/infer``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from layers.dataplane import DataPlane
from layers.errors import BadRequest
from layers.jsonfast import dumps
from layers.messages import Reply, Request, json_body, json_reply

SSE = "text/event-stream; charset=utf-8"
_SIZE_FIX = "Send a shorter prompt, or drop a .jsonl of prompts into the batch bucket."


def _parse(plane: DataPlane, req: Request):
    plane.check_model(req.params["name"], req.params.get("version"))
    model = plane.model
    if getattr(model, "task_name", None) != "generation":
        raise BadRequest(f"model {model.name!r} does not generate text; send tensors to "
                         f"POST /v2/models/{model.name}/infer.")
    doc = json_body(req, size_fix=_SIZE_FIX,
                    not_json=lambda exc: f"the body is not valid JSON ({exc}); send {{\"text_input\": \"…\"}}.")
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object: {\"text_input\": \"…\", \"parameters\": {…}}.")
    prompt = doc.get("text_input")
    if not isinstance(prompt, str) or not prompt:
        raise BadRequest("'text_input' is required: the prompt, a non-empty string.")
    # generative models only: not at import
    from layers.generation.options import SETTINGS, parameters

    params = doc.get("parameters")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise BadRequest("'parameters' must be a JSON object of generation settings "
                         f"({', '.join(SETTINGS)}).")
    unknown = sorted(set(doc) - {"text_input", "parameters", "id", "stream", *SETTINGS})
    if unknown:
        raise BadRequest(f"unknown member(s) {unknown}; the generate extension takes text_input and "
                         f"parameters ({', '.join(SETTINGS)}, also accepted beside text_input).")
    both = sorted(k for k in SETTINGS if k in doc and k in params)
    if both:
        raise BadRequest(f"{both} given both beside text_input and in 'parameters'; send each setting once.")
    sampling = parameters({**{k: doc[k] for k in SETTINGS if k in doc}, **params})
    return model, model.complete(prompt, sampling), doc.get("id")


def _head(plane: DataPlane, rid: Any) -> dict[str, Any]:
    head = {"model_name": plane.model.name, "model_version": plane.model.version}
    return {**head, "id": rid} if isinstance(rid, str) else head


def generate(plane: DataPlane, req: Request) -> Reply:
    _, gen, rid = _parse(plane, req)
    gen.run()
    return json_reply(200, {**_head(plane, rid), "text_output": gen.text, "finish_reason": gen.finish_reason,
                            "usage": gen.usage})


def generate_stream(plane: DataPlane, req: Request) -> Reply:
    _, gen, rid = _parse(plane, req)
    head = _head(plane, rid)

    def events() -> Iterator[str]:
        try:
            for delta in gen:
                yield f"data: {dumps({**head, 'text_output': delta})}\n\n"
        except Exception as exc:
            plane.hooks.on_internal_error(exc, req.request_id)
            yield f"data: {dumps({'error': f'internal error while generating; request id {req.request_id}'})}\n\n"
            return
        yield f"data: {dumps({**head, 'text_output': '', 'finish_reason': gen.finish_reason, 'usage': gen.usage})}\n\n"
    return Reply(200, SSE, "", {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}, stream=events())
