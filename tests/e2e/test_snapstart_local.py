"""The local stack starts SnapStart functions the way Lambda does: init, the before-snapshot
hooks, a restore, the after-restore hooks, then invokes; on-demand functions run no hooks."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from infra.local.function_pool import FunctionPool, FunctionSpec
from layers import names
from tests.e2e.conftest import REPO_ROOT, pool_for

ORDER_HANDLER = "tests.e2e.handlers.snapstart_order.handler"


def _invoke(pool: FunctionPool, event: dict | None = None) -> dict:
    outcome = pool.invoke(json.dumps(event or {"rawPath": "/"}).encode(), acquire_timeout_s=30)
    assert outcome.ok, outcome.error_message
    return json.loads(outcome.payload)


@pytest.mark.parametrize(("snapstart", "expected"), [
    (True, ["init", "before_snapshot", "after_restore", "invoke", "invoke"]),
    (False, ["init", "invoke", "invoke"]),
])
def test_hooks_run_in_lambdas_order_only_under_snapstart(snapstart, expected):
    base = pool_for(ORDER_HANDLER, "modelfn-order-api").spec
    pool = FunctionPool(replace(base, snapstart=snapstart))
    try:
        pool.start()
        assert pool.failure is None
        _invoke(pool)
        assert json.loads(_invoke(pool)["body"]) == expected
    finally:
        pool.stop()


def test_api_function_primes_before_the_snapshot_and_counts_the_restore_as_the_cold_start(tiny_model_dir):
    # given the real API handler on a tiny model, started as a SnapStart environment
    lines: list[str] = []
    spec = FunctionSpec(name="modelfn-tiny-api", handler=names.API_HANDLER, cwd=str(REPO_ROOT),
                        env={names.ENV_MODEL_DIR: str(tiny_model_dir), "POWERTOOLS_TRACE_DISABLED": "true"},
                        snapstart=True)
    pool = FunctionPool(spec, log=lines.append)
    try:
        # when it starts and serves two requests
        pool.start()
        assert pool.failure is None
        # the function's output reaches `lines` through a reader thread, which may lag the
        # start under load: wait (bounded) for the restore line the runtime wrote before serving
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("restored from snapshot" in ln for ln in lines):
            time.sleep(0.05)
        booted = list(lines)
        event = {"version": "2.0", "routeKey": "$default", "rawPath": "/v2/health/live",
                 "rawQueryString": "", "headers": {},
                 "requestContext": {"http": {"method": "GET", "path": "/v2/health/live"},
                                    "requestId": "r1", "stage": "$default"},
                 "isBase64Encoded": False}
        assert _invoke(pool, event)["statusCode"] == 200
        assert _invoke(pool, event)["statusCode"] == 200
    finally:
        pool.stop()
    # then it primed before the snapshot and was restored before the first request ...
    primed = [i for i, ln in enumerate(booted) if "snapstart: primed before snapshot" in ln]
    restored = [i for i, ln in enumerate(booted) if "snapstart: restored from snapshot" in ln]
    assert primed and restored and primed[0] < restored[0], booted
    # ... and the first request after the restore, not the priming, reports the cold start
    cold = [json.loads(ln)["ColdStart"] for ln in lines if '"ColdStart"' in ln and ln.startswith("{")]
    assert [v[0] if isinstance(v, list) else v for v in cold] == [1.0], lines
