"""What users and pocketml's own tests share: a live server, one push kit, contract suites.

- ``write_model_file``: small valid model files of every format (a push checks formats).
- ``live_server`` / ``server_settings`` / ``LiveServer``: the real app served on 127.0.0.1
  and a free port, with an operator token and clients (needs the ``server`` extra). As
  pytest fixtures: ``pytest_plugins = ["pocketml.testing.fixtures"]``.
- ``model_variant`` / ``push_version`` / ``push_to_registry``: push a version made of real
  model files, over HTTP or straight into a ``Registry``; ``DIGITS_SCHEMA`` fits them.
- ``monitor_profile`` / ``store_sketches``: the monitor's test world (a reference profile of
  known distributions, sketches of it stored as intake stores them).
- ``write_profiled_build``: a build whose version carries a reference profile.
- ``check_converter`` / ``check_quantizer``: the contract a converter or quantizer plugin
  must meet (like scikit-learn's ``check_estimator``); see docs/build.md.

The server-side names are imported on first use, so ``check_quantizer`` and
``write_model_file`` work in an install without the ``server`` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pocketml.testing._model_files import write_model_file
from pocketml.testing._push import (
    DIGITS_SCHEMA,
    Variant,
    model_variant,
    push_to_registry,
    push_version,
)

if TYPE_CHECKING:
    from pocketml.testing._checks import check_converter, check_quantizer
    from pocketml.testing._monitor import monitor_profile, monitor_rows, store_sketches
    from pocketml.testing._profiled import write_profiled_build
    from pocketml.testing._server import (
        OPERATOR_TOKEN,
        AppKeys,
        LiveServer,
        fresh_postgres,
        live_server,
        server_settings,
    )

__all__ = [
    "DIGITS_SCHEMA",
    "OPERATOR_TOKEN",
    "AppKeys",
    "LiveServer",
    "Variant",
    "check_converter",
    "check_quantizer",
    "fresh_postgres",
    "live_server",
    "model_variant",
    "monitor_profile",
    "monitor_rows",
    "push_to_registry",
    "push_version",
    "server_settings",
    "store_sketches",
    "write_model_file",
    "write_profiled_build",
]

_LAZY = {
    "OPERATOR_TOKEN": "_server",
    "AppKeys": "_server",
    "LiveServer": "_server",
    "fresh_postgres": "_server",
    "live_server": "_server",
    "server_settings": "_server",
    "check_converter": "_checks",
    "check_quantizer": "_checks",
    "monitor_profile": "_monitor",
    "monitor_rows": "_monitor",
    "store_sketches": "_monitor",
    "write_profiled_build": "_profiled",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"pocketml.testing.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'pocketml.testing' has no attribute {name!r}")
