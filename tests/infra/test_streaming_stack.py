"""Generative models on the lambda target get a streaming function behind a function URL.

The app for three generative models (auth iam, none, jwt), synthesized once with every check
on (cdk-nag fails the synth on any finding; cfn-lint), then asserted: the streaming function
runs the streaming runtime as the image's entry point, its URL streams (RESPONSE_STREAM) with
the model's auth on the ``live`` alias, the URL is an output, and a jwt model (function URLs
have no JWT authorizer) gets a URL with auth NONE whose function verifies tokens against the
issuer and audiences of the HTTP API's authorizer (environment), acknowledged, without a warning.
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
ISSUER = "https://issuer.example.com/"
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
        context=app_context(catalog, build, **{"modelfn:jwt_issuer": ISSUER,
                                               "modelfn:jwt_audience": "client-a,client-b"}),
        outdir=str(workdir / "cdk.out"))
    app.synth()
    violations = [v.rule_name for pack in (AwsSolutionsChecks(app), ServerlessChecks(app))
                  for v in pack.validate_scope(app).violations]
    return {"nag_violations": violations, "cfn_lint_errors": cfn_lint_errors(workdir / "cdk.out"),
            "url_acknowledgments": _url_acknowledgments(app)}


def _url_acknowledgments(app) -> dict[str, dict[str, str]]:
    """model → {acknowledged rule: reason} on each streaming function URL that has any."""
    import re

    import aws_cdk as cdk

    from infra.cdk.constructs.streaming_url import StreamingUrl

    out: dict[str, dict[str, str]] = {}
    for node in app.node.find_all():
        if isinstance(node, StreamingUrl):
            for entry in node.url.node.metadata:
                if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY and entry.data:
                    out.setdefault(node.model_name, {}).update(
                        {re.sub(r"^annotation::", "", k, flags=re.I): v for k, v in entry.data.items()})
    return out


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
    assert sorted(r["Properties"]["Description"].split()[1] for r in streams.values()) == [
        "gen-iam", "gen-jwt", "gen-open"]
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
    # jwt: NONE at the URL, the token checked in the function (function URLs have no JWT authorizer)
    assert sorted(u["Properties"]["AuthType"] for u in urls.values()) == ["AWS_IAM", "NONE", "NONE"]
    for url in urls.values():
        assert url["Properties"]["InvokeMode"] == "RESPONSE_STREAM"
        assert url["Properties"]["Qualifier"] == "live"
    # the public URLs may be invoked by anyone; the IAM one only by signed callers with a grant
    template.has_resource_properties("AWS::Lambda::Permission", {
        "Action": "lambda:InvokeFunctionUrl", "Principal": "*", "FunctionUrlAuthType": "NONE"})
    # (and lambda:InvokeFunction only through the URL, which AWS now requires beside it)
    public = template.find_resources("AWS::Lambda::Permission", {"Properties": {"Principal": "*"}})
    assert len(public) == 4 and all(p["Properties"].get("FunctionUrlAuthType") == "NONE"
                                    or p["Properties"].get("InvokedViaFunctionUrl") is True for p in public.values())
    refs = sorted(p["Properties"]["FunctionName"]["Ref"] for p in public.values())
    assert [r.startswith(m) for r, m in zip(refs, ["GenJwtStream"] * 2 + ["GenOpenStream"] * 2, strict=True)] == [True] * 4


def test_stream_urls_are_outputs(synthesized) -> None:
    from tests.infra.conftest import stack_templates

    outputs = {k for t in stack_templates(synthesized[0]).values() for k in t.get("Outputs", {})}
    assert {names.output_stream_url(m["name"]) for m in MODELS} <= outputs


def test_a_jwt_models_streaming_function_verifies_the_http_apis_issuer_and_audiences(template: Template) -> None:
    env = {r["Properties"]["Description"].split()[1]: r["Properties"]["Environment"]["Variables"]
           for r in functions(template, "streaming function URL").values()}
    assert env["gen-jwt"][names.ENV_AUTH] == "jwt"
    assert env["gen-jwt"][names.ENV_JWT_ISSUER] == ISSUER
    assert env["gen-jwt"][names.ENV_JWT_AUDIENCE] == "client-a,client-b"
    # the HTTP API's authorizer checks the same issuer and audiences on the model's routes
    template.has_resource_properties("AWS::ApiGatewayV2::Authorizer", {
        "JwtConfiguration": {"Issuer": ISSUER, "Audience": ["client-a", "client-b"]}})
    for other in ("gen-iam", "gen-open"):  # their URLs carry the auth; nothing to verify inside
        assert names.ENV_AUTH not in env[other] and names.ENV_JWT_ISSUER not in env[other]


def test_a_jwt_url_is_acknowledged_with_its_reason_and_synth_no_longer_warns(synthesized) -> None:
    from infra.cdk.constructs.streaming_url import JWT_URL_REASON, URL_AUTH_RULES

    warnings = stack_warnings(synthesized[0])
    assert not any("gen-jwt" in w for w in warnings)
    assert any("gen-open" in w and "streaming function URL is public" in w for w in warnings)
    assert synthesized[1]["url_acknowledgments"] == {"gen-jwt": {rule: JWT_URL_REASON for rule in URL_AUTH_RULES}}


def test_the_streaming_function_canaries_like_the_others(template: Template) -> None:
    groups = template.find_resources("AWS::CodeDeploy::DeploymentGroup")
    assert len(groups) == 3 * 3  # api, batch and stream for each model
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
    assert all(f'\\"{k}\\"' in doc for k in ("api", "batch", "stream") for doc in (iam_doc, jwt_doc))
