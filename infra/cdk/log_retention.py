"""Every Lambda function's log group has a retention, CDK's own singletons included.

Our constructs give each function its own ``logs.LogGroup`` with a retention. Functions
that CDK creates for itself (the S3 bucket-notifications handler, custom-resource providers)
log to ``/aws/lambda/<name>``, which Lambda creates on first invocation with no retention
(logs kept, and billed, forever). This aspect points each such function's ``LoggingConfig``
at a log group made with the app's retention; their roles already write to any group
(``AWSLambdaBasicExecutionRole``). README "Logs" promises retention for every group, and
tests/infra/test_whole_app.py checks it over every stack.
"""

from __future__ import annotations

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import IConstruct

FUNCTION_TYPE = "AWS::Lambda::Function"


@jsii.implements(cdk.IAspect)
class FunctionLogRetention:
    """Give every function without its own log group one with ``retention``."""

    def __init__(self, retention: logs.RetentionDays) -> None:
        self._retention = retention

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, cdk.CfnResource) or node.cfn_resource_type != FUNCTION_TYPE:
            return
        if isinstance(node, lambda_.CfnFunction):
            config = node.logging_config
            if config is not None and getattr(config, "log_group", None):
                return
        scope = node.node.scope
        if scope.node.try_find_child("RetainedLogs") is not None:
            return
        group = logs.LogGroup(scope, "RetainedLogs", retention=self._retention,
                              removal_policy=cdk.RemovalPolicy.DESTROY)
        node.add_property_override("LoggingConfig.LogGroup", group.log_group_name)
