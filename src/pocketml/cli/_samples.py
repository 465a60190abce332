"""``pocketml samples list|export MODEL``: the consented samples a server holds.

Thin over the admin API (``AdminClient.list_samples`` / ``.export_samples``): ``list``
prints the labelled/unlabelled counts per device class and the newest rows; ``export``
writes the labelled samples as ``samples.npz`` in a directory (features in raw dataset
units; ``pocketml.data.load_dataset`` reads it, so training consumes it as any dataset)
and prints the dataset's fingerprint and counts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer

from pocketml._tables import Column
from pocketml.cli._admin import ServerOption, TokenOption, _client
from pocketml.cli._common import print_table

__all__ = ["app"]

app = typer.Typer(help="Consented samples from devices (docs/loop.md).", no_args_is_help=True)


@app.command("list")
def list_samples(
    model: str = typer.Argument(..., help="The model's name, e.g. digits."),
    limit: int = typer.Option(20, "--limit", min=1, max=1000, help="Rows to show."),
    device_id: str | None = typer.Option(None, "--device-id", help="Only this device."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Counts per device class and the first samples of a model."""
    with _client(server, token) as client:
        page = client.list_samples(model, device_id=device_id, limit=limit)
    counts = [(cls, c["labelled"], c["unlabelled"]) for cls, c in sorted(page["counts"].items())]
    print_table(
        f"samples of {model}",
        [
            Column("device class", is_name=True),
            Column("labelled", "right"),
            Column("unlabelled", "right"),
        ],
        [(cls, str(a), str(b)) for cls, a, b in counts] or [("-", "0", "0")],
    )
    rows = [
        (
            item["sample_id"][:12],
            f"v{item['version']}",
            item["device_class"],
            item["predicted"],
            f"{item['confidence']:.2f}",
            item["label"] or "-",
        )
        for item in page["items"]
    ]
    if rows:
        print_table(
            "",
            [
                Column("sample", is_name=True),
                Column("version", priority=2),
                Column("class", priority=1),
                Column("predicted"),
                Column("conf", "right", priority=3),
                Column("label"),
            ],
            rows,
        )


@app.command("export")
def export_samples(
    model: str = typer.Argument(..., help="The model's name, e.g. digits."),
    out: Path = typer.Option(..., "--out", help="Directory to write samples.npz into."),
    since: float | None = typer.Option(None, "--since", min=0, help="Received since (unix s)."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Write the labelled samples as a dataset training can load; print its fingerprint."""
    from pocketml.data import load_dataset

    with _client(server, token) as client:
        body = client.export_samples(model, since=since)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "samples.npz"
    path.write_bytes(body)
    dataset = load_dataset(path)
    per_class = Counter(dataset.class_names[int(y)] for y in dataset.labels)
    # Plain lines, never wrapped: a fingerprint is copied whole into lineage and CI logs.
    typer.echo(f"wrote {path}")
    typer.echo(f"samples: {len(dataset.labels)}")
    typer.echo(f"fingerprint: {dataset.fingerprint}")
    shown = ", ".join(f"{name}: {n}" for name, n in sorted(per_class.items()))
    typer.echo(f"labels: {shown or '-'}")
