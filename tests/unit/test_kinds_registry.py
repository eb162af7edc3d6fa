"""The kind registries are the only place input kinds are decided: a kind registered here (and
nowhere else) is accepted by the catalog, served by the processed model and read in batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from infra import kinds as build_kinds
from infra.catalog import CatalogError, parse_catalog
from layers import kinds
from layers.errors import BadRequest
from layers.servable import Servable
from tests.conftest import TINY_OUTPUTS, write_manifest


class WordKind(kinds.InputKind):
    """A word → 4 features (length, vowels, upper-case letters, digits) for the tiny model."""

    name = noun = "word"
    batch_line_suffixes = (".words",)
    batch_hint = "upload .words (one word a line)"

    def preprocessor(self, config, files, raw_inputs):
        (x,) = raw_inputs

        def run(items: list[str]) -> dict[str, np.ndarray]:
            rows = [[len(w), sum(c in "aeiou" for c in w), sum(c.isupper() for c in w),
                     sum(c.isdigit() for c in w)] for w in items]
            return {x: np.asarray(rows, dtype=np.float32)}
        return run

    def item(self, index: int, value: Any) -> str:
        if not isinstance(value, str | bytes):
            raise BadRequest(f"word {index} is not text")
        return value if isinstance(value, str) else value.decode()

    def primer(self, preprocessor: Any) -> str:
        return "modelfn"


class WordBuildKind(build_kinds.BuildKind):
    name = "word"
    selector = "words"
    choice = "'words' (words in)"
    catalog_fields: ClassVar[dict[str, Any]] = {"words": (bool | None, None)}


@pytest.fixture
def word_kind():
    runtime, build = kinds.register(WordKind()), build_kinds.register(WordBuildKind())
    yield runtime, build
    kinds.unregister("word")
    build_kinds.unregister("word")


def _catalog(tmp_path: Path) -> dict:
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    return {"models": [{"name": "words", "source": "m.onnx", "preprocess": {"words": True}}]}


def _word_model_dir(tiny_onnx: Path) -> Path:
    block = {"model_signature": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                                 "outputs": TINY_OUTPUTS},
             "preprocess": {"kind": "word"}, "files": {}}
    return write_manifest(tiny_onnx.parent, "words", [{"name": "word", "datatype": "BYTES", "shape": [-1]}],
                          TINY_OUTPUTS, processing=block)


def test_catalog_accepts_a_registered_kind_and_refuses_it_unregistered(tmp_path, word_kind):
    # given a catalog entry using the registered kind's own key
    catalog = parse_catalog(_catalog(tmp_path), tmp_path / "models.yaml")
    # then it validates, and the entry's kind is the registered one
    assert catalog.get("words").preprocess.kind == "word"
    # when the kind is gone, the same key is an unknown key naming the registered ones
    kinds.unregister("word")
    build_kinds.unregister("word")
    with pytest.raises(CatalogError, match=r"unknown key 'preprocess.words'.*tokenizer.*image"):
        parse_catalog(_catalog(tmp_path), tmp_path / "models.yaml")


def test_processed_model_serves_a_registered_kind(tiny_onnx, word_kind):
    from layers.model import load_model

    model = load_model(_word_model_dir(tiny_onnx))
    # the public signature is the kind's one BYTES input; the model is a Servable
    assert isinstance(model, Servable)
    assert (model.kind, [s.name for s in model.inputs]) == ("word", ["word"])
    out = model.infer({"word": np.asarray(["hello", "ABC123"], dtype=object)})
    assert out["probs"].shape == (2, 3)
    assert np.allclose(out["probs"].sum(axis=1), 1.0, atol=1e-5)
    # and its SnapStart primer comes from the kind
    assert model.primer_inputs()["word"].tolist() == ["modelfn"]


def test_batch_reads_a_registered_kinds_files(tmp_path, tiny_onnx, word_kind):
    from layers.batch.rawinputs import LinesReader, open_raw_reader
    from layers.model import load_model

    model = load_model(_word_model_dir(tiny_onnx))
    path = tmp_path / "in.words"
    path.write_text("alpha\n\nBeta9\ngamma\n")
    # the kind's suffix opens a line reader; blank lines are not requests
    reader = open_raw_reader(path, ".words", model)
    assert isinstance(reader, LinesReader)
    reader.validate(chunk_rows=2)
    batches = list(reader.batches(chunk_rows=2))
    assert reader.requests == 3
    assert [b.inputs["word"].tolist() for b in batches] == [["alpha", "Beta9"], ["gamma"]]
    assert model.infer(batches[0].inputs)["probs"].shape == (2, 3)
    # and the registry's suffixes are the batch job's supported ones
    assert ".words" in kinds.batch_suffixes()
