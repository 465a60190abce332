"""Races between state transitions, with real concurrent requests to a real server.

Each test repeats one race ``TRIALS`` times on SQLite and PostgreSQL: two threads held
by a ``threading.Barrier`` send their requests at once (each on its own warmed-up
connection), then the invariants are checked on what the server stored:

- when the two moves exclude each other, exactly one wins and the loser answers 409 in
  the one error shape;
- the end state is consistent: rolled back => the candidate is not in production and
  the previous production version is; completed => the candidate is in production;
- the audit log holds one row per winning move, chained from state to state.

Every trial's violations are collected first, so a failure reports how many of the
trials went wrong (``k/N``), not only the first one.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from rollout_kit import Live, add_events, open_world, serve_live

from pocketml.db import utcnow
from pocketml.delivery import evaluate_rollouts
from pocketml.server.client import AdminClient

TRIALS = 20
T = TypeVar("T")


@pytest.fixture
def live(tmp_path: Path, database_url: str) -> Iterator[Live]:
    # No background evaluator or exporter: the only writers are the racing requests.
    with serve_live(
        tmp_path, database_url, rollout_eval={"interval_s": 0}, telemetry_export={"interval_s": 0}
    ) as server:
        yield server


def race(*calls: Callable[[], T]) -> list[T]:
    """Run ``calls`` in threads released together by a barrier; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    failures: list[BaseException] = []

    def run(index: int, call: Callable[[], T]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except BaseException as exc:  # re-raised in the test's thread below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if failures:
        raise failures[0]
    return results


class Mover:
    """One racer: a warmed-up connection that sends one prepared request."""

    def __init__(self, live: Live, method: str, path: str, body: dict[str, Any] | None = None):
        self.http = live.http()
        self.http.get("/healthz")  # connect now, so both racers start from an open socket
        self.method, self.path, self.body = method, path, body

    def __call__(self) -> httpx.Response:
        try:
            if self.body is None:
                return self.http.request(self.method, self.path)
            return self.http.request(self.method, self.path, json=self.body)
        finally:
            self.http.close()


def move(live: Live, rollout_id: str, action: str) -> Mover:
    return Mover(live, "POST", f"/v1/admin/rollouts/{rollout_id}/{action}", {})


def error_shape_problem(response: httpx.Response, statuses: tuple[int, ...] = (409,)) -> str:
    """'' when ``response`` is an error of ``statuses`` in the one error shape."""
    if response.status_code not in statuses:
        return f"loser answered {response.status_code} {response.text[:200]}"
    error = response.json().get("error", {})
    if not {"code", "message", "request_id"} <= set(error) or not error["message"]:
        return f"loser's error body has the wrong shape: {response.text[:200]}"
    return ""


def start_rollout(live: Live, client: AdminClient, seed: int, **options: Any) -> Any:
    """Push a new candidate of "digits" and start its rollout."""
    version = live.push(client, seed)
    return client.create_rollout("digits", version, **options)


def audit_problem(client: AdminClient, rollout: Any, winners: list[str]) -> str:
    """'' when the rollout's audit rows are its creation plus ``winners``, chained."""
    entries = list(reversed(client.audit(subject=rollout.id).items))
    actions = [e.action for e in entries]
    if sorted(actions) != sorted(["create", *winners]):
        return f"audit rows {actions} do not match the winning moves {winners}"
    for before, after in itertools.pairwise(entries):
        if after.from_state != before.to_state:
            return f"audit chain broken: {before.action}->{before.to_state}, then {after}"
    final = client.show_rollout(rollout.id).state
    if entries[-1].to_state != final:
        return f"the rollout is {final} but its last audit row says {entries[-1].to_state}"
    return ""


def state_problem(client: AdminClient, rollout: Any) -> str:
    """'' when production agrees with the rollout's state."""
    state = client.show_rollout(rollout.id).state
    production = client.show_model("digits").production_version
    if state == "completed" and production != rollout.candidate_version:
        return f"completed but production is v{production}, not v{rollout.candidate_version}"
    if state in ("rolled_back", "running", "paused") and production != rollout.control_version:
        return (
            f"{state} but production is v{production}, not the previous v{rollout.control_version}"
        )
    return ""


def check(trials: list[str]) -> None:
    bad = [f"trial {i}: {p}" for i, p in enumerate(trials) if p]
    assert not bad, f"{len(bad)}/{len(trials)} trials inconsistent:\n" + "\n".join(bad)


def test_complete_racing_rollback_has_one_winner_and_a_consistent_end(live: Live) -> None:
    problems = []
    with live.admin() as client:
        for trial in range(TRIALS):
            rollout = start_rollout(live, client, 100 + trial)
            done, back = race(
                move(live, rollout.id, "complete"), move(live, rollout.id, "rollback")
            )
            codes = {"complete": done.status_code, "rollback": back.status_code}
            winners = [a for a, code in codes.items() if code == 200]
            loser = back if winners == ["complete"] else done
            problem = "" if len(winners) == 1 else f"{codes}: expected exactly one winner"
            problems.append(
                problem
                or error_shape_problem(loser)
                or state_problem(client, rollout)
                or audit_problem(client, rollout, winners)
            )
    check(problems)


def test_pause_racing_advance_ends_in_a_serial_order(live: Live) -> None:
    problems = []
    with live.admin() as client:
        for trial in range(TRIALS):
            rollout = start_rollout(live, client, 200 + trial, schedule=[10, 50, 100])
            pause, advance = race(
                move(live, rollout.id, "pause"), move(live, rollout.id, "advance")
            )
            after = client.show_rollout(rollout.id)
            codes = (pause.status_code, advance.status_code)
            # advance then pause: both win, paused at step 1; one first, the other loses.
            if codes == (200, 200):
                problem = "" if (after.state, after.step) == ("paused", 1) else f"{after}"
                winners = ["pause", "advance"]
            elif codes == (200, 409):
                problem = error_shape_problem(advance)
                problem = problem or ("" if (after.state, after.step) == ("paused", 0) else "?")
                winners = ["pause"]
            elif codes == (409, 200):
                problem = error_shape_problem(pause)
                problem = problem or ("" if (after.state, after.step) == ("running", 1) else "?")
                winners = ["advance"]
            else:
                problem, winners = f"unexpected answers {codes}", []
            problems.append(
                problem or state_problem(client, rollout) or audit_problem(client, rollout, winners)
            )
            client.move_rollout(rollout.id, "rollback")
    check(problems)


def test_promote_racing_complete_never_leaves_a_completed_rollout_out_of_production(
    live: Live,
) -> None:
    problems = []
    with live.admin() as client:
        for trial in range(TRIALS):
            other = live.push(client, 300 + trial)  # a version the operator promotes by hand
            rollout = start_rollout(live, client, 400 + trial)
            path = f"/v1/admin/models/digits/versions/{other}/stage"
            promote, done = race(
                Mover(live, "POST", path, {"stage": "production"}),
                move(live, rollout.id, "complete"),
            )
            production = client.show_model("digits").production_version
            codes = (promote.status_code, done.status_code)
            if codes == (409, 200):  # the promotion came first and was refused
                problem = error_shape_problem(promote) or state_problem(client, rollout)
            elif codes == (200, 200):  # completed first, then the promotion: a serial order
                problem = "" if production == other else f"both won, production v{production}"
            else:
                problem = f"unexpected answers {codes}"
            problems.append(problem or audit_problem(client, rollout, ["complete"]))
    check(problems)


def test_evaluator_rollback_racing_manual_complete_has_one_winner(
    live: Live, database_url: str, tmp_path: Path
) -> None:
    problems = []
    with live.admin() as client:
        app_id = client.show_app().id
        world = open_world(database_url, tmp_path / "evaluator", app_id=app_id)
        try:
            for trial in range(TRIALS):
                rollout = start_rollout(
                    live,
                    client,
                    500 + trial,
                    min_samples=20,
                    guardrails={"thresholds": {"error_rate": 0.02}},
                    on_breach="rollback",
                )
                now = time.time()
                add_events(world, rollout.candidate_version, ts=now, latencies=[5] * 30, errors=30)
                add_events(world, rollout.control_version, ts=now, latencies=[5] * 60)
                clock = utcnow() + timedelta(seconds=5)
                running = world.rollouts.store.list_rollouts(None, states=("running",))
                outcomes, done = race(
                    lambda r=running, c=clock: evaluate_rollouts(world.rollouts, now=c, running=r),
                    move(live, rollout.id, "complete"),
                )
                (outcome,) = outcomes
                winners = [
                    w
                    for w, won in (
                        ("rollback", outcome.action == "rollback"),
                        ("complete", done.status_code == 200),
                    )
                    if won
                ]
                if len(winners) != 1:
                    problem = f"{outcome.action} and {done.status_code}: expected one winner"
                elif winners == ["rollback"]:
                    problem = error_shape_problem(done)
                elif outcome.action != "skipped":
                    problem = f"complete won but the evaluator says {outcome.action}"
                else:
                    problem = ""
                problems.append(
                    problem
                    or state_problem(client, rollout)
                    or audit_problem(client, rollout, winners)
                )
        finally:
            world.registry.close()
    check(problems)


def test_deleting_a_model_racing_an_advance_leaves_nothing_behind(live: Live) -> None:
    problems = []
    with live.admin() as client:
        for trial in range(TRIALS):
            name = f"m{trial}"
            client.create_model(name, schema=client.show_model("digits").schema_)
            live.push(client, 600 + trial, model=name)
            client.set_stage(name, 1, "production")
            candidate = live.push(client, 700 + trial, model=name)
            rollout = client.create_rollout(name, candidate, schedule=[10, 50, 100])
            delete, advance = race(
                Mover(live, "DELETE", f"/v1/admin/models/{name}?force=true"),
                move(live, rollout.id, "advance"),
            )
            problem = ""
            if delete.status_code != 204:
                problem = f"delete answered {delete.status_code} {delete.text[:200]}"
            elif advance.status_code != 200:
                problem = error_shape_problem(advance, (404, 409))
            left = client.http.get(f"/v1/admin/models/{name}").status_code
            if not problem and left != 404:
                problem = f"the deleted model still answers {left}"
            if not problem and any(r.model == name for r in client.list_rollouts().items):
                problem = "a rollout of the deleted model is still listed"
            if not problem and name in live.checkin("device-1"):
                problem = "check-in still lists the deleted model"
            problems.append(problem)
    check(problems)


def test_a_manual_promotion_during_a_rollout_answers_409_and_changes_nothing(live: Live) -> None:
    with live.admin() as client:
        rollout = start_rollout(live, client, 900)
        with live.http() as http:
            response = http.post(
                f"/v1/admin/models/digits/versions/{rollout.candidate_version}/stage",
                json={"stage": "production"},
            )
        assert f"rollout {rollout.id}" in _message(response, 409)
        assert client.show_model("digits").production_version == rollout.control_version
        assert client.move_rollout(rollout.id, "complete").state == "completed"
        assert client.show_model("digits").production_version == rollout.candidate_version


def _message(response: httpx.Response, status: int) -> str:
    assert error_shape_problem(response, (status,)) == ""
    return str(response.json()["error"]["message"])
