"""The ``sagemaker`` deploy target: a real-time endpoint behind a thin proxy function, and
an asynchronous endpoint (scaled to zero) for ``<model>/in/``."""

from __future__ import annotations

from infra.targets import staging
from infra.targets.deploy_spec import DeploySpec
from infra.targets.plan import BatchPlan, FunctionPlan, ImagePlan, ModelPlan
from layers import names

PROXY_HANDLER = "functions.proxy.handler.handler"
GLUE_HANDLER = "functions.async_batch.handler.handler"
#: The glue only submits objects; its queue's visibility timeout is 6x its timeout.
GLUE_TIMEOUT_S = 60


def plan(spec: DeploySpec) -> ModelPlan:
    proxy = FunctionPlan(
        kind="proxy", handler=PROXY_HANDLER,
        description=f"modelfn {spec.name}: HTTP API → SageMaker endpoint proxy",
        timeout_s=names.PROXY_TIMEOUT_S, memory_mb=256, package="zip",
    )
    glue = FunctionPlan(
        kind="async-batch", handler=GLUE_HANDLER,
        description=f"modelfn {spec.name}: S3 batch → SageMaker asynchronous inference",
        timeout_s=GLUE_TIMEOUT_S, memory_mb=256, package="zip",
    )
    return ModelPlan(
        spec=spec, target="sagemaker", functions=(proxy, glue), front="proxy",
        batch=BatchPlan(kind="async-endpoint", prefix=f"{spec.name}/{names.BATCH_IN}/",
                        visibility_timeout_s=6 * GLUE_TIMEOUT_S, max_receive_count=3,
                        batch_size=1, max_batching_window_s=0, max_concurrency=2),
        image=ImagePlan(kind="sagemaker", architecture="x86_64",
                        gpu=staging.is_cuda_instance(spec.instance_type)),
        endpoints=("realtime", "async"),
        dashboard=("proxy", "endpoint"),
    )
