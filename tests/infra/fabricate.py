"""A catalog of many models with minimal build outputs, for synth-at-scale tests and bench/.

One tiny ONNX file is written once and hard-linked into every model's build directory; each
model gets its own manifest (the app checks the manifest names the model). Nothing is
converted or quantized: the CDK app only reads what ``modelfn build`` leaves behind.
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path

import yaml

from tests.conftest import TINY_INPUTS, TINY_OUTPUTS, make_tiny_onnx, write_manifest

FIT = {"memory_mb": 1536, "timeout_s": 20, "peak_rss_mb": 300.0, "init_s": 0.5,
       "image_bytes": 10_000_000, "gpu_required": False}


@functools.cache
def _validation_npz() -> bytes:
    """One validation set's bytes per process: ``np.savez`` stamps the time into its zip, and
    two catalogs that should be the same must be byte for byte."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((2, 4), np.float32), labels=np.zeros(2, np.int64))
    return buf.getvalue()


def model_entries(*, lambda_models: int, sagemaker_models: int = 0, trained_models: int = 0,
                  prefix: str = "") -> list[dict]:
    """Catalog entries: ``lam-000…``, ``sm-000…`` (sagemaker target), ``trn-000…`` (training)."""
    entries = [{"name": f"{prefix}lam-{i:03d}", "source": "src/m.onnx"} for i in range(lambda_models)]
    entries += [{"name": f"{prefix}sm-{i:03d}", "source": "src/m.onnx", "target": "sagemaker",
                 "instance_type": "ml.m5.xlarge"} for i in range(sagemaker_models)]
    entries += [{"name": f"{prefix}trn-{i:03d}", "source": "src/m.onnx",
                 "validation": "src/val.npz",
                 "training": {"entry_point": "trainer:train", "instance_type": "ml.m5.xlarge"}}
                for i in range(trained_models)]
    return entries


def fabricate(root: Path, entries: list[dict]) -> tuple[Path, Path]:
    """``(catalog path, build dir)`` under ``root`` for ``entries``; reuses what exists."""
    catalog_dir, build = root / "catalog", root / "build"
    onnx = catalog_dir / "src" / "m.onnx"
    if not onnx.is_file():
        make_tiny_onnx(onnx)
        (onnx.parent / "val.npz").write_bytes(_validation_npz())
    (catalog_dir / "trainer.py").write_text("def train(data_dir, hp, model_dir):\n    return None\n")
    catalog = catalog_dir / "models.yaml"
    catalog.write_text(yaml.safe_dump({"models": entries}, sort_keys=False))
    for entry in entries:
        model_dir = build / "models" / entry["name"]
        if (model_dir / "manifest.json").is_file():
            continue
        model_dir.mkdir(parents=True, exist_ok=True)
        if not (model_dir / "model.onnx").exists():
            os.link(onnx, model_dir / "model.onnx")
        write_manifest(model_dir, entry["name"], TINY_INPUTS, TINY_OUTPUTS,
                       target=entry.get("target", "lambda"), target_reasons=["fabricated"], fit=FIT)
    return catalog, build
