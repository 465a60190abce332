"""``pocketml simulate``: a fleet of virtual devices on simulated networks against a server.

With ``--server``/``--device-key`` (or ``POCKETML_SERVER_URL``/``POCKETML_DEVICE_KEY``, which
``pocketml app create --env-file`` writes) it targets a running server whose app already has
the model. Without them it starts a server in-process (SQLite, a temporary home), creates an
app and pushes the small deterministic demo build (like ``pocketml demo``'s ship step).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from pocketml._tables import Column, fitted_table
from pocketml.cli._common import console, split_csv_option
from pocketml.errors import InvalidInput

__all__ = ["simulate"]

_OPERATOR_TOKEN = "pml_op_simulate-operator-token"


@contextmanager
def _demo_server(work_dir: Path) -> Iterator[tuple[str, str]]:
    """Serve an in-process server with the demo model in production; yield (url, key)."""
    from pydantic import SecretStr

    from pocketml.config import Settings
    from pocketml.server.background import serve_in_thread
    from pocketml.server.client import AdminClient
    from pocketml.sim import write_demo_build

    console.print("building the demo model (ONNX, ORT, TFLite; closed-form weights)…")
    build = write_demo_build(work_dir / "build", formats=("onnx", "ort", "tflite"))
    settings = Settings(home=work_dir / "server-home", operator_token=SecretStr(_OPERATOR_TOKEN))
    with serve_in_thread(settings) as url:
        with AdminClient(url, _OPERATOR_TOKEN) as operator:
            created = operator.create_app(f"simulate-{int(time.time())}")
        with AdminClient(url, created.admin_token) as admin:
            version = admin.push_build(build, stage="production")
        console.print(
            f"server {url}: app {created.app.name}, digits v{version.version} in production "
            f"({len(version.variants)} variants)"
        )
        yield url, created.device_key


def simulate(
    devices: int = typer.Option(10, "--devices", "-n", min=1, max=1000, help="Fleet size."),
    network: str = typer.Option(
        "lossy", "--network", help="Profile(s), comma-separated: wifi, 4g, 3g, lossy, offline."
    ),
    server: str | None = typer.Option(
        None,
        "--server",
        envvar="POCKETML_SERVER_URL",
        help="Server URL (default: a server started in-process with a demo model).",
    ),
    device_key: str | None = typer.Option(
        None, "--device-key", envvar="POCKETML_DEVICE_KEY", help="The app's device key."
    ),
    model: str = typer.Option("digits", "--model", help="Model to sync and predict with."),
    predictions: int = typer.Option(20, "--predictions", min=1, help="Predictions per device."),
    seed: int = typer.Option(0, "--seed", help="Seed of every simulated network."),
    workers: int = typer.Option(4, "--workers", min=1, help="Devices simulated at once."),
) -> None:
    """Simulate a fleet of devices on bad networks and print what it saw."""
    from pocketml.sim import (
        PROFILES,
        demo_inputs,
        fetch_schema,
        inputs_for_schema,
        make_fleet,
        run_fleet,
    )

    networks = split_csv_option(network, "--network", PROFILES)
    if (server is None) != (device_key is None):
        raise InvalidInput(
            "pass both --server and --device-key (or set POCKETML_SERVER_URL and "
            "POCKETML_DEVICE_KEY), or neither for an in-process demo server; got only "
            f"{'--server' if device_key is None else '--device-key'}."
        )
    fleet = make_fleet(devices, networks, seed=seed)
    inputs = demo_inputs(predictions, seed=seed)
    with tempfile.TemporaryDirectory(prefix="pocketml-simulate-") as tmp:
        work = Path(tmp)
        if server is not None and device_key is not None:
            inputs = inputs_for_schema(
                fetch_schema(server, device_key, model), predictions, seed=seed
            )
            report = run_fleet(
                server, device_key, fleet, inputs, work / "devices", model=model, workers=workers
            )
        else:
            with _demo_server(work) as (url, key):
                report = run_fleet(
                    url, key, fleet, inputs, work / "devices", model=model, workers=workers
                )
    columns = [
        Column("device", is_name=True),
        Column("class", is_name=True),
        Column("network", priority=4),
        Column("variant", is_name=True),
        Column("sync", wraps=True),
        Column("resumed", priority=2),
        Column("local/cloud/fallback/failed", "right", priority=1),
        Column("p50 ms", "right"),
        Column("telemetry", "right", priority=3),
    ]
    rows = []
    for result in report.devices:
        lat = sorted(result.latencies_ms)
        sources = result.sources
        rows.append(
            (
                result.device.name,
                result.device.device_class,
                result.device.network,
                result.variant or "-",
                result.sync,
                "yes" if result.resumed else "",
                f"{sources['local']}/{sources['cloud']}/{sources['fallback']}/{sources['unavailable']}",
                f"{lat[len(lat) // 2]:.1f}" if lat else "-",
                str(result.telemetry_sent),
            )
        )
    title = f"{devices} devices on {', '.join(networks)}"
    console.print(fitted_table(title, columns, rows, console.width))
    totals = report.totals()
    p50, p95 = totals["latency_p50_ms"], totals["latency_p95_ms"]
    console.print(
        f"synced {totals['synced']}/{totals['devices']}, blocked {totals['blocked']}, "
        f"failed {totals['failed']}, downloads resumed {totals['downloads_resumed']}; "
        f"predictions {totals['predictions']}; latency p50 "
        f"{'-' if p50 is None else f'{p50:.1f}'} ms, p95 {'-' if p95 is None else f'{p95:.1f}'} "
        f"ms (simulated network time included); telemetry sent {totals['telemetry_sent']}, "
        f"pending {totals['telemetry_pending']}"
    )
