"""Powertools for the zip functions, as a layer built from the versions the images pin.

Why not AWS's public Powertools layer: its ARN was looked up through a versioned SSM
parameter (``/aws/service/powertools/python/<arch>/<runtime>/<version>``) that has gone
missing before, failing the deploy; a hard-coded ARN needs a table of layer numbers per
version and partition that nobody here can check offline. Bundling is robust: the layer is
made at synth from the distributions installed in the build environment, refused unless
each is exactly the version of ``layers/requirements.lock`` (the one the model images run),
pure Python only (wrapt's optional C extension is left out; wrapt falls back to its Python
implementation), so the same zip runs on python3.13 arm64 and x86_64. botocore/jmespath come
with the Lambda runtime.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.cdk.runtimes import ZIP_RUNTIME

LOCK = Path(__file__).resolve().parents[3] / "layers" / "requirements.lock"
#: What ``aws-lambda-powertools[tracer]`` needs beyond the Lambda runtime's boto3.
DISTRIBUTIONS = ("aws-lambda-powertools", "aws-xray-sdk", "wrapt", "typing-extensions")
_SKIP = re.compile(r"(\.so|\.pyd|\.pyc|\.c)$|__pycache__|\.dist-info/(RECORD|INSTALLER|REQUESTED)$")


class PowertoolsLayerError(RuntimeError):
    """The build environment's packages are not the pinned ones; the message says the fix."""


def locked_versions(lock: Path = LOCK) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", line.strip())
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def layer_files(lock: Path = LOCK) -> dict[str, Path]:
    """``python/<relative path>`` → installed file, for every distribution of the layer."""
    pins, files = locked_versions(lock), {}
    for name in DISTRIBUTIONS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise PowertoolsLayerError(f"{name} is not installed in this environment; run "
                                       f"`pip install {name}=={pins.get(name, '?')}`") from None
        if pins.get(name) != dist.version:
            raise PowertoolsLayerError(
                f"{name} {dist.version} is installed but {lock.name} pins {pins.get(name)}; the "
                f"proxy layer must carry what the images run: `pip install {name}=={pins.get(name)}`")
        for f in dist.files or ():
            rel = str(f)
            if rel.startswith("..") or _SKIP.search(rel):
                continue
            path = Path(dist.locate_file(f))
            if path.is_file():
                files[f"python/{rel}"] = path
    return files


def stage_powertools_layer(dest: Path) -> Path:
    """Write the layer's tree under ``dest`` (rewritten only where it changed)."""
    from infra.targets.staging import sync_tree

    return sync_tree(Path(dest), layer_files())


class PowertoolsLayer(Construct):
    """One layer per stack, shared by every zip function that imports Powertools.

    Public attribute: ``layer``."""

    @property
    def layer(self) -> lambda_.LayerVersion:
        return self._layer

    def __init__(self, scope: Construct, id: str, *, stage_dir: Path) -> None:
        """:param stage_dir: where the layer's tree is staged (an asset source)."""
        super().__init__(scope, id)
        self._layer = lambda_.LayerVersion(
            self, "Layer", code=lambda_.Code.from_asset(str(stage_powertools_layer(stage_dir))),
            compatible_runtimes=[ZIP_RUNTIME],
            compatible_architectures=[lambda_.Architecture.ARM_64, lambda_.Architecture.X86_64],
            description="modelfn: aws-lambda-powertools[tracer] at the images' pinned versions",
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )

    @classmethod
    def of(cls, scope: Construct, *, stage_dir: Path) -> lambda_.LayerVersion:
        """The stack's one layer (created on first use)."""
        stack = cdk.Stack.of(scope)
        found = stack.node.try_find_child("PowertoolsLayer")
        return (found or cls(stack, "PowertoolsLayer", stage_dir=stage_dir)).layer
