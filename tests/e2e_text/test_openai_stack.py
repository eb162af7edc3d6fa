"""Acceptance, end to end on the local stack: the stock ``openai`` client, unchanged, gets
embeddings from a sentence-transformers directory built from a config (pinned
``/openai/<model>/v1`` and the shared ``/openai/v1`` routed by the body's model), matching
``SentenceTransformer(dir).encode(..., normalize_embeddings=True)``; OpenAI's errors come back
as the client's own exceptions."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tests.text.test_tasks import QUERIES, _cosines, _st_vectors
from tests.text.tiny_tasks import make_sentence_transformer, make_token_classifier

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("openai-stack")]


@pytest.fixture(scope="module")
def openai_stack(tmp_path_factory):
    from infra.local.stack import LocalStack
    from tests.text.conftest import build

    root = tmp_path_factory.mktemp("openaistack")
    make_token_classifier(root / "ner")
    make_sentence_transformer(root / "st")
    # the tagger first: the shared /openai/v1 form must reach emb by its body, not by default
    (root / "models.yaml").write_text("models:\n"
                                      "  - {name: ner, source: 'hf:ner', quantize: none, auth: none, target: lambda}\n"
                                      "  - {name: emb, source: 'hf:st', quantize: none, auth: none, target: lambda}\n")
    build(root / "models.yaml", root / "build")
    stack = LocalStack(catalog_path=root / "models.yaml", out_dir=root / "build", port=0, s3_port=0,
                       warm=1, log_sink=logging.getLogger("modelfn.test.openai").info, integration_timeout_s=60)
    try:
        stack.start()
        yield stack, root
    finally:
        stack.stop()


def _client(url: str):
    from openai import OpenAI

    return OpenAI(base_url=url, api_key="local", max_retries=0, timeout=60)


@pytest.mark.parametrize("base", ["/openai/emb/v1", "/openai/v1"])
def test_stock_openai_client_gets_sentence_transformers_vectors(openai_stack, base):
    stack, root = openai_stack
    client = _client(stack.url + base)
    want = _st_vectors(root / "st", QUERIES)
    result = client.embeddings.create(model="emb", input=QUERIES)  # the client asks for base64
    got = np.array([d.embedding for d in result.data], dtype=np.float32)
    assert got.shape == want.shape and np.all(_cosines(got, want) >= 0.99)
    assert result.model == "emb" and result.usage.prompt_tokens == result.usage.total_tokens > len(QUERIES)
    one = client.embeddings.create(model="emb", input=QUERIES[0], encoding_format="float")
    assert _cosines(np.array([one.data[0].embedding]), want[:1])[0] >= 0.99


def test_models_list_and_openai_errors_through_the_client(openai_stack):
    import openai

    stack, _ = openai_stack
    client = _client(stack.url + "/openai/emb/v1")
    assert [m.id for m in client.models.list()] == ["emb"]  # pinned: this model
    shared = _client(stack.url + "/openai/v1")
    listed = shared.models.list()  # the shared form: every model of the catalog (the router's)
    assert [m.id for m in listed] == ["emb", "ner"] and all(m.created > 1_700_000_000 for m in listed)
    assert shared.models.retrieve("ner").id == "ner" and client.models.retrieve("emb").owned_by == "modelfn"
    with pytest.raises(openai.NotFoundError):
        shared.models.retrieve("gpt-4")
    with pytest.raises(openai.NotFoundError) as info:
        _client(stack.url + "/openai/v1").embeddings.create(model="no-such-model", input="x")
    assert info.value.status_code == 404 and info.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as info:  # the router names every model there is
        _client(stack.url + "/openai/v1").embeddings.create(model="gpt-4", input="x")
    assert "emb, ner" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="emb", input="x", dimensions=3)
    assert info.value.status_code == 400 and info.value.param == "dimensions"
    with pytest.raises(openai.BadRequestError, match="not an embedding model"):
        _client(stack.url + "/openai/ner/v1").embeddings.create(model="ner", input="x")
