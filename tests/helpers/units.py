"""Units of work for ``pytest -n 2 --dist loadgroup`` (what `make test` runs), so nothing
expensive is made twice and the long units start first.

Under ``loadgroup`` a test without an ``xdist_group`` is a unit by itself, so a module- or
session-scoped fixture (a build, a CDK synth, a trained decoder) is made once per worker that
draws one of its tests: both workers built ``tests/generation/test_generation_build.py``'s
catalog and the text tests' int8 classifier. :func:`assign` puts every test that shares such a
fixture (defined in this tree) with another test into one group: the explicit
``xdist_group`` of those tests when they have one, else a group named after the first module.

xdist then hands out units in collection order (`make test` passes ``--no-loadscope-reorder``;
by default it orders them by number of tests); :func:`order` puts the units with a ``slow``
test first, larger first, so the minutes-long ones run side by side and the many short ones
fill in at the end. Tests keep their order inside a unit, and a module's tests stay together.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

SHARED_SCOPES = ("session", "package", "module", "class")


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _groups(item: pytest.Item) -> set[str]:
    return {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}


def _shared_fixtures(item: pytest.Item) -> set[str]:
    """The fixtures of this tree, made once for several tests, that ``item`` uses."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return set()
    shared = set()
    for name in info.names_closure:
        for fixturedef in info.name2fixturedefs.get(name, ()):
            if fixturedef.scope in SHARED_SCOPES and fixturedef.baseid.startswith("tests"):
                shared.add(f"{fixturedef.baseid}::{name}")
    return shared


def assign(items: list[pytest.Item]) -> None:
    """Mark each test that shares a fixture with tests of a unit that unit's ``xdist_group``."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    keys = {}
    for item in items:  # modules joined by the fixtures and explicit groups they share
        keys[item.nodeid] = {f"fixture:{f}" for f in _shared_fixtures(item)} | {f"group:{g}" for g in _groups(item)}
        for key in keys[item.nodeid]:
            parent[find(key)] = find(f"module:{_module(item)}")
    members: dict[str, list[pytest.Item]] = defaultdict(list)
    for item in items:
        if keys[item.nodeid]:
            members[find(f"module:{_module(item)}")].append(item)
    for unit in members.values():
        explicit = set().union(*(_groups(i) for i in unit))
        if len(explicit) > 1:
            continue  # two groups already named; leave them as their authors set them
        name = next(iter(explicit)) if explicit else _module(unit[0])
        for item in unit:
            if not _groups(item):
                item.add_marker(pytest.mark.xdist_group(name))


def order(items: list[pytest.Item]) -> None:
    """Units with a slow test first (larger first), in place; collection order otherwise."""
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        groups = _groups(item)
        units.setdefault("_".join(sorted(groups)) if groups else item.nodeid, []).append(item)

    def key(unit: list[pytest.Item]) -> tuple[bool, int]:
        return (not any(i.get_closest_marker("slow") for i in unit), -len(unit))

    items[:] = [item for unit in sorted(units.values(), key=key) for item in _by_module(unit)]


def _by_module(unit: list[pytest.Item]) -> list[pytest.Item]:
    """The unit's tests with each module's together (module fixtures are set up once)."""
    modules: dict[str, list[pytest.Item]] = {}
    for item in unit:
        modules.setdefault(_module(item), []).append(item)
    return [item for tests in modules.values() for item in tests]


def check_grouped(session: pytest.Session) -> None:
    """On an xdist worker under ``--dist loadgroup``, every grouped test must carry its group in
    its node id (that is how xdist tells the scheduler). pytest 9.2 ignores the way xdist 3.8
    sets it (pytest-xdist#1386): groups were silently split, each worker built every shared
    fixture and two workers staged the image lane at once. Refuse to run like that."""
    if not session.config.getoption("loadgroup", False):
        return
    lost = [i.nodeid for i in session.items if _groups(i) and "@" not in i.nodeid]
    if lost:
        raise pytest.UsageError(
            f"--dist loadgroup: {len(lost)} grouped tests lost their xdist_group (first: {lost[0]}); this "
            f"pytest/pytest-xdist pair does not group (pytest-xdist#1386); install what pyproject.toml pins")
