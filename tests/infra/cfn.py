"""Turn a synthesized template's pieces into what AWS would see at deploy, for moto tests.

:class:`Resolver` replaces CloudFormation intrinsics (``Ref``, ``Fn::GetAtt``, ``Fn::Join``,
``Fn::Sub``, ``Fn::Select``, ``Fn::Split``, ``Fn::FindInMap``) with concrete values: pseudo
parameters for one account/region, then names/ARNs the test registers for the resources it
created in moto, then a name derived from the logical id. :func:`role_policy` merges every
inline policy CDK attached to one role, so a test can enforce exactly the synthesized policy
(moto IAM enforcement: :func:`moto.core.set_initial_no_auth_action_count`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PSEUDO = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws",
          "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "ModelfnStack",
          "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/ModelfnStack/0a1b2c3d"}
_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


class Resolver:
    def __init__(self, template: Mapping[str, Any], known: Mapping[str, str] | None = None) -> None:
        """:param known: ``{"Logical": ref value, "Logical.Attr": GetAtt value}`` overrides."""
        self.template, self.known = template, dict(known or {})

    def name(self, logical: str) -> str:
        """The physical name a resource gets when the test does not register one."""
        return self.known.get(logical, logical.lower()[:63])

    def ref(self, logical: str) -> str:
        if logical in PSEUDO:
            return PSEUDO[logical]
        if logical in self.known:
            return self.known[logical]
        if logical not in self.template.get("Resources", {}):
            raise KeyError(f"Ref to {logical!r}: not a resource of the template")
        return self.name(logical)

    def get_att(self, logical: str, attr: str) -> str:
        key = f"{logical}.{attr}"
        if key in self.known:
            return self.known[key]
        rtype = self.template["Resources"][logical]["Type"]
        if rtype == "AWS::S3::Bucket" and attr == "Arn":
            return f"arn:aws:s3:::{self.ref(logical)}"
        if attr == "Arn":
            service = rtype.split("::")[1].lower()
            kind = {"iam": "role", "kms": "key", "codebuild": "project"}.get(service, "resource")
            region = "" if service == "iam" else REGION
            return f"arn:aws:{service}:{region}:{ACCOUNT}:{kind}/{self.name(logical)}"
        raise KeyError(f"GetAtt {key}: register it in known=")

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not next(iter(value)).startswith(("Ref", "Fn::")):
            return {k: self(v) for k, v in value.items()}
        (fn, arg), = value.items()
        if fn == "Ref":
            return self.ref(arg)
        if fn == "Fn::GetAtt":
            logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
            return self.get_att(logical, attr)
        if fn == "Fn::Join":
            return self(arg[0]).join(str(self(v)) for v in self(arg[1]))
        if fn == "Fn::Select":
            return self(arg[1])[int(self(arg[0]))]
        if fn == "Fn::Split":
            return self(arg[1]).split(self(arg[0]))
        if fn == "Fn::FindInMap":
            name, first, second = (self(a) for a in arg)
            return self.template["Mappings"][name][first][second]
        if fn == "Fn::Sub":
            text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self(arg[1]))

            def sub(m: re.Match) -> str:
                key = m[1]
                if key in extra:
                    return str(extra[key])
                if "." in key:
                    return self.get_att(*key.split(".", 1))
                return self.ref(key)

            return _SUB.sub(sub, text)
        if fn == "Fn::ImportValue":  # another stack's export (the shared stack's): register it
            name = self(arg)           # in known= under "Import:<name>", else a stand-in name
            return self.known.get(f"Import:{name}", f"imported-{name.replace(':', '-').lower()}")
        raise KeyError(f"intrinsic {fn} is not supported by the test resolver")


def resources_of_type(template: Mapping[str, Any], rtype: str) -> dict[str, dict]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == rtype}


def role_policy(template: Mapping[str, Any], role_logical: str) -> dict:
    """Every statement of the inline policies CDK attached to ``role_logical``, merged."""
    statements = []
    for policy in resources_of_type(template, "AWS::IAM::Policy").values():
        if {"Ref": role_logical} in policy["Properties"].get("Roles", []):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    if not statements:
        raise KeyError(f"no AWS::IAM::Policy is attached to {role_logical}")
    return {"Version": "2012-10-17", "Statement": statements}


def definition(template: Mapping[str, Any], machine_logical: str, resolve: Resolver) -> dict:
    """A state machine's definition with every intrinsic resolved."""
    raw = template["Resources"][machine_logical]["Properties"]["DefinitionString"]
    return json.loads(resolve(raw))
