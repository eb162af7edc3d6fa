"""A Hugging Face text classifier from a saved directory: built, quantized behind the gate,
served with text in and labels + scores out."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from infra.catalog import CatalogError, load_catalog
from layers.errors import BadRequest
from layers.manifest import ManifestError
from layers.model import load_model
from layers.v2_wire import infer_request
from tests.text.conftest import build
from tests.text.tiny_hf import LABELS, SENTENCES


def torch_reference(hf_dir, texts: list[str]) -> np.ndarray:
    """fp32 softmax scores from transformers itself, tokenized by the same tokenizer.json."""
    import torch
    from tokenizers import Tokenizer
    from transformers import BertForSequenceClassification

    tok = Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    tok.enable_padding()
    enc = tok.encode_batch(texts)
    model = BertForSequenceClassification.from_pretrained(hf_dir).eval()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([e.ids for e in enc]),
                       attention_mask=torch.tensor([e.attention_mask for e in enc]),
                       token_type_ids=torch.tensor([e.type_ids for e in enc])).logits
    return torch.softmax(logits, -1).numpy()


def text_request(texts, outputs=None) -> dict:
    req = {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
    if outputs:
        req["outputs"] = [{"name": n} for n in outputs]
    return req


def by_name(response: dict) -> dict:
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in response["outputs"]}


def test_hf_source_ships_dynamic_int8_with_a_text_signature_and_its_tokenizer(text_model_dir):
    manifest = json.loads((text_model_dir / "manifest.json").read_text())
    assert manifest["quantization"]["mode"] == "dynamic"
    assert manifest["signature"]["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [(t["name"], t["datatype"], t["shape"]) for t in manifest["signature"]["outputs"]] == [
        ("logits", "FP32", [-1, 2]), ("label", "BYTES", [-1]), ("scores", "FP32", [-1, 2])]
    raw = manifest["processing"]["model_signature"]["inputs"]
    assert [(t["name"], t["shape"]) for t in raw] == [
        ("input_ids", [-1, -1]), ("attention_mask", [-1, -1]), ("token_type_ids", [-1, -1])]
    assert manifest["processing"]["postprocess"]["labels"] == list(LABELS)  # from config.json id2label
    assert (text_model_dir / "tokenizer.json").is_file()
    shipped = manifest["metrics"]["shipped"]
    assert shipped["label_agreement"] >= 0.9 and "max_score_error" in shipped
    assert manifest["metrics"]["gate"]["rows"] == len(SENTENCES)


def test_attention_fuses_and_is_quantized_as_one_op(text_model_dir):
    """The dynamo export's attention does not fuse; the TorchScript export's does, with the
    head count from config.json, and int8 quantizes each layer's attention as one QAttention."""
    import onnx

    q = json.loads((text_model_dir / "manifest.json").read_text())["quantization"]
    opt = q["transformer_optimizer"]
    assert opt["fused"]["Attention"] == 2 and (opt["num_heads"], opt["hidden_size"]) == (2, 64)
    assert opt["export"].startswith("torchscript")
    ops = [n.op_type for n in onnx.load(text_model_dir / "model.onnx").graph.node]
    assert ops.count("QAttention") == 2 and {"MatMulInteger", "DynamicQuantizeMatMul"} & set(ops)


def test_two_sentences_get_labels_and_scores_matching_the_fp32_reference(text_model_dir, hf_dir):
    # given the served (int8) model and transformers' own fp32 answer
    model = load_model(text_model_dir)
    texts = SENTENCES[3:5]
    ref = torch_reference(hf_dir, texts)
    # when two sentences are sent as one BYTES tensor
    out = by_name(infer_request(model, text_request(texts)))
    # then each gets a label and scores within what the gate measured
    gate = json.loads((text_model_dir / "manifest.json").read_text())["metrics"]
    bound = gate["gate"]["tolerance"]["max_score_error"]
    assert gate["shipped"]["max_score_error"] <= bound  # measured one text at a time, as served
    assert out["label"].tolist() == [LABELS[i] for i in ref.argmax(1)]
    assert out["scores"].shape == (2, 2)
    np.testing.assert_allclose(out["scores"], ref, atol=bound)
    np.testing.assert_allclose(out["scores"].sum(1), 1.0, atol=1e-5)


def test_raw_logits_stay_requestable_and_only_what_is_asked_is_returned(text_model_dir):
    model = load_model(text_model_dir)
    out = infer_request(model, text_request(["a great movie"], outputs=["logits"]))
    assert [o["name"] for o in out["outputs"]] == ["logits"]
    labels_only = infer_request(model, text_request(["a great movie"], outputs=["label"]))
    assert [o["name"] for o in labels_only["outputs"]] == ["label"]


