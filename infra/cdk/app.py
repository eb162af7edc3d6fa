"""The CDK app entry point (``cdk.json``: ``.venv/bin/python -m infra.cdk.app``).

Context keys (``cdk.json`` or ``cdk synth -c key=value``):

- ``modelfn:catalog`` — the catalog file (default ``models.yaml``).
- ``modelfn:build_dir`` — where ``modelfn build`` wrote ``models/<name>/`` (default ``build``).
- ``modelfn:stage_dir`` — staged asset sources (default ``<build_dir>/cdk-stage``).
- ``modelfn:stack_name`` — the shared stack's name, default ``ModelfnStack``; each model's
  stack is ``<stack_name>-<Model>`` (``ModelfnStack-DigitsMlp``).
- ``modelfn:jwt_issuer`` / ``modelfn:jwt_audience`` — required when a model has ``auth: jwt``
  (audience: a list or a comma-separated string).
- ``modelfn:cors_origins`` — list or comma-separated origins; default none (CORS off).
- ``modelfn:base_image`` — a pushed runtime base image URI to build model images FROM;
  default: the base is the first stage of each model's Dockerfile (infra/targets/staging.py).
- ``modelfn:python_base`` — replaces the AWS Lambda Python 3.13 base image of every image
  (the ``PYTHON_BASE`` build arg; SAM's ``sam build`` passes it on): a mirror, or the offline
  stand-in (``python -m infra.image.standin``).
- ``modelfn:log_retention_days`` — default 30.
- ``modelfn:reserve_concurrency`` — default true; false skips every reserved concurrency, each
  with a synth warning (``modelfn doctor`` says when the account needs it; ``modelfn deploy``
  passes it then).

Layout (README "Stack layout"): one shared stack (API, bucket, table, training key,
dashboard index) and one stack per catalog model, rendered from the model's plan
(infra/targets). cdk-nag's AwsSolutions and Serverless packs run on the whole app (every
stack); any unacknowledged finding fails the synth.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_logs as logs

from infra.catalog import CatalogError, load_catalog
from infra.cdk.constructs.http_api import ConfigurationError
from infra.cdk.constructs.openai_router import RUNTIME_FILES as OPENAI_ROUTER_FILES
from infra.cdk.log_retention import FunctionLogRetention
from infra.cdk.nag import add_checks
from infra.cdk.stacks.model_stack import ModelStack
from infra.cdk.stacks.settings import StackSettings
from infra.cdk.stacks.shared_stack import SharedStack
from infra.targets import plan_models, staging
from infra.targets.deploy_spec import NotBuiltError, load_deploy_specs
from infra.targets.plan import DEFAULT_STACK_NAME, model_stack_name

__all__ = ["DEFAULT_STACK_NAME", "build_app", "main", "settings_from_context"]
#: CDK feature flags the app relies on: server access logs are delivered through a bucket
#: policy, not the legacy LogDeliveryWrite ACL (so every bucket can enforce owner-only ACLs).
FEATURE_FLAGS = {"@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True}


def _list(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)


RETENTION_DAYS = {
    1: logs.RetentionDays.ONE_DAY, 3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS, 7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS, 30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS, 90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS, 365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS, 1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def _retention(days: Any) -> logs.RetentionDays:
    try:
        return RETENTION_DAYS[int(days)]
    except (KeyError, TypeError, ValueError):
        raise ConfigurationError(
            f"context modelfn:log_retention_days={days!r} is not supported; use one of "
            f"{sorted(RETENTION_DAYS)}"
        ) from None


def settings_from_context(node: Any) -> StackSettings:
    """Read the ``modelfn:*`` context keys of ``node`` into :class:`StackSettings`."""
    get = node.try_get_context
    return StackSettings(
        jwt_issuer=get("modelfn:jwt_issuer") or None,
        jwt_audience=_list(get("modelfn:jwt_audience")),
        cors_origins=_list(get("modelfn:cors_origins")),
        base_image=get("modelfn:base_image") or None,
        python_base=get("modelfn:python_base") or None,
        log_retention=_retention(get("modelfn:log_retention_days") or 30),
        reserve_concurrency=str(get("modelfn:reserve_concurrency") if get("modelfn:reserve_concurrency")
                                is not None else "true").strip().lower() not in ("false", "0", "no", "off"),
    )


def build_app(
    *, context: Mapping[str, Any] | None = None, outdir: str | None = None, checks: bool = True
) -> tuple[cdk.App, SharedStack]:
    """Build the app (not synthesized yet): the shared stack, returned, and one
    :class:`ModelStack` per catalog model (``app_model_stacks``). Tests pass ``context`` and
    ``outdir``."""
    app = cdk.App(context={**FEATURE_FLAGS, **(context or {})}, outdir=outdir)
    get = app.node.try_get_context
    catalog = load_catalog(get("modelfn:catalog") or "models.yaml")
    build_dir = Path(get("modelfn:build_dir") or "build")
    stage_dir = Path(get("modelfn:stage_dir") or build_dir / "cdk-stage")
    plans = plan_models(load_deploy_specs(catalog, build_dir))
    settings = settings_from_context(app.node)
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    env = cdk.Environment(account=account, region=region) if account and region else None
    name = get("modelfn:stack_name") or DEFAULT_STACK_NAME
    shared = SharedStack(
        app, name, settings=settings, training=any(p.training is not None for p in plans),
        router_code=staging.stage_function_code(dest=stage_dir.resolve() / "openai-router", package="openai_router",
                                                runtime=OPENAI_ROUTER_FILES),
        openai_auth=plans[0].auth if plans else "iam",
        description="modelfn: the shared HTTP API, batch bucket and table every model stack uses",
        env=env,
    )
    for i, plan in enumerate(plans):
        stack = ModelStack(
            app, model_stack_name(name, plan.name), plan=plan, shared_stack=name,
            jwt=shared.has_jwt, training_shared=shared.has_training, catalog=catalog,
            stage_dir=stage_dir.resolve(), server_routes=i == 0, settings=settings,
            description=f"modelfn: model {plan.name} ({plan.target} target)", env=env,
        )
        stack.add_stack_dependency(shared, "imports the shared stack's exports")
    # functions CDK makes for itself (bucket notifications) log with a retention too
    cdk.Aspects.of(app).add(FunctionLogRetention(settings.log_retention))
    if checks:
        add_checks(app)
    return app, shared


def app_model_stacks(app: cdk.App) -> dict[str, ModelStack]:
    """``{model name: its stack}`` of an app from :func:`build_app`."""
    return {c.plan.name: c for c in app.node.children if isinstance(c, ModelStack)}


def main() -> int:
    try:
        app, _ = build_app()
    except (CatalogError, NotBuiltError, ConfigurationError) as exc:
        print(f"modelfn synth: {exc}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
