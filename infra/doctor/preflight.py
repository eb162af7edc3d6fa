"""Pre-flight for an account: what the catalog needs against what the account allows.

What a first deploy on a new account hits (issue 22), each checked before CloudFormation
tries and rolls back:

- **Reserved concurrency.** Every reservation comes out of the account's concurrency quota,
  and Lambda refuses any that leaves ``UnreservedConcurrentExecutions`` below 100 ("…
  decreases account's UnreservedConcurrentExecution below its minimum value of [100]"). A new
  account's quota can be 10, where nothing can be reserved at all. Read with
  ``lambda:GetAccountSettings``. When the catalog's reservations do not fit, the deploy skips
  them with a warning (CDK context ``modelfn:reserve_concurrency=false``, read by the app into
  the stack settings and the constructs) and says how to get them back; never silently.
- **Provisioned concurrency** draws from the same pool under the same 100 rule.
- **SnapStart** is offered in every commercial Region except Asia Pacific (New Zealand) and
  Asia Pacific (Taipei) (Lambda developer guide, *Improving startup performance with Lambda
  SnapStart*, "Supported Regions").
- **HTTP API routes and integrations.** Every model's routes and integrations go on the one
  shared HTTP API, whose "Routes per API" quota is 300 by default (Service Quotas
  ``L-65B5C802``, raised per API, not per account) and "Integrations per API" 300 (not
  adjustable) (API Gateway developer guide, *Quotas for configuring and running an HTTP API*).
  The model stack that crosses either fails to create its routes. Counted from the runtime's
  route table exactly as the stacks add them (``tests/infra/test_doctor.py`` checks the count
  against a synthesized app).
- **SageMaker instance quotas** (Service Quotas, service code ``sagemaker``): "<type> for
  endpoint usage" for real-time and asynchronous endpoints, "<type> for training job usage"
  for training; GPU types start at 0 in new accounts, so CreateEndpoint/CreateTrainingJob
  fail with ResourceLimitExceeded.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from infra.catalog import Catalog

#: Lambda keeps this much of the account's concurrency unreserved, always.
MIN_UNRESERVED = 100
#: Service Quotas code of "Concurrent executions" (AWS Lambda).
LAMBDA_CONCURRENCY_QUOTA_CODE = "L-B99A9384"
#: Regions where Lambda SnapStart is not offered (commercial partition).
SNAPSTART_UNSUPPORTED_REGIONS = frozenset({"ap-southeast-6", "ap-east-2"})
#: SageMaker instances one model's endpoints start with / may scale to (sagemaker_endpoint.py,
#: sagemaker_async_batch.py defaults): real-time 1..4 and asynchronous 0..2, starting at 1.
ENDPOINT_INSTANCES = (2, 6)
#: HTTP API quotas (per API): routes (adjustable per API; Service Quotas code) and integrations.
ROUTES_PER_API, ROUTES_QUOTA_CODE, INTEGRATIONS_PER_API = 300, "L-65B5C802", 300

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    level: Level
    check: str
    message: str
    fix: str = ""


@dataclass(frozen=True)
class Needs:
    """What deploying the catalog asks of the account."""

    reservations: tuple[tuple[str, int], ...] = ()
    """(function, reserved concurrency) for every function that reserves some."""
    provisioned: tuple[tuple[str, int], ...] = ()
    snapstart: tuple[str, ...] = ()
    """models whose API function uses SnapStart."""
    instances: tuple[tuple[str, str, int, int], ...] = ()
    """(instance type, "endpoint" | "training job", to create, to scale) summed per type."""
    notes: tuple[str, ...] = ()
    routes: tuple[tuple[str, int, int], ...] = ()
    """(model or "shared", routes, integrations) each stack adds to the shared HTTP API."""


def api_routes(model: str | None, *, control: bool) -> tuple[int, int]:
    """(routes, integrations) one stack adds to the shared HTTP API: a model's routes and
    integration (infra/cdk/constructs/model_routes.py) and its control routes and integration
    (control_api.py); ``model=None``: the shared stack's (the OpenAI router's routes, and the
    server routes + ``$default`` that the first model's stack carries)."""
    from layers.openai_router import routes_of
    from layers.protocols import route_table

    table = route_table()
    if model is None:
        return len(routes_of(table)) + len(table.server_gateway_routes()) + 1, 1
    routes, integrations = len(table.model_gateway_routes(model)), 1
    if control:
        routes, integrations = routes + len(table.control_gateway_routes(model)), integrations + 1
    return routes, integrations


@dataclass(frozen=True)
class AccountFacts:
    region: str
    concurrency_limit: int
    unreserved: int
    sagemaker_quotas: dict[str, float] | None = None
    """quota name → value; None when Service Quotas could not be read."""
    quota_error: str = ""
    routes_per_api: int | None = None
    """the account's "Routes per API" for new APIs; None when Service Quotas could not say."""


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    reserve_concurrency: bool
    context: dict[str, str] = field(default_factory=dict)
    """CDK context a deploy through modelfn passes (``-c key=value``)."""

    @property
    def failed(self) -> bool:
        return any(f.level == "fail" for f in self.findings)


