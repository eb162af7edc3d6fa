"""Generative models on the lambda target get a streaming function behind a function URL.

The app for three generative models (auth iam, none, jwt), synthesized once with every check
on (cdk-nag fails the synth on any finding; cfn-lint), then asserted: the streaming function
runs the streaming runtime as the image's entry point, its URL streams (RESPONSE_STREAM) with
the model's auth on the ``live`` alias, the URL is an output, and a jwt model (function URLs
have no JWT authorizer) gets none and a warning that says why and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk.assertions import Match, Template

from infra.cdk.app import build_app
from layers import names
from tests.conftest import TINY_INPUTS, TINY_OUTPUTS, make_tiny_onnx, write_manifest
from tests.infra.conftest import (
    app_context,
    app_template,
    cfn_lint_errors,
    shared_synth,
    stack_warnings,
    write_catalog,
)

pytestmark = pytest.mark.slow

MODELS = [
    {"name": "gen-iam", "source": "src/a.onnx"},
    {"name": "gen-open", "source": "src/b.onnx", "auth": "none"},
    {"name": "gen-jwt", "source": "src/c.onnx", "auth": "jwt"},
]
GENERATION = {"max_context": 256, "eos_token_ids": [0], "has_chat_template": True, "family": "llama",
              "precision": "fp32"}


def _synthesize(workdir: Path) -> dict:
    from cdk_nag import AwsSolutionsChecks, ServerlessChecks

    catalog = write_catalog(workdir / "catalog", MODELS)
    build = workdir / "build"
    for seed, m in enumerate(MODELS):
        model_dir = build / "models" / m["name"]
        make_tiny_onnx(model_dir / "model.onnx", seed=seed)
        write_manifest(model_dir, m["name"], TINY_INPUTS, TINY_OUTPUTS, task="generation", generation=GENERATION,
                       fit={"memory_mb": 3008, "timeout_s": 20, "image_bytes": 10_000_000})
    app, _stack = build_app(
        context=app_context(catalog, build, **{"modelfn:jwt_issuer": "https://issuer.example.com/",
                                               "modelfn:jwt_audience": "client-a"}),
        outdir=str(workdir / "cdk.out"))
    app.synth()
    violations = [v.rule_name for pack in (AwsSolutionsChecks(app), ServerlessChecks(app))
                  for v in pack.validate_scope(app).violations]
    return {"nag_violations": violations, "cfn_lint_errors": cfn_lint_errors(workdir / "cdk.out")}


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    workdir, info = shared_synth(tmp_path_factory, "streaming", _synthesize)
    return workdir / "cdk.out", info


@pytest.fixture(scope="module")
def template(synthesized) -> Template:
    return Template.from_json(app_template(synthesized[0]))


def functions(template: Template, needle: str) -> dict[str, dict]:
    return {k: r for k, r in template.find_resources("AWS::Lambda::Function").items()
            if needle in r["Properties"].get("Description", "")}


def test_streaming_function_runs_the_streaming_runtime_as_the_entry_point(template: Template) -> None:
    streams = functions(template, "streaming function URL")
    assert sorted(r["Properties"]["Description"].split()[1] for r in streams.values()) == ["gen-iam", "gen-open"]
    for res in streams.values():
        props = res["Properties"]
        assert props["ImageConfig"]["EntryPoint"] == ["python3", "-m", names.STREAM_MODULE]
        assert "Command" not in props["ImageConfig"]
        assert props["Timeout"] == names.STREAM_TIMEOUT_S
        assert "SnapStart" not in props  # SnapStart restores only managed runtimes
    for res in functions(template, "V2 HTTP API").values():  # the API function is unchanged
        assert res["Properties"]["ImageConfig"]["Command"] == [names.API_HANDLER]
        assert "EntryPoint" not in res["Properties"]["ImageConfig"]


def test_function_urls_stream_with_the_models_auth_on_the_live_alias(template: Template) -> None:
    urls = template.find_resources("AWS::Lambda::Url")
    assert sorted(u["Properties"]["AuthType"] for u in urls.values()) == ["AWS_IAM", "NONE"]
    for url in urls.values():
        assert url["Properties"]["InvokeMode"] == "RESPONSE_STREAM"
        assert url["Properties"]["Qualifier"] == "live"
    # the public URL may be invoked by anyone; the IAM one only by signed callers with a grant
    template.has_resource_properties("AWS::Lambda::Permission", {
        "Action": "lambda:InvokeFunctionUrl", "Principal": "*", "FunctionUrlAuthType": "NONE"})
    # (and lambda:InvokeFunction only through the URL, which AWS now requires beside it)
    public = template.find_resources("AWS::Lambda::Permission", {"Properties": {"Principal": "*"}})
    assert len(public) == 2 and all(p["Properties"].get("FunctionUrlAuthType") == "NONE"
                                    or p["Properties"].get("InvokedViaFunctionUrl") is True for p in public.values())
    assert all("GenOpenStream" in p["Properties"]["FunctionName"]["Ref"] for p in public.values())


def test_stream_urls_are_outputs(synthesized) -> None:
    from tests.infra.conftest import stack_templates

    outputs = {k for t in stack_templates(synthesized[0]).values() for k in t.get("Outputs", {})}
    assert {names.output_stream_url("gen-iam"), names.output_stream_url("gen-open")} <= outputs
    assert names.output_stream_url("gen-jwt") not in outputs


def test_a_jwt_model_gets_no_stream_url_and_synth_says_why(template: Template, synthesized) -> None:
    assert functions(template, "gen-jwt") and not functions(template, "gen-jwt").keys() & functions(
        template, "streaming").keys()
    warnings = stack_warnings(synthesized[0])
    assert any("gen-jwt" in w and "no JWT authorizer" in w and "auth: iam" in w for w in warnings)
    assert any("gen-open" in w and "streaming function URL is public" in w for w in warnings)


def test_the_streaming_function_canaries_like_the_others(template: Template) -> None:
    groups = template.find_resources("AWS::CodeDeploy::DeploymentGroup")
    assert len(groups) == 2 * 3 + 1 * 2  # api + batch for each model, stream for two
    template.has_resource_properties("AWS::Lambda::Alias", {"Name": "live", "FunctionName": Match.any_value()})


def test_cdk_nag_and_cfn_lint_are_clean(synthesized) -> None:
    assert synthesized[1]["nag_violations"] == []
    assert synthesized[1]["cfn_lint_errors"] == []


def test_promote_and_rollback_move_the_streaming_function_with_the_others(synthesized) -> None:
    """The model's deployment output (what `modelfn promote/rollback --deployed` and the control
    function move) names the streaming function beside api and batch."""
    from tests.infra.conftest import stack_templates

    outputs = {k: v for t in stack_templates(synthesized[0]).values() for k, v in t.get("Outputs", {}).items()}
    iam_doc = json.dumps(outputs[names.output_deployment("gen-iam")]["Value"])
    jwt_doc = json.dumps(outputs[names.output_deployment("gen-jwt")]["Value"])
    assert all(f'\\"{k}\\"' in iam_doc for k in ("api", "batch", "stream"))
    assert '\\"stream\\"' not in jwt_doc
