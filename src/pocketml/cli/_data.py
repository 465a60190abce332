"""``pocketml data info|validate``: look at a dataset, check it against a schema."""

from __future__ import annotations

from pathlib import Path

import typer

from pocketml.cli._common import console, existing_path, print_json, print_table
from pocketml.errors import InvalidInput

app = typer.Typer(help="Inspect and validate datasets.", no_args_is_help=True)

SOURCE_HELP = "'digits' (bundled), a .csv/.parquet file, or a folder of class sub-folders."


@app.command("info")
def info(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    target: str | None = typer.Option(None, "--target", "-t", help="Label column of a table."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show a dataset's size, shape, classes and content fingerprint."""
    import numpy as np

    from pocketml.data import load_dataset

    dataset = load_dataset(source, target=target)
    counts = np.bincount(dataset.labels, minlength=dataset.num_classes)
    facts = {
        "name": dataset.name,
        "rows": len(dataset),
        "sample_shape": list(dataset.sample_shape),
        "layout": dataset.layout,
        "classes": dict(zip(dataset.class_names, counts.tolist(), strict=True)),
        "value_range": dataset.value_range,
        "fingerprint": dataset.fingerprint,
    }
    if as_json:
        print_json(facts)
        return
    print_table("Dataset", ["field", "value"], [(k, v) for k, v in facts.items()])


@app.command("validate")
def validate(
    source: str = typer.Argument(..., help=SOURCE_HELP),
    schema_path: Path = typer.Option(
        ..., "--schema", "-s", help="schema.json to validate against."
    ),
    target: str | None = typer.Option(None, "--target", "-t", help="Label column of a table."),
    limit: int = typer.Option(20, "--limit", min=1, help="Violations to print."),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
) -> None:
    """Check data against a schema; list every violation with its row (exit 2 if any)."""
    from pocketml.data import load_dataset, read_table, validate_dataset, validate_table
    from pocketml.schema import ModelSchema

    schema = ModelSchema.from_json(existing_path(schema_path, "schema file").read_text())
    path = Path(source)
    if path.suffix.lower() in {".csv", ".parquet", ".pq"}:
        if target is None:
            raise InvalidInput(f"{path.name} is a table: pass --target with the label column")
        report = validate_table(read_table(path), schema, target)
    else:
        report = validate_dataset(load_dataset(source, target=target), schema)
    if as_json:
        print_json(report.to_dict())
    else:
        rows = [
            (v.row or "-", v.kind, v.column or "", v.message) for v in report.violations[:limit]
        ]
        if rows:
            print_table(
                f"Violations in {report.source}", ["row", "kind", "column", "problem"], rows
            )
        if len(report.violations) > limit:
            console.print(f"... and {len(report.violations) - limit} more (use --json for all)")
        if report.is_valid:
            console.print(
                f"[green]✓[/green] {report.num_rows} rows match the schema {schema.name!r}"
            )
    report.raise_for_violations()
