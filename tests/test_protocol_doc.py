"""docs/protocol.md's field tables are generated from ``pocketml.protocol``.

Each table sits between ``<!-- BEGIN generated: NAME -->`` and ``<!-- END generated: NAME
-->``. When this test fails it prints the block to paste, or run
``python tests/test_protocol_doc.py`` to rewrite every block in place.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from pocketml import protocol
from pocketml.protocol import WireField, describe_rule

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _field_rows(prefix: str, fields: tuple[WireField, ...], first: str = "") -> list[str]:
    rows = []
    for spec in fields:
        cells = [f"`{prefix}{spec.name}`", describe_rule(spec), spec.description]
        rows.append(_row(*([first] if first else []), *cells))
    return rows


def events_block() -> str:
    """The event reference: every kind, its fields, their rules and meaning."""
    lines = [
        "Every event is an object whose `type` names its kind. All kinds share the first "
        "three fields; an optional field may also be null or left out.",
        "",
        "| kind | field | rule | meaning |",
        "| --- | --- | --- | --- |",
    ]
    lines += _field_rows("", protocol.COMMON_EVENT_FIELDS, "all")
    for kind in protocol.EVENT_KINDS.values():
        lines += _field_rows("", kind.fields, f"`{kind.name}`")
    lines.append("")
    lines += [f"- `{kind.name}`: {kind.description}" for kind in protocol.EVENT_KINDS.values()]
    return "\n".join(lines)


def manifest_block() -> str:
    """The manifest entry reference (``models[]``) and the package digest's aliases."""
    lines = ["| field of `models[]` | rule | meaning |", "| --- | --- | --- |"]
    lines += _field_rows("", protocol.MANIFEST_ENTRY_FIELDS)
    lines += _field_rows("package.", protocol.PACKAGE_FIELDS)
    lines += _field_rows("download_policy.", protocol.DOWNLOAD_POLICY_FIELDS)
    lines += _field_rows("hybrid.", protocol.HYBRID_POLICY_FIELDS)
    lines += _field_rows("monitor.", protocol.MONITOR_POLICY_FIELDS)
    lines += _field_rows("capture.", protocol.CAPTURE_POLICY_FIELDS)
    lines += [
        "",
        f"One value, three names: `{protocol.PACKAGE_DIGEST}` (the sha256 of the package "
        "file) is the canonical name of a package's identity. These carry the same value "
        "and stay on the wire, so clients written against either name keep working:",
        "",
    ]
    lines += [f"- `{name}`: {what}." for name, what in protocol.PACKAGE_DIGEST_ALIASES.items()]
    return "\n".join(lines)


def device_classes_block() -> str:
    """What a device class may be, and what an unknown one gets."""
    builtin = ", ".join(f"`{name}`" for name in protocol.BUILTIN_DEVICE_CLASSES)
    return (
        f"`device_class` (check-in and the telemetry batch's `device`) is optional and open: "
        f"a name matching `{protocol.DEVICE_CLASS_PATTERN}` (1-32 characters). The built-in "
        f"profiles are {builtin}; an app may report its own (a profile it benchmarks with "
        "`pocketml bench`). A class no variant was built for gets the general variant "
        "choice (formats, runtimes, precision), exactly like a device that reports no class; "
        "targeting rules and metrics treat it as its own name."
    )


def samples_block() -> str:
    """The ``POST /v1/samples`` body: the batch, each sample, its tensor."""
    lines = ["| field | rule | meaning |", "| --- | --- | --- |"]
    lines += _field_rows("", protocol.SAMPLE_BATCH_FIELDS)
    lines += _field_rows("samples[].", protocol.SAMPLE_FIELDS)
    lines += _field_rows("samples[].input.", protocol.SAMPLE_INPUT_FIELDS)
    return "\n".join(lines)


BLOCKS: dict[str, Callable[[], str]] = {
    "samples": samples_block,
    "events": events_block,
    "manifest": manifest_block,
    "device-classes": device_classes_block,
}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- BEGIN generated: {re.escape(name)} -->\n)(.*?)(\n<!-- END generated: "
        rf"{re.escape(name)} -->)",
        re.DOTALL,
    )


def render(text: str) -> str:
    """``text`` with every generated block rewritten."""
    for name, block in BLOCKS.items():
        text = _pattern(name).sub(lambda m, b=block: m.group(1) + b() + m.group(3), text)
    return text


def test_every_generated_block_of_the_protocol_page_matches_the_protocol() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name, block in BLOCKS.items():
        match = _pattern(name).search(text)
        assert match is not None, f"docs/protocol.md has no generated block {name!r}"
        assert match.group(2) == block(), (
            f"docs/protocol.md block {name!r} is stale; run `python tests/test_protocol_doc.py`"
            f" or paste:\n{block()}"
        )


def test_the_event_table_lists_every_declared_field_once() -> None:
    table = events_block()
    for kind in protocol.EVENT_KINDS.values():
        for spec in kind.fields:
            assert f"| `{kind.name}` | `{spec.name}` |" in table
    for spec in protocol.COMMON_EVENT_FIELDS:
        assert f"| all | `{spec.name}` |" in table


if __name__ == "__main__":  # rewrite the blocks in place
    DOC.write_text(render(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    sys.exit(0)
