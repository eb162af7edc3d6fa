"""``modelfn versions NAME`` / ``promote NAME VERSION`` / ``rollback NAME``.

Locally (default) they act on ``<out>/models/<name>/``; a running ``modelfn up`` notices the
new live version and hot-swaps to it. With ``--deployed`` they call the deployed stack's
control API over HTTPS (SigV4), whose function moves the ``live`` alias through CodeDeploy
(:mod:`infra.versions.deployed`, :mod:`layers.aliases`).
"""

from __future__ import annotations

import json
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

from infra.versions.store import VersionError, VersionInfo, VersionStore


def open_store(out: Path, name: str) -> VersionStore:
    store = VersionStore(out, name)
    if not store.live_dir.is_dir():
        raise VersionError(f"{name} is not built in {out}; run `modelfn build --model {name}` "
                           f"or `modelfn train {name}` first")
    return store


def _store(args: Namespace) -> VersionStore:
    return open_store(args.out, args.name)


def versions_doc(out: Path, name: str) -> dict[str, Any]:
    """What ``modelfn versions NAME --json`` prints (and ``GET /v2/models/{name}/versions`` answers)."""
    store = open_store(out, name)
    with store.locked():
        store.adopt_live()
    return {"model": name, "live": store.live_version(), "versions": [i.to_json() for i in store.versions()]}


class SignatureChange(VersionError):
    """The version's inputs/outputs differ from the live one's: clients would break."""


def promote_version(out: Path, name: str, ref: str, *, force: bool = False) -> dict[str, Any]:
    """Make version ``ref`` (a version or its number) live; what ``promote --json`` prints.
    A version whose signature differs from the live one's is refused unless ``force``
    (:class:`SignatureChange` says what clients would break)."""
    store = open_store(out, name)
    broken = None
    with store.locked():
        store.adopt_live()
        version = store.resolve(ref)
        before = store.live_version()
        if version != before:
            broken = _signature_break(store, version)
            if broken and not force:
                raise SignatureChange(
                    f"{name} {version} has another signature than the live {before}: {broken}. Clients of "
                    f"{before} would break. Promote it with `modelfn promote {name} {ref} --force` once they "
                    "are updated, or serve it under a new model name.")
            store.promote(version, reason=f"promoted by `modelfn promote{' --force' if broken else ''}` over "
                                          f"{before}" + (f" (signature changed: {broken})" if broken else ""))
    return {"model": name, "live": version, "previous": before, "changed": version != before,
            **({"signature_change": broken} if broken else {})}


def _signature_break(store: VersionStore, version: str) -> str | None:
    """What clients of the live version would break on if ``version`` replaced it."""
    from infra.versions.gate import signature_break
    from layers.manifest import ManifestError, read_manifest

    try:
        return signature_break(read_manifest(store.root / version), read_manifest(store.live_dir))
    except ManifestError as exc:
        raise VersionError(f"{store.name} {version} cannot be compared with the live version: {exc}") from exc


def rollback_version(out: Path, name: str) -> dict[str, Any]:
    """Make the previously live version live again; what ``rollback --json`` prints."""
    store = open_store(out, name)
    with store.locked():
        store.adopt_live()
        before, after = store.rollback()
    return {"model": name, "live": after, "previous": before, "changed": True}


def versions(args: Namespace) -> int:
    if args.deployed:
        from infra.versions import deployed

        return deployed.versions_command(args)
    try:
        if args.json:
            print(json.dumps(versions_doc(args.out, args.name), indent=2))
            return 0
        store = _store(args)
        with store.locked():
            store.adopt_live()
        infos, live = store.versions(), store.live_version()
    except VersionError as exc:
        print(f"modelfn versions: {exc}", file=sys.stderr)
        return 2
    _table(args.name, infos, live)
    return 0


def _table(name: str, infos: list[VersionInfo], live: str | None) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{name}: versions (● live)", box=box.SIMPLE_HEAD)
    for col in ("", "#", "version", "parent", "mode", "accuracy", "p50 ms", "tok/s", "size", "origin", "decision"):
        t.add_column(col, no_wrap=col not in ("decision",))
    for i in infos:
        m = i.metrics
        origin = i.lineage.get("origin", "?")
        if origin == "training":
            data = (i.lineage.get("data") or {}).get("sha256", "")[:8]
            origin = f"{i.lineage.get('training_job', 'training')} data {data}"
        acc = f"{m['accuracy']:.4f}" if "accuracy" in m else "-"
        p50 = f"{m['p50_ms']:.3f}" if "p50_ms" in m else "-"  # a generative model has tokens/s instead
        rate = f"{m['tokens_per_s']:.1f}" if m.get("tokens_per_s") else "-"
        t.add_row("●" if i.version == live else "", str(i.number), i.version, i.parent_version or "-", i.mode,
                  acc, p50, rate, f"{m.get('size_bytes', 0) / 1024:.0f} KB", origin,
                  ("promoted: " if i.promoted else "not promoted: ") + i.reason)
    console = Console()
    (console if console.is_terminal else Console(width=200)).print(t)


def promote(args: Namespace) -> int:
    if args.deployed:
        from infra.versions import deployed

        return deployed.promote_command(args)
    try:
        doc = promote_version(args.out, args.name, args.version, force=getattr(args, "force", False))
    except VersionError as exc:
        print(f"modelfn promote: {exc}", file=sys.stderr)
        return 2
    if doc.get("signature_change"):
        print(f"warning: {args.name}'s signature changed ({doc['signature_change']}); clients of "
              f"{doc['previous']} must be updated", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps(doc, indent=2))
    elif not doc["changed"]:
        print(f"{args.name}: {doc['live']} is already live")
    else:
        print(f"{args.name}: {doc['live']} is live (was {doc['previous']}); a running `modelfn up` swaps to it")
    return 0


def rollback(args: Namespace) -> int:
    if args.deployed:
        from infra.versions import deployed

        return deployed.rollback_command(args)
    try:
        doc = rollback_version(args.out, args.name)
    except VersionError as exc:
        print(f"modelfn rollback: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(doc, indent=2))
    else:
        print(f"{args.name}: rolled back from {doc['previous']} to {doc['live']}; a running `modelfn up` swaps to it")
    return 0
