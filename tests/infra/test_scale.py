"""The layout scales with the catalog: per-model stacks, bounded templates, independent diffs.

Catalogs are fabricated (tests/infra/fabricate.py) and synthesized without cdk-nag (every
rule runs on every stack in test_stack.py/test_whole_app.py; here only sizes and sameness
matter). Each synth is one app in this process: jsii's start is paid once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk.assertions import Template

from infra.cdk.app import build_app
from infra.targets.plan import DEFAULT_STACK_NAME, model_stack_name
from tests.infra.conftest import stack_templates
from tests.infra.fabricate import fabricate, model_entries

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cdk-scale")]
#: CloudFormation's limits on one template (resources; bytes of a template sent through S3).
MAX_RESOURCES, MAX_BYTES = 500, 1_000_000


def synth(root: Path, name: str, entries: list[dict]) -> dict[str, dict]:
    """``{stack: template}`` of ``entries`` synthesized into ``root/name`` (staging shared by
    every synth under ``root``, as one working copy's synths share ``build/cdk-stage``)."""
    catalog, build = fabricate(root / name, entries)
    app, _ = build_app(context={"modelfn:catalog": str(catalog), "modelfn:build_dir": str(build),
                                "modelfn:stage_dir": str(root / "stage")},
                       outdir=str(root / name / "cdk.out"), checks=False)
    app.synth()
    return stack_templates(root / name / "cdk.out")


def _sizes(templates: dict[str, dict]) -> dict[str, tuple[int, int]]:
    return {n: (len(t["Resources"]), len(json.dumps(t, indent=1))) for n, t in templates.items()}


BASE = model_entries(lambda_models=2, sagemaker_models=1, trained_models=1)


@pytest.fixture(scope="module")
def before(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """A catalog of two lambda models, a sagemaker model and a trained model (every kind)."""
    root = tmp_path_factory.mktemp("scale")
    return root, synth(root, "before", BASE)


def test_adding_a_model_changes_no_other_template_and_a_change_stays_in_its_stack(before) -> None:
    # given a catalog of two lambda models, a sagemaker model and a trained model
    root, before = before
    base = BASE
    assert set(before) == {DEFAULT_STACK_NAME, *(model_stack_name(DEFAULT_STACK_NAME, e["name"]) for e in base)}
    # when a model is added
    added = synth(root, "added", [*base, {"name": "new-model", "source": "src/m.onnx"}])
    # then it brings its own stack and every other template is unchanged, the shared one too
    assert set(added) - set(before) == {model_stack_name(DEFAULT_STACK_NAME, "new-model")}
    for stack, template in before.items():
        Template.from_json(added[stack]).template_matches(template)
        assert added[stack] == template, stack
    # when one model's catalog entry changes (what `cdk diff` compares)
    changed = [dict(e, memory_mb=3008) if e["name"] == "lam-001" else e for e in base]
    after = synth(root, "changed", changed)
    # then only that model's stack differs
    assert {s for s in before if after[s] != before[s]} == {model_stack_name(DEFAULT_STACK_NAME, "lam-001")}
    Template.from_json(after[model_stack_name(DEFAULT_STACK_NAME, "lam-001")]).has_resource_properties(
        "AWS::Lambda::Function", {"MemorySize": 3008})


def test_68_models_fit_cloudformation_and_the_largest_template_does_not_grow(before) -> None:
    """60 lambda + 4 sagemaker + 4 trained models. The largest template is compared with the
    largest of the 4-model catalog (every kind once): equal there means equal at 17 too."""
    root, small = before
    large = synth(root, "68", model_entries(lambda_models=60, sagemaker_models=4, trained_models=4))
    # then one stack per model plus the shared one, each within CloudFormation's limits
    assert len(large) == 68 + 1
    for stack, (resources, size) in _sizes(large).items():
        assert resources <= MAX_RESOURCES and size <= MAX_BYTES, (stack, resources, size)
    # and the largest template at 68 models is the largest at 4: a model adds nothing to any
    # other template (the shared stack included)
    largest = {n: max(_sizes(t).values()) for n, t in (("small", small), ("68", large))}
    assert largest["68"] == largest["small"], largest
    assert large[DEFAULT_STACK_NAME] == small[DEFAULT_STACK_NAME]


def test_the_doctor_counts_the_routes_and_integrations_the_stacks_put_on_the_api(before) -> None:
    """``modelfn doctor``'s count (the HTTP API's 300-routes quota) is what the stacks synthesize."""
    from infra.catalog import load_catalog
    from infra.doctor.preflight import needs_of

    root, templates = before
    catalog, build = fabricate(root / "before", BASE)
    routes = needs_of(load_catalog(catalog), build).routes

    def count(kind: str) -> int:
        return sum(r["Type"] == kind for t in templates.values() for r in t["Resources"].values())

    assert sum(r for _, r, _ in routes) == count("AWS::ApiGatewayV2::Route")
    assert sum(i for _, _, i in routes) == count("AWS::ApiGatewayV2::Integration")
    # a Lambda model's paths arrive through its catch-alls: 300 routes hold 30+ models, not 16
    per_model = {m: r for m, r, _ in routes}
    assert per_model["lam-000"] <= 9, per_model
