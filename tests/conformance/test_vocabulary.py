"""The TypeScript SDK's hand-written unions of protocol words match their one home in Python."""

from __future__ import annotations

import re
from pathlib import Path

from pocketml.protocol import PLATFORMS

DEVICE_TS = Path(__file__).parents[2] / "clients" / "typescript" / "src" / "core" / "device.ts"


def test_typescript_platforms_are_the_protocols() -> None:
    match = re.search(r"^\s*platform: ([^;]+);", DEVICE_TS.read_text(encoding="utf-8"), re.M)
    assert match is not None, "DeviceFacts.platform not found in device.ts"
    union = tuple(part.strip().strip('"') for part in match.group(1).split("|"))
    assert union == PLATFORMS
