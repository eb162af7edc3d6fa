"""JSON on the request path: orjson, keeping the stdlib's behaviour where the two differ.

Parsing and writing JSON numbers dominated the API handler's overhead over ``session.run``
(``bench/bench_api.py``): a 32×64 FP32 V2 body took 929 µs to parse with ``json`` and 81 µs
with orjson; a 32×10 response 203 µs vs 11 µs to write (measured on the 2-vCPU dev machine).
orjson is one small wheel with no dependencies, so every image carries it.

Where they differ: orjson refuses the ``NaN``/``Infinity`` literals that Python clients'
``json.dumps`` (tritonclient's among them) writes, so a body orjson refuses is parsed again by
the stdlib (on the failure path only); and orjson writes non-finite floats as ``null``, so a
dump holding a ``null`` *value* is redone by the stdlib, which writes ``NaN`` as such clients
read it. "null" inside a string (a model, output or request id named ``null-…``) is not a
value: the check looks for the token after ``:``, ``,`` or ``[`` with string contents taken out,
and only when the four bytes occur at all (one ``bytes.find`` on the common path).

Depth: orjson refuses documents nested deeper than :data:`MAX_DEPTH` levels; such a body is
not handed to the stdlib (whose recursive parser raises ``RecursionError`` a few thousand
levels in), so every parser failure — depth, syntax, encoding — is a ``ValueError`` that the
callers turn into a 400 with the reason.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

JSONDecodeError = ValueError  # what loads raises for a body that is not JSON either way
MAX_DEPTH = 1024  # orjson's fixed nesting limit (arrays and objects); V2 bodies use about 4

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')  # a JSON string literal, escapes included
_NULL_VALUE = re.compile(rb"[:,\[]null(?=[,\]}])")  # compact output: no spaces around tokens


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit"):
            raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels ({exc})") from None
    try:
        return json.loads(bytes(data) if isinstance(data, memoryview | bytearray) else data)
    except RecursionError:  # a NaN-bearing body deep enough to exhaust the Python stack
        raise ValueError(f"JSON nested deeper than this parser can follow (limit {MAX_DEPTH} levels)") from None


def dumps(obj: Any) -> str:
    """Compact JSON text (``,`` and ``:`` without spaces); UTF-8, not ASCII-escaped."""
    out = orjson.dumps(obj)
    if b"null" in out and (out == b"null" or _NULL_VALUE.search(_STRING.sub(b'""', out))):
        # a None, or a NaN/Infinity orjson turned into null
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return out.decode()
