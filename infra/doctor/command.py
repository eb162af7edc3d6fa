"""``modelfn doctor``: read the account, say what a deploy of the catalog would hit, and how
to avoid it (infra/doctor/preflight.py has the checks and their AWS sources).

Exit status: 0 when a deploy would go through (warnings included: each says what the deploy
does instead, e.g. skip reserved concurrency), 1 when something would fail, 2 when the
catalog or the account cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from infra.doctor.preflight import Report, account_facts, check, needs_of

MARK = {"ok": "✓", "warn": "!", "fail": "✗"}


def _clients(region: str | None) -> tuple[dict[str, Any], str]:
    import boto3

    session = boto3.session.Session(region_name=region)
    if not session.region_name:
        raise RuntimeError("no AWS Region configured: set AWS_REGION or pass --region")
    return {s: session.client(s) for s in ("lambda", "service-quotas")}, session.region_name


def preflight(catalog_path: str, build_dir: str, region: str | None = None,
              clients: dict[str, Any] | None = None) -> Report:
    """The report for deploying ``catalog_path`` (what ``modelfn deploy`` runs first)."""
    from infra.catalog import load_catalog

    catalog = load_catalog(catalog_path)
    if clients is None:
        clients, region = _clients(region)
    region = clients.get("region", region)
    return check(needs_of(catalog, Path(build_dir)), account_facts(clients, region or "us-east-1"))


def doctor(args: argparse.Namespace, clients: dict[str, Any] | None = None) -> int:
    from infra.catalog import CatalogError

    try:
        report = preflight(args.catalog, args.out, getattr(args, "region", None), clients)
    except CatalogError as exc:
        print(f"modelfn doctor: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # no credentials, no Region, no network: what and how to fix
        print(f"modelfn doctor: cannot read the account ({exc}); configure AWS credentials and a Region "
              "(aws configure, or AWS_PROFILE/AWS_REGION)", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"ok": not report.failed, "reserve_concurrency": report.reserve_concurrency,
                          "context": report.context, "findings": [asdict(f) for f in report.findings]},
                         indent=2))
    else:
        print_report(report)
    return 1 if report.failed else 0


def print_report(report: Report, *, file=None) -> None:
    """The human report: one line per check, each ! and ✗ with its fix."""
    out = file or sys.stdout
    for f in report.findings:
        print(f"{MARK[f.level]} {f.check}: {f.message}", file=out)
        if f.fix:
            print(f"    fix: {f.fix}", file=out)
    if report.context:
        flags = " ".join(f"-c {k}={v}" for k, v in report.context.items())
        print(f"`modelfn deploy` passes {flags}; a plain `cdk deploy` needs it too.", file=out)
    print("a deploy would fail: fix the ✗ lines first" if report.failed else "ready to deploy", file=out)
