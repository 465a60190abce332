"""docs/loop.md shows the loop policy's defaults as they are (one home: ``LoopPolicy``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pocketml.loop import LoopPolicy

DOC = Path(__file__).resolve().parents[2] / "docs" / "loop.md"


def test_the_documented_policy_is_the_default_policy() -> None:
    section = DOC.read_text().split("### The loop policy", 1)[1]
    block = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert block is not None, "docs/loop.md lost its policy example"
    assert json.loads(block.group(1)) == json.loads(json.dumps(LoopPolicy().to_dict()))
