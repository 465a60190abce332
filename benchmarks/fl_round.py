"""Server time per federated round, secure-aggregation upload bytes, and a 100-client round
with 30 % dropout, against a plain numpy FedAvg baseline measured in the same run.

    PYTHONPATH=src python benchmarks/fl_round.py [--runs 15] [--json FILE]

Everything runs in memory in this process (no HTTP, no database): the numbers are the
aggregation math and the SecAgg+ protocol steps a server performs, i.e. the floor under
what a route adds later. Server time counts only the server's calls; the clients' own work
(training, masking, sharing) happens on devices and is reported separately per client.

Rows (median of ``--runs`` rounds, wall-clock on one core):
- ``numpy fedavg`` — the baseline: ``np.average(np.stack(updates), weights=n, axis=0)``.
- ``fedavg`` / ``trimmed mean`` — pocketml's aggregators on the same updates.
- ``dp-fedavg`` — clip every update, sum, Gaussian noise, adaptive clip norm; and the same
  plus the (ε, δ) after the round from dp-accounting's RDP accountant.
- ``secagg`` — one whole SecAgg+ round (all pairs, and the k-regular graph with k = 8).

BLAS runs on one thread (``--blas-threads``, threadpoolctl): on this 2-core machine shared
by other jobs, OpenBLAS's default threads made one 12,810-value dot product take 6.8 ms
instead of 2.6 µs (spinning threads fighting for cores), which would swamp everything
measured here. Aggregation of vectors this size gains nothing from BLAS threads.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from pocketml.federated import (
    AdaptiveClipping,
    DPFedAvg,
    PrivacyAccountant,
    SecAggServer,
    fedavg,
    trimmed_mean,
)
from pocketml.fl import FixedPoint, SecAggAborted, SecAggClient, SecAggConfig, clip_update

HEADS = {"digits head 64x10": 64 * 10 + 10, "mobilenet head 1280x10": 1280 * 10 + 10}


def _median_ms(fn: Callable[[], Any], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def _secagg_round(
    n: int, d: int, *, neighbours: int | None, threshold: int, dropped: set[int], seed: int
) -> dict[str, Any]:
    """One SecAgg+ round; returns server ms, client ms, upload bytes and exactness."""
    rng = np.random.default_rng(seed)
    ids = tuple(range(1, n + 1))
    config = SecAggConfig(
        f"bench-{seed}", ids, threshold, FixedPoint(32, 1.0, n), d, neighbours, b"bench-graph"
    )
    updates = {u: clip_update(rng.normal(size=d), 1.0)[0] for u in ids}
    entropy = random.Random(seed)
    server_s = client_s = 0.0
    sent = dict.fromkeys(ids, 96)  # two public keys + the seed commitment

    def timed_server(fn: Callable[..., Any], *args: Any) -> Any:
        nonlocal server_s
        start = time.perf_counter()
        out = fn(*args)
        server_s += time.perf_counter() - start
        return out

    def timed_client(fn: Callable[..., Any], *args: Any) -> Any:
        nonlocal client_s
        start = time.perf_counter()
        out = fn(*args)
        client_s += time.perf_counter() - start
        return out

    clients = {u: SecAggClient(u, config, randbytes=entropy.randbytes) for u in ids}
    server = timed_server(SecAggServer, config)
    adverts = [timed_client(c.advertise_keys) for c in clients.values()]
    roster = timed_server(server.receive_keys, adverts)
    for u, c in clients.items():
        sealed = timed_client(c.share_keys, roster)
        sent[u] += sum(len(s) + 4 for s in sealed.values())
        timed_server(server.receive_shares, u, sealed)
    for u, c in clients.items():
        if u in dropped:
            continue
        inbox = timed_server(server.inbox, u)
        masked = timed_client(c.mask_update, config.encoding.encode(updates[u]), inbox)
        sent[u] += len(masked.to_bytes(config.encoding))
        timed_server(server.receive_masked_input, masked)
    survivors, gone = timed_server(server.unmask_request)
    for u in sorted(survivors):
        response = timed_client(clients[u].unmask, survivors, gone)
        sent[u] += response.wire_bytes()
        timed_server(server.receive_unmask, response)
    total = timed_server(server.aggregate)
    expected = np.zeros(d, dtype=np.uint64)
    for u in survivors:
        expected = config.encoding.add(expected, config.encoding.encode(updates[u]))
    plain = np.sum([updates[u] for u in survivors], axis=0)
    return {
        "server_ms": server_s * 1000,
        "client_ms": client_s * 1000 / n,
        "upload_bytes": statistics.mean(sent[u] for u in survivors),
        "exact": bool(np.array_equal(total, expected)),
        "max_abs_error": float(np.abs(config.encoding.decode_sum(total) - plain).max()),
        "survivors": len(survivors),
    }


def _aggregation_rows(d: int, n: int, runs: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    updates = [rng.normal(size=d) * 0.1 for _ in range(n)]
    counts = rng.integers(20, 200, size=n)
    accountant = PrivacyAccountant(1.0, n / 1000, 1e-5)
    dp = DPFedAvg(1.0, 1.0, n, adaptive=AdaptiveClipping(count_stddev=n / 20))
    noise = np.random.default_rng(1)

    def dp_with_epsilon() -> None:
        dp.aggregate(updates, noise)
        accountant.spend_round()

    return {
        "numpy fedavg (baseline)": _median_ms(
            lambda: np.average(np.stack(updates), weights=counts, axis=0), runs
        ),
        "fedavg": _median_ms(lambda: fedavg(updates, counts), runs),
        "trimmed mean (20 %)": _median_ms(lambda: trimmed_mean(updates, 0.2), runs),
        "dp-fedavg (adaptive clip)": _median_ms(lambda: dp.aggregate(updates, noise), runs),
        "dp-fedavg + (ε, δ) [rdp]": _median_ms(dp_with_epsilon, runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--secagg-runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--blas-threads", type=int, default=1)
    args = parser.parse_args()
    with threadpool_limits(args.blas_threads):
        report = _run(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {"aggregation_ms": {}, "secagg": {}}
    for name, d in HEADS.items():
        rows = _aggregation_rows(d, 20, args.runs)
        report["aggregation_ms"][name] = rows
        print(f"\n20 clients, {name} ({d} parameters): server ms per round (median of {args.runs})")
        for row, ms in rows.items():
            print(f"  {row:<28} {ms:8.2f} ms")
    cases = [
        ("20 clients, all pairs", 20, None, 14, 0),
        ("20 clients, k = 8", 20, 8, 5, 0),
        ("100 clients, all pairs, t = 60, 30 % dropout", 100, None, 60, 30),
        ("100 clients, k = 20, t = 11, 30 % dropout", 100, 20, 11, 30),
        ("100 clients, k = 40, t = 21, 30 % dropout", 100, 40, 21, 30),
    ]
    print("\nSecAgg+ rounds (server ms = the server's calls only; median of rounds)")
    header = (
        f"  {'case':<46} {'head':<24} {'server ms':>9} {'client ms':>9} {'upload':>8} "
        f"{'x plain':>7} exact"
    )
    print(header)
    for label, n, k, t, n_drop in cases:
        for name, d in HEADS.items():
            rounds, aborted = [], 0
            for seed in range(args.secagg_runs):
                drop = set(np.random.default_rng(seed).choice(n, n_drop, replace=False) + 1)
                try:
                    rounds.append(
                        _secagg_round(n, d, neighbours=k, threshold=t, dropped=drop, seed=seed)
                    )
                except SecAggAborted:
                    # A client lost too many neighbours for its threshold: the round
                    # fails safely. Counted, not hidden.
                    aborted += 1
            if not rounds:
                print(f"  {label:<46} {name:<24} all {aborted} rounds aborted")
                report["secagg"][f"{label} / {name}"] = {"aborted": aborted}
                continue
            row = {
                "server_ms": statistics.median(r["server_ms"] for r in rounds),
                "client_ms": statistics.median(r["client_ms"] for r in rounds),
                "upload_bytes": statistics.median(r["upload_bytes"] for r in rounds),
                "plain_bytes": 4 * d,
                "exact": all(r["exact"] for r in rounds),
                "max_abs_error": max(r["max_abs_error"] for r in rounds),
                "survivors": rounds[0]["survivors"],
                "aborted": aborted,
                "rounds": args.secagg_runs,
            }
            row["ratio"] = row["upload_bytes"] / row["plain_bytes"]
            report["secagg"][f"{label} / {name}"] = row
            print(
                f"  {label:<46} {name:<24} {row['server_ms']:9.1f} {row['client_ms']:9.1f} "
                f"{row['upload_bytes']:8.0f} {row['ratio']:7.2f} {row['exact']}"
                + (f" ({aborted} of {args.secagg_runs} rounds aborted)" if aborted else "")
            )
    return report


if __name__ == "__main__":
    main()
