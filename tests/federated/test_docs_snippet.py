"""The runnable snippet of docs/federated.md runs and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "federated.md"


def test_the_federated_docs_snippet_runs_and_recovers_the_sum() -> None:
    (snippet,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    out = io.StringIO()

    with contextlib.redirect_stdout(out):
        exec(compile(snippet, str(DOC), "exec"), {})

    survivors, error = out.getvalue().splitlines()[0].split()
    assert survivors == "18" and float(error) < 1e-6
    assert re.search(r"ε = 0\.\d+ at δ = 1e-05 after 100 rounds", out.getvalue())
