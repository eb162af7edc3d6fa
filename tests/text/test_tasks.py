"""Embeddings and token classification from the directories users save (issue 19).

A sentence-transformers directory builds to text in, one normalized vector out, matching
``SentenceTransformer(dir).encode(..., normalize_embeddings=True)``; a
``*ForTokenClassification`` directory to entities matching transformers' pipeline with
``aggregation_strategy="simple"``; int8 embeddings are gated on cosine and retrieval.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from infra.tasks import detect
from layers.model import load_model
from tests.batch.conftest import aws, get_lines, s3_event, upload  # noqa: F401 (fixture)
from tests.text.conftest import build
from tests.text.tiny_tasks import (
    SEARCH_TEXTS,
    make_bare_encoder,
    make_sentence_transformer,
    make_token_classifier,
)

QUERIES = ["a great movie about love", "the plot was boring and bad", "xyzzy unknown words, here!",
           "it"]
CATALOG = """\
models:
  - name: emb
    source: hf:st
    quantize: dynamic
    validation: search.txt
    embedding: {matryoshka_dims: [16, 8]}
  - name: emb-exact
    source: hf:st
    quantize: dynamic
    validation: search.txt
    tolerance: {min_cosine: 0.999999}
  - name: ner
    source: hf:ner
    quantize: none
