"""``pocketml rollout|experiment ...``: rollouts and A/B tests on a server (thin AdminClient calls).

``start`` begins a rollout; ``status`` lists rollouts or shows one with a Rich table of its
guardrail metrics (candidate vs control, sample sizes, test, p-value, verdict);
``advance``, ``pause``, ``resume``, ``rollback`` and ``complete`` move it; ``audit``
lists the transitions (who or what, when, why). ``pocketml experiment start|status|stop``
runs A/B experiments.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import typer

from pocketml._tables import Column
from pocketml.cli._admin import ServerOption, TokenOption, _client
from pocketml.cli._common import console, print_table
from pocketml.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from pocketml.server.client import AdminClient
    from pocketml.server.schemas_rollouts import ExperimentPublic, RolloutPublic

__all__ = ["experiment_app", "rollout_app"]

rollout_app = typer.Typer(
    help="Staged rollouts with guardrails (see docs/rollouts.md).", no_args_is_help=True
)


_ROLLOUT_ID = re.compile(r"[0-9a-f]{32}")
ROLLOUT_REF_HELP = "A rollout id, or a model name for that model's active rollout."


def _rollout_id(client: AdminClient, ref: str) -> str:
    """Return ``ref`` if it is a rollout id, else the id of model ``ref``'s active rollout."""
    if _ROLLOUT_ID.fullmatch(ref):
        return ref
    ids = [r.id for r in client.list_rollouts(active=True).items if r.model == ref]
    if not ids:
        raise NotFound(
            f"no active rollout of a model named {ref!r} (and it is not a rollout id). "
            "`pocketml rollout status` lists the rollouts with their ids."
        )
    if len(ids) > 1:
        raise InvalidInput(
            f"model {ref!r} has {len(ids)} active rollouts ({', '.join(ids)}); pass one id."
        )
    return ids[0]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _show(rollout: RolloutPublic) -> None:
    schedule = " -> ".join(f"{p:g}%" for p in rollout.schedule)
    print_table(
        f"Rollout {rollout.id}",
        ["field", "value"],
        [
            ("model", f"{rollout.model} ({rollout.channel})"),
            ("candidate / control", f"v{rollout.candidate_version} / v{rollout.control_version}"),
            ("state", rollout.state),
            ("step", f"{rollout.step + 1} of {len(rollout.schedule)}: {rollout.percent:g}%"),
            ("schedule", schedule),
            ("dwell / min samples", f"{rollout.min_dwell_s:g}s / {rollout.min_samples}"),
            ("on breach", rollout.on_breach),
            ("evaluated at", rollout.evaluated_at or "not yet"),
        ],
    )
    if rollout.metrics:
        print_table(
            "Guardrails (candidate vs control, since the step started)",
            [
                Column("metric", is_name=True),
                Column("candidate", "right"),
                Column("control", "right"),
                Column("n cand/ctrl", "right", priority=2),
                Column("threshold", "right", priority=3),
                Column("test", is_name=True, priority=1),
                Column("p", "right"),
                Column("verdict"),
            ],
            [
                (
                    m.metric,
                    _fmt(m.candidate),
                    _fmt(m.control),
                    f"{m.n_candidate}/{m.n_control}",
                    f"{m.threshold:g}",
                    m.test,
                    _fmt(m.p_value),
                    m.status,
                )
                for m in rollout.metrics
            ],
        )


