"""Acceptance, end to end on the local stack: a tiny Hugging Face text classifier built from
a config, dynamic int8 behind the gate; tritonclient sends two sentences as a BYTES tensor
and gets labels and scores matching the fp32 reference; the same via batch .jsonl and .txt;
an image model takes PNG bytes; a two-step pipeline serves as one model; the SageMaker
target keeps the same contract."""

from __future__ import annotations

import json
import logging
import shutil
import time
from urllib.parse import urlsplit

import boto3
import numpy as np
import pytest
import tritonclient.http as triton

from tests.text.conftest import TEXT_ENTRY, build
from tests.text.test_hf_text import torch_reference
from tests.text.test_image import IMAGE_ENTRY
from tests.text.test_pipeline import make_head_onnx
from tests.text.tiny_hf import LABELS, SENTENCES, write_texts
from tests.text.tiny_image import make_image_onnx, png, write_image_folder

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("text-stack")]


@pytest.fixture(scope="package")
def text_stack(tmp_path_factory, hf_dir):
    from infra.local.stack import LocalStack

    root = tmp_path_factory.mktemp("textstack")
    shutil.copytree(hf_dir, root / "hf")
    write_texts(root / "val.txt")
    make_image_onnx(root / "img.onnx")
    write_image_folder(root / "images")
    make_head_onnx(root / "head.onnx")
    sm = TEXT_ENTRY.replace("name: sentiment", "name: sentiment-sm").replace("target: lambda", "target: sagemaker")
    (root / "models.yaml").write_text("models:\n" + TEXT_ENTRY + IMAGE_ENTRY + sm + """\
  - name: head
    source: head.onnx
    postprocess: {labels: [low, mid, high]}
    quantize: none
    auth: none
  - name: graded
    pipeline: [sentiment, head]
    auth: none
    target: lambda
""")
    build(root / "models.yaml", root / "build")  # int8 ships even where not faster (tiny models)
    stack = LocalStack(catalog_path=root / "models.yaml", out_dir=root / "build", port=0, s3_port=0,
                       warm=1, log_sink=logging.getLogger("modelfn.test.text").info, integration_timeout_s=60)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def client(text_stack):
    return triton.InferenceServerClient(urlsplit(text_stack.url).netloc, network_timeout=60)


@pytest.fixture(scope="module")
def s3(text_stack):
    return boto3.client("s3", endpoint_url=text_stack.s3_endpoint, region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x")


def shipped(stack, name: str) -> dict:
    return stack.services[name].manifest.to_dict()


def send_texts(client, model: str, texts: list[str], outputs=("label", "scores")):
    inp = triton.InferInput("text", [len(texts)], "BYTES")
    inp.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    return client.infer(model, [inp], outputs=[triton.InferRequestedOutput(n) for n in outputs])


def wait_for(s3, key: str, timeout_s: float = 90) -> bytes:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return s3.get_object(Bucket="modelfn-batch", Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            time.sleep(0.3)
    raise AssertionError(f"{key} did not appear within {timeout_s} s")


def test_everything_serves(text_stack):
    assert {n: s.failure for n, s in text_stack.services.items() if s.failure} == {}
    assert shipped(text_stack, "sentiment")["quantization"]["mode"] == "dynamic"


@pytest.mark.parametrize("model", ["sentiment", "sentiment-sm"])
def test_two_sentences_get_labels_and_scores_matching_fp32_within_the_gate(text_stack, client, hf_dir, model):
    # given
    texts = SENTENCES[:2]
    ref = torch_reference(hf_dir, texts)
    meta = client.get_model_metadata(model)
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    # when
    result = send_texts(client, model, texts)
    # then
    bound = shipped(text_stack, model)["metrics"]["gate"]["tolerance"]["max_score_error"]
    assert [b.decode() for b in result.as_numpy("label")] == [LABELS[i] for i in ref.argmax(1)]
    np.testing.assert_allclose(result.as_numpy("scores"), ref, atol=bound)


def test_batch_jsonl_and_txt_give_the_same_labels_as_http(text_stack, client, s3):
    texts = SENTENCES[:5]
    http = [b.decode() for b in send_texts(client, "sentiment", texts, ("label",)).as_numpy("label")]
    jsonl = "\n".join(json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [t]}]})
                      for t in texts)
    s3.put_object(Bucket="modelfn-batch", Key="sentiment/in/reviews.jsonl", Body=jsonl.encode())
    s3.put_object(Bucket="modelfn-batch", Key="sentiment/in/reviews.txt", Body="\n".join(texts).encode())
    for key in ("sentiment/out/reviews.jsonl.jsonl", "sentiment/out/reviews.txt.jsonl"):
        lines = [json.loads(line) for line in wait_for(s3, key).decode().splitlines()]
        labels = [next(t for t in line["outputs"] if t["name"] == "label")["data"][0] for line in lines]
        assert labels == http, key


def test_image_model_takes_png_bytes_and_returns_labels(client, s3):
    inp = triton.InferInput("image", [2], "BYTES")
    inp.set_data_from_numpy(np.array([png(20), png(235)], dtype=np.object_))
    result = client.infer("shades", [inp], outputs=[triton.InferRequestedOutput("label")])
    assert [b.decode() for b in result.as_numpy("label")] == ["dark", "bright"]
    # and a PNG dropped into the batch bucket
    s3.put_object(Bucket="modelfn-batch", Key="shades/in/photos/p1.png", Body=png(240))
    line = json.loads(wait_for(s3, "shades/out/photos/p1.png.jsonl"))
    assert next(t for t in line["outputs"] if t["name"] == "label")["data"] == ["bright"]


def test_a_two_step_pipeline_serves_as_one_model(client):
    meta = client.get_model_metadata("graded")
    assert [o["name"] for o in meta["outputs"]] == ["grade", "label", "scores"]
    result = send_texts(client, "graded", SENTENCES[:3], ("grade", "label"))
    assert result.as_numpy("grade").shape == (3, 3)
    assert {b.decode() for b in result.as_numpy("label")} <= {"low", "mid", "high"}


def test_a_client_mistake_is_a_400_with_the_fix(text_stack):
    import http.client

    u = urlsplit(text_stack.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    body = json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]})
    conn.request("POST", "/v2/models/sentiment/infer", body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 400 and "BYTES" in json.loads(resp.read())["error"]
    conn.close()
