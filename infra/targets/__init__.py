"""Deploy targets as plug-ins: each turns a model's deploy spec into its plan.

``TARGETS`` maps a target name (catalog ``target``, or the fit report's choice) to the
module function that plans it. A new target is one module with ``plan(spec) -> ModelPlan``
registered here, plus a renderer in each consumer that has one (infra/cdk/stacks,
infra/local, infra/image).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from infra.targets import lambda_target, sagemaker_target
from infra.targets.deploy_spec import DeploySpec
from infra.targets.plan import ModelPlan

TARGETS: dict[str, Callable[[DeploySpec], ModelPlan]] = {
    "lambda": lambda_target.plan,
    "sagemaker": sagemaker_target.plan,
}


def plan_model(spec: DeploySpec) -> ModelPlan:
    try:
        planner = TARGETS[spec.target]
    except KeyError:
        raise ValueError(f"model {spec.name!r}: unknown deploy target {spec.target!r}; "
                         f"known: {sorted(TARGETS)}") from None
    return planner(spec)


def plan_models(specs: Iterable[DeploySpec]) -> tuple[ModelPlan, ...]:
    return tuple(plan_model(s) for s in specs)
