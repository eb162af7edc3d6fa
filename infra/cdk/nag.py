"""cdk-nag 3 wiring: the rule packs run on the whole app at synth, acknowledgments are specific.

cdk-nag 3 is a CDK policy-validation plugin: ``Validations.of(app).add_plugins(...)`` runs it
during ``app.synth()``, and any unacknowledged finding fails the synth. An acknowledgment
names one finding (``RuleId`` or ``RuleId[Finding]``) on one construct, with a reason.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, ServerlessChecks
from constructs import IConstruct


def add_checks(app: cdk.App) -> tuple[AwsSolutionsChecks, ServerlessChecks]:
    """Register the AWS Solutions and Serverless packs on ``app``; returns them (for tests)."""
    packs = (AwsSolutionsChecks(app), ServerlessChecks(app))
    cdk.Validations.of(app).add_plugins(*packs)
    return packs


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one finding on ``scope`` (and its children) with a specific ``reason``."""
    if len(reason) < 20:
        raise ValueError(f"acknowledging {rule_id} needs a specific reason, got {reason!r}")
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule_id, reason=reason))


def flatten_reference(reference: Any) -> str:
    """A resolved CloudFormation value as cdk-nag names it in a finding (its
    ``flattenCfnReference``): ``<Logical.Arn>``, ``<Logical>``, an import's export name."""
    if reference is None:
        return ""
    if isinstance(reference, str):
        return reference.replace("${", "<").replace("}", ">")
    if isinstance(reference, dict):
        if "Fn::Join" in reference:
            delimiter, items = reference["Fn::Join"]
            return delimiter.join(flatten_reference(i) for i in items)
        if "Fn::Sub" in reference:
            return flatten_reference(reference["Fn::Sub"])
        if "Fn::GetAtt" in reference:
            logical, attribute = reference["Fn::GetAtt"]
            return f"<{flatten_reference(logical)}.{flatten_reference(attribute)}>"
        if "Fn::ImportValue" in reference:
            return flatten_reference(reference["Fn::ImportValue"])
        if "Ref" in reference:
            return f"<{flatten_reference(reference['Ref'])}>"
    return json.dumps(reference, separators=(",", ":"))


def bucket_arn_finding(bucket: Any) -> str:
    """How a finding names ``bucket``'s ARN, whether the bucket is this stack's or imported."""
    return flatten_reference(cdk.Stack.of(bucket).resolve(bucket.bucket_arn))
