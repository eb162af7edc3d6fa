"""Pre-processing libraries: what decoding images and tokenizing text costs in image size and
cold start, and the cold start of text/image models against a plain tensor model.

* Image decoders, each in fresh processes: Pillow (what ships), OpenCV headless, pypng (PNG
  only, pure Python) and onnxruntime-extensions (in-graph ``DecodeImage``). Alternatives are
  found on ``sys.path`` or under ``BENCH_ALT_PATH`` (``pip install --no-deps --target DIR
  opencv-python-headless pypng onnxruntime-extensions``); missing ones are listed as such.
* Text: ``tokenizers`` import, its size alone and with the dependencies it declares (the
  image installs it ``--no-deps``), tokenizer load, ``encode_batch`` vs one ``encode`` per text.
* Cold start: import the API handler + first request, median of fresh processes, for a plain
  MLP, the sample text classifier (tokenizer in init) and a tiny image classifier (Pillow).

Run: ``python -m bench preprocess`` → ``bench/results/preprocess.md`` + ``preprocess.png``.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.bench_coldstart import lambda_env, run_once
from bench.report import Report

REPO = Path(__file__).resolve().parents[1]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
ALT = os.environ.get("BENCH_ALT_PATH", "/tmp/alt")

DECODERS = {  # name → (distributions, import statement, decode function source)
    "Pillow (shipped)": (("pillow",), "from PIL import Image", """
def decode(b):
    img = Image.open(io.BytesIO(b), formats=("PNG", "JPEG"))
    img.draft("RGB", (224, 224))
    x = np.asarray(img.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR), np.float32) / 255.0
    return ((x - 0.5) / 0.25).transpose(2, 0, 1)
"""),
    "OpenCV headless": (("opencv-python-headless",), "import cv2", """
def decode(b):
    img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
    x = cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), (224, 224), interpolation=cv2.INTER_LINEAR)
    return ((x.astype(np.float32) / 255.0 - 0.5) / 0.25).transpose(2, 0, 1)
"""),
    "pypng (PNG only)": (("pypng",), "import png", """
def decode(b):
    w, h, rows, info = png.Reader(bytes=b).asRGB8()
    x = np.vstack([np.frombuffer(r, np.uint8) for r in rows]).reshape(h, w, 3)
    return ((x.astype(np.float32) / 255.0 - 0.5) / 0.25).transpose(2, 0, 1)  # no resize
"""),
    "onnxruntime-extensions": (("onnxruntime-extensions",), "import onnxruntime_extensions", """
