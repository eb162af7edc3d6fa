"""Run code under exactly the IAM policy the CDK app synthesizes for a role, in moto.

Reusable for any role of the app (functions, training, build steps):

    app = SynthesizedApp(template)                     # a synthesized stack template
    with moto.mock_aws():
        bound = provision(app)                         # buckets, queues, tables for its resources
        creds = assume(app, app.function_role(...), bound)   # the role's policy, resolved
        function_environment(monkeypatch, app, bound, logical_id, creds)
        with enforcing():
            ...                                        # every AWS call is now authorized by moto

* :class:`SynthesizedApp` finds a role's statements: every ``AWS::IAM::Policy`` attached to
  it plus its inline ``Policies``.
* :func:`provision` creates a moto resource for each bucket, queue and table of the
  template and binds the logical id to its name/ARN; :class:`Bindings` resolves ``Ref``,
  ``Fn::GetAtt``, ``Fn::Join``, ``Fn::Sub``, ``Fn::Select``/``Fn::Split`` and the pseudo
  parameters against them. A logical id that was not bound resolves to an ARN that matches
  nothing, so a statement about it can only deny.
* :func:`assume` creates an IAM role holding exactly that policy and returns temporary
  credentials from ``sts:AssumeRole`` (as Lambda hands its function).
* :func:`enforcing` turns moto's IAM enforcement on (``settings.INITIAL_NO_AUTH_ACTION_COUNT``
  = 0): from then on every request is signature-checked and authorized against the caller's
  policies until the block ends.

moto authorizes S3 and SQS requests against their resource ARNs, but DynamoDB, SageMaker
Runtime, Step Functions, Lambda, CodeDeploy and SSM requests only against ``*``; :func:`enforcing`
adds the table, endpoint, state machine/execution, function (with its qualifier),
deployment group/application and parameter (or path) ARNs, so a statement scoped to one is judged as AWS would. moto does not evaluate
condition keys it is not given (``s3:prefix``): a statement with such a condition denies.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT,
          "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "ModelfnStack", "AWS::NoValue": None}


@dataclass
class Bindings:
    """Logical id → its ``Ref`` value and ``Fn::GetAtt`` attributes in the moto account."""

    values: dict[str, dict[str, str]] = field(default_factory=dict)

    def bind(self, logical: str, ref: str, **attrs: str) -> None:
        self.values[logical] = {"Ref": ref, **attrs}

    def get(self, logical: str, attr: str = "Ref") -> str:
        if logical in PSEUDO and attr == "Ref":
            return PSEUDO[logical]
        bound = self.values.get(logical, {})
        if attr in bound:
            return bound[attr]
        return f"arn:aws:unbound:{REGION}:{ACCOUNT}:{logical}/{attr}"  # matches nothing real

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not next(iter(value)).startswith(("Ref", "Fn::")):
            return {k: self.resolve(v) for k, v in value.items()}
        (fn, arg), = value.items()
        if fn == "Ref":
            return self.get(arg)
        if fn == "Fn::GetAtt":
            logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
            return self.get(logical, attr)
        if fn == "Fn::Join":
            sep, parts = arg
            return sep.join(str(self.resolve(p)) for p in parts)
        if fn == "Fn::Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve(index))]
        if fn == "Fn::Split":
            sep, text = arg
            return str(self.resolve(text)).split(sep)
        if fn == "Fn::Sub":
            text, local = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

            def sub(m: re.Match) -> str:
                name = m.group(1)
                if name in local:
                    return str(local[name])
                logical, _, attr = name.partition(".")
                return str(self.get(logical, attr or "Ref"))

            return re.sub(r"\$\{([^}!]+)\}", sub, text)
        raise ValueError(f"the IAM harness cannot resolve {fn} ({value!r})")


class SynthesizedApp:
    """One synthesized stack template and the policies of its roles."""

    def __init__(self, template: dict) -> None:
        self.template = template
        self.resources: dict[str, dict] = template["Resources"]

    def of_type(self, type_: str) -> dict[str, dict]:
        return {k: r for k, r in self.resources.items() if r["Type"] == type_}

    def function(self, description_prefix: str, description_suffix: str = "") -> tuple[str, dict]:
        """(logical id, properties) of the one function whose Description matches."""
        found = [(k, r["Properties"]) for k, r in self.of_type("AWS::Lambda::Function").items()
                 if r["Properties"].get("Description", "").startswith(description_prefix)
                 and r["Properties"].get("Description", "").endswith(description_suffix)]
        if len(found) != 1:
            raise LookupError(f"expected one function described {description_prefix!r}…{description_suffix!r}, "
                              f"found {[k for k, _ in found]}")
        return found[0]

    def function_role(self, description_prefix: str, description_suffix: str = "") -> str:
        _, props = self.function(description_prefix, description_suffix)
        role = props["Role"]
        if "Fn::GetAtt" not in role:
            raise LookupError(f"function role is not a role of this stack: {role!r}")
        return role["Fn::GetAtt"][0]

    def role_statements(self, role: str) -> list[dict]:
        """Every statement the role holds: its inline policies and attached AWS::IAM::Policy."""
        if self.resources.get(role, {}).get("Type") != "AWS::IAM::Role":
            raise LookupError(f"{role} is not an AWS::IAM::Role of this template")
        props = self.resources[role]["Properties"]
        if props.get("ManagedPolicyArns"):
            raise ValueError(f"{role} has managed policies {props['ManagedPolicyArns']}; the harness "
                             "holds only the template's own statements")
        statements = [s for p in props.get("Policies", []) for s in _listed(p["PolicyDocument"]["Statement"])]
        for policy in self.of_type("AWS::IAM::Policy").values():
            if {"Ref": role} in policy["Properties"].get("Roles", []):
                statements += _listed(policy["Properties"]["PolicyDocument"]["Statement"])
        return statements

    def policy_document(self, role: str, bindings: Bindings) -> dict:
        return {"Version": "2012-10-17", "Statement": bindings.resolve(self.role_statements(role))}


def _listed(statement: Any) -> list[dict]:
    return statement if isinstance(statement, list) else [statement]


def provision(app: SynthesizedApp) -> Bindings:
    """Create the template's buckets, queues and tables in moto (inside ``mock_aws``) and bind
    their logical ids; log groups and SageMaker endpoints are bound by name/ARN only."""
    import boto3

    s3, sqs, ddb = (boto3.client(s, region_name=REGION) for s in ("s3", "sqs", "dynamodb"))
    b = Bindings()
    for logical in app.of_type("AWS::S3::Bucket"):
        name = re.sub(r"[^a-z0-9-]", "", logical.lower())[:63]
        s3.create_bucket(Bucket=name)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        b.bind(logical, name, Arn=f"arn:aws:s3:::{name}")
    for logical in app.of_type("AWS::SQS::Queue"):
        url = sqs.create_queue(QueueName=logical[:80])["QueueUrl"]
        b.bind(logical, url, Arn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{logical[:80]}", QueueName=logical[:80])
    for logical, r in app.of_type("AWS::DynamoDB::Table").items():
        p = r["Properties"]
        ddb.create_table(TableName=logical, KeySchema=p["KeySchema"], AttributeDefinitions=p["AttributeDefinitions"],
                         BillingMode="PAY_PER_REQUEST")
        b.bind(logical, logical, Arn=f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{logical}")
    for logical in app.of_type("AWS::Logs::LogGroup"):
        b.bind(logical, logical, Arn=f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{logical}:*")
    for logical in app.of_type("AWS::SageMaker::Endpoint"):
        name = logical.lower()
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{name}"
        b.bind(logical, arn, EndpointName=name)
    return b


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    session_token: str
    role_arn: str

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_SESSION_TOKEN": self.session_token}

    def client(self, service: str):
        import boto3

        return boto3.client(service, region_name=REGION, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, aws_session_token=self.session_token)


def function_environment(monkeypatch, app: SynthesizedApp, bindings: Bindings, function: str,
                         creds: Credentials) -> dict[str, str]:
    """Set what Lambda gives ``function``'s process: its (resolved) environment variables and
    its role's credentials; boto3's default session is dropped so that clients made from now on
    use them. Returns the function's environment."""
    import boto3

    env = bindings.resolve(dict(app.resources[function]["Properties"].get("Environment", {}).get("Variables", {})))
    for k, v in {**env, **creds.env()}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    return env


