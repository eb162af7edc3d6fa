"""Versions, promotion and rollback against a deployed stack.

``modelfn versions|promote|rollback NAME --deployed`` call the deployed control API over
HTTPS (``GET /v2/models/{name}/versions``, ``POST …/versions/{v}/promote``, ``POST
…/rollback``, SigV4-signed by :class:`infra.client.control.ControlClient`): the URL is
``--url`` or the stack's ``ApiUrl`` output. The control function runs
:mod:`layers.aliases` (the ``live`` alias moves through the model's CodeDeploy group, canary
and alarms included; retained versions are pruned), so the CLI needs only permission to
invoke the API, not Lambda and CodeDeploy rights.

What stays here runs with the caller's own AWS credentials: :func:`targets` reads a model's
functions from its stack output ``Deployment<Model>`` (:func:`layers.names.output_deployment`),
for the retraining build (infra/train/deployed.py) and :func:`prune_after_deploy` after
``modelfn deploy``.
"""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from typing import Any

from infra.client.control import ControlClient, ControlError
from layers import names
from layers.aliases import (  # noqa: F401  (re-exported: the retraining build moves live through them)
    ALIAS,
    KEEP_VERSIONS,
    KINDS,
    DeployedError,
    DeployedVersion,
    Target,
    deployed_versions,
    prune_versions,
    start_deployment,
    targets_from,
)
from layers.aliases import move_live as _move_live


def targets(cfn, stack: str, model: str) -> dict[str, Target]:
    """The model's functions and deployment groups, from its stack's output.

    ``stack`` is the app's (shared) stack name: the output is in the model's own stack
    ``<stack>-<Model>`` (README "Stack layout"); a deployment from before the per-model
    layout kept every model's output in ``stack`` itself, which is read as a fallback.
    """
    from infra.targets.plan import model_stack_name

    key, problems = names.output_deployment(model), []
    for name in (model_stack_name(stack, model), stack):
        try:
            outputs = cfn.describe_stacks(StackName=name)["Stacks"][0].get("Outputs", [])
        except Exception as exc:
            problems.append(f"{name}: {exc}")
            continue
        value = next((o["OutputValue"] for o in outputs if o["OutputKey"] == key), None)
        if value is not None:
            return targets_from(json.loads(value))
        problems.append(f"{name}: no output {key}")
    raise DeployedError(
        f"no deployed stack has output {key} for {model!r} ({'; '.join(problems)}): deploy it with "
        f"`modelfn deploy {model}` or pass --stack (the app's stack name); or {model!r} is not a Lambda "
        "model of it (SageMaker-target models are not versioned through aliases)")


def prune_after_deploy(clients: dict[str, Any], stack: str, models: list[str],
                       keep: int = KEEP_VERSIONS) -> dict[str, dict[str, list[str]]]:
    """After ``modelfn deploy``: each deployed Lambda model's functions keep their newest
    ``keep`` versions (the deploy published one more; CloudFormation retains them all).
    SageMaker-target models have no versions to prune and are skipped."""
    pruned: dict[str, dict[str, list[str]]] = {}
    for model in models:
        try:
            found = targets(clients["cloudformation"], stack, model)
        except DeployedError:
            continue
        pruned[model] = {kind: prune_versions(clients["lambda"], target, keep) for kind, target in found.items()}
    return pruned


def move_live(clients: dict[str, Any], stack: str, model: str, ref: str | None, reason: str) -> dict[str, str]:
    """With the caller's credentials (the retraining build's role): deploy model version ``ref``
    (None: the one before the live one) to every kind; ``{kind: CodeDeploy deployment id}``."""
    found = targets(clients["cloudformation"], stack, model)
    return _move_live(clients["lambda"], clients["codedeploy"], found, model, ref, reason)["deployments"]


# --- the CLI over the HTTPS control API -------------------------------------------------------
def control_client(args: Namespace) -> ControlClient:
    """``--url``, else the deployed stack's ``ApiUrl`` output."""
    url = getattr(args, "url", None)
    if not url:
        from infra.local.invoke import stack_api_url

        try:
            url = stack_api_url(args.stack)
        except Exception as exc:
            raise ControlError(0, f"the deployed stack {args.stack!r} could not be read ({exc}); pass "
                               "--stack (the app's stack name) or --url (its ApiUrl output)") from exc
    return ControlClient(url)


def _call(args: Namespace, command: str, call) -> dict[str, Any] | None:
    try:
        return call(control_client(args))
    except ControlError as exc:
        print(f"modelfn {command}: {exc}", file=sys.stderr)
        return None


def versions_command(args: Namespace) -> int:
    doc = _call(args, "versions", lambda api: api.versions(args.name))
    if doc is None:
        return 2
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    for r in doc["versions"]:
        mark = "●" if r["version"] == doc["live"] else " "
        print(f"{mark} {r['version']:<14} Lambda version {r['metrics']['lambda_version']:<4} {r['reason']}")
    return 0


def promote_command(args: Namespace) -> int:
    return _moved(args, "promote", _call(args, "promote", lambda api: api.promote(args.name, args.version)))


def rollback_command(args: Namespace) -> int:
    return _moved(args, "rollback", _call(args, "rollback", lambda api: api.rollback(args.name)))


def _moved(args: Namespace, command: str, doc: dict[str, Any] | None) -> int:
    if doc is None:
        return 2
    if args.json:
        print(json.dumps(doc, indent=2))
    elif not doc["changed"]:
        print(f"{args.name}: {doc['live']} is already live")
    else:
        for kind, deployment in doc["deployments"].items():
            print(f"{args.name} {kind}: CodeDeploy deployment {deployment} started: {doc['previous']} → "
                  f"{doc['live']} (canary, rolls back on alarm)")
    return 0


