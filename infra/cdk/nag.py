"""cdk-nag 3 wiring: the rule packs run on the whole app at synth, acknowledgments are specific.

cdk-nag 3 is a CDK policy-validation plugin: ``Validations.of(app).add_plugins(...)`` runs it
during ``app.synth()``, and any unacknowledged finding fails the synth. An acknowledgment
names one finding (``RuleId`` or ``RuleId[Finding]``) on one construct, with a reason.
"""

from __future__ import annotations

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
