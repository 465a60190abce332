"""Quantization benchmark: pocketml's int8/fp16 variants against ONNX Runtime's defaults.

Builds a MobileNetV2-style CNN (~2.2 M parameters, 3×32×32 input), trains it briefly on a
synthetic but learnable 10-class task (class-dependent coloured stripes + noise, fixed
seed), exports it to ONNX and measures, side by side at batch 1 on 1 thread:

- fp32 (the baseline),
- ONNX Runtime ``quantize_dynamic`` with its defaults (the plain baseline),
- pocketml's static per-channel QDQ int8, fp16 and dynamic int8.

The same is done for a small digits CNN. Then the selector picks a variant per device
profile. Prints Rich tables and writes ``benchmarks/results/quantize_mobilenet.json``.

Run: ``.venv/bin/python benchmarks/quantize_mobilenet.py`` (about 2-4 minutes).
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from pocketml.bench import BUILTIN_PROFILES, Benchmark, BenchmarkResult, Variant, print_results
from pocketml.optimize import (
    Budget,
    OnnxDynamicQuantizer,
    OnnxFp16Quantizer,
    OnnxStaticQuantizer,
    VariantSelector,
    plot_variants,
    print_selections,
)

RESULTS = Path(__file__).parent / "results"
SEED = 0
console = Console(width=180)


def _inverted_residual(cin: int, cout: int, stride: int, expand: int) -> torch.nn.Module:
    hidden = cin * expand
    layers: list[torch.nn.Module] = []
    if expand != 1:
        layers += [torch.nn.Conv2d(cin, hidden, 1, bias=False), torch.nn.BatchNorm2d(hidden),
                   torch.nn.ReLU6()]  # fmt: skip
    layers += [
        torch.nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
        torch.nn.BatchNorm2d(hidden),
        torch.nn.ReLU6(),
        torch.nn.Conv2d(hidden, cout, 1, bias=False),
        torch.nn.BatchNorm2d(cout),
    ]
    body = torch.nn.Sequential(*layers)

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body
            self.residual = stride == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.body(x) if self.residual else self.body(x)

    return Block()


def mobilenet_v2(classes: int = 10) -> torch.nn.Module:
    """MobileNetV2 (width 1.0) adapted to 32×32 inputs: ~2.2 M parameters."""
    config = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
              (6, 160, 3, 2), (6, 320, 1, 1)]  # fmt: skip
    layers: list[torch.nn.Module] = [
        torch.nn.Conv2d(3, 32, 3, 1, 1, bias=False), torch.nn.BatchNorm2d(32), torch.nn.ReLU6()
    ]  # fmt: skip
    cin = 32
    for expand, cout, repeats, stride in config:
        for i in range(repeats):
            layers.append(_inverted_residual(cin, cout, stride if i == 0 else 1, expand))
            cin = cout
    layers += [torch.nn.Conv2d(cin, 1280, 1, bias=False), torch.nn.BatchNorm2d(1280),
               torch.nn.ReLU6(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
               torch.nn.Linear(1280, classes)]  # fmt: skip
    return torch.nn.Sequential(*layers)


def synthetic_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """10 classes: a class colour and a class stripe orientation/frequency, plus noise."""
    labels = rng.integers(0, 10, n)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) / 32.0
    palette = rng.uniform(0.2, 0.8, (10, 3)).astype(np.float32)
    angles = np.linspace(0, np.pi, 10, endpoint=False)
    images = np.empty((n, 3, 32, 32), np.float32)
    for i, c in enumerate(labels):
        freq = 3 + (c % 3)
        phase = rng.uniform(0, 2 * np.pi)
        stripes = np.sin(
            2 * np.pi * freq * (xx * np.cos(angles[c]) + yy * np.sin(angles[c])) + phase
        )
        colour = palette[c] + rng.normal(0, 0.08, 3)
        images[i] = colour[:, None, None] * (0.6 + 0.4 * stripes)[None]
    images += rng.normal(0, 0.2, images.shape).astype(np.float32)
    return images, labels.astype(np.int64)


def train(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, epochs: int) -> torch.nn.Module:
    """A few epochs of Adam; returns the model with a softmax head, in eval mode."""
    torch.manual_seed(SEED)
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), 32):
            idx = order[start : start + 32]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            optimizer.step()
    recalibrate_batchnorm(model, xt)
    return torch.nn.Sequential(model, torch.nn.Softmax(dim=-1)).eval()


def recalibrate_batchnorm(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Re-estimate BatchNorm statistics as exact averages over the training inputs.

    After a few hundred steps the running averages still lag the weights; a forward-only
    pass fixes eval-mode accuracy (and gives int8 calibration stable ranges) cheaply.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for start in range(0, len(x), 128):
            model(x[start : start + 128])
    model.eval()


def export_onnx(model: torch.nn.Module, sample: np.ndarray, path: Path) -> Path:
    """torch -> ONNX with a dynamic batch axis, as pocketml.convert does."""
    torch.onnx.export(
        model, (torch.from_numpy(sample),), str(path), input_names=["input"],
        output_names=["probabilities"],
        dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
        dynamo=False, opset_version=17,
    )  # fmt: skip
    return path


def build_variants(fp32: Path, calibration: np.ndarray, work: Path) -> list[Any]:
    """fp32, ONNX Runtime's default dynamic int8, and pocketml's variants."""
    from onnxruntime.quantization import quantize_dynamic

    baseline = work / f"{fp32.stem}-ort-default-dynamic.onnx"
    quantize_dynamic(str(fp32), str(baseline))  # every default, no preprocessing
    stem = fp32.stem
    return [
        Variant(f"{stem}-fp32", fp32, "onnx"),
        Variant(f"{stem}-ort-default-dynamic", baseline, "onnx", "int8", "dynamic"),
        OnnxStaticQuantizer(calibration).apply(fp32, work / f"{stem}-int8-static.onnx"),
        OnnxFp16Quantizer().apply(fp32, work / f"{stem}-fp16.onnx"),
        OnnxDynamicQuantizer().apply(fp32, work / f"{stem}-int8-dynamic.onnx"),
    ]


def mobilenet_case(work: Path, bench: Benchmark) -> tuple[list[BenchmarkResult], dict[str, Any]]:
    """Train, export, quantize and benchmark the MobileNetV2-style model."""
    rng = np.random.default_rng(SEED)
    # Training MobileNetV2 on 2 shared CPU cores is the slow part: 1500 images x 2 epochs.
    x_train, y_train = synthetic_images(1500, rng)
    x_test, y_test = synthetic_images(500, rng)
    net = mobilenet_v2()
    params = sum(p.numel() for p in net.parameters())
    start = time.perf_counter()
    model = train(net, x_train, y_train, epochs=2)
    train_s = time.perf_counter() - start
    fp32 = export_onnx(model, x_test[:2], work / "mobilenet.onnx")
    variants = build_variants(fp32, x_train[:256], work)
    results = bench.run(variants, x_test, y_test)
    return results, {"parameters": params, "train_seconds": train_s}


def digits_case(work: Path, bench: Benchmark) -> list[BenchmarkResult]:
    """The same on a small CNN trained on scikit-learn's digits."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(x))
    train_idx, test_idx = order[:1400], order[1400:]
    torch.manual_seed(SEED)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10),
    )  # fmt: skip
    model = train(net, x[train_idx], y[train_idx], epochs=10)
    fp32 = export_onnx(model, x[:2], work / "digits.onnx")
    variants = build_variants(fp32, x[train_idx][:256], work)
    return bench.run(variants, x[test_idx], y[test_idx])