def needs_of(catalog: Catalog, build_dir: Path) -> Needs:
    """The account needs of every catalog model; the built manifest decides ``target: auto``."""
    from infra.targets.deploy_spec import NotBuiltError, load_deploy_spec

    reservations, provisioned, snapstart, notes = [], [], [], []
    routes = [("shared", *api_routes(None, control=False))]
    instances: dict[tuple[str, str], list[int]] = {}

    def add(instance_type: str, usage: str, create: int, scale: int) -> None:
        have = instances.setdefault((instance_type, usage), [0, 0])
        have[0] += create
        have[1] += scale

    for model in catalog.models:
        try:
            target = load_deploy_spec(model, build_dir).target
        except NotBuiltError:
            target = "lambda" if model.target == "auto" else model.target
            if model.target == "auto":
                notes.append(f"{model.name} is not built yet: counted as a Lambda model (target: auto); "
                             "run `modelfn build` for its real target")
        if target == "lambda":
            if model.reserved_concurrency:
                reservations.append((f"{model.name} api", model.reserved_concurrency))
            reservations.append((f"{model.name} batch", model.batch.max_concurrency))
            if model.provisioned_concurrency:
                provisioned.append((f"{model.name} api", model.provisioned_concurrency))
            if model.snapstart_enabled:
                snapstart.append(model.name)
        else:
            add(model.instance_type, "endpoint", *ENDPOINT_INSTANCES)
        if model.training is not None:  # data-parallel jobs take instance_count instances at once
            count = int(getattr(model.training, "instance_count", 1) or 1)
            add(model.training.instance_type, "training job", count, count)
        # a control function (training, versions) on every Lambda model and every trained one
        routes.append((model.name, *api_routes(model.name, control=target == "lambda" or model.training is not None)))
    return Needs(tuple(reservations), tuple(provisioned), tuple(snapstart),
                 tuple((t, u, c, s) for (t, u), (c, s) in sorted(instances.items())), tuple(notes), tuple(routes))


def account_facts(clients: dict[str, Any], region: str) -> AccountFacts:
    """Read the account: Lambda's concurrency (GetAccountSettings) and SageMaker's quotas."""
    limit = clients["lambda"].get_account_settings()["AccountLimit"]
    quotas: dict[str, float] | None = {}
    error = ""
    try:
        for page in clients["service-quotas"].get_paginator("list_service_quotas").paginate(ServiceCode="sagemaker"):
            for q in page["Quotas"]:
                quotas[q["QuotaName"]] = float(q["Value"])
    except Exception as exc:  # AccessDenied, or Service Quotas not offered: say so, don't guess
        quotas, error = None, str(exc)
    routes_per_api = None
    with contextlib.suppress(Exception):  # unreadable: the check says it assumed the documented default
        routes_per_api = int(clients["service-quotas"].get_service_quota(
            ServiceCode="apigateway", QuotaCode=ROUTES_QUOTA_CODE)["Quota"]["Value"])
    return AccountFacts(region=region, concurrency_limit=int(limit["ConcurrentExecutions"]),
                        unreserved=int(limit["UnreservedConcurrentExecutions"]),
                        sagemaker_quotas=quotas, quota_error=error, routes_per_api=routes_per_api)


def check(needs: Needs, facts: AccountFacts) -> Report:
    findings = [Finding("warn", "catalog", n) for n in needs.notes]
    affordable = facts.unreserved - MIN_UNRESERVED
    reserved = sum(n for _, n in needs.reservations)
    reserve = True
    listed = ", ".join(f"{f} {n}" for f, n in needs.reservations)
    if reserved and reserved > affordable:
        reserve = False
        findings.append(Finding(
            "warn", "lambda concurrency",
            f"the catalog reserves {reserved} concurrent executions ({listed}) but the account's quota is "
            f"{facts.concurrency_limit} with {facts.unreserved} unreserved, and Lambda keeps {MIN_UNRESERVED} "
            f"unreserved: at most {max(affordable, 0)} can be reserved. CloudFormation would roll the deploy "
            "back (UnreservedConcurrentExecution below its minimum value). The deploy skips the reservations "
            "(context modelfn:reserve_concurrency=false): batch stays bounded by its event sources' maximum "
            "concurrency but shares the unreserved pool with the API functions.",
            f"request a quota increase to at least {reserved + MIN_UNRESERVED + facts.concurrency_limit - facts.unreserved} "
            f"(Service Quotas → AWS Lambda → Concurrent executions, {LAMBDA_CONCURRENCY_QUOTA_CODE}) and deploy "
            "again to get them back; or lower the catalog's batch.max_concurrency / reserved_concurrency"))
    elif reserved:
        findings.append(Finding("ok", "lambda concurrency",
                                f"{reserved} reserved ({listed}) fits: {facts.unreserved} unreserved of "
                                f"{facts.concurrency_limit}"))
    else:
        findings.append(Finding("ok", "lambda concurrency", f"nothing reserved; quota {facts.concurrency_limit}"))
    provisioned = sum(n for _, n in needs.provisioned)
    left = facts.unreserved - (reserved if reserve else 0) - MIN_UNRESERVED
    if provisioned and provisioned > left:
        findings.append(Finding(
            "fail", "provisioned concurrency",
            f"the catalog provisions {provisioned} ({', '.join(f'{f} {n}' for f, n in needs.provisioned)}) but "
            f"only {max(left, 0)} can be allocated while Lambda keeps {MIN_UNRESERVED} unreserved",
            f"request a Lambda concurrency quota increase ({LAMBDA_CONCURRENCY_QUOTA_CODE}) or remove "
            "provisioned_concurrency from those models (SnapStart is the no-idle-cost alternative)"))
    if needs.snapstart and facts.region in SNAPSTART_UNSUPPORTED_REGIONS:
        findings.append(Finding(
            "fail", "snapstart",
            f"Lambda SnapStart is not offered in {facts.region}; {', '.join(needs.snapstart)} use it",
            "set snapstart: false on those models, or deploy to another Region"))
    elif needs.snapstart:
        findings.append(Finding("ok", "snapstart", f"offered in {facts.region} ({', '.join(needs.snapstart)})"))
    findings += _instance_findings(needs, facts)
    findings += _api_findings(needs, facts)
    context = {} if reserve else {"modelfn:reserve_concurrency": "false"}
    return Report(tuple(findings), reserve, context)


