"""One V2 request parser for HTTP and batch: a line of a .jsonl fails exactly as the same body
fails over HTTP (the API's 400 message is the batch error record's reason, after the line)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from layers.http.resolver import build_app
from tests.batch.conftest import get_json, get_lines, keys, s3_event, upload
from tests.conftest import load_event

ROW = [[0.1, 0.2, 0.3, 0.4]]
BAD_REQUESTS = {
    "numeric id": {"id": 7, "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW}]},
    "id object": {"id": {"a": 1}, "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW}]},
    "unknown input": {"inputs": [{"name": "y", "shape": [1, 4], "datatype": "FP32", "data": ROW}]},
    "missing datatype": {"inputs": [{"name": "x", "shape": [1, 4], "data": ROW}]},
    "parameters not an object": {"parameters": [1],
                                 "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW}]},
    "outputs not a list": {"outputs": "probs",
                           "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW}]},
    "input twice": {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW}] * 2},
}


def _http_error(model, request: dict, lambda_context) -> str:
    event = load_event("http_infer")
    event["body"] = json.dumps(request)
    response = build_app(model).resolve(event, lambda_context)
    assert response["statusCode"] == 400, response
    return json.loads(response["body"])["error"]


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_a_bad_line_fails_in_batch_exactly_as_over_http(service, aws, model, lambda_context, case):
    request = BAD_REQUESTS[case]
    # given the message the API answers for this body
    http = _http_error(model, request, lambda_context)
    # when the same request is line 1 of a .jsonl dropped into the batch bucket
    good = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW}]})
    body = (json.dumps(request) + "\n" + good + "\n").encode()
    result = service.handle(s3_event(upload(aws, "tiny/in/req.jsonl", body)), lambda_context)["results"][0]
    # then the whole object goes to errors/ with the same reason, naming the line
    assert result["status"] == "error"
    assert keys(aws, "tiny/out/") == []
    assert get_json(aws, "tiny/errors/req.jsonl.json")["reason"] == f"line 1 of the .jsonl: {http}"


def test_a_string_id_is_kept_in_the_output_line(service, aws, lambda_context):
    line = {"id": "req-1", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW}]}
    service.handle(s3_event(upload(aws, "tiny/in/ok.jsonl", (json.dumps(line) + "\n").encode())), lambda_context)
    assert get_lines(aws, "tiny/out/ok.jsonl.jsonl")[0]["id"] == "req-1"


#: Lines that share the good lines' signature (so the joint decoding meets them) but are bad.
BAD_IN_A_RUN = {
    "short data": {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3]}]},
    "text in data": {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.1, "a", 0.3, 0.4]}]},
    "nested data": {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [[0.1], [0.2, 0.3]]}]},
}


@pytest.mark.parametrize("case", list(BAD_IN_A_RUN), ids=list(BAD_IN_A_RUN))
def test_a_bad_line_deep_in_a_long_file_is_named_as_over_http(service, aws, model, lambda_context, case):
    """Runs of lines are decoded together for speed; a bad one among thousands still fails the
    object with the API's message and its own line number, past a block boundary."""
    request = BAD_IN_A_RUN[case]
    http = _http_error(model, request, lambda_context)
    good = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW[0]}]})
    body = "\n".join([good] * 2499 + [json.dumps(request)] + [good] * 600) + "\n"
    result = service.handle(s3_event(upload(aws, "tiny/in/long.jsonl", body.encode())), lambda_context)["results"][0]
    assert result["status"] == "error"
    assert keys(aws, "tiny/out/") == []
    assert get_json(aws, "tiny/errors/long.jsonl.json")["reason"] == f"line 2500 of the .jsonl: {http}"


def test_a_long_file_answers_each_line_as_the_api_does(service, aws, model, lambda_context):
    """Thousands of plain lines (decoded jointly) give one output line per input line, in order,
    with each line's id and the API's own answer for that line's row."""
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((3000, 4)).astype(np.float32)
    lines = [json.dumps({"id": f"r{i}", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                                   "data": [float(v) for v in r]}]}) for i, r in enumerate(rows)]
    service.handle(s3_event(upload(aws, "tiny/in/many.jsonl", ("\n".join(lines) + "\n").encode())), lambda_context)
    out = get_lines(aws, "tiny/out/many.jsonl.jsonl")
    assert [o["id"] for o in out] == [f"r{i}" for i in range(3000)]
    for i in (0, 2047, 2048, 2999):
        event = load_event("http_infer")
        event["body"] = lines[i]
        http = json.loads(build_app(model).resolve(event, lambda_context)["body"])
        assert out[i]["outputs"] == http["outputs"]