import onnxruntime as ort
from onnx import TensorProto, helper
g = helper.make_graph([helper.make_node("DecodeImage", ["b"], ["img"], domain="ai.onnx.contrib")], "d",
    [helper.make_tensor_value_info("b", TensorProto.UINT8, [-1])],
    [helper.make_tensor_value_info("img", TensorProto.UINT8, [-1, -1, 3])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.contrib", 1)])
m.ir_version = 9
so = ort.SessionOptions(); so.register_custom_ops_library(onnxruntime_extensions.get_library_path())
sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
def decode(b):
    x = sess.run(None, {"b": np.frombuffer(b, np.uint8)})[0]  # BGR, no resize
    return ((x.astype(np.float32) / 255.0 - 0.5) / 0.25).transpose(2, 0, 1)
"""),
}

DECODE_RUN = """
import sys; sys.path.append({alt!r})
import time; t0 = time.perf_counter()
{imp}
t_import = time.perf_counter() - t0
import io, numpy as np
{fn}
out = {{"import_ms": t_import * 1000}}
for kind, path in (("png", {png!r}), ("jpeg", {jpeg!r})):
    b = open(path, "rb").read()
    try:
        decode(b)
    except Exception as exc:
        out[kind] = None; continue
    t = time.perf_counter()
    for _ in range(20):
        decode(b)
    out[kind] = (time.perf_counter() - t) / 20 * 1000
print("JSON", __import__("json").dumps(out))
"""

COLD = """
import time; t0 = time.perf_counter()
import json
from functions.api.handler import handler
class Ctx:
    function_name = "bench"; memory_limit_in_mb = 1769; aws_request_id = "cold"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
event = {{"version": "2.0", "rawPath": "/v2/models/{name}/infer", "rawQueryString": "",
         "headers": {{"content-type": "application/json"}}, "body": {body!r}, "isBase64Encoded": False,
         "requestContext": {{"http": {{"method": "POST", "path": "/v2/models/{name}/infer"}},
                            "requestId": "cold", "stage": "$default"}}}}
r = handler(event, Ctx())
assert r["statusCode"] == 200, r
print("MS", (time.perf_counter() - t0) * 1000)
"""


def closure_mb(dists: tuple[str, ...], *, deps: bool = False) -> float | None:
    """Installed MB of ``dists`` (found on sys.path or under BENCH_ALT_PATH), None if missing."""
    from packaging.requirements import Requirement

    from infra.build.fit import closure_bytes

    if ALT not in sys.path:
        sys.path.append(ALT)
    if not all(list(md.distributions(name=d)) for d in dists):
        return None
    return closure_bytes([Requirement(d) for d in dists], deps=deps) / 1e6


def images(root: Path) -> tuple[Path, Path]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
    pixels[:, :320] //= 4  # some structure, not only noise
    img = Image.fromarray(pixels, "RGB")
    img.save(root / "photo.png")
    img.save(root / "photo.jpg", quality=90)
    return root / "photo.png", root / "photo.jpg"


def decoders(report: Report, root: Path) -> dict[str, float]:
    png_path, jpg_path = images(root)
    rows, imports = [], {}
    for name, (dists, imp, fn) in DECODERS.items():
        size = closure_mb(dists)
        if size is None:
            rows.append([name, "not installed", "-", "-", "-"])
            continue
        runs = []
        for _ in range(ROUNDS):
            out = subprocess.run([sys.executable, "-c", DECODE_RUN.format(alt=ALT, imp=imp, fn=fn, png=str(png_path),
                                                                          jpeg=str(jpg_path))],
                                 capture_output=True, text=True, cwd=REPO, check=False)
            line = [x for x in out.stdout.splitlines() if x.startswith("JSON ")]
            if not line:
                runs = []
                rows.append([name, round(size, 1), f"failed: {(out.stderr.strip().splitlines() or ['?'])[-1][-70:]}", "-", "-"])
                break
            runs.append(json.loads(line[0][5:]))
        if not runs:
            continue
        med = {k: statistics.median(r[k] for r in runs) if runs[0][k] is not None else None for k in runs[0]}
        imports[name] = med["import_ms"]
        rows.append([name, round(size, 1), round(med["import_ms"], 1),
                     round(med["png"], 2) if med["png"] is not None else "cannot",
                     round(med["jpeg"], 2) if med["jpeg"] is not None else "cannot"])
    report.table(f"Image decoders: installed size, import and decode of a 640×480 image to a normalized "
                 f"224×224 NCHW tensor (median of {ROUNDS} fresh processes × 20 decodes)",
                 ["decoder", "installed MB", "import ms", "PNG ms", "JPEG ms"], rows)
    return imports


def text(report: Report, tokenizer_json: Path) -> None:
    code = f"""
import time; t0 = time.perf_counter()
from tokenizers import Tokenizer
t1 = time.perf_counter()
tok = Tokenizer.from_file({str(tokenizer_json)!r}); tok.enable_padding(pad_id=0, pad_token="[PAD]")
t2 = time.perf_counter()
texts = ["i thought the movie was really wonderful and the music was superb"] * 32
for _ in range(5): tok.encode_batch(texts)
t3 = time.perf_counter()
for _ in range(50): tok.encode_batch(texts)
t4 = time.perf_counter()
for _ in range(50): [tok.encode(t) for t in texts]
t5 = time.perf_counter()
print("JSON", __import__("json").dumps({{"import": (t1 - t0) * 1e3, "load": (t2 - t1) * 1e3,
    "batch": (t4 - t3) / 50 * 1e3, "loop": (t5 - t4) / 50 * 1e3}}))
"""
    runs = []
    for _ in range(ROUNDS):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
        runs.append(json.loads(next(x for x in out.stdout.splitlines() if x.startswith("JSON "))[5:]))
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    report.table("tokenizers (Rust): size and time (median of fresh processes)", ["figure", "value"], [
        ["installed MB, tokenizers alone (image: --no-deps)", round(closure_mb(("tokenizers",)), 1)],
        ["installed MB, with its declared dependencies", round(closure_mb(("tokenizers",), deps=True), 1)],
        ["import ms", round(med["import"], 1)],
        ["Tokenizer.from_file ms (sample vocabulary)", round(med["load"], 2)],
        ["encode_batch, 32 texts, ms", round(med["batch"], 3)],
        ["32 × encode, ms", round(med["loop"], 3)],
        ["encode_batch speed-up", f"{med['loop'] / med['batch']:.1f}×"],
    ])


def build_models(root: Path) -> dict[str, tuple[Path, str]]:
    """(model dir, request body) for: plain MLP, sample text classifier, tiny image classifier."""
    import base64

    from bench.api_setup import build_mlp
    from infra.build import BuildSettings, build_catalog
    from infra.catalog import load_catalog
    from samples.text import make_sentiment
    from tests.text.test_image import IMAGE_ENTRY
    from tests.text.tiny_image import make_image_onnx, png, write_image_folder

    make_sentiment(root)
    make_image_onnx(root / "img.onnx")
    write_image_folder(root / "images")
    (root / "models.yaml").write_text("""models:
  - name: sentiment
    source: hf:sentiment
    preprocess: {tokenizer: sentiment, max_length: 64}
    postprocess: {softmax: true}
    quantize: none
""" + IMAGE_ENTRY.replace("quantize: static", "quantize: none"))
    results = build_catalog(load_catalog(root / "models.yaml"), root / "build", settings=BuildSettings(require_speedup=False))
    assert all(r.ok for r in results), [r.error for r in results]
    mlp = build_mlp(root / "mlp", 64, [256, 256], 10)
    text_body = json.dumps({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                        "data": ["a wonderful film", "the plot was dull"]}]})
    image_body = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                         "data": [base64.b64encode(png(200)).decode()]}]})
    mlp_body = json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]})
    return {"mlp (tensors in)": (mlp, mlp_body),
            "sentiment (text in, tokenizers)": (root / "build" / "models" / "sentiment", text_body),
            "shades (PNG in, Pillow)": (root / "build" / "models" / "shades", image_body)}


def main() -> None:
    report = Report("preprocess", "Pre-processing: image decoders, tokenizers, cold start of text/image models")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        imports = decoders(report, root)
        models = build_models(root)
        text(report, root / "sentiment" / "tokenizer.json")
        task_root = root / "task"
        task_root.mkdir()
        got: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(ROUNDS):  # interleaved
            for k, (model_dir, body) in models.items():
                manifest = json.loads((model_dir / "manifest.json").read_text())
                got[k].append(run_once(COLD.format(name=manifest["name"], body=body), lambda_env(model_dir, task_root))[0])
        base = statistics.median(got["mlp (tensors in)"])
        report.table(f"Cold start: handler import + init + first request (ms, median of {ROUNDS} fresh processes)",
                     ["model", "ms", "× plain MLP"],
                     [[k, round(statistics.median(v), 1), round(statistics.median(v) / base, 2)] for k, v in got.items()])
    report.note("The image installs Pillow (20 MB) and tokenizers (12 MB, --no-deps) for every model; "
                "each is imported only by models whose manifest asks for it.")
    report.note(f"Load average when the run started: {load:.1f} on {os.cpu_count()} CPUs (shared machine).")
    if imports:
        report.bar_plot("preprocess.png", "Image decoder import time (fresh process)", list(imports),
                        {"import ms": list(imports.values())}, "ms")
    report.write()


if __name__ == "__main__":
    main()
