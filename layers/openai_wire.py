"""OpenAI's embeddings API on the wire: requests, responses and errors, transport-free.

What the stock ``openai`` client sends and expects (API reference, "Embeddings"):

* ``POST …/v1/embeddings`` ``{"model", "input": str | [str], "encoding_format": "float" |
  "base64", "dimensions"?: int, "user"?: str}`` → ``{"object": "list", "data": [{"object":
  "embedding", "index": i, "embedding": [floats] | base64 of little-endian float32}],
  "model", "usage": {"prompt_tokens", "total_tokens"}}``. The Python client asks for
  ``base64`` unless told otherwise and decodes it itself.
* ``GET …/v1/models`` → ``{"object": "list", "data": [{"id", "object": "model", "created",
  "owned_by"}]}``; ``GET …/v1/models/{model}`` → one of those.
* errors → ``{"error": {"message", "type", "param", "code"}}`` with OpenAI's statuses:
  400 ``invalid_request_error``, 404 ``model_not_found``, 405, 413, 415, 500 ``server_error``,
  503 ``service_unavailable``.

Token arrays as ``input`` (OpenAI accepts pre-tokenized ids) are refused: the model's own
tokenizer runs in the function, and ids from another tokenizer would embed garbage.
``dimensions`` is the model's own size, or one of the shorter sizes it was trained to be cut
to (Matryoshka: the catalog's ``embedding.matryoshka_dims``, a sentence-transformers
directory's ``truncate_dim``); any other size is refused, since cutting a vector the model was
not trained to cut would not keep its similarities. A cut vector is the first N components,
re-normalized to unit length when the model normalizes (as OpenAI's shortened vectors are).
"""

from __future__ import annotations

import base64
import calendar
import time
from typing import TYPE_CHECKING, Any

from layers.errors import ModelfnError

if TYPE_CHECKING:  # numpy only where vectors are made: the OpenAI router (a zip function) has none
    import numpy as np

#: OpenAI's own limit on inputs per request
MAX_INPUTS = 2048
OWNED_BY = "modelfn"
ENCODINGS = ("float", "base64")
_TYPES = {400: "invalid_request_error", 403: "invalid_request_error", 404: "invalid_request_error", 405: "invalid_request_error",
          413: "invalid_request_error", 415: "invalid_request_error", 500: "server_error",
          503: "service_unavailable"}


