"""``modelfn versions NAME`` / ``promote NAME VERSION`` / ``rollback NAME``.

Locally (default) they act on ``<out>/models/<name>/``; a running ``modelfn up`` notices the
new live version and hot-swaps to it. With ``--deployed`` they act on the deployed stack: the
``live`` alias moves through CodeDeploy (:mod:`infra.versions.deployed`).
"""

from __future__ import annotations

import json
import sys
from argparse import Namespace

from infra.versions.store import VersionError, VersionInfo, VersionStore


def _store(args: Namespace) -> VersionStore:
    store = VersionStore(args.out, args.name)
    if not store.live_dir.is_dir():
        raise VersionError(f"{args.name} is not built in {args.out}; run `modelfn build --model {args.name}` "
                           f"or `modelfn train {args.name}` first")
    return store


def versions(args: Namespace) -> int:
    if args.deployed:
        from infra.versions import deployed

        return deployed.versions_command(args)
    try:
        store = _store(args)
        with store.locked():
            store.adopt_live()
        infos, live = store.versions(), store.live_version()
    except VersionError as exc:
        print(f"modelfn versions: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"model": args.name, "live": live, "versions": [i.to_json() for i in infos]}, indent=2))
        return 0
    _table(args.name, infos, live)
    return 0


def _table(name: str, infos: list[VersionInfo], live: str | None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{name}: versions (● live)", box=box.SIMPLE_HEAD)
    for col in ("", "#", "version", "parent", "mode", "accuracy", "p50 ms", "size", "origin", "decision"):
        t.add_column(col, no_wrap=col not in ("decision",))
    for i in infos:
        m = i.metrics
        origin = i.lineage.get("origin", "?")
        if origin == "training":
            data = (i.lineage.get("data") or {}).get("sha256", "")[:8]
            origin = f"{i.lineage.get('training_job', 'training')} data {data}"
        acc = f"{m['accuracy']:.4f}" if "accuracy" in m else "-"
        t.add_row("●" if i.version == live else "", str(i.number), i.version, i.parent_version or "-", i.mode,
                  acc, f"{m.get('p50_ms', 0):.3f}", f"{m.get('size_bytes', 0) / 1024:.0f} KB", origin,
                  ("promoted: " if i.promoted else "not promoted: ") + i.reason)
    console = Console()
    (console if console.is_terminal else Console(width=200)).print(t)


def promote(args: Namespace) -> int:
    if args.deployed:
        from infra.versions import deployed

        return deployed.promote_command(args)
    try:
        store = _store(args)
        with store.locked():
            store.adopt_live()
            version = store.resolve(args.version)
            if version == store.live_version():
                print(f"{args.name}: {version} is already live")
                return 0
            before = store.live_version()
            store.promote(version, reason=f"promoted by `modelfn promote` over {before}")
    except VersionError as exc:
        print(f"modelfn promote: {exc}", file=sys.stderr)
        return 2
    print(f"{args.name}: {version} is live (was {before}); a running `modelfn up` swaps to it")
    return 0


def rollback(args: Namespace) -> int:
    if args.deployed:
        from infra.versions import deployed

        return deployed.rollback_command(args)
    try:
        store = _store(args)
        with store.locked():
            store.adopt_live()
            before, after = store.rollback()
    except VersionError as exc:
        print(f"modelfn rollback: {exc}", file=sys.stderr)
        return 2
    print(f"{args.name}: rolled back from {before} to {after}; a running `modelfn up` swaps to it")
    return 0
