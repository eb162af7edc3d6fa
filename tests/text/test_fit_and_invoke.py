"""The fit report accounts for the tokenizer; ``modelfn invoke`` sends .txt/.png to raw-input models."""

from __future__ import annotations

import base64
import json

import pytest

from infra.local.v2_input import InputError, load_request
from tests.text.tiny_image import png

TEXT_META = {"name": "sentiment", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}]}
IMAGE_META = {"name": "shades", "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}]}


def test_fit_counts_the_tokenizer_in_image_size_and_init(text_model_dir):
    manifest = json.loads((text_model_dir / "manifest.json").read_text())
    fit = manifest["fit"]
    assert fit["preprocess_library_bytes"] > 1_000_000  # the tokenizers wheel, installed
    assert 0 < fit["preprocess_init_s"] <= fit["init_s"]
    assert any(r.startswith("· text pre-processing: tokenizers") for r in manifest["target_reasons"])


def test_invoke_sends_a_txt_as_one_text_per_line(tmp_path):
    (tmp_path / "reviews.txt").write_text("a great movie\n\nthe plot was boring\n")
    body = json.loads(load_request(tmp_path / "reviews.txt", lambda: TEXT_META))
    assert body == {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                "data": ["a great movie", "the plot was boring"]}]}


def test_invoke_sends_an_image_base64_encoded(tmp_path):
    (tmp_path / "p.png").write_bytes(png(100))
    (tensor,) = json.loads(load_request(tmp_path / "p.png", lambda: IMAGE_META))["inputs"]
    assert tensor["shape"] == [1] and base64.b64decode(tensor["data"][0]) == png(100)


def test_invoke_refuses_raw_files_for_tensor_models(tmp_path):
    (tmp_path / "reviews.txt").write_text("a great movie\n")
    meta = {"name": "iris", "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]}
    with pytest.raises(InputError, match="takes"):
        load_request(tmp_path / "reviews.txt", lambda: meta)


def test_the_image_context_and_the_sagemaker_tarball_carry_the_tokenizer(text_model_dir, tmp_path):
    import tarfile

    from infra.targets.staging import stage_model_image, write_model_tarball

    ctx = stage_model_image(dest=tmp_path / "ctx", model_dir=text_model_dir)
    assert (ctx / "model" / "tokenizer.json").read_bytes() == (text_model_dir / "tokenizer.json").read_bytes()
    tarball = write_model_tarball(model_dir=text_model_dir, dest=tmp_path / "model.tar.gz")
    with tarfile.open(tarball) as tar:
        assert sorted(tar.getnames()) == ["manifest.json", "model.onnx", "tokenizer.json"]


def test_raw_jsonl_gate_data_is_tokenized_like_requests_and_labels_map_to_classes(text_model_dir, tmp_path):
    from infra.build.data import DataError
    from infra.build.processing import TOKENIZER_FILE, load_raw

    block = json.loads((text_model_dir / "manifest.json").read_text())["processing"]
    files = {TOKENIZER_FILE: text_model_dir / TOKENIZER_FILE}
    (tmp_path / "val.jsonl").write_text('{"text": "a great movie", "label": "positive"}\n\n'
                                        '{"text": "bad", "label": 0}\n')
    data = load_raw(tmp_path / "val.jsonl", block, files, key="validation")
    assert data.labels.tolist() == [1, 0] and data.rows == 2
    assert data.inputs["input_ids"].shape == (2, 5)  # [CLS] a great movie [SEP]; "bad" padded
    (tmp_path / "bad.jsonl").write_text('{"text": "x", "label": "neutral"}\n')
    with pytest.raises(DataError, match="neutral"):
        load_raw(tmp_path / "bad.jsonl", block, files, key="validation")
    (tmp_path / "worse.jsonl").write_text('{"txt": "x"}\n')
    with pytest.raises(DataError, match="line 1"):
        load_raw(tmp_path / "worse.jsonl", block, files, key="validation")