def assume(app: SynthesizedApp, role: str, bindings: Bindings) -> Credentials:
    """An IAM role in moto holding exactly ``role``'s synthesized policy, assumed via STS."""
    import boto3

    iam, sts = boto3.client("iam", region_name=REGION), boto3.client("sts", region_name=REGION)
    name = role[:64]
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="synthesized",
                        PolicyDocument=json.dumps(app.policy_document(role, bindings)))
    c = sts.assume_role(RoleArn=arn, RoleSessionName="harness")["Credentials"]
    return Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"], arn)


def _dynamodb_resource(self) -> str:
    params = self.body if isinstance(self.body, dict) else json.loads(self.body or "{}")
    table = params.get("TableName") or "*"
    return f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/{table}"


def _stepfunctions_resource(self) -> str:
    params = self.body if isinstance(self.body, dict) else json.loads(self.body or "{}")
    return params.get("executionArn") or params.get("stateMachineArn") or "*"


def _ssm_resource(self) -> str:
    """SSM parameter calls name a parameter (``Name``) or a path (``Path``): its ARN."""
    params = self.body if isinstance(self.body, dict) else json.loads(self.body or "{}")
    name = params.get("Path") or params.get("Name")
    if not isinstance(name, str):
        return "*"
    return f"arn:aws:ssm:{self.region}:{self.current_account}:parameter/{name.lstrip('/')}"


