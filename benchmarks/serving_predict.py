"""Cloud inference of the digits model at concurrency 64, against a plain FastAPI baseline.

Trains logistic regression on digits (seed 0), converts it to ONNX, and serves it three
ways, each as one uvicorn worker in a subprocess on loopback: the baseline (a plain
FastAPI endpoint with pydantic models in and out and an ONNX Runtime session), pocketml
with micro-batching, and pocketml with batching off. Load comes from a separate process
(wrk, else asyncio + httpx). Goal: >= 10,000 req/s with p99 <= 5 ms and >= 2x the
baseline. Prints a Rich table; writes ``benchmarks/results/serving_predict.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import orjson
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _device_load import load_table, provision, run_load, server, variant_entry, write_result

CONCURRENCY = 64
DURATION_S = 8


def build_model(out: Path) -> tuple[Path, dict[str, object], list[bytes]]:
    """Train and convert the digits model; return its file, schema and request bodies."""
    from pocketml.convert import convert_model
    from pocketml.data import load_digits
    from pocketml.train import model_inputs, train

    splits = load_digits().split(seed=0)
    result = train(splits, "logistic-regression", model_name="digits", out_dir=out / "run")
    samples = model_inputs(result.model, splits.test)
    (conv,) = convert_model(
        result.model, ["onnx"], out / "onnx", samples=samples, labels=splits.test.labels
    )
    bodies = [
        orjson.dumps({"inputs": [row.tolist()], "prediction_id": f"p{i}"})
        for i, row in enumerate(samples[:200])
    ]
    return Path(conv.path), result.model.schema.to_dict(), bodies


def main() -> None:
    """Run the three servers under the same load and report."""
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_path, schema, bodies = build_model(work)
        results = {}
        with server("baseline-predict", str(model_path)) as (_, url):
            run_load(url, "/v1/models/digits/predict", {}, bodies, duration_s=2)  # warm-up
            results["baseline (FastAPI + pydantic + ORT)"] = run_load(
                url,
                "/v1/models/digits/predict",
                {},
                bodies,
                concurrency=CONCURRENCY,
                duration_s=DURATION_S,
            )
        for label, serving in (
            ("pocketml, micro-batching", {}),
            ("pocketml, batching off", {"batching": False}),
        ):
            options = json.dumps({"devices": {"catalog_ttl_s": 1.0}, "predict": serving})
            home = work / label.replace(" ", "_").replace(",", "")
            with server("pocketml", str(home), options) as (_, url):
                _, key = provision(url, "digits", schema, [variant_entry(model_path, "lr-onnx")])
                headers = {"Authorization": f"Bearer {key}"}
                run_load(url, "/v1/models/digits/predict", headers, bodies, duration_s=2)
                results[label] = run_load(
                    url,
                    "/v1/models/digits/predict",
                    headers,
                    bodies,
                    concurrency=CONCURRENCY,
                    duration_s=DURATION_S,
                )
    base = results["baseline (FastAPI + pydantic + ORT)"].rps
    table = load_table(
        f"predict, digits logistic regression, concurrency {CONCURRENCY}",
        "server",
        results,
        base,
        "x baseline",
    )
    console.print(table)
    path = write_result(
        "serving_predict",
        {
            "concurrency": CONCURRENCY,
            "duration_s": DURATION_S,
            "goal": {"rps": 10_000, "p99_ms": 5.0, "x_baseline": 2.0},
            "results": {k: {**v.to_dict(), "x_baseline": v.rps / base} for k, v in results.items()},
        },
    )
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
