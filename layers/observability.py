"""Powertools Logger, Metrics and Tracer, configured once for every entry point.

Service name and metrics namespace come from the env that ``infra/environment.py`` sets
(``POWERTOOLS_SERVICE_NAME`` / ``POWERTOOLS_METRICS_NAMESPACE``), with working defaults.

Tracer costs: constructing Powertools' ``Tracer`` imports the X-Ray SDK. Inside Lambda that
is ~80 ms with ``auto_patch=False`` (measured in ``bench/bench_coldstart.py``); with the
default auto-patching it also patches botocore/requests/httplib (~75 ms more) for calls the
API path never makes. Outside Lambda the SDK's recorder builds a botocore X-Ray client for
centralized sampling (~0.5 s) only to be disabled. So :func:`make_tracer` returns a Tracer
without auto-patching inside Lambda (unless ``POWERTOOLS_TRACE_DISABLED`` is true) and
``None`` elsewhere (SageMaker container, local stack, tests), where tracing would be off
anyway.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics

from layers import names


def service_name() -> str:
    return os.environ.get(names.ENV_POWERTOOLS_SERVICE) or names.SERVICE_NAME


def make_logger() -> Logger:
    return Logger(service=service_name())


def make_metrics() -> Metrics:
    return Metrics(
        service=service_name(),
        namespace=os.environ.get(names.ENV_POWERTOOLS_NAMESPACE) or names.METRICS_NAMESPACE,
    )


def tracing_enabled() -> bool:
    """The rule Powertools applies (in Lambda, not SAM local, not disabled by env)."""
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower()
    in_lambda = bool(os.environ.get("LAMBDA_TASK_ROOT")) and not os.environ.get("AWS_SAM_LOCAL")
    return in_lambda and disabled not in ("1", "true", "yes", "on")


def make_tracer():
    """Powertools Tracer (no auto-patching) when tracing can be on, else ``None``."""
    if not tracing_enabled():
        return None
    from aws_lambda_powertools import Tracer

    return Tracer(service=service_name(), auto_patch=False)
