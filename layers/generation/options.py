"""A request's generation settings and chat messages, checked once for every protocol (OpenAI, V2 generate, batch).

Each protocol names the settings its own way; all of them end in a
:class:`~layers.generation.engine.Sampling`. A wrong value is a :class:`ParamError`: a 400
naming the setting (OpenAI's ``param``) and what would be accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from layers.errors import BadRequest
from layers.generation.engine import MAX_STOP_SEQUENCES, Sampling

ROLES = ("system", "developer", "user", "assistant", "tool")


class ParamError(BadRequest):
    """A 400 about one request setting (``param``: its name)."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _number(doc: Mapping[str, Any], key: str, low: float, high: float, *, low_open: bool = False) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            (low < value if low_open else low <= value) and value <= high):
        side = "(" if low_open else "["
        raise ParamError(f"'{key}' must be a number in {side}{low:g}, {high:g}]; got {value!r}.", param=key)
    return float(value)


def _integer(doc: Mapping[str, Any], key: str, low: int, high: int | None = None) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"≥ {low}"
        raise ParamError(f"'{key}' must be an integer {bound}; got {value!r}.", param=key)
    return value


def stop_sequences(value: Any, key: str = "stop") -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise ParamError(f"'{key}' must be a string or a list of strings; got {type(value).__name__}.", param=key)
    if len(items) > MAX_STOP_SEQUENCES:
        raise ParamError(f"'{key}' has {len(items)} sequences; send at most {MAX_STOP_SEQUENCES}.", param=key)
    if any(not s for s in items):
        raise ParamError(f"'{key}' holds an empty string; every stop sequence needs at least one character.",
                         param=key)
    return tuple(items)


def sampling(doc: Mapping[str, Any], *, max_tokens_keys: tuple[str, ...] = ("max_tokens",)) -> Sampling:
    """The settings every protocol shares: ``max_tokens`` (or the first of ``max_tokens_keys``
    given), ``temperature`` [0, 2], ``top_p`` (0, 1], ``top_k`` ≥ 0 (an extension, as vLLM's),
    ``seed``, ``stop``."""
    budget = None
    for key in max_tokens_keys:
        budget = _integer(doc, key, 1)
        if budget is not None:
            break
    seed = doc.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ParamError(f"'seed' must be an integer; got {seed!r}.", param="seed")
    return Sampling(max_tokens=budget, temperature=_number(doc, "temperature", 0, 2),
                    top_p=_number(doc, "top_p", 0, 1, low_open=True), top_k=_integer(doc, "top_k", 0),
                    seed=seed, stop=stop_sequences(doc.get("stop")))


#: the settings a request's ``parameters`` carry (Triton's generate extension's names), every
#: protocol's V2 form: ``generate``'s body and a generative model's ``infer`` parameters
SETTINGS = ("max_tokens", "temperature", "top_p", "top_k", "seed", "stop")


def parameters(doc: Any, *, where: str = "'parameters'", ignored: tuple[str, ...] = ()) -> Sampling:
    """A V2 ``parameters`` object → :class:`Sampling`; a member that is not one of
    :data:`SETTINGS` (nor ``ignored``) is a 400 naming it, never silently dropped."""
    if not isinstance(doc, Mapping):
        raise ParamError(f"{where} must be a JSON object of generation settings ({', '.join(SETTINGS)}); "
                         f"got {type(doc).__name__}.", param="parameters")
    unknown = sorted(str(k) for k in doc if k not in SETTINGS and k not in ignored)
    if unknown:
        raise ParamError(f"unknown setting(s) {unknown} in {where}; a generative model takes "
                         f"{', '.join(SETTINGS)}.", param=unknown[0])
    return sampling(doc)


def messages(value: Any) -> list[dict[str, Any]]:
    """OpenAI chat ``messages`` → ``[{"role", "content": str}]`` (text content parts joined)."""
    if not isinstance(value, list) or not value:
        raise ParamError("'messages' is required: a non-empty list of {\"role\", \"content\"} objects.",
                         param="messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ParamError(f"'messages'[{i}] needs a 'role' of {', '.join(ROLES)}.", param="messages")
        content = m.get("content")
        if isinstance(content, list):  # content parts: text only
            parts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ParamError(f"'messages'[{i}].content holds a part that is not text; this model "
                                     "takes text parts only ({\"type\": \"text\", \"text\": …}).",
                                     param="messages")
                parts.append(part["text"])
            content = "".join(parts)
        if not isinstance(content, str):
            raise ParamError(f"'messages'[{i}].content must be a string or a list of text parts.",
                             param="messages")
        out.append({**{k: v for k, v in m.items() if k in ("name",)}, "role": m["role"], "content": content})
    return out
