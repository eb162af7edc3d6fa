"""The text model through every entry point: the Lambda API handler (JSON and the binary
extension as tritonclient sends it) and batch (.jsonl BYTES requests, .txt, .csv text column)."""

from __future__ import annotations

import base64
import json
import sys

import numpy as np
import pytest

from layers import names
from layers.model import load_model, reset_model
from tests.batch.conftest import aws, get_json, get_lines, s3_event, upload  # noqa: F401 (fixture)
from tests.conftest import load_event
from tests.functional.conftest import HANDLER_MODULE, import_handler, route
from tests.text.tiny_hf import SENTENCES


@pytest.fixture
def api(monkeypatch, text_model_dir):
    monkeypatch.setenv(names.ENV_MODEL_DIR, str(text_model_dir))
    module = import_handler()
    yield module
    sys.modules.pop(HANDLER_MODULE, None)
    reset_model()


def infer_event(body: bytes | str, headers: dict | None = None) -> dict:
    event = route(load_event("http_infer"), "POST", "/v2/models/sentiment/infer")
    if isinstance(body, bytes):
        event.update(body=base64.b64encode(body).decode(), isBase64Encoded=True)
    else:
        event.update(body=body, isBase64Encoded=False)
    event["headers"] = headers or {"content-type": "application/json"}
    return event


def test_metadata_shows_text_in_and_labels_out(api, lambda_context):
    response = api.handler(route(load_event("http_metadata"), "GET", "/v2/models/sentiment"), lambda_context)
    meta = json.loads(response["body"])
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in meta["outputs"]] == ["logits", "label", "scores"]


def test_json_text_request_gets_labels(api, lambda_context, text_model_dir):
    body = json.dumps({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": SENTENCES[:2]}]})
    response = api.handler(infer_event(body), lambda_context)
    assert response["statusCode"] == 200
    outs = {o["name"]: o for o in json.loads(response["body"])["outputs"]}
    want = load_model(text_model_dir).infer({"text": np.array(SENTENCES[:2], dtype=object)})
    assert outs["label"]["data"] == want["label"].tolist() and outs["label"]["shape"] == [2]


def test_tritonclient_bytes_tensor_in_binary_labels_out(api, lambda_context, text_model_dir):
    # given a request body exactly as tritonclient builds it from an np.object_ array
    from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

    texts = np.array([s.encode() for s in SENTENCES[2:4]], dtype=np.object_)
    inp = InferInput("text", [2], "BYTES")
    inp.set_data_from_numpy(texts, binary_data=True)
    outputs = [InferRequestedOutput("label", binary_data=True), InferRequestedOutput("scores", binary_data=True)]
    body, json_size = InferenceServerClient.generate_request_body([inp], outputs)
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(json_size)}
    # when
    response = api.handler(infer_event(body, headers), lambda_context)
    # then tritonclient reads labels (bytes) and scores
    assert response["statusCode"] == 200, response["body"]
    result = InferenceServerClient.parse_response_body(
        base64.b64decode(response["body"]), header_length=int(response["headers"]["Inference-Header-Content-Length"]))
    want = load_model(text_model_dir).infer({"text": np.array(SENTENCES[2:4], dtype=object)})
    assert [b.decode() for b in result.as_numpy("label")] == want["label"].tolist()
    np.testing.assert_allclose(result.as_numpy("scores"), want["scores"], rtol=1e-6)


def test_numbers_for_text_are_a_400_not_a_500(api, lambda_context):
    body = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "INT64", "data": [3]}]})
    response = api.handler(infer_event(body), lambda_context)
    assert response["statusCode"] == 400 and "BYTES" in json.loads(response["body"])["error"]


# --- batch -----------------------------------------------------------------------------------


@pytest.fixture
def text_service(aws, text_model_dir):  # noqa: F811 (aws is the imported fixture)
    from layers.batch.service import BatchService

    return BatchService(load_model(text_model_dir))


def expected_labels(text_model_dir, texts: list[str]) -> list[str]:
    return load_model(text_model_dir).infer({"text": np.array(texts, dtype=object)}, ["label"])["label"].tolist()


def run(service, aws, lambda_context, key: str, body: bytes) -> dict:  # noqa: F811
    return service.handle(s3_event(upload(aws, key, body)), lambda_context)["results"][0]


def labels_of(lines: list[dict]) -> list[str]:
    out = []
    for line in lines:
        tensors = {t["name"]: t for t in line["outputs"]}
        out += tensors["label"]["data"]
    return out


def test_txt_one_text_per_line(text_service, aws, lambda_context, text_model_dir):  # noqa: F811
    body = ("\n".join(SENTENCES) + "\n\n").encode()
    result = run(text_service, aws, lambda_context, "sentiment/in/reviews.txt", body)
    assert result["status"] == "out" and result["requests"] == len(SENTENCES)
    lines = get_lines(aws, "sentiment/out/reviews.txt.jsonl")
    assert [line["row"] for line in lines] == list(range(len(SENTENCES)))
    assert labels_of(lines) == expected_labels(text_model_dir, SENTENCES)
    scores = next(t for t in lines[0]["outputs"] if t["name"] == "scores")
    assert scores["shape"] == [1, 2] and scores["datatype"] == "FP32"


def test_jsonl_v2_requests_with_bytes_inputs(text_service, aws, lambda_context, text_model_dir):  # noqa: F811
    reqs = [{"id": f"r{i}", "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": SENTENCES[i:i + 2]}],
             "outputs": [{"name": "label"}]} for i in range(0, 6, 2)]
    body = "\n".join(json.dumps(r) for r in reqs).encode()
    result = run(text_service, aws, lambda_context, "sentiment/in/reqs.jsonl", body)
    assert result["status"] == "out", result
    lines = get_lines(aws, "sentiment/out/reqs.jsonl.jsonl")
    assert len(lines) == 3 and all(line["outputs"][0]["shape"] == [2] for line in lines)
    assert labels_of(lines) == expected_labels(text_model_dir, SENTENCES[:6])


def test_csv_text_column(text_service, aws, lambda_context, text_model_dir):  # noqa: F811
    body = b"id,text\n1,a great movie\n2,\"bad, boring plot\"\n"
    result = run(text_service, aws, lambda_context, "sentiment/in/reviews.csv", body)
    assert result["status"] == "out", result
    lines = get_lines(aws, "sentiment/out/reviews.csv.jsonl")
    assert labels_of(lines) == expected_labels(text_model_dir, ["a great movie", "bad, boring plot"])


@pytest.mark.parametrize(("key", "body", "says"), [
    ("sentiment/in/bad.txt", b"\xff\xfe not utf-8", "UTF-8"),
    ("sentiment/in/empty.txt", b"\n\n", "no texts"),
    ("sentiment/in/cols.csv", b"a,b\n1,2\n", "name the text column"),
    ("sentiment/in/pic.png", b"\x89PNG not really", "image"),
])
def test_bad_raw_files_go_to_errors_with_the_reason(text_service, aws, lambda_context, key, body, says):  # noqa: F811
    result = run(text_service, aws, lambda_context, key, body)
    assert result["status"] == "error"
    reason = get_json(aws, key.replace("/in/", "/errors/") + ".json")["reason"]
    assert says in reason
