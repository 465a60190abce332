"""docs/configuration.md lists every setting exactly as ``pocketml.config`` defines it.

The table is generated from the settings classes: when this test fails it prints the
table to paste (or run ``python tests/server/test_configuration_doc.py`` to rewrite it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pocketml.config import ServerSettings, Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
_HEADER = "| variable | type | default | what it does |\n| --- | --- | --- | --- |\n"
_TABLE = re.compile(re.escape(_HEADER) + r"(?:\|.*\|\n)+")


def _type_name(annotation: Any) -> str:
    args = [a for a in get_args(annotation) if a is not type(None)]
    if args and len(args) < len(get_args(annotation)):
        return f"{_type_name(args[0])} (optional)"
    return getattr(annotation, "__name__", str(annotation))


def _default(name: str, field: FieldInfo) -> str:
    if name == "home":
        return "`~/.pocketml`"
    if field.default is None:
        return "unset"
    return f"`{field.default!r}`"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if name == "server":
            continue
        variable = f"`{prefix}{name.upper()}`"
        row = [variable, _type_name(field.annotation), _default(name, field), field.description]
        rows.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return rows


def configuration_table() -> str:
    """The settings table of docs/configuration.md, from ``Settings``."""
    rows = _rows(Settings, "POCKETML_") + _rows(ServerSettings, "POCKETML_SERVER__")
    return _HEADER + "\n".join(rows) + "\n"


def test_the_configuration_page_lists_every_setting() -> None:
    match = _TABLE.search(DOC.read_text(encoding="utf-8"))

    assert match is not None, "docs/configuration.md has no settings table"
    assert match.group(0) == configuration_table(), (
        "docs/configuration.md is out of step with pocketml.config; regenerate it with "
        "`python tests/server/test_configuration_doc.py`"
    )


if __name__ == "__main__":
    text = DOC.read_text(encoding="utf-8")
    DOC.write_text(_TABLE.sub(lambda _: configuration_table(), text, count=1), encoding="utf-8")
    sys.stdout.write(f"rewrote the table of {DOC}\n")
