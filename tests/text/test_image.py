"""An image classifier with ``preprocess.image``: PNG/JPEG bytes in, labels out."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

from layers.errors import BadRequest
from layers.model import load_model
from layers.v2_wire import infer_request
from tests.text.conftest import build
from tests.text.tiny_image import IMAGE_LABELS, make_image_onnx, png, write_image_folder

IMAGE_ENTRY = """\
  - name: shades
    source: img.onnx
    preprocess: {image: {size: [8, 8], mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], layout: NCHW}}
    postprocess: {labels: [dark, bright]}
    quantize: static
    calibration: images
    validation: images
    tolerance: {top1_agreement: 0.9, min_accuracy: 0.9}
    auth: none
    target: lambda
"""


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgcat")
    make_image_onnx(root / "img.onnx")
    write_image_folder(root / "images")
    (root / "models.yaml").write_text("models:\n" + IMAGE_ENTRY)
    build(root / "models.yaml", root / "build")
    return root / "build" / "models" / "shades"


def reference(image: bytes, onnx_path) -> np.ndarray:
    """The raw model on the documented pre-processing, done by hand."""
    import onnxruntime as ort
    from PIL import Image

    img = Image.open(io.BytesIO(image)).convert("RGB").resize((8, 8), Image.Resampling.BILINEAR)
    x = (np.asarray(img, np.float32) / 255.0 - 0.5) / 0.25
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"pixels": x.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]


def test_static_int8_gated_on_a_folder_of_labelled_images(image_dir):
    manifest = json.loads((image_dir / "manifest.json").read_text())
    assert manifest["signature"]["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert manifest["quantization"]["mode"] == "static"
    shipped = manifest["metrics"]["shipped"]
    assert shipped["accuracy"] >= 0.9 and shipped["label_agreement"] >= 0.9
    assert manifest["metrics"]["gate"]["rows"] == 12


def test_png_bytes_in_labels_out_as_binary_and_as_base64(image_dir):
    model = load_model(image_dir)
    dark, bright = png(25), png(230)
    arr = np.empty(2, dtype=object)
    arr[:] = [dark, bright]
    raw = model.infer({"image": arr})
    assert raw["label"].tolist() == ["dark", "bright"]
    as_json = infer_request(model, {"inputs": [{"name": "image", "shape": [2], "datatype": "BYTES",
                                                "data": [base64.b64encode(b).decode() for b in (dark, bright)]}]})
    labels = next(o for o in as_json["outputs"] if o["name"] == "label")
    assert labels["data"] == ["dark", "bright"]


def test_the_served_preprocessing_is_the_documented_one(image_dir, tmp_path):
    # fp32 build of the same entry, compared with decoding + normalizing by hand
    make_image_onnx(tmp_path / "img.onnx")
    (tmp_path / "models.yaml").write_text("models:\n" + IMAGE_ENTRY.replace("quantize: static", "quantize: none")
                                          .replace("    calibration: images\n    validation: images\n", ""))
    build(tmp_path / "models.yaml", tmp_path / "build")
    model = load_model(tmp_path / "build" / "models" / "shades")
    image = png(120, size=20, seed=3)
    arr = np.empty(1, dtype=object)
    arr[0] = image
    got = model.infer({"image": arr}, ["logits", "scores"])
    np.testing.assert_allclose(got["logits"][0], reference(image, tmp_path / "img.onnx"), rtol=1e-5, atol=1e-6)
    assert got["scores"].shape == (1, len(IMAGE_LABELS))


def test_jpeg_and_grey_png_are_decoded_too(image_dir):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (30, 10), 240).save(buf, format="JPEG")
    arr = np.empty(1, dtype=object)
    arr[0] = buf.getvalue()
    assert load_model(image_dir).infer({"image": arr}, ["label"])["label"].tolist() == ["bright"]


@pytest.mark.parametrize(("value", "says"), [
    (b"GIF89a not a png", "not a readable PNG or JPEG"),
    ("%%% not base64", "not base64"),
])
def test_what_is_not_an_image_is_a_400(image_dir, value, says):
    arr = np.empty(1, dtype=object)
    arr[0] = value
    with pytest.raises(BadRequest, match=says):
        load_model(image_dir).infer({"image": arr})


def test_a_preprocess_size_the_model_cannot_take_fails_the_build(tmp_path):
    from infra.build import build_catalog
    from infra.catalog import load_catalog

    make_image_onnx(tmp_path / "img.onnx")
    (tmp_path / "models.yaml").write_text(
        "models:\n  - name: x\n    source: img.onnx\n    preprocess: {image: {size: [16, 16]}}\n    quantize: none\n")
    (result,) = build_catalog(load_catalog(tmp_path / "models.yaml"), tmp_path / "build")
    assert not result.ok and "[3, 16, 16]" in result.error and "[3, 8, 8]" in result.error


def test_hf_image_classifier_from_a_config_takes_png_bytes(tmp_path):
    # given a tiny ViT saved with save_pretrained (random weights) and an image preprocess
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=64, num_labels=2,
                       id2label=dict(enumerate(IMAGE_LABELS)), label2id={n: i for i, n in enumerate(IMAGE_LABELS)})
    torch.manual_seed(0)
    vit = ViTForImageClassification(config).eval()
    vit.save_pretrained(tmp_path / "vit")
    (tmp_path / "models.yaml").write_text("""models:
  - name: vit
    source: hf:vit
    preprocess: {image: {size: [16, 16], mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}}
    postprocess: {top_k: 1}
    quantize: none
""")
    build(tmp_path / "models.yaml", tmp_path / "build")
    model = load_model(tmp_path / "build" / "models" / "vit")
    assert [(s.name, s.shape) for s in model.outputs] == [("logits", (-1, 2)), ("label", (-1, 1)), ("scores", (-1, 1))]
    # when
    image = png(90, size=16)
    arr = np.empty(1, dtype=object)
    arr[0] = image
    got = model.infer({"image": arr})
    # then the logits are transformers' own on the documented pre-processing
    from PIL import Image

    x = (np.asarray(Image.open(io.BytesIO(image)).convert("RGB"), np.float32) / 255.0 - 0.5) / 0.5
    with torch.no_grad():
        want = vit(pixel_values=torch.from_numpy(x.transpose(2, 0, 1)[None].copy())).logits.numpy()
    np.testing.assert_allclose(got["logits"], want, rtol=1e-4, atol=1e-4)
    assert got["label"].tolist() == [[IMAGE_LABELS[int(want.argmax())]]]


def test_snapstart_primes_text_and_image_models_with_real_inputs(image_dir, text_model_dir):
    from layers import snapstart

    for model_dir in (image_dir, text_model_dir):
        model = load_model(model_dir)
        assert snapstart.prime(model), model_dir.name  # the primer ran through pre/post-processing


def test_the_example_request_up_prints_for_an_image_model_is_an_image_it_accepts(image_dir):
    # given the request `modelfn up` prints for a model with image pre-processing and no example_input
    from infra.local.command import _zeros_request

    model = load_model(image_dir)
    request = _zeros_request(model.inputs, "image")
    (tensor,) = request["inputs"]
    assert tensor["name"] == "image" and tensor["datatype"] == "BYTES"
    assert base64.b64decode(tensor["data"][0]).startswith(b"\x89PNG")
    # then the model answers it (a sentence used to get a 400)
    out = infer_request(model, request)
    assert next(o for o in out["outputs"] if o["name"] == "label")["data"][0] in ("dark", "bright")
