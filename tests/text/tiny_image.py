"""A tiny image classifier (Conv → ReLU → global pool → Gemm) and PNG files, made in tmp."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

IMAGE_LABELS = ("dark", "bright")


def make_image_onnx(path: Path, *, size: int = 8, seed: int = 0) -> Path:
    """``pixels`` [N, 3, size, size] FP32 → ``logits`` [N, 2]: brighter images score "bright"."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    conv_w = (np.abs(rng.standard_normal((4, 3, 3, 3))) * 0.3).astype(np.float32)
    fc_w = np.array([[-2.0, 2.0]] * 4, np.float32) + rng.standard_normal((4, 2)).astype(np.float32) * 0.1
    nodes = [
        helper.make_node("Conv", ["pixels", "conv_w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny-image",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(conv_w, "conv_w"), numpy_helper.from_array(fc_w, "fc_w"),
         numpy_helper.from_array(np.array([1.0, -1.0], np.float32), "fc_b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def png(level: int, size: int = 12, seed: int = 0) -> bytes:
    """A noisy RGB PNG around grey ``level`` (0-255), ``size``×``size`` (resized by the model)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(level + rng.integers(-20, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def write_image_folder(root: Path, per_class: int = 6) -> Path:
    """``root/dark/*.png`` and ``root/bright/*.png`` (labels from the folder names)."""
    for label, base in (("dark", 30), ("bright", 220)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / label / f"{i}.png").write_bytes(png(base + 3 * i, seed=i))
    return root
