"""Demo chapter "Close the loop": samples, a retraining job, the gate, the canary, recovery.

Chapter 7 ended with an alert and a model that was still wrong on the android-low phones'
new camera. Here the loop runs by itself:

1. The app asks its users for consent; about three in four say yes. The production
   version's capture policy keeps, on consenting phones only, each photo a user corrected
   (the input as the model saw it, its answer and the user's label), within a daily byte
   budget, uploaded on Wi-Fi. One consenting phone lies: every label it sends is shifted
   by one.
2. Chapter 7's drift alert is still firing and enough labelled samples have arrived, so
   the server's loop starts a retraining job on its own. The job filters the samples (the
   lying phone is excluded), re-runs the production version's recipe (the cloud model
   retrained, the device model distilled from it, every variant converted, quantized and
   benchmarked) on the original data plus the trusted samples, and pushes a candidate.
3. The gate compares candidate and champion on the golden holdout (never trained on), on
   fresh labelled samples held out of training, and per device class.
4. A blessed candidate rolls out under the usual guardrails while the phones keep
   working; completion promotes it.
5. Chapter 7's labelled photos (the same rows, cameras and seeds) are scored again by the
   phones: accuracy per device class before and after, and every step's time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

from pocketml._tables import Column, fitted_table
from pocketml.data import Dataset, augment_dataset, parse_augmentations
from pocketml.demo._safe import _path, _run_until_settled, _settle
from pocketml.demo._watch import CHANGED_CLASS, accuracy_by_class, watched_photos
from pocketml.errors import InvalidInput
from pocketml.server.client import AdminClient
from pocketml.server.loop_views import gate_table, points, steps_table
from pocketml.server.schemas_loop import JobPublic
from pocketml.sim import FleetReport, VirtualDevice, make_fleet, run_fleet

__all__ = ["close_the_loop"]

NETWORKS = ("wifi",)  # the evening at home: every phone on Wi-Fi, where captures upload
CONSENT_SHARE = 0.75
MIN_LABELS = 300
_JOB_WAIT_S = 900.0
_ENDED = {"succeeded", "rejected", "failed"}


def close_the_loop(
    console: Console,
    *,
    url: str,
    admin: AdminClient,
    device_key: str,
    field: Dataset,
    evaluation: Dataset,
    low_light: str,
    new_camera: str,
    devices: int,
    schedule: tuple[float, ...],
    min_samples: int,
    before: dict[str, float],
    drift_at: float | None,
    out_dir: Path,
    seed: int = 0,
) -> dict[str, Any]:
    """Consent, capture, a job triggered by the drift alert, the gate, the canary, recovery.

    Args:
        field: the photos users take and correct while the loop listens (training-split
            rows: never in the golden holdout nor in ``evaluation``).
        evaluation: chapter 7's labelled photos, scored again once the loop is done.
        schedule, min_samples: the canary's rollout steps and guardrail sample size.
        before: chapter 7's accuracy per device class on those photos (its phones' own).
        drift_at: unix time when chapter 7's new camera took its first photo.
    """
    started = time.time()
    model = admin.show_model("digits")
    champion = model.production_version
    if champion is None:
        raise InvalidInput("this chapter retrains the production version of digits; promote one.")
    fleet = make_fleet(devices, NETWORKS, seed=seed + 90)  # chapter 7's phones, at home
    changed_phones = [d for d in fleet if d.device_class == CHANGED_CLASS]
    usual_phones = [d for d in fleet if d.device_class != CHANGED_CLASS]
    rng = np.random.default_rng(seed + 96)
    consenting = {d.name for d in fleet if rng.random() < CONSENT_SHARE}
    liar = next((d for d in usual_phones if d.name in consenting), None)
    effective = admin.set_policy(
        "digits",
        champion,
        capture={"enabled": True, "when": "feedback", "rate": 1.0, "wifi_only": True},
    )
    loop_policy = {
        "triggers": {"alert_metrics": ["drift_share"]},
        "min_labels_for_alert": MIN_LABELS,
        "rollout": {"schedule": list(schedule), "min_samples": min_samples, "min_dwell_s": 0},
    }
    # The day's photos arrive within seconds here, not over a day: the loop is held until
    # they are all in, so its job sees the whole day (the lying phone included).
    admin.set_loop_policy("digits", {**loop_policy, "enabled": False})
    budget = effective["capture"]["max_bytes_per_day"]
    console.print(
        f"   {len(consenting)} of {len(fleet)} users agree to share the photos they correct; "
        f"v{champion} keeps those (the input as the model saw it, its answer, the user's "
        f"label) within {budget / 1e6:g} MB a day and uploads them on Wi-Fi. "
        + (f"One of them ({liar.name}) sends every label shifted by one. " if liar else "")
        + f"Loop policy: a firing drift_share alert and ≥ {MIN_LABELS:,} labelled samples "
        "start a retraining job (held until the day's photos are in)."
    )
    # 1. Users correct the app; consenting phones keep and upload what they corrected.
    for phones, conditions, name in (
        (changed_phones, new_camera, "changed"),
        (usual_phones, low_light, "usual"),
    ):
        photos = augment_dataset(field, parse_augmentations(conditions), seed=seed + 97)
        run_fleet(
            url,
            device_key,
            phones,
            photos.features,
            out_dir / "fleet" / f"capture-{name}",
            labels=photos.labels,
            feedback_labels=photos.class_names,
            shard=True,
            consent={d.name for d in phones if d.name in consenting},
            flip_labels_for={liar.name} if liar is not None else (),
        )
    counts = admin.list_samples("digits", limit=1)["counts"]
    console.print(
        f"   the sample store holds {sum(c['labelled'] for c in counts.values()):,} labelled "
        "samples ("
        + ", ".join(f"{name} {c['labelled']:,}" for name, c in sorted(counts.items()))
        + "); phones without consent sent none."
    )
    # 2.-3. The server's loop notices the alert and the labels, retrains, gates.
    admin.set_loop_policy("digits", loop_policy)
    job = _follow_job(console, admin, started)
    result: dict[str, Any] = {
        "consenting": len(consenting),
        "liar": liar.name if liar else None,
        "samples": counts,
        "job": job.model_dump(mode="json"),
    }
    _print_job(console, job, liar)
    if job.rollout_id is None:
        console.print(f"   the loop stopped here: {escape(job.error or job.state)}")
        return result
    # 4. The canary: the phones keep working while the guardrails judge the candidate.
    usual, changed = watched_photos(evaluation, low_light, new_camera, seed=seed)
    rounds: list[list[FleetReport]] = []

    def fleet_round(round_: int) -> None:
        rounds.append(
            _score(url, device_key, usual_phones, changed_phones, usual, changed, out_dir, round_)
        )

    rollout = admin.show_rollout(job.rollout_id)
    rollout = _run_until_settled(admin, rollout, fleet_round, rounds=8)
    rollout = _settle(admin, rollout, "rollback")
    promoted_at = time.time()
    console.print(
        f"   canary of v{job.candidate_version}: {_path(admin, rollout.id)}", highlight=False
    )
    result["rollout"] = {"state": rollout.state, "path": _path(admin, rollout.id)}
    if rollout.state != "completed":
        return result
    # 5. Recovery: chapter 7's labelled photos, scored again by the same phones.
    after = accuracy_by_class(
        _score(url, device_key, usual_phones, changed_phones, usual, changed, out_dir, "after")
    )
    _print_recovery(console, before, after, champion, job.candidate_version)
    result.update(
        accuracy_before=before,
        accuracy_after=after,
        chapter_s=round(promoted_at - started, 1),
        drift_to_promotion_s=None if drift_at is None else round(promoted_at - drift_at, 1),
    )
    if drift_at is not None:
        console.print(
            f"   from the new camera's first photo to a promoted, recovered model: "
            f"{promoted_at - drift_at:.0f} s, with no person in the loop."
        )
    # The next chapters ship deliberate test versions: their alerts must not retrain.
    admin.set_loop_policy("digits", {**loop_policy, "enabled": False})
    return result


def _follow_job(console: Console, admin: AdminClient, since: float) -> JobPublic:
    """Wait for the loop's job on digits (created after ``since``) to end, showing its step."""
    deadline = time.monotonic() + _JOB_WAIT_S
    job: JobPublic | None = None
    with console.status("waiting for the loop's triggers") as status:
        while time.monotonic() < deadline:
            jobs = [
                j
                for j in admin.list_loop_jobs("digits").items
                if j.created_at.timestamp() >= since - 1
            ]
            job = jobs[0] if jobs else None
            if job is not None:
                status.update(
                    f"job {job.id[:8]} ({job.trigger}): {job.state}"
                    + (f", {job.step}: {escape(job.log[-1].split(' ', 1)[-1])}" if job.log else "")
                )
                if job.state in _ENDED:
                    return job
            time.sleep(0.5)
    raise InvalidInput(
        f"the loop's job did not end within {_JOB_WAIT_S:.0f} s"
        + (f" (last state {job.state}, step {job.step})" if job else " (no job started)")
    )


