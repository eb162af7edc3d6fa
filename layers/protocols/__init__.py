"""The protocol registry: how a wire protocol plugs into every transport at once.

A protocol is one module that calls :func:`register` at import with a :class:`Protocol`:

- ``routes``: its :class:`~layers.routes.Route` rows (method, path template, operation name,
  :class:`~layers.routes.Scope`). Registering adds them to the one route table
  (:mod:`layers.routes`), from which the Lambda HTTP binding, the fast path, the OpenAPI
  document, the CDK HTTP API and the local gateway all route; nothing else needs editing.
  A route's model may come from the path (``{name}``, ``Scope.MODEL``), from nowhere
  (``Scope.SERVER``), or from the JSON body (``Scope.BODY`` with ``body_field``, e.g.
  OpenAI's ``POST /openai/v1/embeddings`` routed by ``"model"``; a pinned
  ``/openai/{name}/v1/embeddings`` is an ordinary ``Scope.MODEL`` row).
- ``operations``: operation name → ``fn(plane, request) -> Reply``: the protocol's wire
  format translated into :class:`~layers.dataplane.DataPlane` calls. ``request`` is a
  :class:`~layers.messages.Request` (path parameters, lower-cased headers, the body decoded
  on demand, the transport's size limit and check); the :class:`~layers.messages.Reply` may
  stream (``stream``: server-sent events). Client mistakes raise
  :class:`~layers.errors.ModelfnError`; the binding turns them into the protocol-neutral
  ``{"error"}`` reply, or a protocol may answer its own error shape itself.
- ``document``: ``fn(model) -> {"paths": …, "components": {"schemas": …}}``, the protocol's
  fragment of the OpenAPI document (``GET /openapi.json``), merged in registration order.

The built-in protocols are listed in :data:`BUILTIN` and imported on first use of the table,
so runtime code never imports a protocol it does not serve. Adding one: write
``layers/protocols/<name>.py`` (routes, operations, document, ``register(...)``), add its
module to :data:`BUILTIN`, and test it (``tests/runtime/test_protocols.py`` shows the shape).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from layers import routes as _routes

if TYPE_CHECKING:
    from layers.dataplane import DataPlane
    from layers.messages import Reply, Request
    from layers.model import Model

Operation = Callable[["DataPlane", "Request"], "Reply"]

#: the protocols every model endpoint serves, in document order
BUILTIN = ("layers.protocols.v2", "layers.protocols.openai", "layers.protocols.docs",
           "layers.protocols.control")


@dataclass(frozen=True)
class Protocol:
    name: str
    routes: tuple[_routes.Route, ...]
    operations: Mapping[str, Operation]
    document: Callable[[Model], dict[str, Any]] = field(default=lambda _model: {})


_REGISTRY: dict[str, Protocol] = {}
_loaded = False
_cache: list[_routes.RouteTable] = []


def _table() -> _routes.RouteTable:
    if not _cache:
        _cache.append(_routes.RouteTable(tuple(r for p in _REGISTRY.values() for r in p.routes)))
    return _cache[0]


def route_table() -> _routes.RouteTable:
    """The one route table: every registered protocol's routes, in registration order."""
    load()
    return _table()


def register(protocol: Protocol) -> Protocol:
    """Add ``protocol`` and its routes (each route's operation must be one it defines)."""
    if protocol.name in _REGISTRY:
        raise ValueError(f"protocol {protocol.name!r} is registered twice")
    for route in protocol.routes:
        if route.protocol != protocol.name:
            raise ValueError(f"route {route.method} {route.path} belongs to {route.protocol!r}, "
                             f"not {protocol.name!r}")
        if not route.catch_all and route.operation not in protocol.operations:
            raise ValueError(f"route {route.method} {route.path} names operation "
                             f"{route.operation!r}, which protocol {protocol.name!r} does not define")
    _routes.RouteTable((*_table().routes, *protocol.routes))  # refuses duplicates
    _REGISTRY[protocol.name] = protocol
    _cache.clear()
    return protocol


def load() -> None:
    """Import the built-in protocols (once); each registers itself."""
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN:
            importlib.import_module(module)


def registered() -> tuple[Protocol, ...]:
    load()
    return tuple(_REGISTRY.values())


def get(name: str) -> Protocol:
    load()
    return _REGISTRY[name]


def operation(route: _routes.Route) -> Operation:
    """The function answering ``route``."""
    return get(route.protocol).operations[route.operation]


def document_fragments(model: Model) -> tuple[dict[str, Any], dict[str, Any]]:
    """(paths, component schemas) of every registered protocol, merged in order."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for protocol in registered():
        fragment = protocol.document(model)
        for path, ops in fragment.get("paths", {}).items():
            paths.setdefault(path, {}).update(ops)
        schemas.update(fragment.get("components", {}).get("schemas", {}))
    return paths, schemas
