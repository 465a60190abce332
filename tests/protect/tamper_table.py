"""Print the tamper case -> error class table (Markdown) for the notes.

Run: ``.venv/bin/python tests/protect/tamper_table.py``. Each case is also a test in
``test_protect_tamper.py``; this script shows what a user sees for each.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from protect_helpers import make_kit, tamper_cases

from pocketml.errors import IntegrityError


def main() -> None:
    """Run every tamper case and print case, expected and raised error as a table."""
    with tempfile.TemporaryDirectory() as tmp:
        kit = make_kit(Path(tmp))
        print("| tamper case | error raised | as expected |")
        print("| --- | --- | --- |")
        for case in tamper_cases():
            try:
                case.run(kit)
                raised = "nothing (accepted!)"
            except IntegrityError as exc:
                raised = type(exc).__name__
            ok = "yes" if raised == case.expected.__name__ else "NO"
            print(f"| {case.name} | {raised} | {ok} |")


if __name__ == "__main__":
    main()
