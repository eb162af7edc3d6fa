"""Powertools Logger, Metrics and Tracer: the one observability setup of every entry point.

:func:`setup` returns the process's :class:`Observability` (built once; the API function,
the SageMaker server, batch and the proxy all take it from here) and
:meth:`Observability.entry_point` wraps a Lambda-style handler with what every entry point
records: the Logger's Lambda context (request id, cold start, function), the Metrics flush
with Powertools' ``ColdStart`` metric (dimensions ``function_name`` and ``service``, what the
dashboard graphs), and, where tracing can be on, a Tracer subsegment for the handler.
:meth:`Observability.bind_model` adds the model: ``model_name``/``model_version`` on every
log line, the ``model`` dimension on every metric, ``model``/``model_version`` annotations on
the trace. :meth:`Observability.record_request` is the per-request EMF record.

The per-request record: Powertools' ``add_metric`` validates each metric's name, unit and
resolution on every call and ``flush_metrics`` serializes the whole set with the stdlib's
``json``: together 18-80 µs a request (``bench/bench_request_path.py``), most of the API
handler's budget over ``session.run``. So :meth:`Observability.count` and
:meth:`Observability.record_request` keep this request's metrics in a small dict, and the
entry point writes them as one EMF line from a template that Powertools' own
``serialize_metric_set`` built (namespace, dimension sets, metric names and units: the
format stays Powertools'), made once per set of metric names and reused while the model's
dimensions stay the same; per request only the timestamp, values and metadata are filled
in and the line is written with orjson (stdlib ``json`` where orjson is absent: the
SageMaker proxy's zip). ``POWERTOOLS_METRICS_DISABLED`` is honoured as Powertools does.
Metrics added to Powertools' ``Metrics`` directly (the batch job's) and the ``ColdStart``
metric are still Powertools' own, flushed by it.

Service name and metrics namespace come from the env that ``infra/environment.py`` sets
(``POWERTOOLS_SERVICE_NAME`` / ``POWERTOOLS_METRICS_NAMESPACE``), with working defaults.

Costs per request, measured by ``bench/bench_api.py`` (table "Per-request observability") on
the shared 2-vCPU dev machine at load average ~21: the Logger's Lambda context 2.6 µs, the EMF
record (3 metrics, 4 metadata, flush) 18 µs, the whole entry point without tracer 20 µs, the
Tracer subsegment with the model annotations 42 µs (the X-Ray SDK re-reads the trace header on
every recorder call and sends the subsegment over UDP) — the Tracer only inside Lambda.

Tracer at init: constructing Powertools' ``Tracer`` imports the X-Ray SDK. Inside Lambda
that is ~50-80 ms with ``auto_patch=False`` (``bench/bench_coldstart.py``); with the default
auto-patching it also patches botocore/requests/httplib (~75 ms more) for calls the API
path never makes. Outside Lambda the SDK's recorder builds a botocore X-Ray client for
centralized sampling (~0.5 s) only to be disabled. So :func:`make_tracer` returns a Tracer
without auto-patching inside Lambda (unless ``POWERTOOLS_TRACE_DISABLED`` is true) and
``None`` elsewhere (SageMaker container, local stack, tests), where tracing would be off
anyway. A function that calls AWS (batch, proxy) patches what it uses:
``tracer.provider.patch(["botocore"])``.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import logger as _powertools_logger
from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider import cold_start
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.constants import MAX_METRICS
from aws_lambda_powertools.shared.functions import strtobool

from layers import names

Handler = Callable[[Any, Any], Any]
_LOG_EVENT_ENV = "POWERTOOLS_LOGGER_LOG_EVENT"

try:  # every model image has orjson; the SageMaker proxy's zip runs on the stdlib alone
    from orjson import dumps as _orjson_dumps

    def _emf_line(doc: dict) -> str:
        return _orjson_dumps(doc).decode()
except ImportError:  # pragma: no cover - exercised by the proxy's zip on Lambda
    def _emf_line(doc: dict) -> str:
        return json.dumps(doc, separators=(",", ":"))


def service_name(default: str | None = None) -> str:
    return os.environ.get(names.ENV_POWERTOOLS_SERVICE) or default or names.SERVICE_NAME


def make_logger(service: str | None = None) -> Logger:
    return Logger(service=service or service_name())


def make_metrics(service: str | None = None) -> Metrics:
    return Metrics(
        service=service or service_name(),
        namespace=os.environ.get(names.ENV_POWERTOOLS_NAMESPACE) or names.METRICS_NAMESPACE,
    )


def tracing_enabled() -> bool:
    """The rule Powertools applies (in Lambda, not SAM local, not disabled by env)."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower()
    in_lambda = bool(os.environ.get(names.ENV_LAMBDA_TASK_ROOT)) and not os.environ.get(names.ENV_SAM_LOCAL)
    return in_lambda and disabled not in ("1", "true", "yes", "on")


