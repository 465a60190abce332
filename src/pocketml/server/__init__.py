"""pocketml.server: the FastAPI control plane (registry admin API, package delivery, dashboard).

``create_app(settings)`` builds the ASGI app (its settings are the only way in);
``uvicorn_options(settings.server.limits)`` are the uvicorn options that bound a request
head; ``AdminClient`` is the HTTP client the CLI uses.
Nothing heavy is imported eagerly: the CLI imports ``pocketml.server.client`` (httpx only)
without pulling in FastAPI, SQLAlchemy or the registry, so names load on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pocketml.server._protocol import uvicorn_options
    from pocketml.server.app import create_app
    from pocketml.server.client import AdminClient

__all__ = ["AdminClient", "create_app", "uvicorn_options"]

_LAZY = {
    "create_app": "pocketml.server.app",
    "AdminClient": "pocketml.server.client",
    "uvicorn_options": "pocketml.server._protocol",
}


def __getattr__(name: str) -> Any:
    """Import ``create_app`` / ``AdminClient`` / ``uvicorn_options`` on first use (keeps
    ``import`` cheap)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'pocketml.server' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
