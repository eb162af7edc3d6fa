"""Every input format gives one output line per request, equal to the model's own answer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.batch import files
from tests.batch.conftest import get_lines, keys, s3_event, upload


def expected_probs(model, x: np.ndarray) -> np.ndarray:
    return model.infer({"x": x})["probs"]


def assert_rows_match(lines: list[dict], probs: np.ndarray) -> None:
    assert [line["row"] for line in lines] == list(range(len(probs)))
    for line, want in zip(lines, probs, strict=True):
        (tensor,) = line["outputs"]
        assert tensor["name"] == "probs" and tensor["datatype"] == "FP32" and tensor["shape"] == [1, 3]
        np.testing.assert_allclose(tensor["data"], want, rtol=1e-6)


def run(service, aws, lambda_context, key: str, body: bytes) -> dict:
    result = service.handle(s3_event(upload(aws, key, body)), lambda_context)
    return result["results"][0]


def test_npy_rows_become_requests(service, aws, model, lambda_context):
    x = files.rows(37)
    result = run(service, aws, lambda_context, "tiny/in/batch.npy", files.npy(x))
    assert result["status"] == "out" and result["requests"] == 37
    assert_rows_match(get_lines(aws, "tiny/out/batch.npy.jsonl"), expected_probs(model, x))
    assert keys(aws, "tiny/errors/") == []


def test_npy_float64_is_cast_to_the_model_dtype(service, aws, model, lambda_context):
    x = files.rows(5).astype(np.float64)
    run(service, aws, lambda_context, "tiny/in/f64.npy", files.npy(x))
    assert_rows_match(get_lines(aws, "tiny/out/f64.npy.jsonl"), expected_probs(model, x.astype(np.float32)))


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "deflated"])
def test_npz_arrays_keyed_by_input_name(service, aws, model, lambda_context, compressed):
    x = files.rows(50, seed=3)
    run(service, aws, lambda_context, "tiny/in/sub/dir/f.npz", files.npz(compressed=compressed, x=x))
    assert_rows_match(get_lines(aws, "tiny/out/sub/dir/f.npz.jsonl"), expected_probs(model, x))


def test_npz_chunks_smaller_than_the_file_keep_row_order(service, aws, model, lambda_context):
    # given a chunk of 7 rows for a 50-row compressed file
    service.job.max_chunk_rows = 7
    x = files.rows(50, seed=4)
    run(service, aws, lambda_context, "tiny/in/c.npz", files.npz(compressed=True, x=x))
    assert_rows_match(get_lines(aws, "tiny/out/c.npz.jsonl"), expected_probs(model, x))
    assert service.job.chunks_run == 8


@pytest.mark.parametrize("header", [None, ["a", "b", "c", "d"]], ids=["no-header", "header"])
def test_csv_one_request_per_row(service, aws, model, lambda_context, header):
    x = files.rows(12, seed=1)
    body = files.csv(x.tolist(), header=header).replace(b"\n", b"\n\n", 1)  # a blank line is ignored
    result = run(service, aws, lambda_context, "tiny/in/table.csv", body)
    assert result["requests"] == 12
    assert_rows_match(get_lines(aws, "tiny/out/table.csv.jsonl"), expected_probs(model, x))


def test_jsonl_each_line_is_a_v2_request(service, aws, model, lambda_context):
    # given requests of 1, 3 and 2 rows, one with an id and one asking for the output by name
    xs = [files.rows(1, seed=1), files.rows(3, seed=2), files.rows(2, seed=3)]
    requests = [files.v2_request(xs[0], id="first"), files.v2_request(xs[1]),
                files.v2_request(xs[2], outputs=[{"name": "probs"}])]
    run(service, aws, lambda_context, "tiny/in/reqs.jsonl", files.jsonl(requests))
    lines = get_lines(aws, "tiny/out/reqs.jsonl.jsonl")
    assert [line["row"] for line in lines] == [0, 1, 2]
    assert lines[0]["id"] == "first" and "id" not in lines[1]
    for line, x in zip(lines, xs, strict=True):
        (tensor,) = line["outputs"]
        assert tensor["shape"] == [len(x), 3]
        np.testing.assert_allclose(np.reshape(tensor["data"], (len(x), 3)), expected_probs(model, x), rtol=1e-6)


def test_jsonl_output_matches_the_http_path(service, aws, model, lambda_context):
    from layers.v2_wire import infer_request

    request = files.v2_request(files.rows(2, seed=9))
    run(service, aws, lambda_context, "tiny/in/one.jsonl", files.jsonl([request]))
    (line,) = get_lines(aws, "tiny/out/one.jsonl.jsonl")
    assert json.loads(json.dumps(infer_request(model, request)["outputs"])) == line["outputs"]


def test_uppercase_extension_is_accepted(service, aws, lambda_context):
    assert run(service, aws, lambda_context, "tiny/in/X.NPY", files.npy(files.rows(2)))["status"] == "out"
