"""The ``modelfn`` command line: one thin dispatcher over the build, local and deploy sides.

Each subcommand's implementation lives with the part it drives and is imported lazily, so
``modelfn --help`` stays instant and one broken side does not take the others down.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> "module:function"; each function takes the parsed args and returns an exit code
COMMANDS = {
    "build": "infra.build.command:build",
    "fit": "infra.build.command:fit",
    "up": "infra.local.command:up",
    "invoke": "infra.local.command:invoke",
    "synth": "infra.cdk.command:synth",
    "deploy": "infra.cdk.command:deploy",
    "train": "infra.train.command:train",
    "versions": "infra.versions.command:versions",
    "promote": "infra.versions.command:promote",
    "rollback": "infra.versions.command:rollback",
    "image": "infra.image.command:image",
    "doctor": "infra.doctor.command:doctor",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelfn",
        description="Trained models → quantized ONNX → one serverless endpoint per model.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="convert, quantize behind the accuracy gate, package")
    b.add_argument("--catalog", default="models.yaml", help="catalog file (default models.yaml)")
    b.add_argument("--out", default="build", help="output directory (default build/)")
    b.add_argument("--model", action="append", help="build only this model (repeatable)")
    b.add_argument("--force", action="store_true", help="rebuild even when the cache matches")
    b.add_argument("--json", action="store_true", help="print a JSON summary instead of a table")

    f = sub.add_parser("fit", help="the Lambda-vs-SageMaker fit report for a model")
    f.add_argument("name", help="model name from the catalog")
    f.add_argument("--catalog", default="models.yaml")
    f.add_argument("--out", default="build", help="build directory (default build/)")
    f.add_argument("--rps", type=float, default=1.0, help="request rate for the cost estimate")
    f.add_argument("--json", action="store_true")

    u = sub.add_parser("up", help="run the whole stack locally (no Docker, no AWS account)")
    u.add_argument("--catalog", default="models.yaml")
    u.add_argument("--out", default="build", help="build directory (default build/)")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=3000, help="HTTP API port (default 3000)")
    u.add_argument("--s3-port", type=int, default=4566, help="local S3 port (default 4566)")
    u.add_argument("--warm", type=int, default=1, help="warm processes per function (default 1)")
    u.add_argument("--no-build", action="store_true", help="serve what is built; build nothing")
    u.add_argument("--containers", action="store_true",
                   help="run every function from its built image (podman or docker, host network)")
    u.add_argument("--engine", choices=("docker", "podman"), default=None,
                   help="with --containers: the engine (default: the first usable)")
    u.add_argument("--base", default=None, metavar="IMAGE",
                   help="with --containers: replace the AWS base image (see modelfn image)")

    i = sub.add_parser("invoke", help="send one V2 inference request")
    i.add_argument("name", help="model name")
    i.add_argument("--input", required=True, help=".json V2 request, or .npz/.npy/.csv tensors")
    i.add_argument("--url", default=None,
                   help="base URL (default: local stack, or the deployed stack's ApiUrl output)")
    i.add_argument("--stack", default="ModelfnStack", help="stack whose outputs give the URL")

    s = sub.add_parser("synth", help="cdk synth through the pinned CDK CLI, all checks on")
    s.add_argument("--catalog", default="models.yaml")
    s.add_argument("--out", default="build")
    d = sub.add_parser("doctor", help="check the AWS account (quotas, Region) before a deploy")
    d.add_argument("--catalog", default="models.yaml")
    d.add_argument("--out", default="build", help="build directory (default build/)")
    d.add_argument("--region", default=None, help="default: the AWS configuration's Region")
    d.add_argument("--json", action="store_true")
    dp = sub.add_parser("deploy", help="cdk deploy exactly these models' stacks (each model is its own stack)")
    dp.add_argument("name", nargs="*", help="model names from the catalog")
    dp.add_argument("--all", action="store_true", help="every stack: the shared one and every model's")
    dp.add_argument("--shared", action="store_true",
                   help="also the shared stack (API, bucket, table): needed once, before the first model")
    dp.add_argument("--catalog", default="models.yaml")
    dp.add_argument("--out", default="build", help="build directory (default build/)")
    dp.add_argument("--stack", default="ModelfnStack", help="the shared stack's name (context modelfn:stack_name)")
    dp.add_argument("--require-approval", default="broadening", choices=("never", "any-change", "broadening"),
                   help="cdk deploy's approval of security changes (default broadening)")
    dp.add_argument("--dry-run", action="store_true", help="print the cdk command instead of running it")
    dp.add_argument("--skip-doctor", action="store_true",
                    help="deploy without checking the account's quotas first (modelfn doctor)")
    _add_lifecycle(sub)
    im = sub.add_parser("image", help="build each model's container image (docker, podman or buildah)")
    im.add_argument("--catalog", default="models.yaml")
    im.add_argument("--out", default="build", help="build directory (default build/)")
    im.add_argument("--model", action="append", help="only this model (repeatable)")
    im.add_argument("--engine", choices=("docker", "podman", "buildah"), default=None,
                    help="default: the first usable of docker, podman, buildah")
    im.add_argument("--base", default=None, metavar="IMAGE",
                    help="replace the AWS Lambda Python 3.13 base (a mirror, an offline stand-in)")
    im.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def _add_lifecycle(sub) -> None:
    """``train``, ``versions``, ``promote``, ``rollback`` (README "Training", "Versions")."""
    t = sub.add_parser("train", help="train locally, build the next version, gate it against live, promote")
    t.add_argument("name", help="model name from the catalog (it needs a training: entry)")
    t.add_argument("--catalog", default="models.yaml")
    t.add_argument("--out", default="build", help="build directory (default build/)")
    t.add_argument("--data", default=None, help="training data folder (default: the catalog's training.data)")
    t.add_argument("--hyperparameters", nargs="*", metavar="K=V", default=[],
                   help="override catalog hyperparameters (values decode as JSON, else strings)")
    t.add_argument("--trained", default=None, metavar="DIR",
                   help="build and gate a finished job's model directory (SageMaker's unpacked "
                        "model.tar.gz) instead of training")
    t.add_argument("--json", action="store_true", help="print the outcome as JSON")
    t.add_argument("--verbose", action="store_true", help="show the training run's output")
    t.add_argument("--deployed", action="store_true",
                   help="start a run of the deployed model over HTTPS (POST /v2/models/NAME/train, SigV4); "
                        "with --trained: gate against the deployed live version and, when the candidate "
                        "wins, deploy it (the training pipeline's build step)")
    t.add_argument("--wait", action="store_true", help="with --deployed: follow the run until it ends")
    t.add_argument("--url", default=None, help="with --deployed: the API's URL instead of --stack's ApiUrl output")
    t.add_argument("--stack", default="ModelfnStack", help="with --deployed: the deployed stack")
    t.add_argument("--artifacts-bucket", default=None, help="with --deployed: where versions are published")
    t.add_argument("--deployed-build", default=None, metavar="DIR",
                   help="with --deployed: the build `cdk deploy` shipped (the live artifact's fallback)")
    t.add_argument("--outcome", default=None, metavar="FILE", help="with --deployed: write the outcome JSON here")
    v = sub.add_parser("versions", help="every version of a model: metrics, lineage, which is live")
    p = sub.add_parser("promote", help="make a kept version live")
    r = sub.add_parser("rollback", help="make the previously live version live again")
    for parser in (v, p, r):
        parser.add_argument("name", help="model name")
        if parser is p:
            parser.add_argument("version", help="version id (or a unique prefix), or its number (3 / v3)")
            parser.add_argument("--force", action="store_true",
                                help="promote even when its inputs/outputs differ from the live version's "
                                     "(clients of the live version break)")
        parser.add_argument("--out", default="build", help="build directory (default build/)")
        parser.add_argument("--deployed", action="store_true",
                            help="act on the deployed stack through its HTTPS control API (SigV4; the live "
                                 "alias moves through CodeDeploy) instead of local")
        parser.add_argument("--stack", default="ModelfnStack", help="deployed stack name (its ApiUrl output)")
        parser.add_argument("--url", default=None, help="with --deployed: the API's URL instead of --stack's output")
        parser.add_argument("--json", action="store_true",
                            help="print JSON (what the HTTPS route /v2/models/{name}/… answers)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module, func = COMMANDS[args.command].split(":")
    try:
        impl = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as exc:
        print(f"modelfn {args.command}: not available in this install ({exc}).", file=sys.stderr)
        return 2
    try:
        return int(impl(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
