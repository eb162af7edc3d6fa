"""The local stack's functions get Lambda's environment, but share one host: no spinning workers."""

from __future__ import annotations

from infra.local.function_pool import FunctionSpec
from layers import names


def spec(memory_mb: int) -> FunctionSpec:
    return FunctionSpec(name="modelfn-digits-api", handler="functions.api.handler.handler", cwd="/tmp", env={},
                        memory_mb=memory_mb)


def test_local_functions_do_not_spin_even_with_lambdas_memory(monkeypatch):
    monkeypatch.delenv(names.ENV_ORT_SPINNING, raising=False)
    env = spec(10240).lambda_env("127.0.0.1:9001", 0)
    # Lambda's memory share would turn spinning on (layers/model.py); the local stack says no
    assert env[names.ENV_LAMBDA_MEMORY] == "10240" and env[names.ENV_ORT_SPINNING] == "0"


def test_a_developer_can_still_ask_for_spinning(monkeypatch):
    monkeypatch.setenv(names.ENV_ORT_SPINNING, "1")
    assert spec(2048).lambda_env("127.0.0.1:9001", 0)[names.ENV_ORT_SPINNING] == "1"
