"""Demo chapter "Learn together": federated rounds with DP and SecAgg+, the photos stay put.

Thirty phones each hold photos of only three digits, taken in their own light through a
soft-focus camera the device model never saw in training: it reads them poorly. Their
users agree to on-device training (not to sharing photos). The chapter:

1. turns chapter 2's ``cnn-small`` into a *federatable* version: the same ONNX graph with
   its embedding (the input of the last linear layer) as a second output and its head
   named in ``params.federated``; pushes it and every phone syncs it and scores its own
   held-out photos (accuracy "before");
2. starts a federated task on the server: head only, DP-FedAvg (noise multiplier, clip
   norm), SecAgg+ so the server only sees each round's sum, a cohort per round, devices
   that must be charging, on Wi-Fi and idle;
3. runs the rounds through the real SDK (``Device.federated_step``) and the real server:
   phones check in, join, verify the signed round, train on their photos, clip, mask and
   upload; two phones are unplugged mid-round each time and drop out, and SecAgg+ recovers
   their masks;
4. prints per round the cohort, the reports, the dropouts and the (ε, δ) spent; the server
   pushes the result as a candidate version and starts its staged rollout (the task's
   ``rollout`` option); the phones sync it and score the same photos again ("after"),
   and their telemetry lets the evaluator complete the rollout.

The fleet and the federatable version are built in ``_federated_fleet``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console

from pocketml._tables import Column, fitted_table
from pocketml.data import Splits
from pocketml.demo._federated_fleet import (
    MODEL,
    FederatedDemo,
    Phone,
    make_federatable,
    make_phones,
    push_federatable,
)
from pocketml.demo._safe import _judged, _path, _settle
from pocketml.errors import InvalidInput
from pocketml.schema import ModelSchema
from pocketml.server.client import AdminClient

__all__ = ["FederatedDemo", "learn_together", "make_federatable"]


def _start_task(
    admin: AdminClient, base: int, population: int, config: FederatedDemo, seed: int
) -> dict[str, Any]:
    """Start the federated task on ``base`` (POST /v1/admin/federated/tasks)."""
    body = {
        "model": MODEL,
        "version": base,
        "rounds": config.rounds,
        "clients_per_round": config.cohort,
        "min_reports": config.cohort // 2,
        "round_timeout_s": 120.0,
        "join_window_s": config.join_window_s,
        "recipe": {
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "learning_rate": config.learning_rate,
        },
        "requires": {"charging": True, "wifi": True, "idle": True, "min_samples": 16},
        "clip_norm": config.clip_norm,
        "noise_multiplier": config.noise_multiplier,
        "delta": config.delta,
        "population": population,
        "secagg": True,
        "secagg_step_timeout_s": 20.0,
        "seed": seed,
        # the result goes out like any candidate: a staged rollout under guardrails
        "rollout": {"schedule": [100.0], "min_dwell_s": 0, "min_samples": 100},
    }
    return dict(admin.request("POST", "/v1/admin/federated/tasks", json=body).json())


def _task(admin: AdminClient, task_id: str) -> dict[str, Any]:
    return dict(admin.request("GET", f"/v1/admin/federated/tasks/{task_id}").json())


def _run_round(phones: list[Phone], unplug: int, timeout_s: float) -> dict[str, int]:
    """One round through the SDK: check in, then step every phone until none waits.

    The first ``unplug`` phones seen sending their key shares are unplugged: their next
    step gives the round up (they drop out after sharing, before masking).
    """
    for phone in phones:
        phone.plugged = True
        phone.device.sync()  # the check-in announces the round
    last = {p.name: p.step() for p in phones}
    unplugged = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        waiting = [p for p in phones if last[p.name].status == "waiting"]
        if not waiting:
            break
        moved = False
        for phone in waiting:
            before = last[phone.name].reason
            last[phone.name] = report = phone.step()
            moved |= report.reason != before
            if report.reason == "secagg share" and unplugged < unplug:
                phone.plugged = False
                unplugged += 1
        if not moved:  # everyone waits for the server (selection window, a phase deadline)
            time.sleep(0.1)
    counts: dict[str, int] = {}
    for report in last.values():
        counts[report.status] = counts.get(report.status, 0) + 1
    return counts


def learn_together(
    console: Console,
    *,
    url: str,
    admin: AdminClient,
    device_key: str,
    onnx_path: Path,
    schema: ModelSchema,
    splits: Splits,
    out_dir: Path,
    config: FederatedDemo | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the chapter (see the module docstring); print and return its numbers."""
    config = config or FederatedDemo()
    started = time.perf_counter()
    base = push_federatable(admin, onnx_path, schema, out_dir / "build")
    transport = httpx.HTTPTransport()  # one connection pool (and TLS context) for the fleet
    phones = make_phones(splits, url, device_key, out_dir / "phones", config, seed, transport)
    try:
        for phone in phones:
            phone.device.sync()
        before = {p.name: p.accuracy() for p in phones}
        console.print(
            f"   v{base}: chapter 2's cnn-small with its 32-value embedding exposed as a "
            f"second output (params.federated names the head). {len(phones)} phones with "
            f"{config.classes_per_phone} digits each, their own light and a soft-focus "
            f"lens; each keeps {config.train_per_phone} labelled photos on the device "
            "(consent to train, not to share)."
        )
        task = _start_task(admin, base, len(phones), config, seed)
        console.print(
            f"   task {task['id']}: {config.rounds} rounds, ~{config.cohort} of "
            f"{len(phones)} phones per round (Poisson sampling), DP-FedAvg z = "
            f"{config.noise_multiplier:g}, clip {config.clip_norm:g}, SecAgg+; phones must "
            "be charging, on Wi-Fi and idle"
        )
        steps: list[dict[str, int]] = []  # per round: how many phones ended how
        while task["state"] == "running" and len(steps) < config.rounds + 3:
            steps.append(_run_round(phones, config.unplugged_per_round, timeout_s=60.0))
            task = _wait_for_round(admin, task["id"], len(steps))
        task = _wait_for_result(admin, task["id"])
        _print_rounds(console, task)
        _print_privacy(console, task, config)
        result = task.get("result_version")
        if task["state"] != "succeeded" or result is None:
            raise InvalidInput(f"the federated task ended {task['state']}: {task.get('error')}")
        if task.get("rollout_id") is None:
            raise InvalidInput(f"the federated task started no rollout: {task.get('log')}")
        for phone in phones:
            phone.device.sync()
        after = {p.name: p.accuracy() for p in phones}
        flushed = datetime.now(UTC)
        for phone in phones:
            phone.device.flush()
        rollout = _settle(
            admin, _judged(admin, task["rollout_id"], flushed, timeout_s=10), "complete"
        )
        console.print(
            f"   v{result}: the task's head on the same frozen backbone, pushed by the server "
            f"as a candidate with its lineage and rolled out: {_path(admin, rollout.id)}"
        )
        _print_accuracy(console, phones, before, after, base, int(result))
    finally:
        for phone in phones:
            phone.device.close()
        transport.close()
    return {
        "base_version": base,
        "task": {k: task.get(k) for k in ("id", "state", "rounds_done", "clients_total")},
        "epsilon": task.get("epsilon"),
        "delta": task.get("delta"),
        "result_version": result,
        "rollout": rollout.id,
        "rounds": [r.get("outcome") for r in task.get("rounds", [])],
        "phones_per_round": steps,
        "accuracy_before": float(np.mean(list(before.values()))),
        "accuracy_after": float(np.mean(list(after.values()))),
        "per_phone": {p.name: {"before": before[p.name], "after": after[p.name]} for p in phones},
        "duration_s": round(time.perf_counter() - started, 1),
    }


