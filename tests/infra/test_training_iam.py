"""The CodeBuild step's S3 calls, made under exactly the synthesized policy (moto IAM on).

The build step downloads the job's ``model.tar.gz`` (``aws s3 cp``: HeadObject, GetObject)
and publishes the build (``aws s3 sync``: ListObjectsV2 under the destination prefix, then a
PutObject or a multipart upload per file). A user holding only the project role's resolved
policy makes the same calls against moto with IAM enforcement on (every request after the
setup: :func:`enforced`). moto does not evaluate
``s3:prefix`` conditions (it ignores StringLike), so the prefix scoping of ListBucket is
asserted on the template instead.
"""

from __future__ import annotations

import copy
import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count

from tests.infra.cfn import REGION, Resolver, resources_of_type, role_policy
from tests.infra.conftest import app_template, shared_synth
from tests.infra.test_stack import MODELS, _synthesize

pytestmark = pytest.mark.slow

MODEL = next(m for m in MODELS if "training" in m)["name"]
ARTIFACT = f"{MODEL}/training-output/{MODEL}-0b6c/output/model.tar.gz"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> dict:
    workdir, _info = shared_synth(tmp_path_factory, "stack", _synthesize)
    return app_template(workdir / "cdk.out")


def _build_role_policy(template: dict) -> tuple[dict, str]:
    """(the CodeBuild role's resolved policy, the artifacts bucket's name)."""
    [project] = resources_of_type(template, "AWS::CodeBuild::Project").values()
    role = project["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
    resolve = Resolver(template)
    [bucket] = [k for k in resources_of_type(template, "AWS::S3::Bucket") if k.startswith("TrainingArtifacts")]
    return resolve(role_policy(template, role)), resolve.name(bucket)


def enforced(calls):
    """Run ``calls()`` with moto's IAM enforcement on for every request it makes."""
    return set_initial_no_auth_action_count(0)(calls)()


def _client_with(policy: dict, bucket: str):
    """Set up the bucket and a user holding ``policy`` (moto enforces nothing yet)."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=ARTIFACT, Body=b"trained")
    iam = boto3.client("iam", region_name=REGION)
    iam.create_user(UserName="codebuild")
    iam.put_user_policy(UserName="codebuild", PolicyName="synthesized", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="codebuild")["AccessKey"]
    return boto3.client("s3", region_name=REGION, aws_access_key_id=key["AccessKeyId"],
                        aws_secret_access_key=key["SecretAccessKey"])


def _denied(call, **kwargs) -> bool:
    try:
        call(**kwargs)
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("AccessDenied", "403")
    return False


@mock_aws
def test_the_build_step_downloads_and_publishes_under_the_synthesized_policy(template) -> None:
    policy, bucket = _build_role_policy(template)
    s3 = _client_with(policy, bucket)
    enforced(lambda: _build_step_calls(s3, bucket))


def _build_step_calls(s3, bucket: str) -> None:
    dest = f"{MODEL}/builds/7/"
    # aws s3 cp "$MODEL_ARTIFACT" /tmp/trained.tar.gz
    s3.head_object(Bucket=bucket, Key=ARTIFACT)
    assert s3.get_object(Bucket=bucket, Key=ARTIFACT)["Body"].read() == b"trained"
    # aws s3 sync build/models/<name> s3://…/builds/7/: list the destination, upload each file
    assert s3.list_objects_v2(Bucket=bucket, Prefix=dest)["KeyCount"] == 0
    s3.put_object(Bucket=bucket, Key=f"{dest}manifest.json", Body=b"{}")
    upload = s3.create_multipart_upload(Bucket=bucket, Key=f"{dest}model.onnx")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key=f"{dest}model.onnx", UploadId=upload, PartNumber=1,
                          Body=b"x" * (5 * 1024 * 1024))
    s3.complete_multipart_upload(Bucket=bucket, Key=f"{dest}model.onnx", UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    aborted = s3.create_multipart_upload(Bucket=bucket, Key=f"{dest}partial.bin")["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key=f"{dest}partial.bin", UploadId=aborted)
    # and nothing beyond the model's own prefixes
    assert _denied(s3.put_object, Bucket=bucket, Key="other-model/builds/1/model.onnx", Body=b"x")
    assert _denied(s3.put_object, Bucket=bucket, Key=f"{MODEL}/training-output/x", Body=b"x")
    assert _denied(s3.get_object, Bucket=bucket, Key=f"{dest}manifest.json")
    assert _denied(s3.delete_object, Bucket=bucket, Key=ARTIFACT)


@mock_aws
def test_without_list_bucket_aws_s3_sync_is_denied(template) -> None:
    # given the policy without its ListBucket statement (what the build role had before)
    policy, bucket = _build_role_policy(template)
    stripped = copy.deepcopy(policy)
    stripped["Statement"] = [s for s in stripped["Statement"] if "s3:ListBucket" not in _actions(s)]
    s3 = _client_with(stripped, bucket)
    # then the sync's first call, ListObjectsV2 on the destination, is refused
    assert enforced(lambda: _denied(s3.list_objects_v2, Bucket=bucket, Prefix=f"{MODEL}/builds/7/"))


def test_list_bucket_is_scoped_to_the_models_builds_prefix(template) -> None:
    policy, _ = _build_role_policy(template)
    listing = [s for s in policy["Statement"] if "s3:ListBucket" in _actions(s)]
    assert listing == [{
        "Action": "s3:ListBucket", "Effect": "Allow", "Sid": "ListOwnBuilds",
        "Condition": {"StringLike": {"s3:prefix": [f"{MODEL}/builds/*"]}},
        "Resource": listing[0]["Resource"],
    }]
    assert listing[0]["Resource"].startswith("arn:aws:s3:::trainingartifacts")
    kms = {a for s in policy["Statement"] for a in _actions(s) if a.startswith("kms:")}
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= kms  # SSE-KMS reads, writes, multipart


def _actions(statement: dict) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else action


def test_the_build_step_may_deploy_only_its_own_models_functions(template) -> None:
    """``modelfn train --deployed`` updates the model's functions and starts its CodeDeploy
    deployments (infra/train/deployed.py); nothing of another model."""
    policy, _ = _build_role_policy(template)
    by_sid = {s.get("Sid"): s for s in policy["Statement"]}
    functions = json.dumps(by_sid["DeployFunctions"]["Resource"])
    assert "clflambdaapifunction" in functions and "clflambdabatchfunction" in functions
    assert "openmodel" not in functions
    assert "lambda:UpdateFunctionCode" in by_sid["DeployFunctions"]["Action"]
    deploys = [s for s in policy["Statement"] if "codedeploy:CreateDeployment" in _actions(s)]
    assert len(deploys) == 2 and "openmodel" not in json.dumps(deploys).lower()
    assert by_sid["ReadStackOutputs"]["Resource"].startswith("arn:aws:cloudformation:")
    assert by_sid["PushModelImage"]["Resource"].endswith(":repository/cdk-*-container-assets-*")
