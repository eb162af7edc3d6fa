"""The ``lambda`` deploy target: the model's own container image as two functions.

An API function behind the model's HTTP routes and a batch function fed by an SQS queue on
``<model>/in/``; both publish versions behind ``live`` aliases with canaries. A generative
model (manifest ``task: generation``) gets a third, the streaming function: the same image
with :data:`layers.names.STREAM_MODULE` as its entry point, behind a function URL in
``RESPONSE_STREAM`` mode (HTTP APIs cannot stream; functions/stream says why a runtime of
our own).
"""

from __future__ import annotations

from infra.targets.deploy_spec import DeploySpec
from infra.targets.plan import (
    BATCH_EPHEMERAL_STORAGE_MB,
    BATCH_ROLLBACK,
    BatchPlan,
    FunctionPlan,
    ImagePlan,
    ModelPlan,
    RollbackPlan,
)
from layers import names

#: Lambda's guidance: queue visibility timeout at least six times the function timeout.
VISIBILITY_FACTOR = 6


def plan(spec: DeploySpec) -> ModelPlan:
    label = f"modelfn {spec.name} {spec.version}"
    api = FunctionPlan(
        kind="api", handler=names.API_HANDLER, description=f"{label}: V2 HTTP API",
        timeout_s=spec.api_timeout_s, memory_mb=spec.memory_mb, package="image",
        reserved_concurrency=spec.reserved_concurrency,
        provisioned_concurrency=spec.provisioned_concurrency, snapstart=spec.snapstart,
        rollback=RollbackPlan(),
    )
    batch = FunctionPlan(
        kind="batch", handler=names.BATCH_HANDLER, description=f"{label}: S3 batch inference",
        timeout_s=spec.batch_timeout_s, memory_mb=spec.memory_mb, package="image",
        # as much as the event source may use: a burst of uploads neither takes the
        # account's concurrency from the API functions nor gets throttled itself
        reserved_concurrency=spec.batch.max_concurrency,
        # the batch job streams its input through /tmp (layers/batch/job.py)
        ephemeral_storage_mb=BATCH_EPHEMERAL_STORAGE_MB,
        # a failed object is a reported item failure, retried later: the canary judges
        # sustained invocation errors (crashes, timeouts), never one transient retry
        rollback=BATCH_ROLLBACK, instances=spec.batch.max_concurrency,
    )
    functions = (api, batch)
    # a generative model streams through a function URL; auth: jwt ones verify tokens in the
    # function (URLs have no JWT authorizer: layers/http/jwt_auth.py)
    if spec.manifest.extra.get("task") == "generation":
        functions += (FunctionPlan(
            kind="stream", handler=names.STREAM_MODULE,
            description=f"{label}: streaming function URL (server-sent events)",
            timeout_s=names.STREAM_TIMEOUT_S, memory_mb=spec.memory_mb, package="image",
            # SnapStart restores only Lambda's managed runtimes; this one is our own loop
            snapstart=False, rollback=RollbackPlan(),
        ),)
    return ModelPlan(
        spec=spec, target="lambda", functions=functions, front="api",
        batch=BatchPlan(
            kind="queue", prefix=f"{spec.name}/{names.BATCH_IN}/",
            visibility_timeout_s=VISIBILITY_FACTOR * spec.batch_timeout_s,
            max_receive_count=spec.batch.max_receive_count, batch_size=spec.batch.batch_size,
            max_batching_window_s=spec.batch.max_batching_window_s,
            max_concurrency=spec.batch.max_concurrency,
        ),
        image=ImagePlan(kind="lambda", architecture=spec.architecture),
        dashboard=(*(fn.kind for fn in functions), "queue"),
    )
