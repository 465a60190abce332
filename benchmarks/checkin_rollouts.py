"""Check-in throughput with 20 targeting rules and a running rollout vs without them.

Reuses ``checkin.py``'s machinery: one pocketml server (one uvicorn worker, subprocess,
SQLite), 10,000 distinct devices over four profiles, concurrency 64. First the plain
catalog (one production version), then the same server after pushing a candidate, setting
20 targeting rules on the production channel (all of which the fleet matches, so every
rule is evaluated) and starting a rollout at 50 % with its own country rule. Goal: >= 0.8x
the throughput without rules. Prints a Rich table; writes
``benchmarks/results/checkin_rollouts.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import httpx
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _device_load import load_table, provision, run_load, server, write_result
from checkin import CONCURRENCY, DEVICES, DURATION_S, SCHEMA, bodies, variants

GOAL = 0.8


def rules() -> list[dict[str, object]]:
    """20 rules every benchmark device matches (so none short-circuits early)."""
    out: list[dict[str, object]] = [
        {"field": "platform", "in": ["android", "ios", "linux"]},
        {"field": "os_version", "min": "10", "max": "99"},
        {"field": "app_version", "min": "2.0", "max": "9"},
        {"field": "device_class", "not_in": ["retired"]},
        {"field": "device_id", "not_in": [f"banned-{i}" for i in range(500)]},
    ]
    for i in range(15):
        out.append(
            {"field": "device_model", "not_in": [f"broken-model-{i}-{j}" for j in range(20)]}
        )
    return out


def main() -> None:
    """Plain check-in, then with targeting and a running rollout, on one server."""
    console = Console()
    results = {}
    all_bodies = bodies()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with server(
            "pocketml", str(work / "home"), json.dumps({"devices": {"catalog_ttl_s": 5.0}})
        ) as (_, url):
            admin_token, key = provision(url, "digits", SCHEMA, variants(work))
            headers = {"Authorization": f"Bearer {key}"}
            run_load(url, "/v1/checkin", headers, all_bodies, duration_s=2)
            results["no targeting, no rollout"] = run_load(
                url,
                "/v1/checkin",
                headers,
                all_bodies,
                concurrency=CONCURRENCY,
                duration_s=DURATION_S,
            )
            from pocketml.server.client import AdminClient

            with AdminClient(url, admin_token) as admin:
                files = variants(work)
                admin.push_files(
                    "digits", {"variants": [m for m, _ in files]}, {m["name"]: p for m, p in files}
                )
                admin.set_targeting("digits", rules())
                rollout = admin.create_rollout(
                    "digits",
                    2,
                    schedule=[50, 100],
                    min_dwell_s=86400,
                    targeting=[{"field": "platform", "not_in": ["windows"]}],
                )
            check = httpx.post(f"{url}/v1/checkin", content=all_bodies[0], headers=headers)
            assert check.status_code == 200, check.text
            run_load(url, "/v1/checkin", headers, all_bodies, duration_s=2)
            results["20 rules + rollout at 50%"] = run_load(
                url,
                "/v1/checkin",
                headers,
                all_bodies,
                concurrency=CONCURRENCY,
                duration_s=DURATION_S,
            )
    base = results["no targeting, no rollout"].rps
    table = load_table(
        f"check-in, {DEVICES:,} devices, concurrency {CONCURRENCY}",
        "catalog",
        results,
        base,
        "x plain",
    )
    console.print(table)
    ratio = results["20 rules + rollout at 50%"].rps / base
    console.print(f"rollout {rollout.id}: {ratio:.2f}x the plain throughput (goal >= {GOAL}x)")
    path = write_result(
        "checkin_rollouts",
        {
            "devices": DEVICES,
            "concurrency": CONCURRENCY,
            "duration_s": DURATION_S,
            "goal": {"x_plain": GOAL},
            "results": {k: {**v.to_dict(), "x_plain": v.rps / base} for k, v in results.items()},
        },
    )
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