def _print_job(console: Console, job: JobPublic, liar: VirtualDevice | None) -> None:
    trigger = job.trigger_details.get("metric") or job.trigger
    console.print(
        f"   job {job.id[:8]}: started by the {job.trigger} ({trigger}), "
        f"{job.state}; champion v{job.champion_version}, candidate "
        f"{'-' if job.candidate_version is None else f'v{job.candidate_version}'}"
    )
    samples = job.samples
    excluded = samples.get("excluded", [])
    console.print(
        f"   trust filter: {samples.get('kept', 0):,} of {samples.get('samples', 0):,} samples "
        f"kept, {len(excluded)} device(s) excluded"
        + (
            ": " + ", ".join(f"{d['device_id']} ({d.get('reason', '')})" for d in excluded)
            if excluded
            else ""
        )
        + f"; {samples.get('training', 0):,} join the training data, "
        f"{samples.get('fresh', 0):,} are held out for the gate",
        highlight=False,
    )
    if liar is not None and not any(liar.name in d["device_id"] for d in excluded):
        console.print(f"   the lying phone {liar.name} was not excluded", highlight=False)
    console.print(steps_table(job, console.width, title="Retraining job"))
    if job.gate:
        console.print(gate_table(job.gate, console.width))
        console.print(f"   gate: {escape(job.gate['reason'])}", highlight=False)


