"""Three models pocketml never trained, imported and built: a variant chosen per device class.

Run from anywhere (writes ./three-builds next to this file; a few minutes on 2 CPU cores)::

    python three_builds.py [--iterations 50]

1. PyTorch: a 1-D CNN on 3×64 sensor windows (NCL), trained by your own loop (byom.py).
2. scikit-learn: a StandardScaler + LogisticRegression pipeline on a 6-feature table (NC).
3. ONNX: a small PyTorch MLP exported elsewhere to ONNX (foreign input/output names, a fixed
   batch of 1, logits out) and imported as a file.

Each one is imported with ``from_trained`` (no retraining) and saved as a model directory,
then built with ``run_build`` (what ``pocketml build`` runs): conversion, quantization,
benchmarks and the selection per device class. The script prints, per model, the build
table (every variant with its size, accuracy on held-out data and host p95 latency), the
variants that could not be produced with their reason, and the chosen variant per device
class.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pocketml.convert import from_trained, load_trained_file
from pocketml.optimize.config import load_build_config
from pocketml.optimize.pipeline import BuildOutcome, run_build

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from byom import fit, sensor_data, train_sensor_cnn  # noqa: E402  (the example beside this one)

ACTIVITIES = ["still", "walk", "run"]


def table_data(n: int = 400, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Six features; the label is a noisy linear rule."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] - 0.3 * x[:, 2] + 0.3 * rng.normal(size=n) > 0).astype(int)
    return x, y


def train_table_mlp(x: np.ndarray, y: np.ndarray) -> torch.nn.Module:
    """Someone else's small MLP, trained by their own loop."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    return fit(net, x, y, steps=150)


def config(path: Path, data: str, model_dir: str, targets: list[str], iterations: int) -> Path:
    """Write the ``pocketml.toml`` of one imported model."""
    path.write_text(
        f'[data]\nsource = "{data}"\n\n[model]\npath = "{model_dir}"\n\n'
        f"[convert]\ntargets = {targets!r}\n\n".replace("'", '"')
        + f"[bench]\nwarmup = 5\niterations = {iterations}\n"
    )
    return path


def main(iterations: int) -> None:
    work = HERE / "three-builds"
    (work / "data").mkdir(parents=True, exist_ok=True)

    # 1. PyTorch Conv1d on sensor windows
    x, y = sensor_data()
    np.savez(work / "data/sensor.npz", x=x, y=y, class_names=np.array(ACTIVITIES))
    net = train_sensor_cnn(x, y)
    from_trained(net, example=x[:8], labels=ACTIVITIES, name="sensor").save(work / "sensor")

    # 2. scikit-learn pipeline on a table
    table, target = table_data()
    np.savez(work / "data/table.npz", x=table, y=target, class_names=np.array(["no", "yes"]))
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(table, target)
    from_trained(pipeline, example=table[:8], labels=["no", "yes"], name="table").save(
        work / "table"
    )

    # 3. an ONNX file exported elsewhere (foreign names, batch fixed to 1, logits)
    onnx_file = work / "theirs.onnx"
    torch.onnx.export(
        train_table_mlp(table, target), (torch.zeros(1, 6),), str(onnx_file),
        input_names=["features"], output_names=["scores"], dynamo=False,
    )  # fmt: skip
    from_trained(
        load_trained_file(onnx_file), example=table[:8], labels=["no", "yes"],
        output="logits", name="theirs",
    ).save(work / "theirs")  # fmt: skip

    builds = [
        ("PyTorch Conv1d, 3x64 sensor windows (NCL)", "sensor", "data/sensor.npz",
         ["onnx", "ort", "tflite", "coreml"]),
        ("scikit-learn StandardScaler + LogisticRegression, 6 features (NC)", "table",
         "data/table.npz", ["onnx", "ort"]),
        ("ONNX file exported elsewhere (batch 1, logits), 6 features (NC)", "theirs",
         "data/table.npz", ["onnx", "ort"]),
    ]  # fmt: skip
    for title, name, data, targets in builds:
        path = config(work / f"{name}.toml", data, name, targets, iterations)
        outcome = run_build(load_build_config(path), work / f"build-{name}", show_progress=False)
        report(f"{name}: {title}", outcome)


def report(title: str, outcome: BuildOutcome) -> None:
    """Print the build table, what was not built and why, and the choice per device class."""
    print(f"\n== {title}")
    flags = {v.name: "; ".join(v.flags) for v in outcome.variants if v.flags}
    print(
        f"{'variant':<28} {'format':<6} {'precision':<9} {'size B':>8} {'acc %':>6} {'p95 ms':>7}"
    )
    for r in outcome.results:
        accuracy = f"{100 * r.accuracy:.1f}" if r.accuracy is not None else "spec"
        p95 = f"{r.latency_p95_ms:.3f}" if r.latency_p95_ms is not None else "-"
        line = f"{r.name:<28} {r.model_format:<6} {r.precision:<9} {r.size_bytes:>8,} "
        print(
            line + f"{accuracy:>6} {p95:>7}" + (f"  [{flags[r.name]}]" if r.name in flags else "")
        )
    for skipped in outcome.skipped:
        print(f"not built: {skipped.name}: {skipped.reason[:140]}")
    print("chosen per device class:")
    for selection in outcome.selections:
        chosen = selection.variant.name if selection.variant else "none fits"
        estimate = selection.estimated_p95_ms
        suffix = f" (est. p95 {estimate:.3f} ms)" if estimate is not None else ""
        print(f"  {selection.profile.name:<13} -> {chosen}{suffix}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50, help="benchmark iterations")
    main(parser.parse_args().iterations)
