"""``modelfn build`` and ``modelfn fit``: the pipeline's command line (rich UI or ``--json``)."""

from __future__ import annotations

import json
import sys
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

from infra.build.builder import STAGES, BuildResult
from infra.catalog import CatalogError, load_catalog


def _sizes(a: int, b: int) -> str:
    if max(a, b) >= 1024**2:
        return f"{a / 1024**2:.1f}→{b / 1024**2:.1f} MB"
    return f"{a / 1024:.0f}→{b / 1024:.0f} KB"


def _gate(shipped: dict[str, Any]) -> str:
    """The two most telling gate figures: top-1 agreement and accuracy, else cosine and error."""
    keys = [k for k in ("top1_agreement", "accuracy", "perplexity_ratio") if k in shipped] or \
        [k for k in ("min_cosine", "max_abs_error") if k in shipped]
    labels = {"top1_agreement": "top1", "accuracy": "acc", "min_cosine": "cos", "max_abs_error": "err",
              "perplexity_ratio": "ppl×"}
    return " ".join(f"{labels[k]} {shipped[k]:.3f}" for k in keys) or "-"


def summary_row(r: BuildResult) -> dict[str, Any]:
    """One model's line of the final table, as data (shared by the table and ``--json``)."""
    if not r.ok or not r.manifest:
        return {"model": r.name, "status": "failed", "error": r.error}
    m = r.manifest
    fp32, shipped = m["metrics"]["fp32"], m["metrics"]["shipped"]
    q = m["quantization"]
    return {"model": r.name, "status": "reused" if r.reused else "built", "version": m["version"],
            "mode": q["mode"], "fallback_reason": q.get("fallback_reason"),
            "size_fp32": fp32["size_bytes"], "size_shipped": shipped["size_bytes"],
            "p50_fp32_ms": fp32.get("p50_ms"), "p50_shipped_ms": shipped.get("p50_ms"),
            **({"tokens_per_s": shipped.get("tokens_per_s"), "ttft_ms": shipped.get("ttft_ms")}
               if m.get("task") == "generation" else {}),
            "gate": {k: shipped[k] for k in ("top1_agreement", "max_abs_error", "min_cosine", "accuracy",
                                             "perplexity_ratio") if k in shipped},
            "target": m["target"], "memory_mb": m.get("fit", {}).get("memory_mb"),
            "warning": m["metrics"].get("unmeasured"), "warnings": m.get("warnings", []),
            "log": r.log, "measured_at": _measured_at(m), "estimate": bool(m["metrics"].get("input", {}).get("estimate")),
            "model_dir": str(r.model_dir)}


def _measured_at(manifest: dict[str, Any]) -> str | None:
    from infra.build.fit import shape_label

    shapes = manifest["metrics"].get("input", {}).get("shapes")
    return shape_label(shapes) if shapes else None


def _p50(fp32: float | None, shipped: float | None, estimate: bool = False) -> str:
    if fp32 is None or shipped is None:
        return "unmeasured"
    return f"{'~' if estimate else ''}{fp32:.3f}→{shipped:.3f}"


#: The table fits 80 columns: long model names wrap (never truncated) and the legend says what
#: the short forms mean.
LEGEND = ("size and p50: fp32→shipped, measured at each model's first example row; "
          "~ estimate (no data in the catalog: measured at default shapes, see below); "
          "top1 = top-1 agreement with fp32, acc = accuracy; generation: tokens/s on this host, "
          "ppl× = perplexity over fp32's")


