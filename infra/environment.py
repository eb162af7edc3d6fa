"""The environment every model function gets, built once for the CDK app and the local stack.

Both sides call :func:`function_environment`, so a function sees the same variables on AWS and
on a laptop; only the values that name a place (the model directory, an endpoint) differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from layers import names

FunctionKind = Literal["api", "batch", "sagemaker", "stream"]

IMAGE_MODEL_DIR = names.IMAGE_MODEL_DIR
SAGEMAKER_MODEL_DIR = names.SAGEMAKER_MODEL_DIR


def function_environment(
    *,
    model_name: str,
    kind: FunctionKind,
    model_dir: str = IMAGE_MODEL_DIR,
    idempotency_table: str | None = None,
    batch_retry_delay_s: int | None = None,
    auth: str | None = None,
    jwt_issuer: str | None = None,
    jwt_audience: Sequence[str] = (),
    execution_provider: str | None = None,
) -> dict[str, str]:
    """Environment variables for one model's function of ``kind``.

    :param model_name: catalog name; becomes the Powertools service name.
    :param kind: ``api`` (HTTP API), ``batch`` (S3 events), ``sagemaker`` (serving container)
        or ``stream`` (a generative model's streaming function URL).
    :param model_dir: directory holding model.onnx + manifest.json; default: the image's.
    :param idempotency_table: DynamoDB table for batch idempotency; default
        :data:`layers.names.DEFAULT_IDEMPOTENCY_TABLE` (batch only).
    :param batch_retry_delay_s: first retry delay of a failed batch message (catalog
        ``batch.retry_delay_s``); default :data:`layers.names.DEFAULT_BATCH_RETRY_DELAY_S`.
    :param auth: / :param jwt_issuer: / :param jwt_audience: the catalog ``auth`` and the CDK
        context's issuer and audiences (stream only): ``jwt`` makes the streaming function verify
        bearer tokens itself (its URL has auth NONE: function URLs have no JWT authorizer);
        default: no verification (``iam``/``none`` URLs, the local stack).
    :param execution_provider: ``cpu`` or ``cuda`` (the plan's
        :attr:`~infra.targets.plan.ImagePlan.execution_provider`: where a generative model's
        decoding loop runs); default: unset, which the runtime reads as ``cpu``.
    """
    env = {
        names.ENV_MODEL_DIR: model_dir,
        names.ENV_POWERTOOLS_SERVICE: f"{names.SERVICE_NAME}-{model_name}",
        names.ENV_POWERTOOLS_NAMESPACE: names.METRICS_NAMESPACE,
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    if execution_provider is not None:
        if execution_provider not in names.EXECUTION_PROVIDERS:
            raise ValueError(f"execution_provider {execution_provider!r} is not one of {names.EXECUTION_PROVIDERS}")
        env[names.ENV_EXECUTION_PROVIDER] = execution_provider
    if kind == "batch":
        env[names.ENV_IDEMPOTENCY_TABLE] = idempotency_table or names.DEFAULT_IDEMPOTENCY_TABLE
        env[names.ENV_BATCH_RETRY_DELAY_S] = str(batch_retry_delay_s or names.DEFAULT_BATCH_RETRY_DELAY_S)
    if kind == "stream" and auth == "jwt":
        if not jwt_issuer or not jwt_audience:
            raise ValueError(f"model {model_name!r}: a jwt streaming function needs the issuer and "
                             "audience (context modelfn:jwt_issuer, modelfn:jwt_audience)")
        env[names.ENV_AUTH] = "jwt"
        env[names.ENV_JWT_ISSUER] = jwt_issuer
        env[names.ENV_JWT_AUDIENCE] = ",".join(jwt_audience)
    return env
