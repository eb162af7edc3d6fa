"""``modelfn synth``: ``cdk synth`` through the CDK CLI pinned in package.json, offline.

Runs ``npx --no-install cdk synth --quiet`` from the repository root with the venv first on
PATH (so ``cdk.json``'s ``.venv/bin/python -m infra.cdk.app`` is this interpreter) and the
catalog/build directory passed as context. cdk-nag runs inside the app; any finding fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from infra.cdk.staging import REPO_ROOT


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
