"""Micro-batching on a compute-bound model: batching on vs off at concurrency 64.

Exports a ~1.6 M parameter CNN on digits-shaped 1x8x8 inputs (two 3x3 convolutions, a
4,096 -> 384 dense layer, softmax) to ONNX. Most of its weights sit in the dense layer,
so one sample at a time is a memory-bound matrix-vector product and a batch reuses the
weights: the kind of cloud model micro-batching is for. It is pushed as the cloud variant
and one uvicorn worker (subprocess) per setting is loaded from a separate process. Goal:
batching >= 2x the throughput of batching off, with equal or better p99. Prints a Rich table; writes
``benchmarks/results/serving_batching.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import orjson
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _device_load import load_table, provision, run_load, server, variant_entry, write_result

CONCURRENCY = 64
DURATION_S = 10
SCHEMA = {
    "format_version": 1,
    "name": "cnn",
    "inputs": [{"name": "input", "dtype": "float32", "shape": [None, 1, 8, 8], "layout": "NCHW"}],
    "outputs": [
        {"name": "probabilities", "kind": "probabilities", "labels": [str(i) for i in range(10)]}
    ],
}


def export_cnn(path: Path) -> int:
    """Export the CNN (seed 0) to ONNX with a dynamic batch axis; return its parameters."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 8 * 8, 384),
        nn.ReLU(),
        nn.Linear(384, 10),
        nn.Softmax(dim=-1),
    ).eval()
    example = torch.zeros(2, 1, 8, 8)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["input"],
        output_names=["probabilities"],
        dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
        dynamo=False,
    )
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    """Serve the CNN with batching on and off under the same load; report."""
    console = Console()
    rng = np.random.default_rng(0)
    bodies = [
        orjson.dumps({"inputs": rng.random((1, 1, 8, 8), dtype=np.float32).round(3).tolist()})
        for _ in range(64)
    ]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        params = export_cnn(work / "cnn.onnx")
        for label, serving in (
            ("batching off", {"batching": False}),
            ("micro-batching", {"max_batch_size": 64, "max_wait_ms": 2.0}),
        ):
            options = json.dumps({"serving": serving})
            with server("pocketml", str(work / label.replace(" ", "_")), options) as (_, url):
                admin, key = provision(
                    url, "cnn", SCHEMA, [variant_entry(work / "cnn.onnx", "cnn")]
                )
                headers = {"Authorization": f"Bearer {key}"}
                run_load(url, "/v1/models/cnn/predict", headers, bodies, duration_s=2)
                results[label] = run_load(
                    url,
                    "/v1/models/cnn/predict",
                    headers,
                    bodies,
                    concurrency=CONCURRENCY,
                    duration_s=DURATION_S,
                )
                import httpx

                stats = httpx.get(
                    f"{url}/v1/admin/serving/stats", headers={"Authorization": f"Bearer {admin}"}
                ).json()
                results[label + " stats"] = stats
    off, on = results["batching off"], results["micro-batching"]
    table = load_table(
        f"predict, {params / 1e6:.2f} M-parameter CNN, concurrency {CONCURRENCY}",
        "setting",
        {"batching off": off, "micro-batching": on},
        off.rps,
        "x off",
        decimals=1,
    )
    console.print(table)
    stats = results["micro-batching stats"].get("cnn", {})
    if stats:
        console.print(
            f"batcher: {stats['requests']:,} requests in {stats['batches']:,} runtime "
            f"calls ({stats['requests'] / max(stats['batches'], 1):.1f} per call), "
            f"largest {stats['max_batch_rows']} rows"
        )
    path = write_result(
        "serving_batching",
        {
            "parameters": params,
            "concurrency": CONCURRENCY,
            "duration_s": DURATION_S,
            "goal": {"x_off": 2.0, "p99": "<= off"},
            "off": off.to_dict(),
            "on": on.to_dict(),
            "x_off": on.rps / off.rps,
            "p99_ratio": on.p99_ms / off.p99_ms,
            "batcher": stats,
        },
    )
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
