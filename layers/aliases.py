"""A deployed model's versions: its functions' published Lambda versions behind the ``live`` alias.

What both ``modelfn versions|promote|rollback --deployed`` (through the HTTPS control API) and
the deployed control function (:mod:`functions.control`) run, so it lives in the runtime
layer: stdlib only, the boto3 clients are passed in.

Every ``cdk deploy`` of a changed model publishes a new Lambda version of its api and batch
functions (and a generative model's streaming function) (the model version is in the version's description) behind the ``live`` alias.
Promotion and rollback never move the alias directly: they start a CodeDeploy deployment of
the model's own deployment group (an AppSpec with the alias' ``CurrentVersion`` and the
chosen ``TargetVersion``), so the group's canary (10 % for 5 minutes) and its error and p99
alarms guard it exactly like a deploy, and an alarm rolls it back automatically.

Versions outlive deploys (the template retains its ``AWS::Lambda::Version`` resources), so
:func:`prune_versions` deletes, after every promote/rollback, all but the newest
:data:`KEEP_VERSIONS`, the live one and any version an alias routes to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ALIAS = "live"
KINDS = ("api", "batch", "stream")  # stream: a generative model's streaming function
#: Published Lambda versions kept per function besides whatever an alias routes to (the
#: template retains them all; :func:`prune_versions` deletes beyond this many).
KEEP_VERSIONS = 5


class DeployedError(RuntimeError):
    """The deployed stack cannot do what was asked; the message says why and what to do."""


class UnknownVersion(DeployedError):
    """No published version is the one asked for."""


@dataclass(frozen=True)
class Target:
    """One function kind of a model: the function and the CodeDeploy group moving its alias."""

    function: str
    application: str
    group: str


@dataclass(frozen=True)
class DeployedVersion:
    lambda_version: str
    model_version: str
    live: bool
    weight: float  # share of traffic on the live alias (mid-canary: less than 1)


def targets_from(doc: Mapping[str, Any]) -> dict[str, Target]:
    """``{kind: Target}`` from the ``Deployment<Model>`` output's (or the control function's) JSON."""
    return {k: Target(**doc[k]) for k in KINDS if k in doc}


def _model_version(description: str, model: str) -> str:
    m = re.match(rf"modelfn {re.escape(model)} (\S+):", description or "")
    return m.group(1) if m else "?"


def deployed_versions(lam, target: Target, model: str) -> list[DeployedVersion]:
    """The function's published versions, oldest first, with the live alias' weights."""
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


def versions_doc(lam, found: Mapping[str, Target], model: str) -> dict[str, Any]:
    """What ``modelfn versions NAME --deployed --json`` prints and ``GET …/versions`` answers:
    the api function's versions (the batch function's follow the same deployments)."""
    if "api" not in found:
        raise DeployedError(f"{model} has no deployed api function to list versions of")
    versions = deployed_versions(lam, found["api"], model)
    live = next((d.model_version for d in versions if d.live and d.weight >= 0.5), None)
    rows = [{"version": d.model_version,
             "parent_version": versions[i - 1].model_version if i else None,
             "promoted": d.live, "reason": f"live alias weight {d.weight:g}" if d.live else "",
             "metrics": {"lambda_version": d.lambda_version, "live_weight": d.weight}}
            for i, d in enumerate(versions)]
    return {"model": model, "live": live, "versions": rows}


def resolve(versions: list[DeployedVersion], ref: str) -> DeployedVersion:
    """A version by Lambda version number, model version, or a model version prefix (≥ 4)."""
    for d in versions:
        if ref in (d.lambda_version, d.model_version) or (len(ref) >= 4 and d.model_version.startswith(ref)):
            return d
    known = ", ".join(f"{d.model_version} (Lambda version {d.lambda_version})" for d in versions) or "(none)"
    raise UnknownVersion(f"no deployed version {ref!r}; deployed versions: {known}")


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


def move_live(lam, codedeploy, found: Mapping[str, Target], model: str, ref: str | None,
              reason: str) -> dict[str, Any]:
    """Deploy model version ``ref`` (or, with None, the one before the live one) to every kind.

    The version is chosen once, on the api function (its published versions name the model
    version), and each other kind (batch, a generative model's stream) moves to its own
    published version of that same model version, so the functions never serve two versions
    once the canaries end; a kind without one refuses the whole move before any deployment
    starts. What ``promote``/``rollback --json`` print: ``{"model", "live", "previous",
    "changed", "deployments": {kind: CodeDeploy deployment id}}``; ``live`` is the version the
    canary moves to (the alias reaches it when the deployment ends); a version already live
    everywhere starts nothing (``"changed": false``), as locally."""
    order = sorted(found, key=lambda kind: kind != "api")
    listed = {kind: deployed_versions(lam, found[kind], model) for kind in order}
    lead = listed[order[0]]
    live = [d for d in lead if d.live]
    if ref is None:
        older = [d for d in lead if live and int(d.lambda_version) < int(live[0].lambda_version)]
        if not older:
            raise DeployedError(f"{model} {order[0]}: nothing to roll back to (no version before the live one)")
        chosen = older[-1]
    else:
        chosen = resolve(lead, ref)
    previous = max(live, key=lambda d: d.weight).model_version if live else None
    plan = {order[0]: chosen}
    for kind in order[1:]:
        # the same model version (an unnamed one, "?", from before versions were described: the
        # same Lambda version number, as every kind was published together)
        same = [d for d in listed[kind] if (d.model_version == chosen.model_version if chosen.model_version != "?"
                                            else d.lambda_version == chosen.lambda_version)]
        if not same:
            raise DeployedError(
                f"{model} {kind}: no published version serves {chosen.model_version} (its versions: "
                f"{', '.join(d.model_version for d in listed[kind]) or 'none'}), so moving only the other "
                "functions would serve two versions at once; `modelfn deploy` the model (every function is "
                "published together) or pick a version every function has")
        plan[kind] = same[-1]
    started: dict[str, str] = {}
    for kind in order:
        target, to = found[kind], plan[kind]
        now = [d for d in listed[kind] if d.live]
        if now and to.lambda_version == now[0].lambda_version and len(now) == 1:
            continue  # already live (and no canary under way): nothing to deploy
        started[kind] = start_deployment(codedeploy, lam, target, to.lambda_version, reason)
        prune_versions(lam, target, also_keep=(to.lambda_version,))
    return {"model": model, "live": chosen.model_version, "previous": previous, "changed": bool(started),
            "deployments": started}