def _instance_findings(needs: Needs, facts: AccountFacts) -> list[Finding]:
    if not needs.instances:
        return []
    if facts.sagemaker_quotas is None:
        return [Finding("warn", "sagemaker quotas",
                        f"could not read SageMaker quotas from Service Quotas ({facts.quota_error[:200]})",
                        "allow servicequotas:ListServiceQuotas, or check the quotas in the console")]
    out = []
    for instance_type, usage, create, scale in needs.instances:
        name = f"{instance_type} for {usage} usage"
        have = facts.sagemaker_quotas.get(name)
        if have is None:
            out.append(Finding("warn", "sagemaker quotas", f"no quota named {name!r} in {facts.region}: the "
                               "instance type may not be offered here",
                               "pick an instance type offered in this Region"))
        elif have < create:
            out.append(Finding("fail", "sagemaker quotas",
                               f"{name} is {have:g}; the catalog needs {create} to create",
                               f"request an increase of '{name}' to at least {scale} in Service Quotas → "
                               "Amazon SageMaker"))
        elif have < scale:
            out.append(Finding("warn", "sagemaker quotas",
                               f"{name} is {have:g}: enough to create ({create}) but autoscaling stops "
                               f"at {have:g} of {scale}",
                               f"request an increase of '{name}' to {scale}"))
        else:
            out.append(Finding("ok", "sagemaker quotas", f"{name} is {have:g} (needs {scale})"))
    return out


def _api_findings(needs: Needs, facts: AccountFacts) -> list[Finding]:
    if not needs.routes:
        return []
    routes = sum(r for _, r, _ in needs.routes)
    integrations = sum(i for _, _, i in needs.routes)
    quota = facts.routes_per_api or ROUTES_PER_API
    assumed = "" if facts.routes_per_api else " (API Gateway's default; Service Quotas could not be read)"
    models = [(m, r) for m, r, _ in needs.routes if m != "shared"]
    out = []
    if integrations > INTEGRATIONS_PER_API:
        out.append(Finding(
            "fail", "http api integrations",
            f"the catalog puts {integrations} integrations on the shared HTTP API; API Gateway allows "
            f"{INTEGRATIONS_PER_API} per API and does not raise it",
            "split the catalog into two, each deployed under its own shared stack (`modelfn deploy --stack "
            "<name>`: its own HTTP API)"))
    if routes > quota:
        fits, used = 0, routes - sum(r for _, r in models)
        for _, r in models:
            if used + r > quota:
                break
            used, fits = used + r, fits + 1
        out.append(Finding(
            "fail", "http api routes",
            f"the catalog puts {routes} routes on the shared HTTP API (shared {routes - sum(r for _, r in models)}, "
            f"then {_span(r for _, r in models)} per model) but its quota is {quota}{assumed}: the first "
            f"{fits} models' stacks deploy and the stack of {models[fits][0]!r} fails creating its routes",
            f"deploy the shared stack, then request 'Routes per API' ({ROUTES_QUOTA_CODE}) of at least {routes} "
            "for that API in Service Quotas → Amazon API Gateway (it is raised per API), or split the catalog "
            "under two shared stacks (`modelfn deploy --stack <name>`)"))
    else:
        out.append(Finding("ok", "http api routes",
                           f"{routes} routes and {integrations} integrations on the shared HTTP API; "
                           f"quota {quota}{assumed}"))
    return out


def _span(values) -> str:
    values = sorted(values)
    return f"{values[0]}" if values[0] == values[-1] else f"{values[0]}–{values[-1]}"
