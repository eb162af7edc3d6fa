"""Fixtures: a tiny Hugging Face text classifier built by the pipeline (once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.text.tiny_hf import make_text_classifier, write_texts

TEXT_ENTRY = """\
  - name: sentiment
    source: hf:hf
    preprocess: {tokenizer: hf, max_length: 32, padding: longest, truncation: true}
    postprocess: {softmax: true}
    quantize: dynamic
    validation: val.txt
    tolerance: {top1_agreement: 0.9, max_score_error: 0.05}
    auth: none
    target: lambda
"""


def build(catalog: Path, out: Path, names: list[str] | None = None):
    from infra.build import BuildSettings, build_catalog
    from infra.catalog import load_catalog

    results = build_catalog(load_catalog(catalog), out, models=names,
                            settings=BuildSettings(require_speedup=False))
    failed = [r.error for r in results if not r.ok]
    assert not failed, failed
    return results


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory) -> Path:
    return make_text_classifier(tmp_path_factory.mktemp("hf") / "hf")


@pytest.fixture(scope="session")
def text_build(tmp_path_factory, hf_dir) -> Path:
    """``build/`` holding ``sentiment``: hf source, tokenizer + softmax/id2label, dynamic int8."""
    import shutil

    root = tmp_path_factory.mktemp("textcat")
    shutil.copytree(hf_dir, root / "hf")
    write_texts(root / "val.txt")
    (root / "models.yaml").write_text("models:\n" + TEXT_ENTRY)
    build(root / "models.yaml", root / "build")
    return root


@pytest.fixture(scope="session")
def text_model_dir(text_build) -> Path:
    return text_build / "build" / "models" / "sentiment"
