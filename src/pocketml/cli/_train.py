"""``pocketml train``: train a reference model and save it with its run record."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from pocketml.cli._common import console, print_table

# A copy of pocketml.train's architecture names for --help, which must not import the
# trainers (numpy, torch, scikit-learn); tests/cli/test_startup.py checks they agree.
ARCHITECTURES = (
    "mlp",
    "cnn-small",
    "cnn-large",
    "logistic-regression",
    "random-forest",
    "sklearn-mlp",
)
ARCH_HELP = f"One of {', '.join(ARCHITECTURES)}."


def train(
    data: str = typer.Option(
        "digits", "--data", "-d", help="'digits', a table or an image folder."
    ),
    architecture: str = typer.Option("cnn-small", "--arch", "-a", help=ARCH_HELP),
    out: Path = typer.Option(Path("runs/model"), "--out", "-o", help="Directory for the model."),
    target: str | None = typer.Option(None, "--target", "-t", help="Label column of a table."),
    seed: int = typer.Option(0, "--seed", help="Seed for the split, initialisation and shuffling."),
    epochs: int = typer.Option(
        30, "--epochs", min=1, help="Most epochs (early stopping may end sooner)."
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    learning_rate: float = typer.Option(2e-3, "--lr", min=0.0),
    patience: int = typer.Option(
        5, "--patience", min=1, help="Epochs without improvement before stopping."
    ),
    augment: str = typer.Option("", "--augment", help="e.g. 'dim=0.5,noise=0.2' (images only)."),
    name: str | None = typer.Option(None, "--name", help="Model name in the schema."),
) -> None:
    """Train a model, evaluate it on the held-out split, save it with run.json."""
    from pocketml.data import load_dataset, parse_augmentations
    from pocketml.train import TrainConfig
    from pocketml.train import train as run_training

    config = TrainConfig(
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        patience=patience,
        augmentations=tuple(parse_augmentations(augment)),
    )
    dataset = load_dataset(data, target=target)
    with Progress(
        TextColumn("[bold]training {task.fields[arch]}"),
        BarColumn(),
        TextColumn("epoch {task.completed}/{task.total}  {task.fields[stats]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("train", total=epochs, arch=architecture, stats="")

        def on_epoch(epoch: int, total: int, stats: dict[str, float]) -> None:
            text = f"val_loss {stats['val_loss']:.3f}  val_acc {stats['val_accuracy']:.3f}"
            progress.update(task, completed=epoch, stats=text)

        result = run_training(
            dataset, architecture, config=config, model_name=name, out_dir=out, progress=on_epoch
        )
    metrics = result.metrics
    print_table(
        f"{architecture} on {dataset.name} (test split, n={metrics['n']})",
        ["metric", "value"],
        [
            ("accuracy", f"{metrics['accuracy']:.4f}"),
            ("macro-F1", f"{metrics['macro_f1']:.4f}"),
            ("epochs run", result.model.params.get("epochs_run", "-")),
            ("parameters", result.model.num_parameters() or "-"),
            ("dataset fingerprint", result.record.dataset["fingerprint"]),
            ("duration", f"{result.record.duration_s:.1f} s"),
        ],
    )
    console.print(f"Saved model, schema.json and run.json to [bold]{out}[/bold]")