def ratios(results: list[BenchmarkResult], int8_name: str) -> dict[str, float]:
    """Latency, size and accuracy of ``int8_name`` relative to the fp32 variant."""
    fp32 = next(r for r in results if r.precision == "fp32")
    int8 = next(r for r in results if r.name == int8_name)
    assert fp32.latency_p50_ms and int8.latency_p50_ms
    assert fp32.accuracy and int8.accuracy
    return {
        "latency_ratio_p50": int8.latency_p50_ms / fp32.latency_p50_ms,
        "size_ratio": fp32.size_bytes / int8.size_bytes,
        "accuracy_drop_points": (fp32.accuracy - int8.accuracy) * 100,
    }


def main() -> None:
    """Run both cases, select per profile, print tables, write JSON and a PNG."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    bench = Benchmark(warmup=20, iterations=200, throughput_batch=32, throughput_iterations=20)
    profiles = [BUILTIN_PROFILES[n] for n in ("android-low", "android-mid", "edge-linux", "cloud")]
    with tempfile.TemporaryDirectory(prefix="pocketml-qbench-") as tmp:
        work = Path(tmp)
        mobilenet, info = mobilenet_case(work, bench)
        digits = digits_case(work, bench)
        print_results(mobilenet, console, "MobileNetV2-style, 3×32×32, 1 thread, batch 1")
        print_results(digits, console, "Digits CNN, 1×8×8, 1 thread, batch 1")
        fp32_mb = mobilenet[0].size_mb
        # android-low has room for an int8 model only; the others for anything.
        budgets = {"android-low": Budget(max_size_mb=fp32_mb / 3, max_accuracy_drop=0.01)}
        default = Budget(max_accuracy_drop=0.01)
        selections = VariantSelector(budgets, default).select(mobilenet, profiles)
        print_selections(selections, console)
        plot_variants(mobilenet, RESULTS / "quantize_mobilenet.png")
    chosen_int8 = next(s.variant for s in selections if s.profile.name == "android-low")
    assert chosen_int8 is not None, "no int8 variant fits android-low"
    slow_given = [
        s.profile.name for s in selections
        if s.variant and s.profile.is_cpu_only and s.variant.name.endswith("dynamic")
    ]  # fmt: skip
    summary = {
        "mobilenet_chosen_int8": chosen_int8.name,
        "mobilenet": ratios(mobilenet, chosen_int8.name),
        "mobilenet_ort_default_dynamic": ratios(mobilenet, "mobilenet-ort-default-dynamic"),
        "digits_int8_static": ratios(digits, "digits-int8-static"),
        "cpu_profiles_given_a_slow_dynamic_variant": slow_given,
    }
    console.print_json(data=summary)
    document = {
        "host": {
            "machine": platform.machine(),
            "python": platform.python_version(),
            "processor": platform.processor(),
        },
        "mobilenet_info": info,
        "summary": summary,
        "mobilenet": [r.to_dict() for r in mobilenet],
        "digits": [r.to_dict() for r in digits],
        "selections": [s.to_dict() for s in selections],
    }
    (RESULTS / "quantize_mobilenet.json").write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
