"""Every unreadable object goes whole to errors/ with a reason that names the problem and fix."""

from __future__ import annotations

import numpy as np
import pytest

from layers.batch.service import BatchService
from tests.batch import files
from tests.batch.conftest import BUCKET, get_json, keys, s3_event, upload

BAD_INPUTS = {
    "unsupported extension": ("tiny/in/data.parquet", b"PAR1", ["unsupported file extension '.parquet'", ".npz"]),
    "no extension": ("tiny/in/data", b"123", ["unsupported file extension '(none)'"]),
    "npy wrong width": ("tiny/in/w.npy", files.npy(np.zeros((3, 5), np.float32)),
                        ["shape [3, 5]", "dimension 1", "must be 4"]),
    "npy wrong rank": ("tiny/in/r.npy", files.npy(np.zeros(4, np.float32)), ["rank 2", "reshape"]),
    "npy strings": ("tiny/in/s.npy", files.npy(np.array([["a"] * 4])), ["<U1", "numbers", "astype"]),
    "npy complex": (
        "tiny/in/c.npy", files.npy(np.zeros((2, 4), np.complex64)), ["complex64", "FP32", "astype(np.float32)"]),
    "npy truncated": ("tiny/in/t.npy", files.npy(files.rows(10))[:-7], ["truncated", "10 rows"]),
    "npy not numpy": ("tiny/in/j.npy", b"not an array at all", ["not a readable .npy"]),
    "npy NaN row": ("tiny/in/n.npy", files.npy(np.vstack([files.rows(3), [[np.nan, 0, 0, 0]]]).astype(np.float32)),
                    ["row 3", "NaN", "input 'x'"]),
    "npz not a zip": ("tiny/in/z.npz", b"PK\x03\x04 broken", ["not a readable zip"]),
    "npz wrong key": ("tiny/in/k.npz", files.npz(features=files.rows(2)),
                      ["missing array(s) ['x']", "unknown array(s) ['features']", "x=..."]),
    "csv bad cell": ("tiny/in/b.csv", b"f1,f2,f3,f4\n1,2,3,4\n5,six,7,8\n", ["line 3, column 2 ('f2')", "'six'", "not a number"]),
    "csv short row": ("tiny/in/s.csv", b"1,2,3,4\n1,2,3\n", ["line 2", "3 values", "needs 4"]),
    "csv infinite": ("tiny/in/i.csv", b"1,2,3,inf\n", ["line 1, column 4", "not finite"]),
    "csv not utf-8": ("tiny/in/u.csv", b"1,2,3,\xff\n", ["not UTF-8"]),
    "jsonl bad json": ("tiny/in/b.jsonl", files.jsonl([files.v2_request(files.rows(1))]) + b"{oops\n",
                       ["line 2 of the .jsonl is not valid JSON"]),
    "jsonl wrong shape": ("tiny/in/s.jsonl", files.jsonl([files.v2_request(np.zeros((1, 3)))]),
                          ["line 1 of the .jsonl", "input 'x'", "dimension 1 must be 4"]),
    "jsonl unknown input": ("tiny/in/u.jsonl", b'{"inputs": [{"name": "y", "shape": [1], "datatype": "FP32", "data": [1]}]}\n',
                            ["line 1", "unknown input 'y'"]),
    "jsonl unknown output": ("tiny/in/o.jsonl", files.jsonl([files.v2_request(files.rows(1), outputs=[{"name": "nope"}])]),
                             ["line 1", "unknown output(s) ['nope']"]),
    "jsonl classification": ("tiny/in/k.jsonl", files.jsonl([files.v2_request(
        files.rows(1), outputs=[{"name": "probs", "parameters": {"classification": 2}}])]),
        ["line 1", "classification extension is not supported"]),
    "jsonl no inputs": ("tiny/in/e.jsonl", b'{"id": "a"}\n', ["line 1", 'needs "inputs"']),
    # an empty object is not an empty success: no rows means nothing was run, which the user must see
    "npy no rows": ("tiny/in/empty.npy", files.npy(np.zeros((0, 4), np.float32)), ["holds no rows", "at least one row"]),
    "jsonl empty": ("tiny/in/empty.jsonl", b"", ["holds no rows (0 bytes)"]),
    "csv header only": ("tiny/in/h.csv", b"f1,f2,f3,f4\n", ["holds no rows"]),
}