def _lambda_resource(self) -> str:
    """Lambda's REST paths name the function (``/functions/<name or ARN>/…``, ``?Qualifier=``)."""
    from urllib.parse import unquote

    m = re.search(r"/functions/([^/?]+)", self.path)
    if not m:
        return "*"
    name = unquote(m.group(1))
    arn = name if name.startswith("arn:") else f"arn:aws:lambda:{self.region}:{self.current_account}:function:{name}"
    qualifier = (self.querystring.get("Qualifier") or [None])[0]
    return f"{arn}:{qualifier}" if qualifier else arn


def _lambda_authorize(self, resource: str = "*") -> None:
    """Authorize a Lambda call against the caller's policies without moto's signature re-check,
    which mis-computes the signature of Lambda's REST requests (SignatureDoesNotMatch on a
    correctly signed GetAlias); the caller is still the access key's principal."""
    from moto.iam.access_control import IAMRequest

    class Authorized(IAMRequest):
        def check_signature(self) -> None:
            pass

    self._authenticate_and_authorize_action(Authorized, resource)


def _codedeploy_resource(self) -> str:
    params = self.body if isinstance(self.body, dict) else json.loads(self.body or "{}")
    app, group = params.get("applicationName"), params.get("deploymentGroupName")
    head = f"arn:aws:codedeploy:{self.region}:{self.current_account}"
    if app and group:
        return f"{head}:deploymentgroup:{app}/{group}"
    return f"{head}:application:{app}" if app else "*"


def _sagemaker_runtime_resource(self) -> str:
    parts = self.path.split("/")
    name = parts[2] if len(parts) > 2 and parts[1] == "endpoints" else "*"
    return f"arn:aws:sagemaker:{self.region}:{self.current_account}:endpoint/{name.lower()}"


@contextlib.contextmanager
def enforcing() -> Iterator[None]:
    """moto authorizes every request in this block against the caller's IAM policies."""
    from moto import settings
    from moto.awslambda.responses import LambdaResponse
    from moto.codedeploy.responses import CodeDeployResponse
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.dynamodb.responses import DynamoHandler
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse
    from moto.ssm.responses import SimpleSystemManagerResponse
    from moto.stepfunctions.responses import StepFunctionResponse

    saved = (settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count)
    patched = [(cls, cls.__dict__.get("_determine_resource"))
               for cls in (DynamoHandler, SageMakerRuntimeResponse, StepFunctionResponse, LambdaResponse,
                           CodeDeployResponse, SimpleSystemManagerResponse)]
    DynamoHandler._determine_resource = _dynamodb_resource
    SageMakerRuntimeResponse._determine_resource = _sagemaker_runtime_resource
    StepFunctionResponse._determine_resource = _stepfunctions_resource
    LambdaResponse._determine_resource = _lambda_resource
    LambdaResponse._authenticate_and_authorize_normal_action = _lambda_authorize
    CodeDeployResponse._determine_resource = _codedeploy_resource
    SimpleSystemManagerResponse._determine_resource = _ssm_resource
    settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = 0, 0
    try:
        yield
    finally:
        del LambdaResponse._authenticate_and_authorize_normal_action
        settings.INITIAL_NO_AUTH_ACTION_COUNT, ActionAuthenticatorMixin.request_count = saved
        for cls, original in patched:
            if original is None:
                del cls._determine_resource
            else:
                cls._determine_resource = original


def is_denied(exc: BaseException) -> bool:
    """Whether a botocore error is an authorization refusal."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = exc.response.get("Error", {}).get("Code", "")
    return code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation") or \
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403
