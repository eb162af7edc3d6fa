"""Versions, promotion and rollback against a deployed stack (boto3).

Every ``cdk deploy`` of a changed model publishes a new Lambda version of its api and batch
functions (the model version is in the version's description) behind the ``live`` alias.
Promotion and rollback never move the alias directly: they start a CodeDeploy deployment of
the model's own deployment group (an AppSpec with the alias' ``CurrentVersion`` and the
chosen ``TargetVersion``), so the group's canary (10 % for 5 minutes) and its error and p99
alarms guard it exactly like a deploy, and an alarm rolls it back automatically.

The stack output ``Deployment<Model>`` (:func:`layers.names.output_deployment`) names, per
function kind, the function, the CodeDeploy application and the deployment group.

Versions outlive deploys: the template's ``AWS::Lambda::Version`` resources are retained
(``DeletionPolicy: Retain``, infra/cdk/constructs/model_function.py), because CloudFormation
would otherwise delete the previous version on every deploy and leave nothing to roll back
to. Kept versions cost storage and, with SnapStart, a cache each, so the tool prunes them
(:func:`prune_versions`, after every promote/rollback): the newest :data:`KEEP_VERSIONS`, the
live one and any version an alias routes to stay; older ones are deleted.
"""

from __future__ import annotations

import json
import re
import sys
from argparse import Namespace
from dataclasses import dataclass
from typing import Any

from infra.build.idle import KEEP_VERSIONS  # beside the idle-cost estimate that counts them
from layers import names

ALIAS = "live"
KINDS = ("api", "batch")


class DeployedError(RuntimeError):
    """The deployed stack cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    function: str
    application: str
    group: str


@dataclass(frozen=True)
class DeployedVersion:
    lambda_version: str
    model_version: str
    live: bool
    weight: float  # share of traffic on the live alias (mid-canary: less than 1)


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
            data = json.loads(value)
            return {k: Target(**data[k]) for k in KINDS if k in data}
        problems.append(f"{name}: no output {key}")
    raise DeployedError(
        f"no deployed stack has output {key} for {model!r} ({'; '.join(problems)}): deploy it with "
        f"`modelfn deploy {model}` or pass --stack (the app's stack name); or {model!r} is not a Lambda "
        "model of it (SageMaker-target models are not versioned through aliases)")


def _model_version(description: str, model: str) -> str:
    m = re.match(rf"modelfn {re.escape(model)} (\S+):", description or "")
    return m.group(1) if m else "?"


def deployed_versions(lam, target: Target, model: str) -> list[DeployedVersion]:
    alias = lam.get_alias(FunctionName=target.function, Name=ALIAS)
    weights = {alias["FunctionVersion"]: 1.0}
    for v, w in ((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}).items():
        weights[v] = float(w)
        weights[alias["FunctionVersion"]] -= float(w)
    out = []
    for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=target.function):
        for v in page["Versions"]:
            if v["Version"] == "$LATEST":
                continue
            out.append(DeployedVersion(v["Version"], _model_version(v.get("Description", ""), model),
                                       v["Version"] in weights, round(weights.get(v["Version"], 0.0), 3)))
    return sorted(out, key=lambda d: int(d.lambda_version))


def _resolve(versions: list[DeployedVersion], ref: str) -> DeployedVersion:
    for d in versions:
        if ref in (d.lambda_version, d.model_version) or (len(ref) >= 4 and d.model_version.startswith(ref)):
            return d
    known = ", ".join(f"{d.model_version} (Lambda version {d.lambda_version})" for d in versions) or "(none)"
    raise DeployedError(f"no deployed version {ref!r}; deployed versions: {known}")


def start_deployment(codedeploy, lam, target: Target, to_version: str, reason: str) -> str:
    """A CodeDeploy deployment that shifts ``live`` to ``to_version`` through the group's canary."""
    current = lam.get_alias(FunctionName=target.function, Name=ALIAS)["FunctionVersion"]
    if current == to_version:
        raise DeployedError(f"{target.function}: Lambda version {to_version} is already live")
    appspec = {"version": 0.0, "Resources": [{target.function: {
        "Type": "AWS::Lambda::Function",
        "Properties": {"Name": target.function, "Alias": ALIAS, "CurrentVersion": current,
                       "TargetVersion": to_version}}}]}
    return codedeploy.create_deployment(
        applicationName=target.application, deploymentGroupName=target.group, description=reason,
        revision={"revisionType": "AppSpecContent", "appSpecContent": {"content": json.dumps(appspec)}},
    )["deploymentId"]


