"""``modelfn doctor``: a new account's quotas are read and said before a deploy would roll back.

moto has no GetAccountSettings and no SageMaker quotas, so those two reads are stubbed
boto3 clients (botocore's Stubber checks each call against the API model). Where moto does
enforce the rule (PutFunctionConcurrency under ``MOTO_LAMBDA_CONCURRENCY_QUOTA``), the
reservations the report decides on are applied to it.
"""

from __future__ import annotations

import io
import json
import zipfile
from argparse import Namespace

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from infra.catalog import load_catalog
from infra.doctor.command import doctor
from infra.doctor.preflight import check, needs_of
from tests.infra.conftest import write_catalog

MODELS = [
    {"name": "clf", "source": "src/clf.onnx", "target": "lambda", "reserved_concurrency": 3,
     "validation": "src/clf_val.npz",
     "training": {"entry_point": "trainer:train", "instance_type": "ml.g5.xlarge"}},
    {"name": "heavy", "source": "src/heavy.onnx", "target": "sagemaker", "instance_type": "ml.g5.xlarge"},
]
SAGEMAKER_QUOTAS = {"ml.g5.xlarge for endpoint usage": 6, "ml.g5.xlarge for training job usage": 1}


@pytest.fixture
def catalog(tmp_path):
    return write_catalog(tmp_path, MODELS)


def clients(*, limit: int, unreserved: int, quotas: dict | None = None, region: str = "us-east-1",
            quotas_denied: bool = False, routes_per_api: int = 300) -> dict:
    lam = boto3.client("lambda", region_name=region, aws_access_key_id="t", aws_secret_access_key="t")
    sq = boto3.client("service-quotas", region_name=region, aws_access_key_id="t", aws_secret_access_key="t")
    lam_stub, sq_stub = Stubber(lam), Stubber(sq)
    lam_stub.add_response("get_account_settings", {
        "AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000, "CodeSizeZipped": 52428800,
                         "ConcurrentExecutions": limit, "UnreservedConcurrentExecutions": unreserved},
        "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": 0}})
    if quotas_denied:
        sq_stub.add_client_error("list_service_quotas", "AccessDeniedException", "not authorized")
    else:
        sq_stub.add_response("list_service_quotas", {"Quotas": [
            {"ServiceCode": "sagemaker", "QuotaName": name, "QuotaCode": f"L-{i}", "Value": float(v)}
            for i, (name, v) in enumerate((quotas if quotas is not None else SAGEMAKER_QUOTAS).items())]},
            {"ServiceCode": "sagemaker"})
    sq_stub.add_response("get_service_quota", {"Quota": {
        "ServiceCode": "apigateway", "QuotaCode": "L-65B5C802", "QuotaName": "Routes per API",
        "Value": float(routes_per_api), "Adjustable": True}},
        {"ServiceCode": "apigateway", "QuotaCode": "L-65B5C802"})
    lam_stub.activate()
    sq_stub.activate()
    return {"lambda": lam, "service-quotas": sq, "region": region}


def _report(catalog, tmp_path, **kw):
    from infra.doctor.preflight import account_facts

    c = clients(**kw)
    return check(needs_of(load_catalog(catalog), tmp_path / "build"), account_facts(c, c["region"]))


def test_a_new_account_skips_reserved_concurrency_with_a_warning_instead_of_rolling_back(catalog, tmp_path):
    # given an account at the new-account quota of 10 (nothing can be reserved)
    report = _report(catalog, tmp_path, limit=10, unreserved=10)
    # then the deploy skips the reservations (context for the app) and says so, with the fix
    assert not report.reserve_concurrency and not report.failed
    assert report.context == {"modelfn:reserve_concurrency": "false"}
    [warning] = [f for f in report.findings if f.check == "lambda concurrency"]
    assert warning.level == "warn"
    assert "reserves 5 concurrent executions (clf api 3, clf batch 2)" in warning.message
    assert "L-B99A9384" in warning.fix and "at least 105" in warning.fix


