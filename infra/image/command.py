"""``modelfn image``: build each model's image with docker, podman or buildah (infra/cli.py).

Prints a table (model, tag, image MB, model layer MB, seconds) or, with ``--json``,
``{"ok": bool, "images": [{"model", "tag", "engine", "size_bytes", "model_layer_bytes",
"seconds"}]}``. Exit 1 with a message naming the fix when no engine is usable, a model is
not built, or a build fails (the other models are still built and listed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from infra.image.build import ImageResult, ImageTarget, build_one, plan
from infra.image.engine import Engine, EngineError, find_engine
from infra.targets import staging

MB = 1_000_000  # decimal, as registries and Lambda report image sizes


def _fail(message: str) -> int:
    print(f"modelfn image: {message}", file=sys.stderr)
    return 1


def targets_for(args) -> list[ImageTarget]:
    """Raises ``CatalogError``/``NotBuiltError``/``ValueError`` with the fix in the message."""
    from infra.catalog import load_catalog
    from infra.targets.deploy_spec import load_deploy_spec, load_deploy_specs

    catalog = load_catalog(args.catalog)
    out = Path(args.out)
    wanted = list(dict.fromkeys(args.model or []))
    known = {m.name for m in catalog.models}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"no model named {', '.join(map(repr, unknown))} in {args.catalog}; "
                         f"choose from {', '.join(sorted(known))}")
    if wanted:  # only these need to be built
        specs = [load_deploy_spec(m, out) for m in catalog.models if m.name in wanted]
    else:
        specs = list(load_deploy_specs(catalog, out))
    return plan(specs, stage_dir=(out / "cdk-stage").resolve(), python_base=args.base)


def failure_hint(error: str, target: ImageTarget) -> str:
    """What to do about a failed build, from what the engine said."""
    low = error.lower()
    if "python_base" not in {k.lower() for k in target.build_args} and (
            staging.DEFAULT_PYTHON_BASE.split(":")[0] in low or "pull" in low):
        return (f"the engine could not pull {staging.DEFAULT_PYTHON_BASE}; check network access "
                "to public.ecr.aws, or pass --base IMAGE (a mirror or a local stand-in: "
                "python -m infra.image.standin builds one)")
    if "exec format error" in low:
        return (f"building {target.platform} on this machine needs QEMU "
                "(`apt-get install qemu-user-static binfmt-support`) or a builder of that "
                "architecture")
    if "pip" in low or "hash" in low:
        return ("installing the locked closure failed: check access to pypi.org from builds, and "
                "run `make lock` if layers/requirements.txt changed")
    return "see the engine output above, fix the cause and run `modelfn image` again"


def image(args) -> int:
    from infra.catalog import CatalogError
    from infra.targets.deploy_spec import NotBuiltError

    try:
        targets = targets_for(args)
    except (CatalogError, NotBuiltError, ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    try:
        engine = find_engine(args.engine)
    except EngineError as exc:
        return _fail(str(exc))
    results, errors = _build_all(engine, targets, quiet=args.json)
    if args.json:
        print(json.dumps({"ok": not errors, "images": [r.to_dict() for r in results]}, indent=2))
    else:
        _table(results)
    for message in errors:
        print(f"modelfn image: {message}", file=sys.stderr)
    return 1 if errors else 0


def _build_all(engine: Engine, targets: list[ImageTarget], *, quiet: bool
               ) -> tuple[list[ImageResult], list[str]]:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    results: list[ImageResult] = []
    errors: list[str] = []
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True, disable=quiet) as progress:
        for target in targets:
            task = progress.add_task(f"{engine.name}: building {target.tag} ({target.kind}"
                                     f"{', GPU' if target.gpu else ''}, {target.platform})")

            def step(line: str, task=task, target=target) -> None:
                if line.startswith(("STEP ", "Step ", "#")):
                    progress.update(task, description=f"{target.tag}: {line[:90]}")

            try:
                results.append(build_one(engine, target, log=step))
            except EngineError as exc:
                errors.append(f"{target.model}: {exc}\nFix: {failure_hint(str(exc), target)}")
            progress.remove_task(task)
    return results, errors


def _table(results: list[ImageResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="model images")
    for col in ("model", "tag", "image MB", "model layer MB", "seconds"):
        table.add_column(col, justify="right" if col not in ("model", "tag") else "left",
                         no_wrap=col in ("model", "tag"), overflow="fold")
    for r in results:
        table.add_row(r.model, r.tag, f"{r.size_bytes / MB:.1f}", f"{r.model_layer_bytes / MB:.2f}",
                      f"{r.seconds:.1f}")
    Console().print(table)
