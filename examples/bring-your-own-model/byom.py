"""Bring your own model: three models pocketml never trained, converted without retraining.

Run from this folder (about 20 s on a laptop CPU; it writes ./out, ./data and ./runs)::

    python byom.py             # Python API: from_trained + convert_model, parity per file
    bash byom-cli.sh           # the same through `pocketml import` and `pocketml build`

1. A PyTorch 1-D CNN on 3×64 sensor windows (layout NCL), trained here in a few steps the
   way you would train it in your own notebook.
2. A scikit-learn scaler + logistic-regression pipeline on tabular data.
3. An ONNX file exported elsewhere (foreign input/output names, a fixed batch of 1, logits).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pocketml.convert import convert_model, from_trained, load_trained_file
from pocketml.data import from_arrays

HERE = Path(__file__).parent
RNG = np.random.default_rng(0)


def sensor_data(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """3-axis windows of 64 steps; the class is the dominant frequency (still/walk/run)."""
    labels = RNG.integers(0, 3, n)
    steps = np.arange(64)
    freq = np.array([1, 4, 9])[labels][:, None, None]
    phase = RNG.uniform(0, 6, (n, 3, 1))
    x = np.sin(2 * np.pi * freq * steps / 64 + phase) + 0.3 * RNG.normal(size=(n, 3, 64))
    return x.astype(np.float32), labels


def train_sensor_cnn(x: np.ndarray, y: np.ndarray) -> torch.nn.Module:
    """Your own training loop (pocketml is not involved)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv1d(3, 8, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.Conv1d(8, 8, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool1d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 3),
    )
    return fit(net, x, y, steps=80)


def fit(net: torch.nn.Module, x: np.ndarray, y: np.ndarray, *, steps: int) -> torch.nn.Module:
    """Full-batch Adam on cross-entropy: the loop of your own notebook."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(xs), ys).backward()
        optimizer.step()
    return net.eval()


def main() -> None:
    data, runs, out = HERE / "data", HERE / "runs", HERE / "out"
    for folder in (data, runs, out):
        folder.mkdir(exist_ok=True)

    # 1. PyTorch 1-D CNN, sensor windows (N, C, L)
    x, y = sensor_data()
    np.savez(data / "sensor.npz", x=x, y=y, class_names=np.array(["still", "walk", "run"]))
    net = train_sensor_cnn(x, y)
    torch.jit.save(torch.jit.script(net), str(runs / "sensor.pt"))  # for byom-cli.sh
    sensor = from_trained(net, example=x[:8], labels=["still", "walk", "run"], name="sensor")
    held_out = from_arrays(*sensor_data(64))
    report("sensor (PyTorch Conv1d)", sensor, ["onnx", "ort", "tflite", "coreml"], held_out, out)

    # 2. scikit-learn pipeline, tabular (N, F): it scales its own inputs, no normalization
    table = RNG.normal(size=(400, 6)).astype(np.float32)
    target = (table[:, 0] + 0.5 * table[:, 1] > 0).astype(int)
    np.savez(data / "table.npz", x=table, y=target, class_names=np.array(["no", "yes"]))
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(table, target)
    (runs / "table.pkl").write_bytes(pickle.dumps(pipeline))  # for byom-cli.sh
    tabular = from_trained(pipeline, example=table[:8], labels=["no", "yes"], name="table")
    report("table (scikit-learn)", tabular, ["onnx", "ort"], from_arrays(table, target), out)

    # 3. an ONNX file from elsewhere: foreign names, a fixed batch of 1, logits out
    onnx_file = runs / "theirs.onnx"
    torch.onnx.export(
        net, (torch.zeros(1, 3, 64),), str(onnx_file), input_names=["imu"],
        output_names=["scores"], dynamo=False,
    )  # fmt: skip
    imported = from_trained(
        load_trained_file(onnx_file), example=x[:8], labels=["still", "walk", "run"],
        output="logits", name="theirs",
    )  # fmt: skip
    report("theirs (ONNX file)", imported, ["onnx", "ort"], held_out, out)


def report(title: str, model, targets, held_out, out: Path) -> None:  # type: ignore[no-untyped-def]
    """Convert to ``targets`` and print each file's parity and accuracy."""
    results = convert_model(
        model, targets, out / model.schema.name, samples=held_out.features,
        labels=held_out.labels, on_failure=lambda t, e: print(f"  {t}: not built: {e}"),
    )  # fmt: skip
    print(title, model.schema.input.shape, model.schema.input.layout)
    for r in results:
        accuracy = f"{r.accuracy:.3f}" if r.accuracy is not None else "n/a (Core ML)"
        print(f"  {r.target:<7} {r.size:>7,} B  {r.check.summary():<40} accuracy {accuracy}")


if __name__ == "__main__":
    main()