class OpenAIError(ModelfnError):
    """A client mistake in OpenAI's terms: status, message, ``param`` and ``code``."""

    def __init__(self, message: str, *, status: int = 400, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object for ``status``."""
    return {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}


def error_of(exc: ModelfnError) -> tuple[int, dict[str, Any]]:
    """Any modelfn client error (a V2 400/404/413/415 from the shared checks) in OpenAI's shape."""
    status = exc.status
    code = getattr(exc, "code", None) or ("model_not_found" if status == 404 else None)
    return status, error_body(status, exc.message, param=getattr(exc, "param", None), code=code)


def model_not_found(name: str, served: list[str]) -> OpenAIError:
    return OpenAIError(f"The model `{name}` does not exist; this endpoint serves {', '.join(served) or 'none'}. "
                       "Set model to one of them.", status=404, param="model", code="model_not_found")


def parse_embeddings(doc: Any, *, dimensions: int,
                     cuts: tuple[int, ...] = ()) -> tuple[str, list[str], str, int | None]:
    """A decoded JSON body → (model, texts, encoding_format, the size to cut vectors to or None);
    ``dimensions`` is the model's vector size, ``cuts`` the shorter sizes it can give;
    :class:`OpenAIError` says what is wrong."""
    if not isinstance(doc, dict):
        raise OpenAIError("The request body must be a JSON object with 'model' and 'input'.")
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIError("'model' is required: the name of the embedding model (GET /openai/v1/models lists them).",
                          param="model")
    unknown = sorted(set(doc) - {"model", "input", "encoding_format", "dimensions", "user"})
    if unknown:
        raise OpenAIError(f"Unrecognized request argument(s) supplied: {', '.join(unknown)}.", param=unknown[0])
    texts = _texts(doc.get("input"))
    fmt = doc.get("encoding_format", "float")
    if fmt is None:
        fmt = "float"
    if fmt not in ENCODINGS:
        raise OpenAIError(f"'encoding_format' must be 'float' or 'base64'; got {fmt!r}.", param="encoding_format")
    want = doc.get("dimensions")
    if want is not None:
        if isinstance(want, bool) or not isinstance(want, int) or want < 1:
            raise OpenAIError(f"'dimensions' must be a positive integer; got {want!r}.", param="dimensions")
        if want != dimensions and want not in cuts:
            if cuts:
                sizes = ", ".join(str(d) for d in sorted({dimensions, *cuts}, reverse=True))
                raise OpenAIError(f"Model `{model}` gives vectors of {sizes} dimensions (it was trained to be cut "
                                  f"to those sizes only); send one of them as 'dimensions', or omit it.",
                                  param="dimensions")
            raise OpenAIError(f"Model `{model}` gives {dimensions}-dimensional vectors and cannot shorten them "
                              f"(it was not trained for truncated, Matryoshka-style embeddings); omit "
                              f"'dimensions' or send {dimensions}. If it was trained with MatryoshkaLoss, list "
                              f"its sizes in the catalog: embedding: {{matryoshka_dims: [...]}}.",
                              param="dimensions")
        return model, texts, fmt, (want if want != dimensions else None)
    return model, texts, fmt, None


def cut(vectors: np.ndarray, size: int | None, *, normalize: bool) -> np.ndarray:
    """Matryoshka truncation: the first ``size`` components of each vector, back at unit length
    when the model's vectors are normalized (as sentence-transformers' ``truncate_dim`` with
    ``normalize_embeddings=True``)."""
    if size is None:
        return vectors
    import numpy as np

    out = np.ascontiguousarray(vectors[:, :size], dtype=np.float32)
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, np.float32(1e-12))
    return out


def _texts(value: Any) -> list[str]:
    if value is None:
        raise OpenAIError("'input' is required: a string or a list of strings to embed.", param="input")
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise OpenAIError(f"'input' must be a string or a list of strings; got {type(value).__name__}.",
                          param="input")
    if not items:
        raise OpenAIError("'input' is an empty list; send at least one string.", param="input")
    if len(items) > MAX_INPUTS:
        raise OpenAIError(f"'input' has {len(items)} items; send at most {MAX_INPUTS} per request (or drop a .txt "
                          "into the batch bucket).", param="input")
    for i, item in enumerate(items):
        if isinstance(item, (int, list)) and not isinstance(item, bool):
            raise OpenAIError("'input' holds token ids; send text: the model's own tokenizer runs in the "
                              "endpoint, and ids from another tokenizer would not mean the same words.",
                              param="input")
        if not isinstance(item, str):
            raise OpenAIError(f"'input'[{i}] is {type(item).__name__}; every input must be a string.",
                              param="input")
        if not item:
            raise OpenAIError(f"'input'[{i}] is an empty string; send non-empty text.", param="input")
    return items


def encode_vector(vector: np.ndarray, fmt: str) -> list[float] | str:
    """One vector as OpenAI sends it: floats, or base64 of its little-endian float32 bytes."""
    import numpy as np

    if fmt == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector.astype(np.float32).tolist()


def embeddings_response(model: str, vectors: np.ndarray, fmt: str, tokens: int) -> dict[str, Any]:
    return {"object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": encode_vector(v, fmt)}
                     for i, v in enumerate(vectors)],
            "model": model,
            "usage": {"prompt_tokens": int(tokens), "total_tokens": int(tokens)}}


def model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": int(created), "owned_by": OWNED_BY}


def created_of(built_at: str) -> int:
    """A manifest's ``built_at`` (``2026-01-02T03:04:05Z``) as a model card's ``created`` (0 if unset)."""
    try:
        return calendar.timegm(time.strptime(built_at or "", "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return 0


def models_response(cards: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": cards}


def not_json(exc: Exception) -> str:
    """OpenAI's wording for a body that is not JSON."""
    return f"We could not parse the JSON body of your request ({exc})."
