"""``modelfn train NAME``: train locally, build the next version, gate it, promote or say why not.

Exit status: 0 whether or not the new version was promoted (the report says which and why),
1 when training or the build failed, 2 for a catalog or usage problem.
"""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from pathlib import Path

from infra.catalog import CatalogError, load_catalog


def train(args: Namespace) -> int:
    if getattr(args, "deployed", False):
        return train_deployed(args)
    from rich.console import Console

    from infra.train.lifecycle import BuildFailed, train_and_promote
    from infra.train.local import TrainingError, parse_overrides

    err = Console(stderr=True, highlight=False, soft_wrap=True)  # messages stay one line in logs
    try:
        catalog = load_catalog(args.catalog)
        overrides = parse_overrides(args.hyperparameters)
    except (CatalogError, ValueError) as exc:
        err.print(f"[red]modelfn train[/red]: {exc}")
        return 2
    verbose = getattr(args, "verbose", False)
    status = err.status(f"{args.name}: starting", spinner="dots") if err.is_terminal and not args.json else None

    def on_stage(stage: str) -> None:
        if status is not None:
            status.update(f"{args.name}: {stage}")
        elif not args.json:
            print(f"  {args.name}: {stage}", file=sys.stderr, flush=True)

    def on_line(line: str) -> None:
        if verbose:
            err.print(f"[dim]  train | {line}[/dim]")

    try:
        if status is not None:
            status.start()
        outcome = train_and_promote(catalog, args.name, Path(args.out), data=args.data,
                                    hyperparameters=overrides, on_line=on_line, on_stage=on_stage,
                                    trained=Path(args.trained) if args.trained else None)
    except CatalogError as exc:
        err.print(f"[red]modelfn train[/red]: {exc}")
        return 2
    except TrainingError as exc:
        where = f" (log: {exc.log})" if exc.log and exc.log.is_file() else ""
        _fail(args, err, f"training failed: {exc.reason}{where}")
        return 1
    except BuildFailed as exc:
        _fail(args, err, f"the trained model did not build: {exc}")
        return 1
    finally:
        if status is not None:
            status.stop()
    if args.json:
        print(json.dumps({"ok": True, **outcome.to_dict()}, indent=2))
        return 0
    t = outcome.training
    data = t.get("data", {})
    print(f"{outcome.model}: trained in {t.get('seconds', 0):.1f} s on {t.get('device')} "
          f"({data.get('files')} file(s), {data.get('bytes', 0):,} B, data {str(data.get('sha256', ''))[:12]})")
    parent = f" (parent {outcome.parent_version})" if outcome.parent_version else ""
    print(f"{outcome.model}: built v{outcome.number} {outcome.version} [{outcome.mode}]{parent}")
    verdict = "PROMOTED: now live" if outcome.promoted else "NOT promoted: kept as an artifact"
    print(f"{outcome.model}: {verdict}; {outcome.reason}")
    return 0


def _fail(args: Namespace, err, message: str) -> None:
    if args.json:
        print(json.dumps({"ok": False, "model": args.name, "error": message}, indent=2))
    else:
        err.print(f"[red]modelfn train[/red]: {args.name}: {message}")


def start_deployed(args: Namespace) -> int:
    """``modelfn train NAME --deployed`` (no ``--trained``): start a run of the deployed model over
    HTTPS (``POST /v2/models/{name}/train``, SigV4) with ``--hyperparameters`` over the catalog's,
    print the run; with ``--wait``, follow its status URL until it ends. Exit 0 when it started
    (and, waiting, succeeded), 1 when the run failed, 2 when the API refused it."""
    import time

    from infra.client.control import ControlError
    from infra.train.local import parse_overrides
    from infra.versions.deployed import control_client

    try:
        overrides = parse_overrides(args.hyperparameters)
        api = control_client(args)
        run = api.train(args.name, overrides, args.data)
        while getattr(args, "wait", False) and run["status"] in ("queued", "running"):
            time.sleep(getattr(args, "poll_s", 3))
            run = {**run, **api.run(args.name, run["run_id"])}
    except (ControlError, ValueError) as exc:
        print(f"modelfn train --deployed: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(run, indent=2))
    return 1 if run["status"] == "failed" else 0


def train_deployed(args: Namespace, clients: dict | None = None, push=None) -> int:
    """``modelfn train NAME --trained DIR --deployed``: gate against live, deploy a winner.
    Exit 0 whether or not it won (the outcome says why), 1 when anything failed.
    Without ``--trained``: :func:`start_deployed`."""
    from infra.train.deployed import engine_pusher, retrain_deployed
    from infra.train.lifecycle import BuildFailed
    from infra.train.local import TrainingError
    from infra.versions.deployed import DeployedError

    if not args.trained:
        return start_deployed(args)
    if not args.artifacts_bucket:
        print("modelfn train --trained DIR --deployed: needs --artifacts-bucket BUCKET", file=sys.stderr)
        return 2
    try:
        catalog = load_catalog(args.catalog)
        if clients is None:
            import boto3

            clients = {s: boto3.client(s) for s in ("cloudformation", "lambda", "codedeploy", "s3")}
        outcome = retrain_deployed(
            catalog, args.name, trained=Path(args.trained), out_dir=Path(args.out), stack=args.stack,
            bucket=args.artifacts_bucket, clients=clients,
            push=push or engine_pusher(architecture=catalog.get(args.name).architecture),
            deployed_dir=Path(args.deployed_build) if args.deployed_build else None,
            on_stage=lambda s: print(f"  {args.name}: {s}", file=sys.stderr, flush=True))
    except (CatalogError, TrainingError, BuildFailed, DeployedError) as exc:
        print(f"modelfn train --deployed: {args.name}: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(outcome)
    if args.outcome:
        Path(args.outcome).write_text(text)
    print(text)
    return 0