@rollout_app.command("start")
def start(
    model: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Candidate version."),
    steps: str = typer.Option("1,5,25,100", "--steps", help="Percents, comma-separated."),
    min_dwell_s: float = typer.Option(3600, "--min-dwell", help="Seconds per step at least."),
    min_samples: int = typer.Option(200, "--min-samples", help="Samples per arm per step."),
    on_breach: str = typer.Option("rollback", "--on-breach", help="rollback or pause."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Start a staged rollout of VERSION at the first step's percent."""
    schedule = [float(p) for p in steps.split(",") if p.strip()]
    with _client(server, token) as client:
        rollout = client.create_rollout(
            model,
            version,
            schedule=schedule,
            min_dwell_s=min_dwell_s,
            min_samples=min_samples,
            on_breach=on_breach,
        )
    _show(rollout)


@rollout_app.command("status")
def status(
    rollout_id: str | None = typer.Argument(None, help=ROLLOUT_REF_HELP + " Omit to list them."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List rollouts, or show one with its guardrail metrics."""
    with _client(server, token) as client:
        if rollout_id is not None:
            _show(client.show_rollout(_rollout_id(client, rollout_id)))
            return
        items = client.list_rollouts().items
    print_table(
        "Rollouts",
        [
            Column("id", is_name=True),
            Column("model", is_name=True),
            Column("candidate", "right", priority=2),
            Column("control", "right", priority=3),
            Column("state"),
            Column("percent", "right"),
            Column("breaches", is_name=True, priority=1),
        ],
        [
            (
                r.id,
                r.model,
                r.candidate_version,
                r.control_version,
                r.state,
                f"{r.percent:g}%",
                ", ".join(m.metric for m in r.metrics if m.status == "breach") or "-",
            )
            for r in items
        ],
    )


def _move(action: str) -> None:
    def command(
        rollout_id: str = typer.Argument(..., help=ROLLOUT_REF_HELP),
        reason: str = typer.Option("", "--reason", help="Why (kept in the audit log)."),
        server: str = ServerOption,
        token: str | None = TokenOption,
    ) -> None:
        with _client(server, token) as client:
            rollout = client.move_rollout(_rollout_id(client, rollout_id), action, reason)
        console.print(f"rollout {rollout.id}: {action} -> {rollout.state} at {rollout.percent:g}%")

    command.__doc__ = f"{action.capitalize()} a rollout."
    rollout_app.command(action)(command)


for _action in ("advance", "pause", "resume", "rollback", "complete"):
    _move(_action)


@rollout_app.command("audit")
def audit(
    rollout_id: str | None = typer.Argument(None, help="Only this rollout."),
    limit: int = typer.Option(50, "--limit", help="Newest entries to show."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List rollout transitions: who or what, when, why."""
    with _client(server, token) as client:
        entries = client.audit(subject=rollout_id, limit=limit).items
    print_table(
        "Audit log",
        [
            Column("at", priority=2),
            Column("rollout", is_name=True),
            Column("action"),
            Column("from", priority=3),
            Column("to"),
            Column("actor", priority=1),
            Column("reason", wraps=True),
        ],
        [
            (
                e.at.isoformat(timespec="seconds"),
                e.subject,
                e.action,
                e.from_state,
                e.to_state,
                e.actor,
                e.reason,
            )
            for e in entries
        ],
    )


experiment_app = typer.Typer(
    help="A/B experiments: arms -> versions with weights (see docs/rollouts.md).",
    no_args_is_help=True,
)


def _show_experiment(experiment: ExperimentPublic) -> None:
    print_table(
        f"Experiment {experiment.id} — {experiment.model}, metric {experiment.metric}, "
        f"{experiment.state}",
        [
            Column("arm", is_name=True),
            Column("version", "right"),
            Column("weight", "right", priority=2),
            Column("n", "right"),
            Column("value", "right"),
            Column("diff vs control", "right", priority=1),
            Column("95 % CI", "right"),
        ],
        [
            (
                a.name,
                a.version,
                f"{a.weight:g}",
                a.n,
                _fmt(a.value),
                _fmt(a.difference),
                "-" if a.ci_low is None else f"[{a.ci_low:.4g}, {a.ci_high:.4g}]",
            )
            for a in experiment.arms
        ],
    )
    winner = experiment.winner or experiment.suggested_winner
    label = "promoted" if experiment.winner else "significant winner so far"
    console.print(f"{label}: {'v' + str(winner) if winner else 'none'}")


def _parse_arm(text: str) -> dict[str, object]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise InvalidInput(f"an arm is NAME:VERSION[:WEIGHT], e.g. control:3:50; got {text!r}.")
    try:
        version = int(parts[1])
        weight = float(parts[2]) if len(parts) == 3 else 1.0
    except ValueError as exc:
        raise InvalidInput(f"an arm is NAME:VERSION[:WEIGHT] with numbers; got {text!r}.") from exc
    return {"name": parts[0], "version": version, "weight": weight}


@experiment_app.command("start")
def start_experiment(
    model: str = typer.Argument(..., help="Model name."),
    arms: list[str] = typer.Argument(..., help="NAME:VERSION[:WEIGHT]; the first is control."),
    metric: str = typer.Option("accuracy", "--metric", help="Primary metric."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Start an A/B experiment, e.g. `digits control:3:50 new:4:50`."""
    with _client(server, token) as client:
        experiment = client.start_experiment(model, [_parse_arm(a) for a in arms], metric=metric)
    _show_experiment(experiment)


@experiment_app.command("status")
def experiment_status(
    experiment_id: str | None = typer.Argument(None, help="An experiment id; omit to list."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show results per arm (difference from the control with its 95 % CI)."""
    with _client(server, token) as client:
        if experiment_id is not None:
            items = [client.show_experiment(experiment_id)]
        else:
            items = client.list_experiments().items
    for experiment in items:
        _show_experiment(experiment)


@experiment_app.command("stop")
def stop_experiment(
    experiment_id: str = typer.Argument(..., help="The experiment id."),
    promote: str | None = typer.Option(
        None, "--promote", help="'winner' or a version to move to production."
    ),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit log)."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Stop an experiment; optionally promote the winner or a given version."""
    target: int | str | None = promote
    if promote is not None and promote != "winner":
        try:
            target = int(promote)
        except ValueError as exc:
            raise InvalidInput(f"--promote takes 'winner' or a version; got {promote!r}.") from exc
    with _client(server, token) as client:
        experiment = client.stop_experiment(experiment_id, promote=target, reason=reason)
    _show_experiment(experiment)