def test_long_texts_are_truncated_and_unknown_words_still_classified(text_model_dir):
    model = load_model(text_model_dir)
    out = by_name(infer_request(model, text_request(["great " * 200, "zzz qqq unheard-of words"])))
    assert out["label"].shape == (2,) and set(out["label"].tolist()) <= set(LABELS)


@pytest.mark.parametrize(("request_", "says"), [
    ({"inputs": [{"name": "text", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}, "BYTES"),
    ({"inputs": [{"name": "text", "shape": [0], "datatype": "BYTES", "data": []}]}, "at least one"),
    ({"inputs": [{"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}]}, "text"),
    ({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}],
      "outputs": [{"name": "probs"}]}, "label"),
])
def test_client_mistakes_are_400s_that_say_what_to_send(text_model_dir, request_, says):
    model = load_model(text_model_dir)
    with pytest.raises(BadRequest, match=says):
        infer_request(model, request_)


def test_non_utf8_text_bytes_are_refused(text_model_dir):
    model = load_model(text_model_dir)
    arr = np.empty(1, dtype=object)
    arr[0] = b"\xff\xfe"
    with pytest.raises(BadRequest, match="UTF-8"):
        model.infer({"text": arr})


def test_a_changed_tokenizer_is_refused_at_load(text_model_dir, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(text_model_dir, copy)
    (copy / "tokenizer.json").write_text((copy / "tokenizer.json").read_text().replace("great", "grate"))
    with pytest.raises(ManifestError, match="sha256"):
        load_model(copy)
    (copy / "tokenizer.json").unlink()
    with pytest.raises(ManifestError, match="tokenizer.json"):
        load_model(copy)


def test_onnx_source_with_tokenizer_labels_and_top_k(text_model_dir, hf_dir, tmp_path):
    # given the shipped graph as a plain .onnx source, with labels named in the catalog
    shutil.copy(text_model_dir / "model.onnx", tmp_path / "clf.onnx")
    (tmp_path / "labels.txt").write_text("bad\ngood\n")
    (tmp_path / "models.yaml").write_text(f"""models:
  - name: top
    source: clf.onnx
    preprocess: {{tokenizer: {hf_dir / 'tokenizer.json'}, padding: max_length, max_length: 16}}
    postprocess: {{labels_file: labels.txt, top_k: 2}}
    quantize: none
""")
    build(tmp_path / "models.yaml", tmp_path / "build")
    model = load_model(tmp_path / "build" / "models" / "top")
    # when
    out = by_name(infer_request(model, text_request(["a great movie", "bad"])))
    # then labels and scores are the top 2, best first
    assert out["label"].shape == (2, 2) and {tuple(sorted(r)) for r in out["label"].tolist()} == {("bad", "good")}
    assert (out["scores"][:, 0] >= out["scores"][:, 1]).all()
    assert [s.to_dict()["shape"] for s in model.outputs] == [[-1, 2], [-1, 2], [-1, 2]]


@pytest.mark.parametrize(("entry", "says"), [
    ("source: hf:nowhere", "not a saved Hugging Face model directory"),
    ("source: m.onnx\n    preprocess: {tokenizer: t.json, image: {size: [8, 8]}}", "exactly one of"),
    ("source: m.onnx\n    preprocess: {tokenizer: missing.json}", "does not exist"),
    ("source: m.onnx\n    preprocess: {image: {size: [8, 8], mean: [0.5], std: [0.5, 0.5]}}", "one value per channel"),
    ("source: m.onnx\n    postprocess: {labels: [a], labels_file: l.txt}", "not both"),
    ("source: m.onnx\n    postprocess: {top: 3}", "top_k"),
    ("pipeline: [nope, other]", "no catalog entry named 'nope'"),
])
def test_catalog_errors_name_the_key_and_the_fix(tmp_path, entry, says):
    (tmp_path / "m.onnx").write_bytes(b"")
    (tmp_path / "models.yaml").write_text(f"models:\n  - name: x\n    {entry}\n  - name: other\n    source: m.onnx\n")
    with pytest.raises(CatalogError, match=says):
        load_catalog(tmp_path / "models.yaml")


def test_labels_that_do_not_match_the_classes_fail_the_build(text_model_dir, tmp_path):
    from infra.build import build_catalog

    shutil.copy(text_model_dir / "model.onnx", tmp_path / "clf.onnx")
    (tmp_path / "models.yaml").write_text("models:\n  - name: x\n    source: clf.onnx\n"
                                          "    postprocess: {labels: [a, b, c]}\n    quantize: none\n")
    (result,) = build_catalog(load_catalog(tmp_path / "models.yaml"), tmp_path / "build")
    assert not result.ok and "3 labels" in result.error and "2" in result.error