def _score(
    url: str,
    device_key: str,
    usual_phones: list[VirtualDevice],
    changed_phones: list[VirtualDevice],
    usual: Dataset,
    changed: Dataset,
    out_dir: Path,
    label: object,
) -> list[FleetReport]:
    """Every phone scores its camera's photos and reports each user's correction."""
    return [
        run_fleet(
            url,
            device_key,
            phones,
            data.features,
            out_dir / "fleet" / f"score-{label}-{name}",
            labels=data.labels,
            feedback_labels=data.class_names,
        )
        for phones, data, name in (
            (usual_phones, usual, "usual"),
            (changed_phones, changed, "changed"),
        )
    ]


def _print_recovery(
    console: Console,
    before: dict[str, float],
    after: dict[str, float],
    champion: int,
    candidate: int | None,
) -> None:
    rows = [
        (
            name + (" (new camera)" if name == CHANGED_CLASS else ""),
            f"{before[name]:.1%}" if name in before else "-",
            f"{after[name]:.1%}",
            points(after[name] - before[name]) if name in before else "-",
        )
        for name in sorted(after)
    ]
    console.print(
        fitted_table(
            "Accuracy on chapter 7's labelled photos, per device class",
            [
                Column("device class", is_name=True),
                Column(f"v{champion}", "right"),
                Column(f"v{candidate}", "right"),
                Column("change (pts)", "right"),
            ],
            rows,
            console.width,
        )
    )
