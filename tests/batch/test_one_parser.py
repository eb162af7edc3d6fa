"""One V2 request parser for HTTP and batch: a line of a .jsonl fails exactly as the same body
fails over HTTP (the API's 400 message is the batch error record's reason, after the line)."""

from __future__ import annotations

import json

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