def _wait_for_round(admin: AdminClient, task_id: str, attempts: int) -> dict[str, Any]:
    """The task once ``attempts`` rounds are closed (or the task ended), at most 30 s."""
    deadline = time.monotonic() + 30.0
    while True:
        task = _task(admin, task_id)
        closed = [r for r in task["rounds"] if r["state"] != "open"]
        if len(closed) >= attempts or task["state"] != "running":
            return task
        if time.monotonic() > deadline:
            raise InvalidInput(f"round {attempts} of task {task_id} did not close in 30 s")
        time.sleep(0.1)


def _wait_for_result(admin: AdminClient, task_id: str) -> dict[str, Any]:
    """The task once it ended (the server pushes the result version as it finishes)."""
    deadline = time.monotonic() + 30.0
    while True:
        task = _task(admin, task_id)
        if task["state"] in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return task
        time.sleep(0.1)


def _print_rounds(console: Console, task: dict[str, Any]) -> None:
    columns = (
        Column("round", "right"),
        Column("state", is_name=True),
        Column("cohort", "right"),
        Column("updates", "right"),
        Column("dropped", "right"),
        Column("ε so far", "right"),
    )
    rows = []
    for r in task["rounds"]:
        outcome = r.get("outcome") or {}
        epsilon = outcome.get("epsilon")
        rows.append(
            (
                str(r["number"]),
                r["state"],
                str(r["selected"]),
                str(outcome.get("reports", r["reports"])),
                str(len(outcome.get("dropped", []))),
                "-" if epsilon is None else f"{epsilon:.2f}",
            )
        )
    console.print(
        fitted_table(
            f"federated rounds (SecAgg+: the server saw only sums; δ = {task.get('delta')})",
            columns,
            rows,
            console.width,
        )
    )


