"""``pocketml fl ...``: federated tasks on a server (thin AdminClient calls).

``start MODEL --version N`` starts a task (round 1 opens and is announced at check-in);
``status`` lists the app's tasks, ``status TASK`` shows one task's rounds (reports, ε,
dropouts, why a round closed without a model) and log; ``cancel TASK`` stops it. Every
setting's bounds live in ``pocketml.federated.parse_task_spec``; docs/federated.md, "Tasks".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from pocketml._tables import Column
from pocketml.cli._admin import ServerOption, TokenOption, _client
from pocketml.cli._common import console, print_json, print_table
from pocketml.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from pocketml.server.schemas_federated import TaskPublic

__all__ = ["fl_app"]

fl_app = typer.Typer(
    help="Federated learning tasks: train a model's head on devices (docs/federated.md).",
    no_args_is_help=True,
)


def _epsilon(task: TaskPublic) -> str:
    if task.epsilon is None:
        return "-"
    return f"{task.epsilon:.2f}"


def _print_tasks(tasks: list[TaskPublic]) -> None:
    # Five short columns: id and model, state, rounds done / asked, clients, ε (80 columns).
    print_table(
        "Federated tasks",
        [
            Column("task / model", is_name=True),
            Column("state"),
            Column("rounds", justify="right"),
            Column("clients", justify="right"),
            Column("ε", justify="right"),
            Column("result", priority=1),
        ],
        [
            (
                f"{t.id} {t.model}",
                t.state,
                f"{t.rounds_done}/{t.spec.get('rounds', '?')}",
                t.clients_total,
                _epsilon(t),
                "-" if t.result_version is None else f"v{t.result_version}",
            )
            for t in tasks
        ],
    )


def _round_note(outcome: dict[str, Any] | None) -> str:
    if not outcome:
        return ""
    if "reason" in outcome:
        return str(outcome["reason"])
    parts = []
    if outcome.get("dropped"):
        parts.append(f"dropped {len(outcome['dropped'])}")
    if outcome.get("epsilon") is not None:
        parts.append(f"ε {outcome['epsilon']:.2f}")
    if outcome.get("norms"):
        parts.append(f"median norm {outcome['norms']['median']:.3g}")
    return ", ".join(parts)


def _print_task(task: TaskPublic) -> None:
    spec = task.spec
    dp = (
        f"DP z={spec.get('noise_multiplier')} δ={spec.get('delta')}"
        if (spec.get("noise_multiplier") or 0) > 0
        else "no DP"
    )
    console.print(
        f"[bold]task {task.id}[/bold] of {task.model} from v{task.base_version}: {task.state}; "
        f"{task.rounds_done}/{spec.get('rounds')} rounds, {task.clients_total} client updates, "
        f"{spec.get('aggregator')}, {dp}, secagg {'on' if spec.get('secagg') else 'off'}, "
        f"ε {_epsilon(task)}",
        highlight=False,
    )
    print_table(
        "Rounds",
        [
            Column("round", justify="right"),
            Column("state"),
            Column("phase", priority=1),
            Column("joined", justify="right"),
            Column("reports", justify="right"),
            Column("note", wraps=True),
        ],
        [
            (r.number, r.state, r.phase, r.selected, r.reports, _round_note(r.outcome))
            for r in task.rounds
        ],
    )
    if task.result_version is not None:
        console.print(
            f"result: candidate v{task.result_version} of {task.model} "
            f"(pocketml rollout start {task.model} {task.result_version})"
        )
    if task.error:
        console.print(f"[red]{task.error}[/red]")
    for line in task.log[-8:]:
        console.print(f"  {line}", highlight=False)


@fl_app.command("start")
def start(
    model: str = typer.Argument(..., help="The model to fine-tune on devices."),
    version: int = typer.Option(..., "--version", help="The federatable version to start from."),
    rounds: int = typer.Option(10, "--rounds", help="Rounds to aggregate."),
    clients_per_round: int = typer.Option(10, "--clients-per-round", help="Cohort size m."),
    min_reports: int = typer.Option(2, "--min-reports", help="Reports a round needs."),
    round_timeout: float = typer.Option(600.0, "--round-timeout", help="Seconds per round."),
    aggregator: str = typer.Option("fedavg", "--aggregator", help="fedavg|trimmed_mean|median."),
    dp: bool = typer.Option(False, "--dp", help="DP-FedAvg (needs --population)."),
    noise_multiplier: float = typer.Option(
        1.0, "--noise-multiplier", help="DP noise z (with --dp)."
    ),
    clip: float = typer.Option(1.0, "--clip", help="L2 clip norm of every update."),
    adaptive_clip: bool = typer.Option(False, "--adaptive-clip", help="Adaptive clipping (DP)."),
    delta: float = typer.Option(1e-5, "--delta", help="The δ ε is reported at."),
    population: int | None = typer.Option(
        None, "--population", help="Devices the task may reach (DP's sampling rate)."
    ),
    secagg: bool = typer.Option(False, "--secagg", help="Secure aggregation (SecAgg+)."),
    neighbours: int | None = typer.Option(
        None, "--neighbours", help="SecAgg+ neighbours k (even); default all pairs."
    ),
    epochs: int = typer.Option(1, "--epochs", help="Local epochs."),
    learning_rate: float = typer.Option(0.1, "--learning-rate", help="Local learning rate."),
    batch_size: int = typer.Option(32, "--batch-size", help="Local batch size."),
    min_samples: int = typer.Option(1, "--min-samples", help="Local samples a device needs."),
    any_network: bool = typer.Option(False, "--any-network", help="Do not require Wi-Fi."),
    any_power: bool = typer.Option(False, "--any-power", help="Do not require charging."),
    fedbuff: int | None = typer.Option(
        None, "--fedbuff", help="Asynchronous FedBuff: step every K updates (K here)."
    ),
    rollout: str | None = typer.Option(
        None, "--rollout", help="Start a staged rollout of the result, e.g. 1,5,25,100."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Start a federated task on MODEL from --version."""
    spec: dict[str, Any] = {
        "version": version,
        "rounds": rounds,
        "clients_per_round": clients_per_round,
        "min_reports": min_reports,
        "round_timeout_s": round_timeout,
        "aggregator": aggregator,
        "clip_norm": clip,
        "secagg": secagg,
        "recipe": {"epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size},
        "requires": {
            "charging": not any_power,
            "wifi": not any_network,
            "min_samples": min_samples,
        },
    }
    if dp:
        if population is None:
            raise InvalidInput(
                "--dp needs --population: the privacy guarantee depends on the sampling "
                "rate clients_per_round / population (e.g. --population 5000)."
            )
        spec.update(
            noise_multiplier=noise_multiplier,
            adaptive_clipping=adaptive_clip,
            delta=delta,
            population=population,
        )
    if neighbours is not None:
        spec["secagg_neighbours"] = neighbours
    if fedbuff is not None:
        spec.update(fedbuff=True, fedbuff_buffer=fedbuff)
    if rollout is not None:
        try:
            spec["rollout"] = {"schedule": [float(p) for p in rollout.split(",")]}
        except ValueError as exc:
            raise InvalidInput(
                f"--rollout takes percents like 1,5,25,100; got {rollout!r}."
            ) from exc
    with _client(server, token) as client:
        task = client.start_federated_task(model, spec)
    if as_json:
        print_json(task.model_dump(mode="json"))
        return
    console.print(
        f"task {task.id} started on {model} v{version}: round 1 is announced at check-in "
        f"(pocketml fl status {task.id})",
        highlight=False,
    )


@fl_app.command("status")
def status(
    task_id: str | None = typer.Argument(None, help="A task id (flt_...); none lists tasks."),
    model: str | None = typer.Option(None, "--model", help="Only this model's tasks."),
    limit: int = typer.Option(20, "--limit", help="Newest tasks to list."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List federated tasks, or show one task's rounds, ε and log."""
    with _client(server, token) as client:
        if task_id is None:
            tasks = list(client.list_federated_tasks(model, limit=limit).items)
            if as_json:
                print_json([t.model_dump(mode="json") for t in tasks])
            else:
                _print_tasks(tasks)
            return
        task = client.show_federated_task(_task_id(task_id))
    if as_json:
        print_json(task.model_dump(mode="json"))
    else:
        _print_task(task)


@fl_app.command("cancel")
def cancel(
    task_id: str = typer.Argument(..., help="The task id (flt_...)."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Cancel a running task (its open round closes; what devices sent is deleted)."""
    with _client(server, token) as client:
        task = client.cancel_federated_task(_task_id(task_id))
    console.print(f"task {task.id} {task.state}", highlight=False)


def _task_id(ref: str) -> str:
    if not ref.startswith("flt_") or len(ref) != 20:
        raise NotFound(
            f"{ref!r} is not a task id (flt_ + 16 hex); `pocketml fl status` lists them."
        )
    return ref