"""


@pytest.fixture(scope="session")
def task_dirs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tasks")
    make_sentence_transformer(root / "st")
    make_token_classifier(root / "ner")
    (root / "search.txt").write_text("\n".join(SEARCH_TEXTS) + "\n")
    (root / "models.yaml").write_text(CATALOG)
    return root


@pytest.fixture(scope="session")
def task_build(task_dirs) -> Path:
    build(task_dirs / "models.yaml", task_dirs / "build")
    return task_dirs / "build" / "models"


def _manifest(model_dir: Path) -> dict:
    return json.loads((model_dir / "manifest.json").read_text())


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _st_vectors(directory: Path, texts: list[str], truncate_dim: int | None = None) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(directory), device="cpu", truncate_dim=truncate_dim).encode(
        texts, normalize_embeddings=True)


# --- task detection -----------------------------------------------------------------------


def test_each_directory_kind_is_detected_as_its_library_saved_it(task_dirs, tmp_path):
    st = detect.detect(task_dirs / "st")
    assert (st.task, st.pooling, st.normalize, st.sentence_transformers) == ("embeddings", ("mean",), True, True)
    assert st.max_length == 64 and st.tokenizer is not None
    ner = detect.detect(task_dirs / "ner")
    assert ner.task == "token-classification" and ner.labels[:2] == ("O", "B-PER")
    bare = detect.detect(make_bare_encoder(tmp_path / "bare"), pooling="cls")
    assert (bare.task, bare.pooling, bare.normalize) == ("feature-extraction", ("cls",), False)
    assert detect.detect(tmp_path / "bare", task="embeddings").normalize is True


@pytest.mark.parametrize(("directory", "task", "says"), [
    ("st", "classification", "no classification head"),
    ("st", "token-classification", "cannot serve task 'token-classification'"),
    ("bare", "token-classification", "no token-classification head"),
])
def test_a_task_the_directory_cannot_serve_is_refused_saying_what_it_serves(task_dirs, tmp_path, directory,
                                                                            task, says):
    path = task_dirs / "st" if directory == "st" else make_bare_encoder(tmp_path / "bare")
    with pytest.raises(detect.TaskError, match=says):
        detect.detect(path, task=task)


def test_old_and_new_pooling_configs_are_both_read():
    assert detect.st_pooling({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, Path(".")) == ("cls",)
    assert detect.st_pooling({"pooling_mode": "lasttoken"}, Path(".")) == ("lasttoken",)
    with pytest.raises(detect.TaskError, match="not supported"):
        detect.st_pooling({"pooling_mode": "attention"}, Path("."))


def test_an_unsupported_st_module_chain_names_what_is_served(task_dirs, tmp_path):
    shutil.copytree(task_dirs / "st", tmp_path / "st")
    modules = json.loads((tmp_path / "st" / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (tmp_path / "st" / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(detect.TaskError, match="Dense"):
        detect.detect(tmp_path / "st")


# --- embeddings -------------------------------------------------------------------------------


def test_st_directory_serves_its_normalized_vectors_over_v2(task_build, task_dirs):
    manifest = _manifest(task_build / "emb")
    assert manifest["signature"]["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert manifest["signature"]["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 32]}]
    assert manifest["processing"]["task"]["task"] == "embeddings"
    model = load_model(task_build / "emb")
    got = model.infer({"text": np.array(QUERIES, dtype=object)})["embedding"]
    assert got.shape == (len(QUERIES), 32) and got.dtype == np.float32
    assert np.all(_cosines(got, _st_vectors(task_dirs / "st", QUERIES)) >= 0.99)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)


def test_int8_embeddings_pass_the_gate_with_cosine_and_retrieval_in_the_manifest(task_build):
    manifest = _manifest(task_build / "emb")
    quant, shipped = manifest["quantization"], manifest["metrics"]["shipped"]
    assert quant["mode"] == "dynamic", quant
    assert manifest["metrics"]["gate"]["tolerance"] == {"min_cosine": 0.99, "min_retrieval_top10": 0.9}
    assert shipped["min_cosine"] >= 0.99 and shipped["retrieval_top10"] >= 0.9
    assert 0.0 <= shipped["mean_cosine"] <= 1.0 and "top1_agreement" in shipped


def test_int8_embeddings_that_miss_the_gate_ship_fp32_with_the_reason(task_build, task_dirs):
    manifest = _manifest(task_build / "emb-exact")
    quant = manifest["quantization"]
    assert quant["mode"] == "none"
    assert "min_cosine" in quant["fallback_reason"] and "< 0.999999" in quant["fallback_reason"]
    got = load_model(task_build / "emb-exact").infer({"text": np.array(QUERIES, dtype=object)})["embedding"]
    assert np.all(_cosines(got, _st_vectors(task_dirs / "st", QUERIES)) >= 0.9999)


def test_batch_txt_gives_one_embedding_per_line(task_build, task_dirs, aws, lambda_context):  # noqa: F811
    from layers.batch.service import BatchService

    service = BatchService(load_model(task_build / "emb"))
    body = ("\n".join(QUERIES) + "\n").encode()
    result = service.handle(s3_event(upload(aws, "emb/in/queries.txt", body)), lambda_context)["results"][0]
    assert result["status"] == "out", result
    lines = get_lines(aws, "emb/out/queries.txt.jsonl")
    assert [line["row"] for line in lines] == list(range(len(QUERIES)))
    vectors = np.array([line["outputs"][0]["data"] for line in lines], dtype=np.float32)
    assert lines[0]["outputs"][0]["name"] == "embedding" and lines[0]["outputs"][0]["shape"] == [1, 32]
    assert np.all(_cosines(vectors, _st_vectors(task_dirs / "st", QUERIES)) >= 0.99)


# --- token classification ---------------------------------------------------------------------


def test_entities_match_the_transformers_pipeline(task_build, task_dirs):
    from transformers import pipeline

    pipe = pipeline("token-classification", model=str(task_dirs / "ner"), aggregation_strategy="simple",
                    device="cpu")
    manifest = _manifest(task_build / "ner")
    assert {"name": "entities", "datatype": "BYTES", "shape": [-1]} in manifest["signature"]["outputs"]
    model = load_model(task_build / "ner")
    got = model.infer({"text": np.array(QUERIES, dtype=object)}, ["entities"])["entities"]
    assert got.shape == (len(QUERIES),)
    for text, value in zip(QUERIES, got.tolist(), strict=True):
        mine, theirs = json.loads(value), pipe(text)
        assert [(e["entity_group"], e["start"], e["end"], e["word"]) for e in mine] == \
            [(e["entity_group"], e["start"], e["end"], e["word"]) for e in theirs]
        assert np.allclose([e["score"] for e in mine], [float(e["score"]) for e in theirs], atol=1e-3)
        assert all(e["text"] == text[e["start"]:e["end"]] for e in mine)


def test_grouping_follows_bio_tags_and_drops_o():
    from types import SimpleNamespace

    from tokenizers import Tokenizer

    from layers.kinds.token_classification import EntityAggregator
    from tests.text.tiny_hf import make_tokenizer

    enc = SimpleNamespace(  # [CLS] new york is a city [SEP]
        ids=[2, 10, 11, 12, 13, 14, 3], tokens=["[CLS]", "new", "york", "is", "a", "city", "[SEP]"],
        offsets=[(0, 0), (0, 3), (4, 8), (9, 11), (12, 13), (14, 18), (0, 0)],
        special_tokens_mask=[1, 0, 0, 0, 0, 0, 1], attention_mask=[1] * 7)

    labels = ["O", "B-LOC", "I-LOC", "B-PER"]
    best = [0, 1, 2, 0, 3, 3, 0]  # the second B-PER starts a new entity
    logits = np.full((7, 4), -5.0, dtype=np.float32)
    logits[np.arange(7), best] = 5.0
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tok = Tokenizer.from_file(str(make_tokenizer(Path(tmp))))
    agg = EntityAggregator({"labels": labels}, tok)
    ents = agg.one("new york is a city", enc, logits)
    assert [(e["entity_group"], e["start"], e["end"], e["text"]) for e in ents] == [
        ("LOC", 0, 8, "new york"), ("PER", 12, 13, "a"), ("PER", 14, 18, "city")]
    assert ents[0]["word"] == "new york" and 0.99 < ents[0]["score"] <= 1.0


def test_batch_txt_gives_entities_per_line(task_build, aws, lambda_context):  # noqa: F811
    from layers.batch.service import BatchService

    service = BatchService(load_model(task_build / "ner"))
    body = ("\n".join(QUERIES) + "\n").encode()
    result = service.handle(s3_event(upload(aws, "ner/in/q.txt", body)), lambda_context)["results"][0]
    assert result["status"] == "out", result
    lines = get_lines(aws, "ner/out/q.txt.jsonl")
    want = load_model(task_build / "ner").infer({"text": np.array(QUERIES, dtype=object)}, ["entities"])
    got = [next(t for t in line["outputs"] if t["name"] == "entities")["data"][0] for line in lines]
    assert [json.loads(g) for g in got] == [json.loads(w) for w in want["entities"].tolist()]


# --- the OpenAI-compatible API -----------------------------------------------------------------


@pytest.fixture
def emb_api(monkeypatch, task_build):
    import sys

    from layers import names
    from layers.model import reset_model
    from tests.functional.conftest import HANDLER_MODULE, import_handler

    monkeypatch.setenv(names.ENV_MODEL_DIR, str(task_build / "emb"))
    module = import_handler()
    yield module
    sys.modules.pop(HANDLER_MODULE, None)
    reset_model()


def _call(api, lambda_context, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    from tests.conftest import load_event
    from tests.functional.conftest import route

    event = route(load_event("http_infer"), method, path)
    event.update(body=json.dumps(body) if body is not None else "", isBase64Encoded=False,
                 headers={"content-type": "application/json"})
    out = api.handler(event, lambda_context)
    return out["statusCode"], json.loads(out["body"])


def test_openai_embeddings_pinned_and_by_body_match_sentence_transformers(emb_api, lambda_context, task_dirs):
    import base64

    want = _st_vectors(task_dirs / "st", QUERIES)
    for path in ("/openai/emb/v1/embeddings", "/openai/v1/embeddings"):
        status, doc = _call(emb_api, lambda_context, "POST", path, {"model": "emb", "input": QUERIES})
        assert status == 200, doc
        got = np.array([d["embedding"] for d in doc["data"]], dtype=np.float32)
        assert np.all(_cosines(got, want) >= 0.99) and doc["usage"]["prompt_tokens"] > len(QUERIES)
    status, doc = _call(emb_api, lambda_context, "POST", "/openai/v1/embeddings",
                        {"model": "emb", "input": QUERIES[0], "encoding_format": "base64"})
    vec = np.frombuffer(base64.b64decode(doc["data"][0]["embedding"]), dtype="<f4")
    assert status == 200 and _cosines(vec[None], want[:1])[0] >= 0.99
    status, doc = _call(emb_api, lambda_context, "GET", "/openai/emb/v1/models")
    assert status == 200 and [m["id"] for m in doc["data"]] == ["emb"]


def test_openai_dimensions_cut_like_sentence_transformers_truncate_dim(emb_api, lambda_context, task_dirs):
    """Matryoshka sizes from the catalog (``embedding.matryoshka_dims``): the first N components,
    unit length again, as ``SentenceTransformer(dir, truncate_dim=N).encode(normalize_embeddings=True)``."""
    for size in (16, 8):
        want = _st_vectors(task_dirs / "st", QUERIES, truncate_dim=size)
        status, doc = _call(emb_api, lambda_context, "POST", "/openai/v1/embeddings",
                            {"model": "emb", "input": QUERIES, "dimensions": size, "encoding_format": "float"})
        assert status == 200, doc
        got = np.array([d["embedding"] for d in doc["data"]], dtype=np.float32)
        assert got.shape == (len(QUERIES), size) and np.all(_cosines(got, want) >= 0.99)
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    status, doc = _call(emb_api, lambda_context, "POST", "/openai/emb/v1/embeddings",
                        {"model": "emb", "input": "x", "dimensions": 12})
    assert status == 400 and doc["error"]["param"] == "dimensions" and "32, 16, 8" in doc["error"]["message"]


def test_sentence_transformers_truncate_dim_is_a_size_the_model_can_be_cut_to(task_dirs, tmp_path):
    shutil.copytree(task_dirs / "st", tmp_path / "st")
    config = tmp_path / "st" / "config_sentence_transformers.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "truncate_dim": 8}))
    assert detect.detect(tmp_path / "st").matryoshka_dims == (8,)
    assert detect.detect(tmp_path / "st", matryoshka_dims=(16,)).to_dict()["matryoshka_dims"] == [16, 8]
    with pytest.raises(detect.TaskError, match="matryoshka_dims"):
        detect.detect(task_dirs / "ner", matryoshka_dims=(4,))


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("/openai/v1/embeddings", {"model": "nope", "input": "x"}, 404, "model_not_found"),
    ("/openai/nope/v1/embeddings", {"model": "nope", "input": "x"}, 404, "model_not_found"),
    ("/openai/emb/v1/embeddings", {"model": "emb", "input": [1, 2]}, 400, None),
    ("/openai/emb/v1/embeddings", {"model": "emb", "input": "x", "dimensions": 12}, 400, None),
])
def test_openai_errors_in_openais_shape(emb_api, lambda_context, path, body, status, code):
    got, doc = _call(emb_api, lambda_context, "POST", path, body)
    assert got == status, doc
    assert set(doc["error"]) == {"message", "type", "param", "code"} and doc["error"]["code"] == code
    assert doc["error"]["type"] == "invalid_request_error"
