"""The account-level dashboard index: the API's own graphs and where each model's board is.

Each model's stack owns its dashboard (``<shared stack>-<model>``), so adding a model never
touches this one; the index graphs what every model shares (the HTTP API's requests,
errors and latency) and links to the list of model dashboards by their common prefix.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

PERIOD = cdk.Duration.minutes(1)


class DashboardIndex(Construct):
    """Public attributes: ``dashboard``."""

    @property
    def dashboard(self) -> cw.Dashboard:
        return self._dashboard

    def __init__(self, scope: Construct, id: str, *, api_id: str, model_dashboard_prefix: str) -> None:
        """
        :param api_id: the shared HTTP API (its ``AWS/ApiGateway`` metrics).
        :param model_dashboard_prefix: every model dashboard's name starts with it.
        """
        super().__init__(scope, id)
        self._dashboard = cw.Dashboard(self, "Dashboard", default_interval=cdk.Duration.hours(3),
                                       dashboard_name=f"{model_dashboard_prefix}index")
        dims = {"ApiId": api_id}

        def m(name: str, stat: str, label: str) -> cw.Metric:
            return cw.Metric(namespace="AWS/ApiGateway", metric_name=name, dimensions_map=dims,
                             statistic=stat, period=PERIOD, label=label)

        link = (f"https://console.aws.amazon.com/cloudwatch/home#dashboards:"
                f"name={model_dashboard_prefix}")
        self._dashboard.add_widgets(
            cw.TextWidget(width=24, height=2, markdown=(
                "# modelfn\nOne dashboard per model, named "
                f"`{model_dashboard_prefix}<model>`: [list them]({link}).")),
        )
        self._dashboard.add_widgets(
            cw.GraphWidget(title="API requests", width=8, left=[m("Count", "Sum", "requests")]),
            cw.GraphWidget(title="API errors", width=8, left=[m("4xx", "Sum", "4xx"), m("5xx", "Sum", "5xx")]),
            cw.GraphWidget(title="API latency (ms)", width=8, left=[
                m("Latency", "p50", "p50"), m("Latency", "p99", "p99")]),
        )