def make_tracer(service: str | None = None):
    """Powertools Tracer (no auto-patching) when tracing can be on, else ``None``."""
    if not tracing_enabled():
        return None
    from aws_lambda_powertools import Tracer

    return Tracer(service=service or service_name(), auto_patch=False)


class Observability:
    """The Logger, Metrics and (in Lambda) Tracer of one process, and how entry points use them."""

    def __init__(self, service: str | None = None) -> None:
        self.service = service or service_name()
        self.logger = make_logger(self.service)
        self.metrics = make_metrics(self.service)
        self.tracer = make_tracer(self.service)
        self.model_name = ""
        self.model_version = ""
        #: this request's metrics (name → (unit, values)) and metadata, written by :meth:`flush`
        self._pending: dict[str, tuple[str, list[float]]] = {}
        self._metadata: dict[str, Any] = {}
        #: EMF templates by metric names and units, valid for :attr:`_dimensions`
        self._templates: dict[tuple, tuple[dict, list]] = {}
        self._dimensions: dict[str, str] = {}
        self._metrics_disabled = is_metrics_disabled()  # env read once, as the function's config

    def bind_model(self, name: str, version: str) -> None:
        """Every log line, metric and trace from here on names this model."""
        self.model_name, self.model_version = name, version
        self.logger.append_keys(model_name=name, model_version=version)
        self.metrics.set_default_dimensions(model=name)

    def entry_point(self, handler: Handler) -> Handler:
        """``handler`` with the Logger's Lambda context, the Metrics flush (+ ``ColdStart`` on the
        first call of the process) and, where tracing is on, a subsegment annotated with the model."""
        metrics = self.metrics

        @functools.wraps(handler)
        def flushed(event: Any, context: Any) -> Any:
            # Powertools' log_metrics, with this request's record written by :meth:`flush`
            try:
                response = handler(event, context)
                if cold_start.is_cold_start:
                    cold_start.is_cold_start = False
                    metrics.provider.add_cold_start_metric(context=context)
            finally:
                self.flush()
                if metrics.metric_set:  # metrics added to Powertools directly (batch)
                    metrics.flush_metrics()
            return response

        wrapped = self._lambda_context_keys(flushed)
        tracer = self.tracer
        if tracer is None:
            return wrapped

        @functools.wraps(handler)
        def annotated(event: Any, context: Any) -> Any:
            if self.model_name:
                tracer.put_annotation(key="model", value=self.model_name)
                tracer.put_annotation(key="model_version", value=self.model_version)
            return wrapped(event, context)

        return tracer.capture_lambda_handler(annotated, capture_response=False)

    def _lambda_context_keys(self, handler: Handler) -> Handler:
        """Powertools' ``inject_lambda_context`` (``clear_state=False``) for what it does here: the
        Lambda context's keys and ``cold_start`` on every log line. Function name and memory do not
        change within a process, so they are appended on the first call; later calls append the
        request id, the invoked ARN (an alias or version may differ per call) and ``cold_start``:
        3 µs a request instead of 11 (``bench/bench_request_path.py``). ``cold_start`` is read
        from Powertools' flag only while it can change (the first request, and the one after a
        SnapStart restore resets it), and the keys go to the formatter found on the first call,
        not through the Logger's handler lookup on every request. With
        ``POWERTOOLS_LOGGER_LOG_EVENT`` on, Powertools' own decorator is used, event logging and all."""
        logger = self.logger
        if strtobool(os.environ.get(_LOG_EVENT_ENV, "false")):
            return logger.inject_lambda_context(handler, clear_state=False)
        first = [True]
        last_cold = [False]  # the cold_start value on the log lines
        formatter: list = []  # Powertools' formatter, whose keys every line carries

        @functools.wraps(handler)
        def keyed(event: Any, context: Any) -> Any:
            if first[0]:
                first[0] = False
                cold = last_cold[0] = _powertools_logger._is_cold_start()  # the flag inject_lambda_context reads
                logger.append_keys(cold_start=cold, **build_lambda_context_model(context).__dict__)
                formatter.append(logger.registered_formatter)
            else:
                keys = formatter[0]
                if last_cold[0] or _powertools_logger.is_cold_start:  # a SnapStart restore resets it
                    cold = last_cold[0] = _powertools_logger._is_cold_start()
                    keys.append_keys(cold_start=cold, function_request_id=context.aws_request_id,
                                     function_arn=context.invoked_function_arn)
                else:
                    keys.append_keys(function_request_id=context.aws_request_id,
                                     function_arn=context.invoked_function_arn)
                if logger.sampling_rate:
                    logger.refresh_sample_rate_calculation()
            return handler(event, context)

        return keyed

    def record_request(self, *, latency_ms: float, request_id: str, status: Any, path: str = "") -> None:
        """The per-request EMF record's common part: ``Latency`` and, as metadata (searchable in
        Logs Insights, no extra log line), request id, model version, path and status. Counts
        such as ``BatchSize`` are added by the entry point with :meth:`count`."""
        self.count("Latency", latency_ms, MetricUnit.Milliseconds)
        self._metadata.update(request_id=request_id, model_version=self.model_version, path=path, status=status)

    def count(self, name: str, value: float = 1, unit: MetricUnit | str = MetricUnit.Count) -> None:
        """Add ``value`` to metric ``name`` in this request's record (written by :meth:`flush`)."""
        unit = unit.value if isinstance(unit, MetricUnit) else unit
        entry = self._pending.get(name)
        if entry is None:
            self._pending[name] = (unit, [float(value)])
        else:
            entry[1].append(float(value))

    def error(self, exc: BaseException) -> None:
        """An ``Errors<Class>`` count in this request's record (the error class, by name)."""
        self.count(f"Errors{type(exc).__name__}")

    def flush(self) -> None:
        """Write this request's metrics (if any) as one EMF line and start the next record."""
        pending, metadata = self._pending, self._metadata
        if not pending:
            return
        self._pending, self._metadata = {}, {}
        if self._metrics_disabled:
            return
        head, bare, fields = self._template(tuple([(name, entry[0]) for name, entry in pending.items()]))
        values = {**metadata}
        for name, (_, v) in pending.items():
            values[name] = v
        if fields.keys().isdisjoint(values):
            line = head + _emf_line(values)[1:]
        else:  # a metadata key that is also a dimension field: it replaces the field, as in a dict
            line = bare + _emf_line({**fields, **values})[1:]
        sys.stdout.write(f"{_EMF_TIMESTAMP}{int(time.time() * 1000)}{line}\n")

    def _template(self, key: tuple) -> tuple[str, str, dict]:
        """The EMF line's text from the timestamp to this request's values for the metric names
        and units in ``key``, as Powertools' ``serialize_metric_set`` writes it for the current
        dimensions: (with the dimension fields, without them, the fields)."""
        metrics = self.metrics
        if metrics.dimension_set != self._dimensions:
            self._templates.clear()
            self._dimensions = dict(metrics.dimension_set)
        found = self._templates.get(key)
        if found is None:
            if len(key) > MAX_METRICS:
                raise ValueError(f"one request recorded {len(key)} metrics; EMF allows {MAX_METRICS}")
            doc = metrics.serialize_metric_set(
                metrics={name: {"Unit": unit, "Value": [0.0]} for name, unit in key},
                dimensions=metrics.dimension_set, metadata={})
            self._dimensions = dict(metrics.dimension_set)  # serializing may add ``service``
            names_ = {name for name, _ in key}
            fields = {k: v for k, v in doc.items() if k != "_aws" and k not in names_}
            bare = f',"CloudWatchMetrics":{_emf_line(doc["_aws"]["CloudWatchMetrics"])}}},'
            head = bare + _emf_line(fields)[1:-1] + "," if fields else bare
            found = self._templates[key] = (head, bare, fields)
        return found


#: how every EMF line starts (the timestamp follows)
_EMF_TIMESTAMP = '{"_aws":{"Timestamp":'


_shared: Observability | None = None
_lock = threading.Lock()


def setup(service: str | None = None) -> Observability:
    """The process's one :class:`Observability` (built on the first call; ``service`` is the
    default service name when ``POWERTOOLS_SERVICE_NAME`` is unset, used by that first call)."""
    global _shared
    if _shared is None:
        with _lock:
            if _shared is None:
                _shared = Observability(service)
    return _shared


def reset() -> None:
    """Forget the process's setup (tests that import an entry point afresh)."""
    global _shared
    with _lock:
        _shared = None
