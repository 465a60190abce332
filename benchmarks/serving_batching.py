"""Micro-batching on cloud-sized models: batching on vs off at concurrency 64.

Three models, each exported to ONNX (seed 0, untrained weights: throughput does not
depend on them), pushed as the cloud variant and served by one uvicorn worker pinned to
one core, loaded by wrk from the other core:

- ``cnn-large``: pocketml's cloud architecture on digits (1x8x8), 0.29 M parameters,
  four 3x3 convolution blocks: compute-bound even at batch 1;
- ``mobilenet-v2``: the MobileNetV2-style CNN of ``quantize_mobilenet.py`` on 3x32x32,
  2.2 M parameters, depthwise-separable blocks;
- ``dense-cnn``: two 3x3 convolutions and a 4,096 -> 384 dense layer on 1x8x8, 1.6 M
  parameters, most of them in the dense layer: one sample at a time is a memory-bound
  matrix-vector product, a batch reuses the weights.

Before the HTTP runs the script times each model in-process at batch 1 and batch 64: the
ceiling of what merging can gain. Goal: batching >= 2x the throughput of batching off,
with equal or better p99. Prints Rich tables; writes
``benchmarks/results/serving_batching.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _device_load import (
    LoadResult,
    load_table,
    provision,
    run_load,
    server,
    variant_entry,
    write_result,
)

CONCURRENCY = 64
DURATION_S = 8


def _schema(name: str, shape: list[int]) -> dict[str, object]:
    layout = "NCHW"
    return {
        "format_version": 1,
        "name": name,
        "inputs": [
            {"name": "input", "dtype": "float32", "shape": [None, *shape], "layout": layout}
        ],
        "outputs": [
            {
                "name": "probabilities",
                "kind": "probabilities",
                "labels": [str(i) for i in range(10)],
            }
        ],
    }


def _dense_cnn() -> Any:
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 8 * 8, 384),
        nn.ReLU(),
        nn.Linear(384, 10),
        nn.Softmax(dim=-1),
    )


def _cnn_large() -> Any:
    from pocketml.train.architectures import build_torch_model, with_softmax

    return with_softmax(build_torch_model("cnn-large", (1, 8, 8), 10))


def _mobilenet() -> Any:
    from quantize_mobilenet import mobilenet_v2
    from torch import nn

    return nn.Sequential(mobilenet_v2(10), nn.Softmax(dim=-1))


MODELS: dict[str, tuple[Callable[[], Any], list[int]]] = {
    "cnn-large": (_cnn_large, [1, 8, 8]),
    "mobilenet-v2": (_mobilenet, [3, 32, 32]),
    "dense-cnn": (_dense_cnn, [1, 8, 8]),
}


def export(name: str, path: Path) -> int:
    """Export model ``name`` (seed 0) to ONNX with a dynamic batch axis; return its parameters."""
    import torch

    torch.manual_seed(0)
    factory, shape = MODELS[name]
    model = factory().eval()
    torch.onnx.export(
        model,
        (torch.zeros(2, *shape),),
        str(path),
        input_names=["input"],
        output_names=["probabilities"],
        dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
        dynamo=False,
    )
    return sum(p.numel() for p in model.parameters())


def in_process_ms(path: Path, shape: list[int]) -> tuple[float, float]:
    """Milliseconds per sample at batch 1 and at batch 64 (ONNX Runtime, one thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    result = []
    for batch, runs in ((1, 300), (64, 15)):
        x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
        for _ in range(5):
            session.run(None, {"input": x})
        started = time.perf_counter()
        for _ in range(runs):
            session.run(None, {"input": x})
        result.append((time.perf_counter() - started) / runs / batch * 1000)
    return result[0], result[1]


def serve_and_load(
    work: Path, name: str, model_path: Path, bodies: list[bytes], serving: dict[str, object]
) -> tuple[LoadResult, dict[str, Any]]:
    """One server with ``serving`` options under the standard load; (result, batcher stats)."""
    import httpx

    home = work / f"{name}-{'on' if serving.get('batching', True) else 'off'}"
    options = json.dumps({"serving": serving})
    with server("pocketml", str(home), options) as (_, url):
        schema = _schema(name, MODELS[name][1])
        admin, key = provision(url, name, schema, [variant_entry(model_path, name)])
        headers = {"Authorization": f"Bearer {key}"}
        path = f"/v1/models/{name}/predict"
        run_load(url, path, headers, bodies, duration_s=2)  # warm-up
        result = run_load(
            url, path, headers, bodies, concurrency=CONCURRENCY, duration_s=DURATION_S
        )
        stats = httpx.get(
            f"{url}/v1/admin/serving/stats", headers={"Authorization": f"Bearer {admin}"}
        ).json()
    return result, stats.get(name, {})


def main() -> None:
    """Serve each model with batching on and off under the same load; report."""
    console = Console()
    summary = Table(title=f"micro-batching, concurrency {CONCURRENCY}, one core")
    for column in ("model", "params M", "in-process b64 gain", "off req/s", "on req/s"):
        summary.add_column(column, justify="left" if column == "model" else "right")
    for column in ("x off", "off p99 ms", "on p99 ms", "req/call", "goal met"):
        summary.add_column(column, justify="right")
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, (_, shape) in MODELS.items():
            model_path = work / f"{name}.onnx"
            params = export(name, model_path)
            b1, b64 = in_process_ms(model_path, shape)
            rng = np.random.default_rng(0)
            bodies = [
                orjson.dumps(
                    {"inputs": rng.random((1, *shape), dtype=np.float32).round(3).tolist()}
                )
                for _ in range(64)
            ]
            off, _ = serve_and_load(work, name, model_path, bodies, {"batching": False})
            on, stats = serve_and_load(
                work, name, model_path, bodies, {"max_batch_size": 64, "max_wait_ms": 2.0}
            )
            ratio = on.rps / off.rps
            per_call = stats["requests"] / max(stats["batches"], 1) if stats else float("nan")
            met = ratio >= 2.0 and on.p99_ms <= off.p99_ms
            summary.add_row(
                name,
                f"{params / 1e6:.2f}",
                f"{b1 / b64:.2f}x",
                f"{off.rps:,.0f}",
                f"{on.rps:,.0f}",
                f"{ratio:.2f}",
                f"{off.p99_ms:.1f}",
                f"{on.p99_ms:.1f}",
                f"{per_call:.1f}",
                "yes" if met else "no",
            )
            console.print(
                load_table(f"{name}: predict, concurrency {CONCURRENCY}", "setting",
                           {"batching off": off, "micro-batching": on}, off.rps, "x off",
                           decimals=1)
            )  # fmt: skip
            report[name] = {
                "parameters": params,
                "in_process_ms_per_sample": {"batch_1": b1, "batch_64": b64},
                "off": off.to_dict(),
                "on": on.to_dict(),
                "x_off": ratio,
                "p99_ratio": on.p99_ms / off.p99_ms,
                "batcher": stats,
                "goal_met": met,
            }
    console.print(summary)
    path = write_result(
        "serving_batching",
        {
            "concurrency": CONCURRENCY,
            "duration_s": DURATION_S,
            "goal": {"x_off": 2.0, "p99": "<= off"},
            "models": report,
        },
    )
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
