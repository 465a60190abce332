"""``pocketml build|optimize|bench``: the optimize-and-benchmark stage from the command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from pocketml._tables import Column
from pocketml.cli._common import console, existing_path, print_table
from pocketml.errors import InvalidInput


def build(
    config_path: Path = typer.Argument(Path("pocketml.toml"), help="The build config (TOML)."),
    out: Path = typer.Option(Path("build-out"), "--out", "-o", help="Directory for every output."),
) -> None:
    """Data -> model -> convert -> quantize -> benchmark -> select, from one config file."""
    from pocketml.bench import print_results
    from pocketml.optimize import print_selections
    from pocketml.optimize.config import load_build_config
    from pocketml.optimize.pipeline import run_build
    from pocketml.sketch import profile_model

    config = load_build_config(config_path)
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("starting", total=None)
        outcome = run_build(
            config,
            out,
            on_step=lambda text: progress.update(task, description=text),
            show_progress=False,
            profiler=profile_model,
        )
    print_results(
        list(outcome.results), console=console, title=f"{outcome.model.architecture} variants"
    )
    notes = [(v.name, "flagged", "; ".join(v.flags)) for v in outcome.variants if v.flags]
    notes += [(s.name, "not built", s.reason) for s in outcome.skipped]
    if notes:
        columns = [Column("variant", is_name=True), Column("status"), Column("reason", wraps=True)]
        print_table("Variants not built or flagged", columns, notes)
    print_selections(list(outcome.selections), console=console)
    console.print(
        f"Wrote {len(outcome.variants)} variants, build.json, benchmarks.json"
        + (f" and {outcome.plot.name}" if outcome.plot else "")
        + f" to [bold]{out}[/bold]. Push it with `pocketml push {out}`."
    )


def optimize(
    model_file: Path = typer.Argument(..., help="An fp32 .onnx, .tflite or .mlpackage file."),
    method: str = typer.Option(
        ..., "--method", "-m", help="dynamic-int8, static-int8, full-int8, fp16, int8-weights."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output file."),
    calibration: Path | None = typer.Option(
        None, "--calibration", help=".npy of sample inputs (static int8)."
    ),
) -> None:
    """Quantize one model file."""
    from pocketml.optimize import quantize as q

    existing_path(model_file, "model file")
    suffix = model_file.suffix.lower()
    fmt = {".onnx": "onnx", ".tflite": "tflite", ".mlpackage": "coreml"}.get(suffix)
    if fmt is None:
        raise InvalidInput(f"{model_file.name}: expected a .onnx, .tflite or .mlpackage file")
    import numpy as np

    data = np.zeros((0,), dtype=np.float32)
    if calibration is not None:
        data = np.load(existing_path(calibration, "calibration file"))
    needs_data = {("onnx", "static-int8"), ("tflite", "full-int8")}
    if (fmt, method) in needs_data and calibration is None:
        raise InvalidInput(
            f"{method} for {fmt} needs --calibration samples.npy (a few hundred inputs)"
        )
    makers: dict[tuple[str, str], Callable[[], q.Quantizer]] = {
        ("onnx", "dynamic-int8"): lambda: q.OnnxDynamicQuantizer(),
        ("onnx", "static-int8"): lambda: q.OnnxStaticQuantizer(data),
        ("onnx", "fp16"): lambda: q.OnnxFp16Quantizer(),
        ("tflite", "dynamic-int8"): lambda: q.TfliteDynamicQuantizer(),
        ("tflite", "full-int8"): lambda: q.TfliteStaticQuantizer(data),
        ("tflite", "fp16"): lambda: q.TfliteFp16Quantizer(),
        ("coreml", "fp16"): lambda: q.CoremlFp16Quantizer(),
        ("coreml", "int8-weights"): lambda: q.CoremlWeightQuantizer(),
    }
    maker = makers.get((fmt, method))
    if maker is None:
        options = ", ".join(m for f, m in makers if f == fmt)
        raise InvalidInput(f"method {method!r} does not apply to {fmt}; choose from {options}")
    done = maker().apply(model_file, out)
    print_table(
        "Quantized",
        ["file", "method", "precision", "size"],
        [(done.path, done.method, done.precision, f"{done.size_bytes:,} B")],
    )


def bench(
    build_dir: Path = typer.Argument(..., help="A build directory (with build.json)."),
    data: str = typer.Option("digits", "--data", "-d", help="Held-out data source."),
    iterations: int = typer.Option(200, "--iterations", min=5),
) -> None:
    """Benchmark every runnable variant of a build directory on held-out data."""
    from pocketml.bench import BUILTIN_PROFILES, Benchmark, Variant, print_results
    from pocketml.data import load_dataset
    from pocketml.schema import ModelSchema

    manifest_path = existing_path(build_dir / "build.json", "build.json")
    manifest = json.loads(manifest_path.read_text())
    schema = ModelSchema.from_json((build_dir / manifest.get("schema", "schema.json")).read_text())
    dataset = load_dataset(data)
    test = dataset.split(seed=0).test
    inputs = schema.normalize(test.features.reshape(len(test), *schema.input.sample_shape))
    variants = [
        Variant(
            v["name"], build_dir / v["file"], v["format"], v["precision"], v.get("method", "none")
        )
        for v in manifest["variants"]
        if v.get("role", "device") == "device"
    ]
    results = Benchmark(iterations=iterations).run(variants, inputs, test.labels)
    print_results(results, console=console, title=f"{manifest['model']} benchmarks")
    console.print(f"Profiles available: {', '.join(BUILTIN_PROFILES)}")