def prune_versions(lam, target: Target, keep: int = KEEP_VERSIONS, also_keep: tuple[str, ...] = ()) -> list[str]:
    """Delete published versions beyond the newest ``keep``, never one an alias routes to
    (live, mid-canary, or pinned by the user), one in ``also_keep`` (a deployment's target
    before CodeDeploy moves the alias) nor the newest (the template's current one).
    Returns the deleted version numbers."""
    if keep < 1:
        raise DeployedError(f"keep at least one version, not {keep}")
    protected: set[str] = set(also_keep)
    for page in lam.get_paginator("list_aliases").paginate(FunctionName=target.function):
        for alias in page["Aliases"]:
            protected.add(alias["FunctionVersion"])
            protected.update((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})
    numbers = sorted(int(v["Version"])
                     for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=target.function)
                     for v in page["Versions"] if v["Version"] != "$LATEST")
    kept = set(numbers[-keep:])
    deleted = []
    for n in numbers:
        if n in kept or str(n) in protected:
            continue
        lam.delete_function(FunctionName=target.function, Qualifier=str(n))
        deleted.append(str(n))
    return deleted


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
    """Deploy model version ``ref`` (or, with None, the one before the live one) to every kind."""
    found = targets(clients["cloudformation"], stack, model)
    started = {}
    for kind, target in found.items():
        versions = deployed_versions(clients["lambda"], target, model)
        if ref is None:
            live = [d for d in versions if d.live]
            older = [d for d in versions if live and int(d.lambda_version) < int(live[0].lambda_version)]
            if not older:
                raise DeployedError(f"{model} {kind}: nothing to roll back to (no version before the live one)")
            chosen = older[-1]
        else:
            chosen = _resolve(versions, ref)
        started[kind] = start_deployment(clients["codedeploy"], clients["lambda"], target,
                                         chosen.lambda_version, reason)
        prune_versions(clients["lambda"], target, also_keep=(chosen.lambda_version,))
    return started


def _clients() -> dict[str, Any]:
    import boto3

    return {s: boto3.client(s) for s in ("cloudformation", "lambda", "codedeploy")}


def versions_command(args: Namespace, clients: dict[str, Any] | None = None) -> int:
    clients = clients or _clients()
    try:
        api = targets(clients["cloudformation"], args.stack, args.name)["api"]
        versions = deployed_versions(clients["lambda"], api, args.name)
    except DeployedError as exc:
        print(f"modelfn versions: {exc}", file=sys.stderr)
        return 2
    live = next((d.model_version for d in versions if d.live and d.weight >= 0.5), None)
    rows = [{"version": d.model_version,
             "parent_version": versions[i - 1].model_version if i else None,
             "promoted": d.live, "reason": f"live alias weight {d.weight:g}" if d.live else "",
             "metrics": {"lambda_version": d.lambda_version, "live_weight": d.weight}}
            for i, d in enumerate(versions)]
    if args.json:
        print(json.dumps({"model": args.name, "live": live, "versions": rows}, indent=2))
    else:
        for r in rows:
            mark = "●" if r["version"] == live else " "
            print(f"{mark} {r['version']:<14} Lambda version {r['metrics']['lambda_version']:<4} {r['reason']}")
    return 0


def promote_command(args: Namespace, clients: dict[str, Any] | None = None) -> int:
    return _move(args, args.version, f"modelfn promote {args.name} {args.version}", clients)


def rollback_command(args: Namespace, clients: dict[str, Any] | None = None) -> int:
    return _move(args, None, f"modelfn rollback {args.name}", clients)


def _move(args: Namespace, ref: str | None, reason: str, clients: dict[str, Any] | None) -> int:
    try:
        started = move_live(clients or _clients(), args.stack, args.name, ref, reason)
    except DeployedError as exc:
        print(f"modelfn {'promote' if ref else 'rollback'}: {exc}", file=sys.stderr)
        return 2
    for kind, deployment in started.items():
        print(f"{args.name} {kind}: CodeDeploy deployment {deployment} started (canary, rolls back on alarm)")
    return 0
