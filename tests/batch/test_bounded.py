"""Memory stays at one chunk whatever the file size: chunking follows the budget, not the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from layers.batch.chunking import MAX_CHUNK_ROWS, rows_per_chunk
from tests.batch import files
from tests.batch.conftest import get_lines, s3_event, upload

REPO = Path(__file__).resolve().parents[2]
FEATURES = 256  # 1 KiB per row: a 32 MB input is 32,768 rows


@pytest.fixture
def wide_model(tmp_path):
    from layers.model import load_model
    from tests.conftest import make_tiny_onnx, write_manifest

    make_tiny_onnx(tmp_path / "wide" / "model.onnx", in_features=FEATURES)
    write_manifest(tmp_path / "wide", "wide", [{"name": "x", "datatype": "FP32", "shape": [-1, FEATURES]}],
                   [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}])
    return load_model(tmp_path / "wide")


def write_rows(path: Path, rows: int, *, compressed: bool | None = None) -> Path:
    """A float32 [rows, FEATURES] array written in slices, so the test itself stays small."""
    if compressed is None:
        header = {"descr": "<f4", "fortran_order": False, "shape": (rows, FEATURES)}
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            for start in range(0, rows, 4096):
                n = min(4096, rows - start)
                f.write(np.random.default_rng(start).standard_normal((n, FEATURES), dtype=np.float32).tobytes())
        return path
    arr = np.random.default_rng(0).standard_normal((rows, FEATURES), dtype=np.float32)
    path.write_bytes(files.npz(compressed=compressed, x=arr))
    return path


#: the measurement, in a fresh interpreter: tracemalloc counts every thread of its process, and a
#: test worker may still host other tests' background threads (a session's local stack polling)
MEASURE = """
import sys, tracemalloc
from pathlib import Path
from layers.batch.encode import encode_batch
from layers.batch.readers import open_reader
from layers.model import load_model

path, suffix, model_dir, chunk = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
model = load_model(model_dir)
reader = open_reader(path, suffix, model)
tracemalloc.start()
try:
    reader.validate(chunk)
    chunks = lines = 0
    for batch in reader.batches(chunk):
        lines += encode_batch(batch, model.infer(batch.inputs)).count(b"\\n")
        chunks += 1
    _, peak = tracemalloc.get_traced_memory()
finally:
    tracemalloc.stop()
    reader.close()
print(lines, chunks, peak)
"""


@pytest.mark.parametrize("suffix, compressed", [(".npy", None), (".npz", True)], ids=["npy", "npz-deflated"])
def test_peak_memory_is_one_chunk_for_a_file_many_times_the_budget(wide_model, tmp_path, suffix, compressed):
    # given a 32 MB input and a 1 MB budget
    path = write_rows(tmp_path / f"big{suffix}", 32_768, compressed=compressed)
    budget = 1024 * 1024
    chunk = rows_per_chunk(input_row_bytes=FEATURES * 4, output_row_bytes=3 * 28, budget_bytes=budget, batch=None)
    # when every chunk is validated, run and encoded (in a process of its own, see MEASURE)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path), suffix, str(tmp_path / "wide"), str(chunk)],
                         capture_output=True, text=True, check=True, cwd=REPO, env=_env())
    lines, chunks, peak = (int(v) for v in out.stdout.split()[-3:])
    # then memory peaked at a few chunks' worth, far below the 32 MB file
    assert lines == 32_768 and chunks >= 32
    assert peak < 8 * budget, f"peak {peak / 1e6:.1f} MB for a 32 MB file"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def test_chunk_size_follows_the_budget_and_a_fixed_batch():
    assert rows_per_chunk(input_row_bytes=1024, output_row_bytes=100, budget_bytes=1 << 20, batch=None) == (1 << 20) // 2148
    assert rows_per_chunk(input_row_bytes=16, output_row_bytes=84, budget_bytes=1 << 30, batch=None) == MAX_CHUNK_ROWS
    assert rows_per_chunk(input_row_bytes=1 << 30, output_row_bytes=0, budget_bytes=1 << 20, batch=None) == 1
    assert rows_per_chunk(input_row_bytes=16, output_row_bytes=84, budget_bytes=1 << 20, batch=8) == 8


def test_budget_comes_from_the_environment(monkeypatch):
    from layers import names
    from layers.batch.chunking import memory_budget_bytes

    monkeypatch.setenv(names.ENV_BATCH_MEMORY_BUDGET_MB, "32")
    assert memory_budget_bytes() == 32 << 20
    monkeypatch.delenv(names.ENV_BATCH_MEMORY_BUDGET_MB)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")
    assert memory_budget_bytes() == 512 << 20
    monkeypatch.setenv(names.ENV_BATCH_MEMORY_BUDGET_MB, "lots")
    with pytest.raises(ValueError, match="not a number of MB"):
        memory_budget_bytes()


def test_job_runs_a_large_object_in_many_chunks_and_multipart(aws, wide_model, tmp_path, lambda_context):
    from layers.batch.service import BatchService

    # given a 10 MB object and a 256 KB budget
    service = BatchService(wide_model)
    service.job.budget_bytes = 256 * 1024
    body = write_rows(tmp_path / "big.npy", 10_240).read_bytes()
    # when
    service.handle(s3_event(upload(aws, "wide/in/big.npy", body)), lambda_context)
    # then 10 MB went through in ≥ 40 chunks into one complete result
    assert service.job.chunks_run >= 40
    assert len(get_lines(aws, "wide/out/big.npy.jsonl")) == 10_240


def test_fixed_batch_model_pads_the_last_chunk(aws, tmp_path, lambda_context):
    from layers.batch.service import BatchService
    from layers.model import load_model
    from tests.batch.models import fixed_batch_model

    service = BatchService(load_model(fixed_batch_model(tmp_path / "fixed", batch=2)))
    x = files.rows(5)
    service.handle(s3_event(upload(aws, "fixed/in/odd.csv", files.csv(x.tolist()))), lambda_context)
    lines = get_lines(aws, "fixed/out/odd.csv.jsonl")
    assert [line["row"] for line in lines] == [0, 1, 2, 3, 4]
    assert service.job.chunks_run == 3


def test_a_result_larger_than_a_part_is_completed_from_several_parts(service, aws, lambda_context, monkeypatch):
    # given 60,000 rows (~9 MB of output lines), chunks of 5,000 rows and 5 MB parts
    service.job.part_size, service.job.max_chunk_rows = 5 * 1024 * 1024, 5000
    parts = []
    real = service.job.s3.upload_part
    monkeypatch.setattr(service.job.s3, "upload_part", lambda **kw: parts.append(kw["PartNumber"]) or real(**kw))
    # when
    service.handle(s3_event(upload(aws, "tiny/in/many.npy", files.npy(files.rows(60_000)))), lambda_context)
    # then
    assert parts == [1, 2]
    lines = get_lines(aws, "tiny/out/many.npy.jsonl")
    assert [line["row"] for line in lines] == list(range(60_000))