@pytest.mark.parametrize(("key", "error_key"), [
    ("tiny/in/a/../../../other-model/out/x.jsonl", "tiny/errors/a%2F..%2F..%2F..%2Fother-model%2Fout%2Fx.jsonl.json"),
    ("tiny/in/a//b.npy", "tiny/errors/a%2F%2Fb.npy.json"),
    ("tiny/in/./c.npy", "tiny/errors/.%2Fc.npy.json"),
])
def test_key_with_dot_dot_or_empty_segments_gets_a_flat_error_record_naming_it(service, aws, lambda_context,
                                                                                key, error_key):
    # given a valid file under a key that `aws s3 sync` would write outside the model's folder
    result = service.handle(s3_event(upload(aws, key, files.npy(files.rows(2)))), lambda_context)["results"][0]
    # then: not run; one error record under a flat name with no '..' or empty segment, naming the key
    assert result["status"] == "error"
    assert keys(aws, "tiny/out/") == [] and keys(aws, "tiny/errors/") == [error_key]
    assert not any(seg in ("", ".", "..") for seg in error_key.split("/"))
    reason = get_json(aws, error_key)["reason"]
    assert repr(key) in reason and "without '.', '..' or empty segments" in reason
    assert keys(aws, "other-model/") == []


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_object_goes_to_errors_with_a_clear_reason(service, aws, lambda_context, case):
    key, body, fragments = BAD_INPUTS[case]
    relative = key.removeprefix("tiny/in/")
    # when
    result = service.handle(s3_event(upload(aws, key, body)), lambda_context)["results"][0]
    # then: exactly one error record, nothing in out/
    assert result["status"] == "error"
    assert keys(aws, "tiny/out/") == []
    assert keys(aws, "tiny/errors/") == [f"tiny/errors/{relative}.json"]
    record = get_json(aws, f"tiny/errors/{relative}.json")
    for fragment in fragments:
        assert fragment in record["reason"], record["reason"]
    assert record["model"] == "tiny" and record["version"] == service.model.version
    assert record["input"] == f"s3://{BUCKET}/{key}"
    assert record["request_id"] == lambda_context.aws_request_id
    assert record["retryable"] is False


def test_csv_and_npy_need_a_single_input_model(aws, tmp_path, lambda_context):
    from layers.model import load_model
    from tests.batch.models import two_input_model

    service = BatchService(load_model(two_input_model(tmp_path / "two")))
    service.handle(s3_event(upload(aws, "two/in/a.npy", files.npy(files.rows(2)))), lambda_context)
    assert "takes 2 inputs ['x', 'bias']" in get_json(aws, "two/errors/a.npy.json")["reason"]
    assert ".npz keyed by input name" in get_json(aws, "two/errors/a.npy.json")["reason"]


def test_npz_arrays_must_agree_on_rows(aws, tmp_path, lambda_context):
    from layers.model import load_model
    from tests.batch.models import two_input_model

    service = BatchService(load_model(two_input_model(tmp_path / "two")))
    body = files.npz(x=files.rows(3), bias=files.rows(2))
    service.handle(s3_event(upload(aws, "two/in/m.npz", body)), lambda_context)
    assert "different row counts {'x': 3, 'bias': 2}" in get_json(aws, "two/errors/m.npz.json")["reason"]


def test_multi_input_npz_runs(aws, tmp_path, lambda_context):
    from layers.model import load_model
    from tests.batch.conftest import get_lines
    from tests.batch.models import two_input_model

    service = BatchService(load_model(two_input_model(tmp_path / "two")))
    x, bias = files.rows(4, seed=1), files.rows(4, seed=2)
    service.handle(s3_event(upload(aws, "two/in/ok.npz", files.npz(x=x, bias=bias))), lambda_context)
    lines = get_lines(aws, "two/out/ok.npz.jsonl")
    np.testing.assert_allclose([line["outputs"][0]["data"] for line in lines], x + bias, rtol=1e-6)


def test_a_bad_row_found_during_inference_leaves_no_partial_output(service, aws, lambda_context, monkeypatch):
    # given a result big enough for multipart, and a model call that fails on the last chunk
    from layers.errors import BadRequest

    real_infer, calls, aborted = service.model.infer, [], []

    class FailsOnChunk12:
        def __getattr__(self, name):
            return getattr(service.model, name)

        def infer(self, inputs, output_names=None, **kw):
            calls.append(1)
            if len(calls) == 12:
                raise BadRequest("input 'x' is out of range")
            return real_infer(inputs, output_names, **kw)

    job = service.job
    job.model, job.max_chunk_rows, job.part_size = FailsOnChunk12(), 5000, 5 * 1024 * 1024
    real_abort = job.s3.abort_multipart_upload
    monkeypatch.setattr(job.s3, "abort_multipart_upload", lambda **kw: aborted.append(kw) or real_abort(**kw))
    # when
    service.handle(s3_event(upload(aws, "tiny/in/big.npy", files.npy(files.rows(60_000)))), lambda_context)
    # then: the upload that already held a part was aborted, and only the error record exists
    assert len(aborted) == 1
    assert keys(aws, "tiny/out/") == []
    assert "requests 55000–59999" in get_json(aws, "tiny/errors/big.npy.json")["reason"]
    assert aws.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
