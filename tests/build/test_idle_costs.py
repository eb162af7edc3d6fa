"""What bills while idle is in the monthly estimate, per target and feature (issue 22)."""

from __future__ import annotations

import pytest

from infra.build import fit
from infra.build.idle import (
    ALARM_USD,
    KMS_KEY_USD,
    PROVISIONED_USD_PER_GB_S,
    SECONDS_PER_MONTH,
    SNAPSTART_CACHE_USD_PER_GB_S,
    idle_costs,
)


def _by_item(items) -> dict[str, float]:
    return {i.item: i.usd for i in items}


def test_snapstart_and_provisioned_concurrency_bill_all_month_at_the_functions_memory():
    items = _by_item(idle_costs(target="lambda", memory_mb=2048, snapstart=True))
    assert items["SnapStart cache"] == pytest.approx(2 * SECONDS_PER_MONTH * SNAPSTART_CACHE_USD_PER_GB_S)
    assert items["CloudWatch alarms"] == pytest.approx(5 * ALARM_USD)
    assert "provisioned concurrency" not in items
    pc = _by_item(idle_costs(target="lambda", memory_mb=1024, provisioned=2, architecture="arm64"))
    assert pc["provisioned concurrency"] == pytest.approx(2 * SECONDS_PER_MONTH * PROVISIONED_USD_PER_GB_S["arm64"])
    assert "SnapStart cache" not in pc


def test_images_kept_in_the_asset_repository_and_training_keys_are_counted():
    items = _by_item(idle_costs(target="sagemaker", memory_mb=0, image_bytes=8 * 1024**3, instance_hourly=1.408,
                                trained=True, model_bytes=100 * 1024**2))
    assert items["serving image in the CDK asset repository"] > 8 * 0.10  # GBs per kept GPU image
    assert items["KMS key (training)"] == KMS_KEY_USD
    assert items["asynchronous endpoint after each create"] == pytest.approx(1.408 * 15 / 60 * 4)
    assert items["versioned training artifacts"] > 0


def test_the_monthly_estimate_adds_idle_costs_and_compares_totals():
    facts = {"memory_mb": 2048, "instance_type": "ml.m5.large"}
    idle = {"lambda": idle_costs(target="lambda", memory_mb=2048, snapstart=True, provisioned=4),
            "sagemaker": idle_costs(target="sagemaker", memory_mb=2048, instance_hourly=0.115)}
    cost = fit.monthly_cost(facts, p50_ms=5.0, rps=0.01, idle=idle)
    lam = cost["lambda"]
    assert lam["total_usd"] == pytest.approx(lam["usd"] + lam["idle_usd"], abs=0.011)
    assert lam["idle_usd"] > 50  # 4 × 2 GB provisioned all month: idle dominates at 0.01 req/s
    assert {i["item"] for i in lam["idle"]} >= {"provisioned concurrency", "SnapStart cache"}
    # traffic alone says Lambda; with what bills idle, the always-on instance is cheaper
    assert lam["usd"] < cost["sagemaker"]["usd"]
    assert cost["cheaper"] == ("lambda" if lam["total_usd"] <= cost["sagemaker"]["total_usd"] else "sagemaker")
