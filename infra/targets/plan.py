"""A model's deployment plan: its wiring decided once, rendered by the CDK app, the local
stack and the image builder alike.

A deploy target (:mod:`infra.targets.lambda_target`, :mod:`infra.targets.sagemaker_target`)
turns one :class:`~infra.targets.deploy_spec.DeploySpec` into a :class:`ModelPlan`: which
functions the model gets (handler, sizing, rollout), what fronts its routes, how its batch
prefix is consumed, which image it runs from and which dashboard rows it shows. Renderers
only turn a plan into their own resources (CloudFormation, processes, image builds); none
decides wiring on its own, and none imports another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from infra.catalog import TrainingSpec
from infra.targets.deploy_spec import DeploySpec
from layers import names

#: The shared stack's name unless context ``modelfn:stack_name`` says otherwise; each model's
#: stack is ``<shared>-<Model>`` (:func:`model_stack_name`).
DEFAULT_STACK_NAME = "ModelfnStack"


def construct_id(model_name: str) -> str:
    """``digits-mlp`` → ``DigitsMlp`` (the same casing as the output keys)."""
    return names.output_infer_url(model_name).removeprefix("InferUrl")


def model_stack_name(shared_stack: str, model_name: str) -> str:
    """The CloudFormation stack that holds everything of ``model_name``."""
    return f"{shared_stack}-{construct_id(model_name)}"


@dataclass(frozen=True)
class RollbackPlan:
    """What rolls a function's canary back (errors over ``error_threshold`` in
    ``error_datapoints`` of ``error_periods`` minutes; p99 duration when ``latency``)."""

    error_threshold: int = 1
    error_periods: int = 1
    error_datapoints: int = 1
    latency: bool = True


#: The batch canary rolls back on invocation errors in 2 of 3 minutes (a failed object is a
#: reported item failure, not an invocation error), and not on duration, which follows the
#: size of the objects users drop.
BATCH_ROLLBACK = RollbackPlan(error_threshold=1, error_periods=3, error_datapoints=2, latency=False)
#: /tmp of each batch function: big enough for multi-GB inputs; Lambda bills it per GB-s.
BATCH_EPHEMERAL_STORAGE_MB = 10_240


@dataclass(frozen=True)
class FunctionPlan:
    """One function of a model, as every renderer runs it."""

    kind: Literal["api", "batch", "proxy", "async-batch", "stream"]
    handler: str
    description: str
    timeout_s: int
    memory_mb: int
    package: Literal["image", "zip"]
    """``image``: the model's own container image; ``zip``: a thin function (staged source)."""
    reserved_concurrency: int | None = None
    provisioned_concurrency: int | None = None
    snapstart: bool = False
    ephemeral_storage_mb: int = 512
    rollback: RollbackPlan | None = None
    """Canary + alarms behind a ``live`` alias (image functions); None: no canary."""
    instances: int = 1
    """How many the local stack keeps warm (the batch function: its reserved concurrency)."""


@dataclass(frozen=True)
class BatchPlan:
    """How objects under ``<model>/in/`` are consumed."""

    kind: Literal["queue", "async-endpoint"]
    """``queue``: S3 → SQS (+ DLQ) → the batch function; ``async-endpoint``: S3 → SQS → glue →
    SageMaker Asynchronous Inference."""
    prefix: str
    visibility_timeout_s: int
    max_receive_count: int
    batch_size: int
    max_batching_window_s: int
    max_concurrency: int


@dataclass(frozen=True)
class ImagePlan:
    """The container image a model runs from."""

    kind: Literal["lambda", "sagemaker"]
    architecture: Literal["x86_64", "arm64"]
    gpu: bool = False
    """A SageMaker GPU instance type: the image carries the CUDA closure."""

    @property
    def execution_provider(self) -> Literal["cpu", "cuda"]:
        """What the serving container runs on (:data:`layers.names.ENV_EXECUTION_PROVIDER`)."""
        return "cuda" if self.gpu else "cpu"


@dataclass(frozen=True)
class ModelPlan:
    """Everything of one model, decided once (see the module docstring)."""

    spec: DeploySpec
    target: Literal["lambda", "sagemaker"]
    functions: tuple[FunctionPlan, ...]
    front: Literal["api", "proxy"]
    """The function kind the model's HTTP routes reach."""
    batch: BatchPlan
    image: ImagePlan
    endpoints: tuple[str, ...] = ()
    """SageMaker endpoints the model owns (``realtime``, ``async``)."""
    dashboard: tuple[str, ...] = field(default=())
    """Dashboard rows, in order: function kinds, ``endpoint``, ``queue``."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def construct_id(self) -> str:
        return construct_id(self.spec.name)

    @property
    def auth(self) -> str:
        return self.spec.auth

    @property
    def training(self) -> TrainingSpec | None:
        return self.spec.training

    def function(self, kind: str) -> FunctionPlan:
        for fn in self.functions:
            if fn.kind == kind:
                return fn
        raise KeyError(f"model {self.name!r} ({self.target} target) has no {kind} function")

    def has(self, kind: str) -> bool:
        return any(fn.kind == kind for fn in self.functions)


def service_name(model_name: str) -> str:
    """The Powertools service every function of the model reports as."""
    return f"{names.SERVICE_NAME}-{model_name}"
