"""Lambda vs SageMaker from measured facts, and the monthly cost estimate."""

from __future__ import annotations

import pytest

from infra.build import fit
from layers import names

SIG = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}],
       "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 10]}]}
SMALL = {"artifact_bytes": 1_000_000, "peak_rss_mb": 150.0, "init_s": 0.2, "p99_ms": 2.0,
         "signature": SIG, "instance_type": "ml.m5.large", "requested": "auto", "timeout_s": 30}


def test_a_small_model_fits_lambda_with_every_check_passed():
    target, reasons, facts = fit.recommend(**SMALL)
    assert target == "lambda" and all(r.startswith("✓") for r in reasons)
    assert facts["memory_mb"] == fit.MEMORY_FLOOR_MB and facts["gpu_required"] is False
    assert facts["image_bytes"] > SMALL["artifact_bytes"] + fit.LAMBDA_PYTHON_BASE_IMAGE_BYTES


@pytest.mark.parametrize(("change", "needle"), [
    ({"artifact_bytes": names.LAMBDA_MAX_IMAGE_BYTES}, "image"),
    ({"peak_rss_mb": 9000.0}, "needs"),
    ({"init_s": 12.0}, "init"),
    ({"p99_ms": 31_000.0}, "p99"),
    ({"signature": {**SIG, "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 512, 512]}]}}, "request"),
    ({"instance_type": "ml.g5.xlarge"}, "GPU"),
])
def test_each_hard_limit_sends_auto_to_sagemaker_and_says_which(change, needle):
    target, reasons, _ = fit.recommend(**{**SMALL, **change})
    failed = [r for r in reasons if r.startswith("✗")]
    assert target == "sagemaker" and len(failed) == 1 and needle in failed[0]


def test_memory_follows_peak_rss_with_headroom():
    _, _, facts = fit.recommend(**{**SMALL, "peak_rss_mb": 2000.0})
    assert facts["memory_mb"] == 3008 and facts["memory_mb"] % 64 == 0


def test_explicit_lambda_that_does_not_fit_is_kept_with_a_warning():
    target, reasons, _ = fit.recommend(**{**SMALL, "init_s": 12.0, "requested": "lambda"})
    assert target == "lambda" and any(r.startswith("warning: ✗ init") for r in reasons)


def test_cost_lambda_is_cheaper_at_low_rates_sagemaker_at_high_rates():
    _, _, facts = fit.recommend(**SMALL)
    low = fit.monthly_cost(facts, p50_ms=5.0, rps=0.1)
    high = fit.monthly_cost(facts, p50_ms=5.0, rps=500.0)
    assert low["cheaper"] == "lambda" and high["cheaper"] == "sagemaker"
    requests = 0.1 * fit.SECONDS_PER_MONTH
    # below 1,769 MB Lambda gives a fraction of a vCPU, so the model part runs slower
    billed_s = (5.0 * fit.LAMBDA_MB_PER_VCPU / fit.MEMORY_FLOOR_MB + fit.LAMBDA_OVERHEAD_MS) / 1000
    expected = requests * billed_s * fit.MEMORY_FLOOR_MB / 1024 * fit.LAMBDA_PRICE_PER_GB_S["x86_64"] \
        + requests * (fit.LAMBDA_PRICE_PER_REQUEST + fit.HTTP_API_PRICE_PER_REQUEST)
    assert low["lambda"]["usd"] == pytest.approx(expected, abs=0.005)
    assert low["lambda"]["billed_ms"] == pytest.approx(billed_s * 1000, abs=0.01)
    assert low["sagemaker"]["usd"] == pytest.approx(0.115 * fit.HOURS_PER_MONTH)
    assert high["sagemaker"]["instances"] > 1


def test_the_init_check_counts_the_sha256_check_every_function_runs_at_init():
    # given a model whose session starts fast but whose artifact takes long to hash
    target, reasons, facts = fit.recommend(**{**SMALL, "init_s": 10.5, "hash_s": 9.8})
    # then the init check fails on the total and says how much of it is the hash
    [failed] = [r for r in reasons if r.startswith("✗")]
    assert target == "sagemaker" and "init 10.50 s (sha256 check 9.80 s)" in failed
    assert facts["hash_s"] == 9.8


def test_the_probe_times_the_hash_inside_init(tiny_onnx, tmp_path):
    import numpy as np

    from infra.build import measure

    facts = measure.probe(tiny_onnx, {"x": np.ones((1, 4), np.float32)}, tmp_path)
    assert 0 < facts["hash_s"] <= facts["init_s"]
