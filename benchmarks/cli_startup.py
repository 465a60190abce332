"""CPU time of ``pocketml --help`` and light commands, against ``python -c pass``.

Each command runs N times in a fresh interpreter; the CPU time (user + system) of the
child is read from ``getrusage(RUSAGE_CHILDREN)``, so the number does not depend on
how busy the machine is (wall time does: 11 s on a loaded 2-core box before the fix).
The baseline ``python -c pass`` is measured in the same run. Run it from the checkout:

    PYTHONPATH=src python benchmarks/cli_startup.py --runs 7 [--ref /path/to/other/src]

``--ref`` adds a column for another checkout's ``src`` (before/after in one table).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "pocketml --help": ["-m", "pocketml", "--help"],
    "pocketml server --help": ["-m", "pocketml", "server", "--help"],
    "pocketml rollout --help": ["-m", "pocketml", "rollout", "--help"],
    "pocketml data info digits": ["-m", "pocketml", "data", "info", "digits"],
}


def cpu_seconds(args: list[str], src: Path) -> float:
    """CPU seconds (user + system) one child interpreter spent on ``args``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run([sys.executable, *args], env=env, capture_output=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_cpu(args: list[str], src: Path, runs: int) -> float:
    cpu_seconds(args, src)  # warm the file cache; not counted
    return statistics.median(cpu_seconds(args, src) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--src", type=Path, default=Path(__file__).parents[1] / "src")
    parser.add_argument("--ref", type=Path, help="another checkout's src, e.g. before a change")
    args = parser.parse_args()
    table = Table(title=f"CPU seconds, median of {args.runs} runs", title_justify="left")
    table.add_column("command")
    if args.ref:
        table.add_column("ref", justify="right")
    table.add_column("this", justify="right")
    table.add_column("minus baseline", justify="right")
    baseline = median_cpu(COMMANDS["python -c pass"], args.src, args.runs)
    for name, command in COMMANDS.items():
        this = baseline if name == "python -c pass" else median_cpu(command, args.src, args.runs)
        row = [name]
        if args.ref:
            row.append(f"{median_cpu(command, args.ref, args.runs):.3f}")
        row += [f"{this:.3f}", f"{this - baseline:.3f}"]
        table.add_row(*row)
    Console(width=80).print(table)


if __name__ == "__main__":
    main()
