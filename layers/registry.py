"""Named plug-ins of two families, registered by the modules that define them.

The runtime's input kinds and tasks (:mod:`layers.kinds`) and the build's (:mod:`infra.kinds`)
are both "a kind or a task, by name, from built-in modules imported on first use"; this is that
one mechanism. Each registry supplies its two base classes, its error type and how its messages
name what it knows.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

K = TypeVar("K")
T = TypeVar("T")


class PluginRegistry(Generic[K, T]):
    """Kinds (subclasses of ``kind_base``) and tasks (of ``task_base``) by ``name``.

    ``builtin``: a callable giving the modules to import on first lookup (read late, so the
    owner's ``BUILTIN`` tuple stays the one list); ``error``: raised for an unknown name, with
    ``known`` (e.g. "this runtime knows") before the sorted names.
    """

    def __init__(self, *, kind_base: type[K], task_base: type[T], builtin: Callable[[], tuple[str, ...]],
                 error: type[Exception], known: str = "known:") -> None:
        self._bases = (kind_base, task_base)
        self._builtin = builtin
        self._error = error
        self._known = known
        self._kinds: dict[str, K] = {}
        self._tasks: dict[str, T] = {}
        self._loaded = False

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in self._builtin():
                importlib.import_module(module)

    def register(self, plugin: K | T, *, replace: bool = False) -> K | T:
        """Register ``plugin`` under its ``name``; a second plug-in by that name needs ``replace``."""
        kind_base, task_base = self._bases
        if not isinstance(plugin, kind_base | task_base) or not getattr(plugin, "name", ""):
            raise TypeError(f"{plugin!r} is neither a named {kind_base.__name__} nor a named {task_base.__name__}")
        table: dict[str, Any] = self._kinds if isinstance(plugin, kind_base) else self._tasks
        if plugin.name in table and not replace and table[plugin.name] is not plugin:
            raise ValueError(f"{plugin.name!r} is already registered ({table[plugin.name]!r})")
        table[plugin.name] = plugin
        return plugin

    def unregister(self, name: str) -> None:
        self._kinds.pop(name, None)
        self._tasks.pop(name, None)

    def kinds(self) -> dict[str, K]:
        self._load()
        return dict(self._kinds)

    def tasks(self) -> dict[str, T]:
        self._load()
        return dict(self._tasks)

    def kind(self, name: str) -> K:
        self._load()
        try:
            return self._kinds[name]
        except KeyError:
            raise self._error(f"no input kind {name!r}; {self._known} {sorted(self._kinds)}") from None

    def task(self, name: str) -> T:
        self._load()
        try:
            return self._tasks[name]
        except KeyError:
            raise self._error(f"no task {name!r}; {self._known} {sorted(self._tasks)}") from None
