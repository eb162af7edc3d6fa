"""The one observability setup every entry point takes from layers/observability.py."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.metrics.provider.cold_start import reset_cold_start_flag

from layers import names, observability


@pytest.fixture
def obs(monkeypatch):
    monkeypatch.delenv(names.ENV_POWERTOOLS_SERVICE, raising=False)
    monkeypatch.delenv("LAMBDA_TASK_ROOT", raising=False)
    observability.reset()
    reset_cold_start_flag()
    yield observability.setup("modelfn-unit")
    observability.reset()


def emf_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if '"_aws"' in line]


def test_setup_is_one_per_process(obs):
    assert observability.setup() is obs and obs.service == "modelfn-unit"
    assert obs.tracer is None  # outside Lambda tracing is off and the X-Ray SDK is never imported


def test_entry_point_records_cold_start_once_and_one_record_per_request(obs, lambda_context, capsys):
    # given a handler wrapped by the shared setup, bound to a model
    obs.bind_model("digits", "abc123def456")

    def handler(event, context):
        obs.count("BatchSize", event["rows"])
        obs.record_request(latency_ms=1.5, request_id=context.aws_request_id, status=200, path="/p")
        return {"ok": True}

    wrapped = obs.entry_point(handler)
    # when it is called twice
    assert wrapped({"rows": 4}, lambda_context) == {"ok": True}
    wrapped({"rows": 2}, lambda_context)
    # then ColdStart is recorded once (Powertools' metric: function_name + service) and each call
    # is one record with the model dimension, the version and the request id
    records = emf_lines(capsys.readouterr().out)
    cold = [r for r in records if "ColdStart" in r]
    calls = [r for r in records if "BatchSize" in r]
    assert len(cold) == 1 and cold[0]["function_name"] == lambda_context.function_name
    assert [r["BatchSize"] for r in calls] == [[4.0], [2.0]]
    assert all(r["model"] == "digits" and r["model_version"] == "abc123def456" for r in calls)
    assert calls[0]["request_id"] == lambda_context.aws_request_id and calls[0]["Latency"] == [1.5]
    # one dimension set; CloudWatch names a metric by the set, whatever the order (Powertools
    # keeps dimensions per process, so another module's Metrics may have added service first)
    assert [sorted(d) for d in calls[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"]] == [["model", "service"]]


def test_logger_carries_the_request_id_and_model(obs, lambda_context):
    obs.bind_model("digits", "abc123def456")
    seen = {}

    def handler(event, context):
        seen.update(obs.logger.get_current_keys())  # what every log line of the request carries
        obs.count("BatchSize")

    obs.entry_point(handler)({}, lambda_context)
    line = seen
    assert line["function_request_id"] == lambda_context.aws_request_id
    assert line["model_name"] == "digits" and line["model_version"] == "abc123def456"


def test_error_counts_by_class(obs, lambda_context, capsys):
    from layers.errors import BadRequest

    wrapped = obs.entry_point(lambda event, context: obs.error(BadRequest("bad")))
    wrapped({}, lambda_context)
    assert any(r.get("ErrorsBadRequest") == [1.0] for r in emf_lines(capsys.readouterr().out))


def test_the_original_factories_still_work(obs):
    assert observability.make_logger().service == observability.service_name()
    assert observability.make_metrics().namespace == names.METRICS_NAMESPACE
    assert observability.make_tracer() is None and not observability.tracing_enabled()


def test_the_request_record_is_the_line_powertools_writes(obs, lambda_context, capsys):
    # given a request that counts two metrics (one twice) and records itself
    obs.bind_model("digits", "abc123def456")

    def handler(event, context):
        obs.count("BatchSize", 3)
        obs.count("PayloadBytes", 120, unit="Bytes")
        obs.count("BatchSize", 5)
        obs.record_request(latency_ms=0.25, request_id="r-1", status=200, path="/v2/models/digits/infer")

    obs.entry_point(handler)({}, lambda_context)
    ours = [r for r in emf_lines(capsys.readouterr().out) if "Latency" in r]
    # when Powertools itself serializes the same metrics, dimensions and metadata
    m = obs.metrics
    m.add_metric(name="BatchSize", unit="Count", value=3)
    m.add_metric(name="PayloadBytes", unit="Bytes", value=120)
    m.add_metric(name="BatchSize", unit="Count", value=5)
    m.add_metric(name="Latency", unit="Milliseconds", value=0.25)
    for key, value in {"request_id": "r-1", "model_version": "abc123def456", "path": "/v2/models/digits/infer",
                       "status": 200}.items():
        m.add_metadata(key=key, value=value)
    theirs = m.serialize_metric_set()
    m.clear_metrics()
    # then the one line per request says exactly what Powertools' line says (timestamp aside)
    assert len(ours) == 1
    assert abs(ours[0]["_aws"].pop("Timestamp") - theirs["_aws"].pop("Timestamp")) < 60_000
    assert ours[0] == json.loads(json.dumps(theirs))


def test_a_new_model_binding_changes_the_next_records_dimension(obs, lambda_context, capsys):
    wrapped = obs.entry_point(lambda event, context: obs.count("BatchSize", event["n"]))
    obs.bind_model("first", "v1")
    wrapped({"n": 1}, lambda_context)
    obs.bind_model("second", "v2")
    wrapped({"n": 2}, lambda_context)
    records = [r for r in emf_lines(capsys.readouterr().out) if "BatchSize" in r]
    assert [(r["model"], r["BatchSize"]) for r in records] == [("first", [1.0]), ("second", [2.0])]


def test_metrics_disabled_writes_no_request_record(monkeypatch, lambda_context, capsys):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    observability.reset()
    obs = observability.setup("modelfn-unit")
    try:
        obs.entry_point(lambda event, context: obs.count("BatchSize"))({}, lambda_context)
        assert not [r for r in emf_lines(capsys.readouterr().out) if "BatchSize" in r]
    finally:
        observability.reset()


def test_every_request_logs_its_own_context_keys(obs, lambda_context):
    import dataclasses

    from aws_lambda_powertools.logging import logger as powertools_logger

    powertools_logger.is_cold_start = True
    seen = []
    wrapped = obs.entry_point(lambda event, context: seen.append(dict(obs.logger.get_current_keys())))
    second = dataclasses.replace(lambda_context, aws_request_id="second-request",
                                 invoked_function_arn=lambda_context.invoked_function_arn + ":live")
    wrapped({}, lambda_context)
    wrapped({}, second)
    assert [(k["function_request_id"], k["cold_start"]) for k in seen] == [
        (lambda_context.aws_request_id, True), ("second-request", False)]
    assert seen[1]["function_arn"].endswith(":live")
    assert seen[1]["function_name"] == lambda_context.function_name
    assert seen[1]["function_memory_size"] == lambda_context.memory_limit_in_mb


def test_a_snapstart_restore_makes_the_next_request_cold_again(obs, lambda_context):
    import dataclasses

    from aws_lambda_powertools.logging import logger as powertools_logger

    # given an entry point that served its cold request and a warm one
    powertools_logger.is_cold_start = True
    seen = []
    wrapped = obs.entry_point(lambda event, context: seen.append(obs.logger.get_current_keys()["cold_start"]))
    for i in range(2):
        wrapped({}, dataclasses.replace(lambda_context, aws_request_id=f"r{i}"))
    # when a SnapStart restore resets Powertools' flag (layers.snapstart) and two more requests come
    powertools_logger.is_cold_start = True
    for i in range(2, 4):
        wrapped({}, dataclasses.replace(lambda_context, aws_request_id=f"r{i}"))
    # then the first after the restore is logged cold and the next warm again
    assert seen == [True, False, True, False]


def test_log_event_setting_still_logs_the_event(monkeypatch, lambda_context):
    monkeypatch.setenv("POWERTOOLS_LOGGER_LOG_EVENT", "true")
    observability.reset()
    obs = observability.setup("modelfn-unit")
    logged = []
    monkeypatch.setattr(obs.logger, "info", lambda msg, *a, **kw: logged.append(msg))
    try:
        obs.entry_point(lambda event, context: None)({"marker": "event-body-42"}, lambda_context)
        assert {"marker": "event-body-42"} in logged
    finally:
        observability.reset()
