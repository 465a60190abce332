"""docs/configuration.md lists every setting exactly as ``pocketml.config`` defines it.

The tables are generated from the settings classes: the settings table walks the nested
groups (a group's variable is its path, ``POCKETML_SERVER__PREDICT__MAX_BATCH_SIZE``) and
the renames table is ``RENAMED_SERVER_SETTINGS``. When this test fails it says so; run
``python tests/server/test_configuration_doc.py`` to rewrite both tables.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from pocketml.config import RENAMED_SERVER_SETTINGS, Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
_HEADER = "| variable | type | default | what it does |\n| --- | --- | --- | --- |\n"
_RENAMED_HEADER = "| old variable (deprecated) | read as |\n| --- | --- |\n"


def _table(header: str) -> re.Pattern[str]:
    return re.compile(re.escape(header) + r"(?:\|.*\|\n)+")


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


def _is_group(field: FieldInfo) -> bool:
    return isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows, groups = [], []
    for name, field in model.model_fields.items():
        if _is_group(field):  # after the group's own fields, so each group reads as a block
            assert field.annotation is not None
            groups.append((field.annotation, f"{prefix}{name.upper()}__"))
            continue
        variable = f"`{prefix}{name.upper()}`"
        row = [variable, _type_name(field.annotation), _default(name, field), field.description]
        rows.append("| " + " | ".join(str(cell) for cell in row) + " |")
    for group, group_prefix in groups:
        rows += _rows(group, group_prefix)
    return rows


def configuration_table() -> str:
    """The settings table of docs/configuration.md, from ``Settings`` and its groups."""
    return _HEADER + "\n".join(_rows(Settings, "POCKETML_")) + "\n"


def renamed_table() -> str:
    """The table of old flat server variables and the nested ones they are read as."""
    rows = [
        f"| `POCKETML_SERVER__{old.upper()}` | `POCKETML_SERVER__{group.upper()}__{new.upper()}` |"
        for old, (group, new) in RENAMED_SERVER_SETTINGS.items()
    ]
    return _RENAMED_HEADER + "\n".join(rows) + "\n"


def test_the_configuration_page_lists_every_setting() -> None:
    match = _table(_HEADER).search(DOC.read_text(encoding="utf-8"))

    assert match is not None, "docs/configuration.md has no settings table"
    assert match.group(0) == configuration_table(), (
        "docs/configuration.md is out of step with pocketml.config; regenerate it with "
        "`python tests/server/test_configuration_doc.py`"
    )


def test_the_configuration_page_lists_every_renamed_variable() -> None:
    match = _table(_RENAMED_HEADER).search(DOC.read_text(encoding="utf-8"))

    assert match is not None, "docs/configuration.md has no table of renamed variables"
    assert match.group(0) == renamed_table(), (
        "docs/configuration.md is out of step with RENAMED_SERVER_SETTINGS; regenerate it "
        "with `python tests/server/test_configuration_doc.py`"
    )


if __name__ == "__main__":
    text = DOC.read_text(encoding="utf-8")
    text = _table(_HEADER).sub(lambda _: configuration_table(), text, count=1)
    text = _table(_RENAMED_HEADER).sub(lambda _: renamed_table(), text, count=1)
    DOC.write_text(text, encoding="utf-8")
    sys.stdout.write(f"rewrote the tables of {DOC}\n")
