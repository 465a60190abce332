"""``pocketml convert``: a trained model directory -> mobile formats, parity-checked."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pocketml.cli._common import console, existing_path, print_table, split_csv_option
from pocketml.errors import InvalidInput
from pocketml.protocol import FORMAT_NAMES as TARGETS

# Copies of pocketml.convert's defaults for --help, which must not import the converters
# (onnx, torch); tests/cli/test_startup.py checks they agree.
DEFAULT_OPSET = 17
ORT_PLATFORMS = ("arm", "amd64")


def convert(
    model_dir: Path = typer.Argument(..., help="A directory written by `pocketml train`."),
    to: str = typer.Option(
        "onnx,ort,tflite,coreml", "--to", help=f"Comma list of {', '.join(TARGETS)}."
    ),
    out: Path = typer.Option(Path("build"), "--out", "-o", help="Build directory to write."),
    data: str | None = typer.Option(
        None, "--data", "-d", help="Held-out data (default: the training data)."
    ),
    target: str | None = typer.Option(None, "--target", "-t", help="Label column of a table."),
    opset: int = typer.Option(DEFAULT_OPSET, "--opset", help="ONNX opset, 13–21."),
    platform: str = typer.Option(
        "arm", "--platform", help=f"ORT platform: {', '.join(ORT_PLATFORMS)}."
    ),
    atol: float = typer.Option(1e-4, "--atol", min=0.0, help="Largest allowed |Δ probability|."),
    role: str = typer.Option("device", "--role", help="'device' or 'cloud' (hybrid inference)."),
) -> None:
    """Convert a trained model and check every file against it on held-out samples."""
    from pocketml.convert import convert_model
    from pocketml.convert.build import VariantGroup, write_build
    from pocketml.data import load_dataset
    from pocketml.train import TrainedModel, model_inputs

    targets = split_csv_option(to, "--to", TARGETS)
    existing_path(model_dir, "model directory")
    model = TrainedModel.load(model_dir)
    record_path = model_dir / "run.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    source = data or (record or {}).get("dataset", {}).get("name")
    if source is None:
        raise InvalidInput(f"{model_dir} has no run.json naming its data: pass --data")
    dataset = load_dataset(source, target=target)
    params = (record or {}).get("params", {})
    splits = dataset.split(
        validation=params.get("validation", 0.15),
        test=params.get("test", 0.15),
        seed=(record or {}).get("dataset", {}).get("split_seed", 0),
    )
    samples = model_inputs(model, splits.test)
    group_dir = out / model.architecture
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("converting", total=None)
        results = convert_model(
            model,
            targets,
            group_dir,
            samples=samples,
            labels=splits.test.labels,
            opset=opset,
            ort_platform=platform,
            atol=atol,
            on_step=lambda t: progress.update(task, description=f"converting to {t}"),
        )
    group = VariantGroup(
        model.architecture, role, model.framework, results, (record or {}).get("metrics", {})
    )
    write_build(
        out,
        schema=model.schema,
        groups=[group],
        run_record=record,
        dataset_fingerprint=dataset.fingerprint,
    )
    print_table(
        f"{model.architecture} → {', '.join(targets)}",
        ["format", "file", "size", "parity (max |Δp| / top-1)", "accuracy"],
        [
            (
                r.target,
                r.path.name,
                f"{r.size:,} B",
                r.check.summary(),
                f"{r.accuracy:.4f}" if r.accuracy is not None else "not run (Core ML)",
            )
            for r in results
        ],
    )
    console.print(f"Wrote the build to [bold]{out}[/bold] (build.json, schema.json, card.md)")


def import_model(
    model_file: Path = typer.Argument(
        ..., help="A trained model: .onnx, .pt/.pth (TorchScript), .pkl/.joblib (scikit-learn)."
    ),
    example: Path = typer.Option(
        ...,
        "--example",
        "-e",
        help="Inputs the model takes: a .npy batch, or a .npz with x (and y to evaluate).",
    ),
    labels: str | None = typer.Option(
        None, "--labels", "-l", help="Comma list of class names, one per output."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    name: str = typer.Option("model", "--name", help="Model name (schema and registry)."),
    output: str = typer.Option(
        "logits", "--output", help="What the model outputs: logits or probabilities."
    ),
    layout: str | None = typer.Option(
        None, "--layout", help="NC, NCL or NCHW (default: from the example's rank)."
    ),
    trust_pickle: bool = typer.Option(
        False, "--trust-pickle", help="Load a pickle (runs its code): only files you trust."
    ),
) -> None:
    """Import a model trained elsewhere (no retraining) into a directory `convert` and
    `build` take."""
    import numpy as np

    from pocketml.convert import from_trained, load_trained_file
    from pocketml.data import load_arrays
    from pocketml.train import evaluate

    existing_path(example, "example file")
    dataset = None
    if example.suffix.lower() == ".npz":
        dataset = load_arrays(example)
        x = dataset.features
    else:
        x = np.load(example, allow_pickle=False)
    if labels is not None:
        class_names = [c.strip() for c in labels.split(",") if c.strip()]
    elif dataset is not None:
        class_names = list(dataset.class_names)
    else:
        raise InvalidInput(
            "pass --labels a,b,c (one name per model output), or an --example .npz with y"
        )
    model = from_trained(
        load_trained_file(model_file, trust_pickle=trust_pickle),
        example=x[:64],
        labels=class_names,
        name=name,
        layout=layout,
        output=output,
    )
    model.save(out)
    rows = [("input", f"{model.schema.input.shape} ({model.schema.input.layout})")]
    rows.append(("classes", ", ".join(model.schema.labels)))
    if dataset is not None and list(dataset.class_names) == list(model.schema.labels):
        metrics = evaluate(model, dataset)
        rows.append(("accuracy on the example", f"{metrics['accuracy']:.4f} ({len(dataset)})"))
    print_table(f"Imported {model_file.name} ({model.framework})", ["", ""], rows)
    console.print(
        f"Wrote [bold]{out}[/bold]. Next: `pocketml convert {out} --data DATA` or set "
        f'`\\[model] path = "{out}"` in pocketml.toml.'
    )
