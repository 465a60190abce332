"""``pocketml loop ...``: retraining jobs and the loop policy on a server (thin AdminClient calls).

``run MODEL [--wait]`` queues a job (or shows the model's active one) and, with ``--wait``,
follows it to its end: exit code 0 when the candidate was blessed and its rollout started,
3 when the gate rejected it, 4 when the job failed (what CI needs to tell them apart).
``status`` lists jobs (of a model, or every model); ``status JOB`` shows one job's steps,
gate numbers and log. ``policy MODEL [--set key=value ...]`` shows or changes the loop
policy (dotted keys, JSON values: ``--set gate.max_drop=0.02``). See docs/loop.md.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import typer

from pocketml._tables import Column
from pocketml.cli._admin import ServerOption, TokenOption, _client
from pocketml.cli._common import console, print_json, print_table
from pocketml.errors import InvalidInput, NotFound, Unavailable

if TYPE_CHECKING:
    from pocketml.server.schemas_loop import JobPublic

__all__ = ["loop_app"]

loop_app = typer.Typer(
    help="Retraining jobs, the gate and the loop policy (see docs/loop.md).",
    no_args_is_help=True,
)

EXIT_REJECTED = 3
EXIT_FAILED = 4
_SHORT = 12
_FINISHED = ("succeeded", "rejected", "failed")


def _steps(job: JobPublic) -> str:
    parts = [f"{s['step']} {s['seconds']:.1f}" for s in job.steps]
    if job.state == "running" and job.step:
        parts.append(f"{job.step}…")
    return ", ".join(parts) or "-"


def _print_jobs(jobs: list[JobPublic]) -> None:
    from pocketml.server.loop_views import gate_summary

    # Five columns so that trigger, state, step timings, candidate and gate fit 80 columns.
    print_table(
        "Retraining jobs",
        [
            Column("job / model", is_name=True),
            Column("trigger"),
            Column("state"),
            Column("steps (s)", wraps=True),
            Column("candidate / gate", wraps=True),
        ],
        [
            (
                f"{j.id[:8]} {j.model}",
                j.trigger,
                j.state,
                _steps(j),
                ("-" if j.candidate_version is None else f"v{j.candidate_version} ")
                + gate_summary(j),
            )
            for j in jobs
        ],
    )


def _print_job(job: JobPublic) -> None:
    console.print(
        f"[bold]job {job.id}[/bold] of {job.model}: {job.state} (trigger {job.trigger}, "
        f"champion v{job.champion_version or '-'}, candidate "
        f"{'-' if job.candidate_version is None else f'v{job.candidate_version}'})"
    )
    from pocketml.server.loop_views import gate_table, steps_table

    console.print(steps_table(job, console.width))
    if job.gate:
        console.print(gate_table(job.gate, console.width))
        console.print(job.gate["reason"])
    if job.error:
        console.print(f"[red]{job.error}[/red]")
    if job.rollout_id:
        console.print(f"rollout {job.rollout_id} (pocketml rollout show {job.rollout_id[:_SHORT]})")
    for line in job.log[-8:]:
        console.print(f"  {line}", highlight=False)


@loop_app.command("run")
def run(
    model: str = typer.Argument(..., help="The model to retrain."),
    wait: bool = typer.Option(False, "--wait", help="Follow the job to its end."),
    note: str | None = typer.Option(None, "--note", help="Why (kept with the job)."),
    timeout: float = typer.Option(3600.0, "--timeout", help="Seconds --wait waits at most."),
    poll: float = typer.Option(5.0, "--poll", help="Seconds between two looks with --wait."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Queue a retraining job of MODEL (or show its active one)."""
    with _client(server, token) as client:
        answer = client.run_loop_job(model, note=note)
        job = answer.job
        what = "queued" if answer.created else "already active"
        console.print(f"job {job.id} of {model} {what} ({job.state})")
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while job.state not in _FINISHED:
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"job {job.id} is still {job.state} after {timeout:g} s; follow it with "
                    f"`pocketml loop status {job.id[:_SHORT]}` (is the server's loop on? "
                    "POCKETML_SERVER__LOOP__INTERVAL_S > 0)."
                )
            time.sleep(poll)
            job = client.show_loop_job(job.id)
    _print_job(job)
    if job.state == "rejected":
        raise typer.Exit(EXIT_REJECTED)
    if job.state == "failed":
        raise typer.Exit(EXIT_FAILED)


@loop_app.command("status")
def status(
    target: str | None = typer.Argument(None, help="A model, or a job id (6+ characters)."),
    limit: int = typer.Option(20, "--limit", help="Newest jobs to list."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List retraining jobs (of a model), or show one job's steps, gate and log."""
    with _client(server, token) as client:
        if target is None:
            jobs = list(client.list_loop_jobs(limit=limit).items)
        else:
            try:
                jobs = list(client.list_loop_jobs(target, limit=limit).items)
            except NotFound:
                job = client.show_loop_job(_job_id(client, target))
                if as_json:
                    print_json(job.model_dump(mode="json"))
                else:
                    _print_job(job)
                return
    if as_json:
        print_json([j.model_dump(mode="json") for j in jobs])
    else:
        _print_jobs(jobs)


def _job_id(client: Any, ref: str) -> str:
    if len(ref) == 32:
        return ref
    if len(ref) < 6:
        raise InvalidInput(f"{ref!r} is neither a model nor a job id (6+ characters).")
    matches = [j.id for j in client.list_loop_jobs(limit=500).items if j.id.startswith(ref)]
    if len(matches) != 1:
        raise NotFound(
            f"{ref!r} is no model, and {len(matches)} recent jobs start with it; "
            "`pocketml loop status` lists them."
        )
    return str(matches[0])


def _assign(policy: dict[str, Any], setting: str) -> None:
    key, sep, raw = setting.partition("=")
    if not sep or not key:
        raise InvalidInput(f"--set takes key=value, e.g. gate.max_drop=0.02; got {setting!r}.")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    *parents, leaf = key.split(".")
    node = policy
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            raise InvalidInput(f"{key!r}: {part!r} is not a section of the loop policy.")
        node = child
    node[leaf] = value


@loop_app.command("policy")
def policy(
    model: str = typer.Argument(..., help="The model."),
    settings: list[str] = typer.Option(
        [], "--set", help="key=value (dotted key, JSON value); repeatable."
    ),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show MODEL's loop policy, or change some of its settings."""
    with _client(server, token) as client:
        current = client.get_loop_policy(model)
        if settings:
            for setting in settings:
                _assign(current, setting)
            current = client.set_loop_policy(model, current)
    print_json(current)
