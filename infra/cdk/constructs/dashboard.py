"""One CloudWatch dashboard for the stack: a row of graphs per model.

Per function: invocations, errors, p50/p99 duration, cold starts (the EMF metric
``ColdStart`` that Powertools Metrics emits in namespace ``modelfn``) and throttles; per
SageMaker endpoint: invocations, 4xx/5xx and model latency; per batch queue: backlog, age
and dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from layers import names

PERIOD = cdk.Duration.minutes(1)
WIDTH = 6


@dataclass(frozen=True)
class FunctionPanel:
    """One function to graph: its ``live`` alias and the Powertools service it reports as."""

    title: str
    alias: lambda_.IAlias
    function_name: str
    service: str


@dataclass(frozen=True)
class EndpointPanel:
    title: str
    endpoint_name: str
    variant_name: str


@dataclass(frozen=True)
class QueuePanel:
    title: str
    queue: sqs.IQueue
    dead_letter_queue: sqs.IQueue


def cold_start_metric(*, function_name: str, service: str) -> cw.Metric:
    """Powertools' ``ColdStart`` EMF metric (dimensions ``function_name`` and ``service``)."""
    return cw.Metric(
        namespace=names.METRICS_NAMESPACE,
        metric_name="ColdStart",
        dimensions_map={"function_name": function_name, "service": service},
        statistic="Sum",
        period=PERIOD,
        label="cold starts",
    )


class ModelDashboard(Construct):
    """Public attributes: ``dashboard``."""

    @property
    def dashboard(self) -> cw.Dashboard:
        return self._dashboard

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        functions: tuple[FunctionPanel, ...],
        endpoints: tuple[EndpointPanel, ...] = (),
        queues: tuple[QueuePanel, ...] = (),
        dashboard_name: str | None = None,
    ) -> None:
        """:param dashboard_name: default: CloudFormation names it."""
        super().__init__(scope, id)
        self._dashboard = cw.Dashboard(self, "Dashboard", default_interval=cdk.Duration.hours(3),
                                       dashboard_name=dashboard_name)
        for panel in functions:
            self._dashboard.add_widgets(*self._function_row(panel))
        for ep in endpoints:
            self._dashboard.add_widgets(*self._endpoint_row(ep))
        for q in queues:
            self._dashboard.add_widgets(*self._queue_row(q))

    @staticmethod
    def _function_row(p: FunctionPanel) -> list[cw.IWidget]:
        a = p.alias
        return [
            cw.GraphWidget(title=f"{p.title}: invocations / errors", width=WIDTH, left=[
                a.metric_invocations(period=PERIOD, statistic="Sum", label="invocations"),
                a.metric_errors(period=PERIOD, statistic="Sum", label="errors"),
            ]),
            cw.GraphWidget(title=f"{p.title}: duration (ms)", width=WIDTH, left=[
                a.metric_duration(period=PERIOD, statistic="p50", label="p50"),
                a.metric_duration(period=PERIOD, statistic="p99", label="p99"),
            ]),
            cw.GraphWidget(title=f"{p.title}: cold starts", width=WIDTH, left=[
                cold_start_metric(function_name=p.function_name, service=p.service),
            ]),
            cw.GraphWidget(title=f"{p.title}: throttles", width=WIDTH, left=[
                a.metric_throttles(period=PERIOD, statistic="Sum", label="throttles"),
            ]),
        ]

    @staticmethod
    def _endpoint_row(e: EndpointPanel) -> list[cw.IWidget]:
        dims = {"EndpointName": e.endpoint_name, "VariantName": e.variant_name}

        def m(name: str, stat: str, label: str) -> cw.Metric:
            return cw.Metric(namespace="AWS/SageMaker", metric_name=name, dimensions_map=dims,
                             statistic=stat, period=PERIOD, label=label)

        return [
            cw.GraphWidget(title=f"{e.title}: invocations", width=WIDTH, left=[
                m("Invocations", "Sum", "invocations"),
            ]),
            cw.GraphWidget(title=f"{e.title}: errors", width=WIDTH, left=[
                m("Invocation4XXErrors", "Sum", "4xx"), m("Invocation5XXErrors", "Sum", "5xx"),
            ]),
            cw.GraphWidget(title=f"{e.title}: model latency (µs)", width=WIDTH, left=[
                m("ModelLatency", "p50", "p50"), m("ModelLatency", "p99", "p99"),
            ]),
        ]

    @staticmethod
    def _queue_row(q: QueuePanel) -> list[cw.IWidget]:
        return [
            cw.GraphWidget(title=f"{q.title}: batch backlog", width=WIDTH, left=[
                q.queue.metric_approximate_number_of_messages_visible(period=PERIOD, label="waiting"),
                q.queue.metric_approximate_age_of_oldest_message(period=PERIOD, label="oldest (s)"),
            ]),
            cw.GraphWidget(title=f"{q.title}: dead letters", width=WIDTH, left=[
                q.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=PERIOD, label="dead letters"),
            ]),
        ]
