"""``modelfn synth`` and ``modelfn deploy``: the CDK CLI pinned in package.json.

Runs ``npx --no-install cdk synth --quiet`` from the repository root with the venv first on
PATH (so ``cdk.json``'s ``.venv/bin/python -m infra.cdk.app`` is this interpreter) and the
catalog/build directory passed as context. cdk-nag runs inside the app; any finding fails.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from infra.targets.plan import DEFAULT_STACK_NAME, model_stack_name
from infra.targets.staging import REPO_ROOT


def synth_command(*, catalog: str, build_dir: str) -> list[str]:
    return [
        "npx", "--no-install", "cdk", "synth", "--quiet",
        "-c", f"modelfn:catalog={Path(catalog).resolve()}",
        "-c", f"modelfn:build_dir={Path(build_dir).resolve()}",
    ]


def synth_env() -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    return env


def synth(args: argparse.Namespace) -> int:
    if shutil.which("npx") is None:
        print("modelfn synth: npx not found; install Node.js 20+ and run `npm ci`", file=sys.stderr)
        return 2
    if not (REPO_ROOT / "node_modules" / "aws-cdk").is_dir():
        print("modelfn synth: the pinned CDK CLI is not installed; run `npm ci` in "
              f"{REPO_ROOT}", file=sys.stderr)
        return 2
    cmd = synth_command(catalog=args.catalog, build_dir=args.out)
    return subprocess.call(cmd, cwd=REPO_ROOT, env=synth_env())


def deploy_command(*, catalog: str, build_dir: str, models: list[str], shared: bool = False,
                   all_stacks: bool = False, stack: str = DEFAULT_STACK_NAME,
                   extra: list[str] | None = None) -> list[str]:
    """``cdk deploy`` of exactly the named models' stacks (``--exclusively``: not the shared
    stack they depend on unless ``shared``), or of every stack with ``all_stacks``.

    Stacks deploy one after another (CDK's default concurrency of one): each model stack
    merges its S3 notifications into the shared bucket's configuration, a read-modify-write
    that two stacks deploying at the same moment could race.
    """
    cmd = ["npx", "--no-install", "cdk", "deploy",
           "-c", f"modelfn:catalog={Path(catalog).resolve()}",
           "-c", f"modelfn:build_dir={Path(build_dir).resolve()}",
           "-c", f"modelfn:stack_name={stack}"]
    if all_stacks:
        return [*cmd, "--all", *(extra or [])]
    stacks = ([stack] if shared else []) + [model_stack_name(stack, m) for m in models]
    return [*cmd, "--exclusively", *stacks, *(extra or [])]


def deploy(args: argparse.Namespace) -> int:
    """``modelfn deploy NAME…``: ``cdk deploy`` exactly those models' stacks (built first: synth
    fails naming `modelfn build` for a model that is not)."""
    from infra.catalog import CatalogError, load_catalog

    if not args.name and not args.all and not args.shared:
        print("modelfn deploy: name the models to deploy (or --all, or --shared)", file=sys.stderr)
        return 2
    try:
        catalog = load_catalog(args.catalog)
    except CatalogError as exc:
        print(f"modelfn deploy: {exc}", file=sys.stderr)
        return 2
    known = [m.name for m in catalog.models]
    unknown = [n for n in args.name if n not in known]
    if unknown:
        hints = [f"{n!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(n, known, 1))
                             else "") for n in unknown]
        print(f"modelfn deploy: not in {args.catalog}: {', '.join(hints)}; its models: {', '.join(known)}",
              file=sys.stderr)
        return 2
    context: dict[str, str] = {}
    if not args.dry_run and not getattr(args, "skip_doctor", False):
        from infra.doctor.command import preflight, print_report

        try:  # the account's quotas first: what would roll the deploy back (infra/doctor)
            report = preflight(args.catalog, args.out)
        except Exception as exc:
            print(f"modelfn deploy: cannot check the account first ({exc}); configure AWS credentials "
                  "and a Region, or pass --skip-doctor", file=sys.stderr)
            return 2
        print_report(report, file=sys.stderr)
        if report.failed:
            print("modelfn deploy: not deploying (see the ✗ lines; `modelfn doctor` repeats the check)",
                  file=sys.stderr)
            return 1
        context = report.context
    cmd = deploy_command(catalog=args.catalog, build_dir=args.out, models=list(args.name),
                         shared=args.shared, all_stacks=args.all, stack=args.stack,
                         extra=[*(a for k, v in sorted(context.items()) for a in ("-c", f"{k}={v}")),
                                "--require-approval", args.require_approval])
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    if shutil.which("npx") is None or not (REPO_ROOT / "node_modules" / "aws-cdk").is_dir():
        print("modelfn deploy: the pinned CDK CLI is not installed; run `npm ci` in "
              f"{REPO_ROOT}", file=sys.stderr)
        return 2
    code = subprocess.call(cmd, cwd=REPO_ROOT, env=synth_env())
    if code == 0:
        _prune_versions(args, [m.name for m in catalog.models] if args.all else list(args.name))
    return code


def _prune_versions(args: argparse.Namespace, models: list[str]) -> None:
    """Published versions are retained by the template (rollback needs them); the tool keeps
    the newest few (infra.versions.deployed.prune_versions). A failure here is a warning: the
    deploy itself succeeded."""
    if not models:
        return
    try:
        import boto3

        from infra.versions.deployed import prune_after_deploy

        clients = {s: boto3.client(s) for s in ("cloudformation", "lambda")}
        for model, kinds in prune_after_deploy(clients, args.stack, models).items():
            deleted = sorted({v for versions in kinds.values() for v in versions}, key=int)
            if deleted:
                print(f"{model}: pruned Lambda versions {', '.join(deleted)} (keeping the newest, live and aliased)",
                      file=sys.stderr)
    except Exception as exc:
        print(f"modelfn deploy: deployed, but old Lambda versions were not pruned ({exc}); "
              "`modelfn promote/rollback --deployed` prunes them next time", file=sys.stderr)
