"""orjson on the request path must behave like the stdlib where clients can tell."""

from __future__ import annotations

import json
import math

import pytest

from layers import jsonfast


def test_round_trips_a_v2_request_like_the_stdlib():
    request = {"id": "é-1", "inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [0.1, 2.5]}]}
    assert json.loads(jsonfast.dumps(request)) == request
    assert jsonfast.loads(json.dumps(request)) == request


def test_reads_the_nan_literals_python_clients_write():
    # given a body as tritonclient's json.dumps writes it (NaN is not standard JSON)
    body = json.dumps({"data": [float("nan"), float("inf"), 1.0]}).encode()
    # then it parses, from bytes and from a memoryview alike
    for data in (body, memoryview(body)):
        nan, inf, one = jsonfast.loads(data)["data"]
        assert math.isnan(nan) and inf == math.inf and one == 1.0


def test_writes_non_finite_outputs_as_nan_not_null():
    text = jsonfast.dumps({"data": [float("nan"), 1.0], "id": None})
    assert text == '{"data":[NaN,1.0],"id":null}'


def test_invalid_json_raises_value_error():
    with pytest.raises(ValueError):
        jsonfast.loads(b"{not json")


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,                        # orjson's depth limit
    b'{"a": NaN, "b": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # stdlib fallback, RecursionError
    b'{"a": ' * 5_000 + b"1" + b"}" * 5_000,
])
def test_deep_nesting_is_a_value_error_with_the_reason(body):
    with pytest.raises(ValueError, match="nested deeper than"):
        jsonfast.loads(body)


@pytest.mark.parametrize("obj", [
    {"model_name": "null", "model_version": "nullnullnull", "outputs": [{"name": "null", "data": [1.0]}]},
    {"id": 'x,null]', "error": 'a "quoted" null, then :null}'},
    ["null", {"null": "null"}],
])
def test_null_inside_strings_stays_on_orjson(obj, monkeypatch):
    # given a response whose strings (model name, id, output name) contain "null"
    def stdlib(*_a, **_k):
        raise AssertionError("fell back to the stdlib")

    monkeypatch.setattr(jsonfast.json, "dumps", stdlib)
    # when it is written, then orjson writes it and it reads back unchanged
    assert json.loads(jsonfast.dumps(obj)) == obj


@pytest.mark.parametrize(("obj", "text"), [
    (None, "null"),
    ([None], "[null]"),
    ({"a": "null", "b": None}, '{"a":"null","b":null}'),
    ({"model_name": "null", "data": [float("inf")]}, '{"model_name":"null","data":[Infinity]}'),
    ({"s": 'esc\\"aped', "data": [float("-inf"), 2.0]}, '{"s":"esc\\\\\\"aped","data":[-Infinity,2.0]}'),
])
def test_null_values_still_come_out_as_the_stdlib_writes_them(obj, text):
    assert jsonfast.dumps(obj) == text
