"""Chat messages → one prompt, with the model's own chat template, rendered as transformers does.

The template is the tokenizer folder's: ``chat_template.jinja`` (what transformers ≥ 4.43 saves)
or ``tokenizer_config.json``'s ``chat_template`` (a string, or a list of named templates:
``default`` is used). It is rendered like ``PreTrainedTokenizerBase.apply_chat_template``
(Jinja2's immutable sandbox, ``trim_blocks``/``lstrip_blocks``, the loop-controls extension,
``raise_exception``, ``strftime_now``, ``bos_token``/``eos_token`` and
``add_generation_prompt=True``), and the result is tokenized without adding special tokens
again (the template writes them). A model without a template cannot take chat messages: the
OpenAI protocol answers 400 and points to ``/completions``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from layers.errors import BadRequest


def find_template(folder: Path, config: dict[str, Any]) -> str | None:
    path = folder / "chat_template.jinja"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    value = config.get("chat_template")
    if isinstance(value, list):  # [{"name": "default", "template": "..."}, ...]
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default")
    return value if isinstance(value, str) and value.strip() else None


class ChatTemplate:
    def __init__(self, source: str, *, bos_token: str | None, eos_token: str | None) -> None:
        from jinja2.exceptions import TemplateError
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
                   separators: Any = None, sort_keys: bool = False) -> str:
            return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                              sort_keys=sort_keys)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self._error = TemplateError
        self.template = env.from_string(source)
        self.special = {"bos_token": bos_token or "", "eos_token": eos_token or ""}

    def render(self, messages: list[dict[str, Any]]) -> str:
        try:
            return self.template.render(messages=messages, add_generation_prompt=True, **self.special)
        except self._error as exc:
            raise BadRequest(f"the model's chat template refused these messages: {exc}. Change the "
                             "messages (e.g. roles in the order the model expects) and retry.") from None