def _table(results: list[BuildResult], console) -> None:
    from rich import box
    from rich.table import Table

    t = Table(title="modelfn build", caption=LEGEND, box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("model", "mode", "size", "p50 ms", "gate", "target", "status"):
        t.add_column(col, no_wrap=col != "model", overflow="fold", min_width=8 if col == "model" else None)
    for r in results:
        row = summary_row(r)
        if row["status"] == "failed":
            t.add_row(r.name, "-", "-", "-", "-", "-", "[red]failed[/red]")
            continue
        speed = (f"{row['tokens_per_s']} tok/s" if "tokens_per_s" in row
                 else _p50(row["p50_fp32_ms"], row["p50_shipped_ms"], row["estimate"]))
        t.add_row(row["model"], row["mode"], _sizes(row["size_fp32"], row["size_shipped"]), speed,
                  _gate(r.manifest["metrics"]["shipped"]), row["target"],
                  "reused" if r.reused else "[green]built[/green]")
    console.print(t)
    for r in results:
        if r.log:
            console.print(f"[dim]{r.name}: {r.log}[/dim]", highlight=False)
        for warning in (r.manifest or {}).get("warnings", []) if r.ok else []:
            console.print(f"[yellow]{r.name}: warning[/yellow]: {warning}", highlight=False)
        if r.ok and (why := r.manifest["quantization"].get("fallback_reason")):
            console.print(f"[yellow]{r.name}[/yellow]: {why}")
        if r.ok and (why := r.manifest["metrics"].get("unmeasured")):
            console.print(f"[yellow]{r.name}: warning[/yellow]: {why}", highlight=False)
        elif r.ok and (inp := r.manifest["metrics"].get("input", {})).get("estimate"):
            console.print(f"[yellow]{r.name}: estimate[/yellow]: latency and memory measured at "
                          f"{_measured_at(r.manifest)}, the build's default shapes (no data in the "
                          f"catalog); to measure at the shapes you serve, {inp['to_measure_for_real']}",
                          highlight=False)
        if not r.ok:
            console.print(f"[red]{r.name}[/red]: {r.error}")


def build(args: Namespace) -> int:
    """Build the catalog; exit 0 when every selected model built, 1 otherwise, 2 on a bad catalog."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from infra.build import build_catalog

    err = Console(stderr=True)
    try:
        catalog = load_catalog(args.catalog)
        names = args.model or [m.name for m in catalog.models]
        for n in names:
            catalog.get(n)
    except CatalogError as exc:
        if args.json:
            print(json.dumps({"ok": False, "error": str(exc), "models": []}))
        else:
            err.print(f"[red]catalog error[/red]: {exc}", highlight=False)
        return 2
    progress = Progress(TextColumn("{task.fields[model]:<20}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=err, disable=args.json or not err.is_terminal, transient=False)
    tasks = {n: progress.add_task("waiting", total=len(STAGES), model=n) for n in names}

    plain = not args.json and not err.is_terminal  # a log file or a pipe: timestamped stage lines

    def on_stage(model: str, stage: str) -> None:
        if plain:
            print(f"{time.strftime('%H:%M:%S')} {model}: {stage}", file=sys.stderr, flush=True)
            return
        if stage in STAGES:
            progress.update(tasks[model], completed=STAGES.index(stage), description=stage)
        else:
            progress.update(tasks[model], description=stage)

    if plain:
        print(f"{time.strftime('%H:%M:%S')} modelfn build: {len(names)} model(s) from {args.catalog} "
              f"into {args.out}", file=sys.stderr, flush=True)
    with progress:
        results = []
        for n in names:
            (r,) = build_catalog(catalog, args.out, [n], force=args.force, on_stage=on_stage)
            if plain:
                print(f"{time.strftime('%H:%M:%S')} {n}: "
                      f"{'reused' if r.reused else 'built' if r.ok else 'FAILED'} in {r.seconds:.1f} s",
                      file=sys.stderr, flush=True)
            progress.update(tasks[n], completed=len(STAGES),
                            description="reused" if r.reused else ("done" if r.ok else "[red]failed"))
            results.append(r)
    ok = all(r.ok for r in results)
    if args.json:
        print(json.dumps({"ok": ok, "out": str(Path(args.out)), "models": [summary_row(r) for r in results]},
                         indent=2))
    else:
        from rich.console import Console

        _table(results, _wide(Console()))
    return 0 if ok else 1


def _idle(spec, manifest, facts) -> dict[str, list]:
    """What each option bills with no traffic (infra/build/idle.py), from the catalog entry and
    the build's measurements."""
    from infra.build import fit as fitting
    from infra.build.idle import KEEP_VERSIONS, idle_costs

    memory = spec.memory_mb or facts["memory_mb"]
    instance = facts.get("instance_type") or spec.instance_type
    hourly = fitting.SAGEMAKER_INSTANCES.get(instance, fitting.SAGEMAKER_INSTANCES["ml.m5.large"])[0]
    common = dict(memory_mb=memory, architecture=spec.architecture, image_bytes=int(facts.get("image_bytes") or 0),
                  model_bytes=int((manifest.metrics.get("shipped") or {}).get("size_bytes") or 0),
                  kept_versions=KEEP_VERSIONS, trained=spec.training is not None)
    return {"lambda": idle_costs(target="lambda", snapstart=spec.snapstart_enabled,
                                 provisioned=spec.provisioned_concurrency or 0, **common),
            "sagemaker": idle_costs(target="sagemaker", instance_hourly=hourly, **common)}


def shared_idle_usd() -> float:
    from infra.build.idle import shared_idle_costs

    return sum(i.usd for i in shared_idle_costs())


def fit(args: Namespace) -> int:
    """Print the fit report of a built model, with the monthly cost at ``--rps``."""
    from rich.console import Console
    from rich.table import Table

    from infra.build import fit as fitting
    from layers.manifest import ManifestError, read_manifest

    model_dir = Path(args.out) / "models" / args.name
    try:
        catalog = load_catalog(args.catalog)
        spec = catalog.get(args.name)
        manifest = read_manifest(model_dir)
    except CatalogError as exc:
        print(f"modelfn fit: {exc}", file=sys.stderr)
        return 2
    except ManifestError as exc:
        print(f"modelfn fit: {args.name} is not built in {args.out} ({exc}); run "
              f"`modelfn build --model {args.name}` first", file=sys.stderr)
        return 2
    facts = manifest.extra.get("fit")
    if not facts:
        print(f"modelfn fit: {model_dir}/manifest.json has no fit facts; rebuild with "
              f"`modelfn build --force --model {args.name}`", file=sys.stderr)
        return 2
    if args.rps < 0:
        print("modelfn fit: --rps must be ≥ 0", file=sys.stderr)
        return 2
    generation = manifest.extra.get("task") == "generation"
    # a generative request lasts a whole completion: max_tokens at the build host's tokens/s
    p50 = (facts["completion_s"] * 1000 if facts.get("completion_s") is not None else None) if generation \
        else manifest.metrics["shipped"]["p50_ms"]
    if p50 is None and generation:
        print(f"modelfn fit: {args.name}'s tokens/s is unmeasured (no token was generated at build); rebuild "
              f"with `modelfn build --force --model {args.name}`", file=sys.stderr)
        return 2
    if p50 is None:
        print(f"modelfn fit: {args.name}'s latency is unmeasured ({manifest.metrics.get('unmeasured')}); "
              f"then rebuild with `modelfn build --force --model {args.name}`", file=sys.stderr)
        return 2
    cost = fitting.monthly_cost(facts, p50, args.rps, architecture=spec.architecture,
                                memory_mb=spec.memory_mb, idle=_idle(spec, manifest, facts))
    report = {"name": manifest.name, "version": manifest.version, "target": manifest.target,
              "target_reasons": list(manifest.target_reasons), "fit": facts, "cost": cost,
              "estimate": bool(manifest.metrics.get("input", {}).get("estimate")),
              "measured_at": facts.get("measured_at")}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    console = _wide(Console())
    t = Table(title=f"fit: {manifest.name} {manifest.version} → {manifest.target}", show_header=False)
    t.add_column("check")
    for reason in manifest.target_reasons:
        t.add_row(reason)
    console.print(t)
    if generation:
        console.print(f"recommended Lambda memory {facts['memory_mb']} MB, timeout {facts['timeout_s']} s; "
                      f"weights {facts['weights_bytes'] / 1024**2:.1f} MB + KV cache "
                      f"{facts['kv_cache_bytes'] / 1024**2:.1f} MB at max_context {facts['max_context']}; "
                      f"{facts['tokens_per_s']} tokens/s, first token {facts['ttft_ms']} ms on the build host; "
                      f"a request is costed as one {facts['max_tokens']}-token completion", highlight=False)
    else:
        console.print(f"recommended Lambda memory {facts['memory_mb']} MB, timeout {facts['timeout_s']} s; "
                      f"peak RSS {facts['peak_rss_mb']} MB, init {facts['init_s']} s"
                      f"{' at ' + facts['measured_at'] if facts.get('measured_at') else ''}", highlight=False)
    if (inp := manifest.metrics.get("input", {})).get("estimate"):
        console.print(f"[yellow]estimate[/yellow]: {args.name} came with no data, so latency, memory and "
                      f"cost were measured at the build's default shapes ({facts.get('measured_at')}), not "
                      f"at what clients send; to make them real, {inp['to_measure_for_real']}.",
                      highlight=False)
    c = Table(title=f"monthly cost at {args.rps:g} req/s ({cost['requests_per_month']:,} requests)")
    for col in ("option", "USD / month", "how"):
        c.add_column(col)
    lam, sm = cost["lambda"], cost["sagemaker"]
    c.add_row("Lambda + HTTP API", f"{lam['usd']:,.2f}", f"{lam['memory_mb']} MB × {lam['billed_ms']} ms per request")
    for item in lam["idle"]:
        c.add_row(f"  + idle: {item['item']}", f"{item['usd']:,.2f}", item["why"])
    c.add_row("[bold]Lambda total[/bold]", f"[bold]{lam['total_usd']:,.2f}[/bold]", "")
    c.add_row("SageMaker real-time", f"{sm['usd']:,.2f}", f"{sm['instances']} × {sm['instance_type']} always on")
    for item in sm["idle"]:
        c.add_row(f"  + idle: {item['item']}", f"{item['usd']:,.2f}", item["why"])
    c.add_row("[bold]SageMaker total[/bold]", f"[bold]{sm['total_usd']:,.2f}[/bold]", "")
    console.print(c)
    console.print("idle costs bill with no traffic (README \"What bills while idle\"); the app's dashboard "
                  f"adds ${shared_idle_usd():.2f} once", highlight=False)
    console.print(f"cheaper at this rate: [bold]{cost['cheaper']}[/bold] (list prices: infra/build/fit.py)")
    return 0


def _wide(console):
    """Rich falls back to 80 columns when stdout is not a terminal (CI logs, pipes), which
    truncates the summary table; such output is read in a log, so give it room."""
    return console if console.is_terminal else type(console)(width=160)
