"""Deployment choices that come from CDK context (infra/cdk/app.py documents the keys)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_logs as logs


@dataclass(frozen=True)
class StackSettings:
    jwt_issuer: str | None = None
    jwt_audience: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    base_image: str | None = None
    """A pushed runtime base image to build FROM; default: the inline first stage."""
    python_base: str | None = None
    """Replaces the AWS Lambda Python base (``PYTHON_BASE``): a mirror, or the offline
    stand-in the image lane and ``sam build`` use; default: public.ecr.aws/lambda/python:3.13."""
    log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH
    throttle_rate_limit: float = 100
    throttle_burst_limit: int = 200
    reserve_concurrency: bool = True
    """False: no function reserves concurrency (each skipped reservation is a synth warning).
    ``modelfn doctor`` / ``modelfn deploy`` turn it off where the account cannot afford the
    catalog's reservations (Lambda keeps 100 of the account's concurrency unreserved)."""
