"""The ``generation`` task: prompts in, generated text out (a generative model's manifest says
``"task": "generation"``; the model itself is :mod:`layers.generation.engine`'s, not a
processed ONNX graph, so this task has no post-processor of raw outputs).

What the registry needs it for is the batch: a ``.jsonl`` under ``<model>/in/`` is one prompt
per line, and each output line is ``{"row": i, "outputs": [text_output, finish_reason,
prompt_tokens, completion_tokens]}`` (plus the line's ``id`` when it had one). A line is one of

* a JSON string: the prompt, generated with the model's defaults;
* ``{"prompt": "…", "max_tokens"?, "temperature"?, "top_p"?, "top_k"?, "seed"?, "stop"?}``
  (OpenAI completions' fields; ``"text_input"`` + ``"parameters"``, Triton's, are read too);
* ``{"messages": [{"role", "content"}…], …}``: a chat, through the model's chat template.

Every line is checked (JSON, fields, settings, the prompt against the context) before the first
is generated; a bad line sends the whole object to ``errors/`` naming the line. A ``.txt`` is
one prompt per line (the text kind's line reader).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from layers.batch.errors import BatchInputError
from layers.batch.rows import Batch
from layers.errors import BadRequest
from layers.kinds import Context, Postprocessor, Task, register

_SETTINGS = ("max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "stop")
_KEYS = {"id", "prompt", "messages", "text_input", "parameters", *_SETTINGS}
#: bytes a prompt row is counted as when sizing chunks (generation runs row by row anyway)
_ROW_BYTES = 4096


class _Nothing(Postprocessor):
    def __call__(self, raw: dict[str, np.ndarray], context: Context) -> dict[str, np.ndarray]:
        return {}


class GenerationTask(Task):
    name = "generation"
    batch_line_suffixes = ()

    def public_outputs(self, raw_outputs: list[dict[str, Any]], config: Mapping[str, Any]) -> list[dict[str, Any]]:
        from layers.generation.engine import SIGNATURE_OUTPUTS

        return [s.to_dict() for s in SIGNATURE_OUTPUTS]

    def postprocessor(self, config: Mapping[str, Any]) -> Postprocessor:
        return _Nothing()

    def batch_reader(self, path: Path, suffix: str, model: Any) -> Any | None:
        return PromptsReader(path, model) if suffix == ".jsonl" else None


def parse_line(line: str, number: int) -> tuple[str | None, str, dict[str, Any]]:
    """One ``.jsonl`` line → (id, prompt, settings); a :class:`BatchInputError` names the line."""
    try:
        doc = json.loads(line)
    except ValueError as exc:
        raise BatchInputError(f"line {number} is not JSON ({exc}); put one prompt per line as a JSON string "
                              "or {\"prompt\": …}.") from None
    if isinstance(doc, str):
        doc = {"prompt": doc}
    if not isinstance(doc, dict):
        raise BatchInputError(f"line {number} is {type(doc).__name__}; each line is a prompt string or an object "
                              "with \"prompt\" or \"messages\".")
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise BatchInputError(f"line {number} has unknown field(s) {unknown}; a line takes prompt or messages and "
                              f"{', '.join(_SETTINGS)}.")
    settings = {k: doc[k] for k in _SETTINGS if k in doc}
    if isinstance(doc.get("parameters"), dict):
        settings.update(doc["parameters"])
    elif doc.get("parameters") is not None:
        raise BatchInputError(f"line {number}: \"parameters\" must be an object of settings.")
    if "max_completion_tokens" in settings:
        settings.setdefault("max_tokens", settings.pop("max_completion_tokens"))
    prompt = doc.get("prompt", doc.get("text_input"))
    if doc.get("messages") is not None:
        if prompt is not None:
            raise BatchInputError(f"line {number} has both a prompt and messages; send one.")
        settings["messages"] = doc["messages"]
        prompt = "(chat)"
    if not isinstance(prompt, str) or not prompt:
        raise BatchInputError(f"line {number} has no prompt: give \"prompt\" (a non-empty string) or \"messages\".")
    rid = doc.get("id")
    return (rid if isinstance(rid, str) else None), prompt, settings


class PromptsReader:
    """``.jsonl`` of prompts → batches of ``text_input`` + per-row ``parameters``."""

    input_row_bytes = _ROW_BYTES

    def __init__(self, path: Path, model: Any) -> None:
        self.path, self.model = path, model
        self.rows = self.requests = 0

    def _lines(self) -> Iterator[tuple[str | None, str, dict[str, Any]]]:
        try:
            with open(self.path, encoding="utf-8") as f:
                for number, line in enumerate(f, start=1):
                    if line.strip():
                        yield parse_line(line, number)
        except UnicodeDecodeError as exc:
            raise BatchInputError(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                                  "save it as UTF-8.") from None

    def validate(self, chunk_rows: int) -> None:
        from layers.generation.options import sampling

        n = 0
        for n, (_, prompt, settings) in enumerate(self._lines(), start=1):
            try:
                messages, wanted = settings.get("messages"), sampling(settings)
                if messages is not None:
                    ids = self.model.chat_prompt(_messages(messages))
                    wanted = self.model.chat_sampling(ids, wanted)
                else:
                    ids = self.model.codec.encode(prompt)
                self.model.generate(ids, wanted)  # the context and settings checks; runs nothing
            except BadRequest as exc:
                raise BatchInputError(f"line {n}: {exc.message}") from None
        if not n:
            raise BatchInputError("the file holds no prompts; put one prompt per line.")
        self.rows = self.requests = n

    def batches(self, chunk_rows: int) -> Iterator[Batch]:
        chunk: list[tuple[str | None, str, dict[str, Any]]] = []
        first = 0
        for item in self._lines():
            chunk.append(item)
            if len(chunk) == chunk_rows:
                yield self._batch(first, chunk)
                first, chunk = first + len(chunk), []
        if chunk:
            yield self._batch(first, chunk)

    @staticmethod
    def _batch(first: int, chunk: list[tuple[str | None, str, dict[str, Any]]]) -> Batch:
        from layers.generation.engine import PARAMETERS, TEXT_INPUT

        prompts = np.empty(len(chunk), dtype=object)
        prompts[:] = [p for _, p, _ in chunk]
        params = np.empty(len(chunk), dtype=object)
        params[:] = [dict(s, messages=_messages(s["messages"])) if "messages" in s else s for _, _, s in chunk]
        return Batch(first_request=first, inputs={TEXT_INPUT: prompts, PARAMETERS: params},
                     sizes=[1] * len(chunk), ids=[i for i, _, _ in chunk])

    def close(self) -> None:
        pass


def _messages(value: Any) -> list[dict[str, Any]]:
    from layers.generation.options import messages

    return messages(value)


GENERATION = register(GenerationTask())
