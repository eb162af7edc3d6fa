"""OpenAI's embeddings wire format: what the stock client sends, gets and is refused."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from layers import openai_wire as wire
from layers.errors import NotFound


def test_string_or_list_input_and_both_encodings():
    assert wire.parse_embeddings({"model": "m", "input": "hi"}, dimensions=4) == ("m", ["hi"], "float", None)
    assert wire.parse_embeddings({"model": "m", "input": ["a", "b"], "encoding_format": "base64",
                                  "dimensions": 4, "user": "u"}, dimensions=4) == ("m", ["a", "b"], "base64", None)
    vectors = np.array([[0.5, -1.25, 3.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    doc = wire.embeddings_response("m", vectors, "base64", tokens=7)
    assert doc["object"] == "list" and doc["model"] == "m"
    assert doc["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert [d["index"] for d in doc["data"]] == [0, 1] and doc["data"][0]["object"] == "embedding"
    decoded = np.frombuffer(base64.b64decode(doc["data"][0]["embedding"]), dtype="<f4")
    assert decoded.tolist() == [0.5, -1.25, 3.0]
    assert wire.embeddings_response("m", vectors, "float", 7)["data"][1]["embedding"] == [1.0, 0.0, 0.0]


@pytest.mark.parametrize(("doc", "param", "says"), [
    ({"input": "x"}, "model", "'model' is required"),
    ({"model": "m"}, "input", "'input' is required"),
    ({"model": "m", "input": []}, "input", "empty list"),
    ({"model": "m", "input": ""}, "input", "empty string"),
    ({"model": "m", "input": [1, 2, 3]}, "input", "token ids"),
    ({"model": "m", "input": [["a"]]}, "input", "token ids"),
    ({"model": "m", "input": {"a": 1}}, "input", "string or a list"),
    ({"model": "m", "input": "x", "encoding_format": "int8"}, "encoding_format", "'float' or 'base64'"),
    ({"model": "m", "input": "x", "dimensions": 2}, "dimensions", "cannot shorten"),
    ({"model": "m", "input": "x", "dimensions": "4"}, "dimensions", "positive integer"),
    ({"model": "m", "input": "x", "temperature": 1}, "temperature", "Unrecognized request argument"),
    ({"model": "m", "input": ["x"] * 2049}, "input", "at most 2048"),
])
def test_bad_requests_are_400s_naming_the_param(doc, param, says):
    with pytest.raises(wire.OpenAIError, match=says) as info:
        wire.parse_embeddings(doc, dimensions=4)
    status, body = wire.error_of(info.value)
    assert status == 400 and body["error"]["param"] == param
    assert body["error"]["type"] == "invalid_request_error" and set(body["error"]) == {"message", "type", "param", "code"}


def test_dimensions_cut_only_to_the_sizes_the_model_was_trained_for():
    doc = {"model": "m", "input": "x", "dimensions": 2}
    assert wire.parse_embeddings(doc, dimensions=4, cuts=(2,))[3] == 2
    assert wire.parse_embeddings({**doc, "dimensions": 4}, dimensions=4, cuts=(2,))[3] is None
    with pytest.raises(wire.OpenAIError, match="4, 2 dimensions") as info:
        wire.parse_embeddings({**doc, "dimensions": 3}, dimensions=4, cuts=(2,))
    assert info.value.param == "dimensions" and info.value.status == 400
    with pytest.raises(wire.OpenAIError, match="matryoshka_dims"):
        wire.parse_embeddings(doc, dimensions=4)
    vectors = np.array([[0.6, 0.0, 0.8, 0.0], [0.0, 3.0, 0.0, 4.0]], dtype=np.float32)
    assert wire.cut(vectors, 2, normalize=True).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert wire.cut(vectors, 2, normalize=False).tolist() == [[0.6000000238418579, 0.0], [0.0, 3.0]]
    assert wire.cut(vectors, None, normalize=True) is vectors


def test_unknown_model_is_a_404_model_not_found_in_openais_shape():
    status, body = wire.error_of(wire.model_not_found("gpt-4", ["emb"]))
    assert status == 404 and body["error"]["code"] == "model_not_found" and "emb" in body["error"]["message"]
    status, body = wire.error_of(NotFound("no model 'x'"))  # the shared checks' errors, reshaped
    assert status == 404 and body["error"] == {"message": "no model 'x'", "type": "invalid_request_error",
                                               "param": None, "code": "model_not_found"}


def test_models_list_shape():
    doc = wire.models_response([wire.model_card("emb", 1700000000)])
    assert doc == {"object": "list", "data": [{"id": "emb", "object": "model", "created": 1700000000,
                                               "owned_by": "modelfn"}]}