def test_the_reservations_the_report_keeps_are_ones_lambda_accepts(catalog, tmp_path, monkeypatch):
    """moto enforces Lambda's 100-unreserved rule: what the catalog asks fails at quota 10,
    what the report decides (nothing) goes through; at 1,000 the reservations fit and are kept."""
    for limit, unreserved in ((10, 10), (1000, 1000)):
        report = _report(catalog, tmp_path, limit=limit, unreserved=unreserved)
        needs = needs_of(load_catalog(catalog), tmp_path / "build")
        monkeypatch.setenv("MOTO_LAMBDA_CONCURRENCY_QUOTA", str(limit))
        with mock_aws():
            lam = boto3.client("lambda", region_name="us-east-1")
            role = boto3.client("iam", region_name="us-east-1").create_role(
                RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
            for i, (_, n) in enumerate(needs.reservations):
                fn = f"fn{i}"
                lam.create_function(FunctionName=fn, Runtime="python3.13", Role=role, Handler="h.h",
                                    Code={"ZipFile": _zip()})
                if report.reserve_concurrency:
                    lam.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=n)
                elif i == 0:  # what the old template did on this account
                    with pytest.raises(ClientError, match="below its minimum value"):
                        lam.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=n)
        assert report.reserve_concurrency == (limit == 1000)


def test_gpu_quotas_of_zero_fail_before_create_endpoint_does(catalog, tmp_path, capsys):
    c = clients(limit=1000, unreserved=1000, quotas={"ml.g5.xlarge for endpoint usage": 0,
                                                    "ml.g5.xlarge for training job usage": 0})
    code = doctor(Namespace(catalog=str(catalog), out=str(tmp_path / "build"), json=False), c)
    out = capsys.readouterr().out
    assert code == 1
    assert "✗ sagemaker quotas: ml.g5.xlarge for endpoint usage is 0; the catalog needs 2 to create" in out
    assert "request an increase of 'ml.g5.xlarge for training job usage' to at least 1" in out
    assert "a deploy would fail" in out


def test_snapstart_in_a_region_without_it_fails_with_the_fix(catalog, tmp_path):
    report = _report(catalog, tmp_path, limit=1000, unreserved=1000, region="ap-east-2")
    [snap] = [f for f in report.findings if f.check == "snapstart"]
    assert snap.level == "fail" and "clf" in snap.message and "snapstart: false" in snap.fix


def test_unreadable_quotas_are_a_warning_not_a_guess(catalog, tmp_path, capsys):
    c = clients(limit=1000, unreserved=1000, quotas_denied=True)
    code = doctor(Namespace(catalog=str(catalog), out=str(tmp_path / "build"), json=True), c)
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] and report["reserve_concurrency"]
    [quotas] = [f for f in report["findings"] if f["check"] == "sagemaker quotas"]
    assert quotas["level"] == "warn" and "servicequotas:ListServiceQuotas" in quotas["fix"]


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("h.py", "def h(e, c):\n    return {}\n")
    return buf.getvalue()


def test_a_catalog_over_the_apis_routes_quota_fails_naming_the_first_model_that_would_not_deploy(tmp_path, capsys):
    # given 40 Lambda models on one shared HTTP API (300 routes by default)
    from tests.infra.fabricate import fabricate, model_entries

    catalog, build = fabricate(tmp_path / "many", model_entries(lambda_models=40))
    c = clients(limit=1000, unreserved=1000)
    # when the doctor reads the account
    code = doctor(Namespace(catalog=str(catalog), out=str(build), json=False), c)
    out = capsys.readouterr().out
    # then it fails before CloudFormation would, saying which model's stack breaks and the fix
    assert code == 1
    [line] = [ln for ln in out.splitlines() if ln.startswith("✗ http api routes")]
    assert "quota is 300" in line and "the stack of 'lam-032' fails creating its routes" in line
    assert "Routes per API' (L-65B5C802) of at least" in out
    # and with the API's quota raised, the same catalog is ready
    c = clients(limit=1000, unreserved=1000, routes_per_api=500)
    assert doctor(Namespace(catalog=str(catalog), out=str(build), json=False), c) == 0
