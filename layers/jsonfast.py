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
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

JSONDecodeError = ValueError  # what loads raises for a body that is not JSON either way

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')  # a JSON string literal, escapes included
_NULL_VALUE = re.compile(rb"[:,\[]null(?=[,\]}])")  # compact output: no spaces around tokens


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(bytes(data) if isinstance(data, memoryview | bytearray) else data)


def dumps(obj: Any) -> str:
    """Compact JSON text (``,`` and ``:`` without spaces); UTF-8, not ASCII-escaped."""
    out = orjson.dumps(obj)
    if b"null" in out and (out == b"null" or _NULL_VALUE.search(_STRING.sub(b'""', out))):
        # a None, or a NaN/Infinity orjson turned into null
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return out.decode()