def _print_accuracy(
    console: Console,
    phones: list[Phone],
    before: dict[str, float],
    after: dict[str, float],
    base: int,
    result: int,
) -> None:
    """Accuracy by thirds of the fleet (ranked by accuracy before), then the whole fleet.

    Every phone's numbers are in report.json (``per_phone``).
    """
    ranked = sorted(phones, key=lambda p: before[p.name])
    third = max(1, len(ranked) // 3)
    groups = (
        ("the third that read worst before", ranked[:third]),
        ("the middle third", ranked[third : 2 * third]),
        ("the third that read best before", ranked[2 * third :]),
        (f"all {len(ranked)} phones", ranked),
    )
    columns = (
        Column("phones", is_name=True),
        Column(f"v{base} before", "right"),
        Column(f"v{result} after", "right"),
        Column("lowest", "right", priority=1),
    )
    rows = [
        (
            name,
            f"{np.mean([before[p.name] for p in group]):.3f}",
            f"{np.mean([after[p.name] for p in group]):.3f}",
            f"{min(before[p.name] for p in group):.2f} → {min(after[p.name] for p in group):.2f}",
        )
        for name, group in groups
    ]
    console.print(
        fitted_table(
            "accuracy of each phone on its own held-out photos (its digits, its light)",
            columns,
            rows,
            console.width,
        )
    )
    better = sum(after[p.name] > before[p.name] + 0.01 for p in phones)
    worse = sum(after[p.name] < before[p.name] - 0.01 for p in phones)
    console.print(
        f"   {better} phones improved by more than a point, {worse} lost more than one "
        "(one head is shared by every phone: it moves toward what most of them see)."
    )


def _print_privacy(console: Console, task: dict[str, Any], config: FederatedDemo) -> None:
    """ε spent, and what the same noise would cost on a fleet of realistic size."""
    from pocketml.federated import PrivacyAccountant

    epsilon, delta, rounds = task.get("epsilon"), task.get("delta"), task.get("rounds_done")
    if epsilon is None or delta is None or not rounds:
        return
    large = 100_000
    accountant = PrivacyAccountant(config.noise_multiplier, config.cohort / large, float(delta))
    for _ in range(int(rounds)):
        spent = accountant.spend_round()
    console.print(
        f"   privacy spent: (ε = {epsilon:.2f}, δ = {delta:g}) per phone for all {rounds} "
        f"rounds (dp-accounting RDP, Poisson sampling q = {config.cohort}/"
        f"{config.phones}). A weak guarantee, as any on {config.phones} phones: the same "
        f"noise on a fleet of {large:,} (q = {config.cohort}/{large:,}) would "
        f"spend ε = {spent.epsilon:.2f}."
    )
