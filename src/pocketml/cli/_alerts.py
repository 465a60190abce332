"""``pocketml alerts ...``: alert rules, alerts and webhooks on a server (thin AdminClient calls).

``list`` shows alert episodes (``--state firing``); ``ack ID`` silences one episode's
notifications; ``rules [MODEL]`` lists rules and ``rules MODEL --defaults`` creates the
default set; ``add-rule`` / ``delete-rule`` manage one; ``webhook add|list|test|delete``
manage receivers (the secret is printed once, at ``add``); ``deliveries`` is the delivery
log (``--status dead``). Ids show as their first 12 characters; every command that takes
an id takes such a prefix. See docs/alerts.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from pocketml._tables import Column
from pocketml.cli._admin import ServerOption, TokenOption, _client
from pocketml.cli._common import console, print_table
from pocketml.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from pocketml.server.client import AdminClient

__all__ = ["alerts_app"]

alerts_app = typer.Typer(
    help="Alert rules, alerts and webhook receivers (see docs/alerts.md).", no_args_is_help=True
)
webhook_app = typer.Typer(help="Webhook receivers of alert events.", no_args_is_help=True)
alerts_app.add_typer(webhook_app, name="webhook")

_SHORT = 12
T = TypeVar("T")


def _short(value: str) -> str:
    return value[:_SHORT]


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%m-%d %H:%M")


def _resolve(ref: str, items: Sequence[T], key: Callable[[T], str], what: str) -> str:
    """The full id of the one item whose id starts with ``ref``."""
    if len(ref) < 6:
        raise InvalidInput(f"{what} id {ref!r} is too short; give at least 6 characters.")
    matches = [key(item) for item in items if key(item).startswith(ref)]
    if not matches:
        raise NotFound(f"no {what} id starts with {ref!r}; `pocketml alerts` lists them.")
    if len(matches) > 1:
        raise InvalidInput(f"{len(matches)} {what} ids start with {ref!r}; give more characters.")
    return matches[0]


@alerts_app.command("list")
def list_alerts(
    state: list[str] = typer.Option(
        [], "--state", help="Only this state (pending, firing, resolved); repeatable."
    ),
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    limit: int = typer.Option(50, "--limit", help="Newest alerts to show."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List alerts, newest first: rule, labels, state, value vs threshold."""
    with _client(server, token) as client:
        items = client.list_alerts(states=state or None, model=model, limit=limit).items
    print_table(
        "Alerts",
        [
            Column("id", is_name=True),
            Column("model / rule", is_name=True),
            Column("labels", wraps=True, priority=2),
            Column("state"),
            Column("value", "right"),
            Column("since", priority=1),
            Column("ack", priority=3),
        ],
        [
            (
                _short(a.id),
                f"{a.model} {a.rule}",
                " ".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if v),
                a.state,
                f"{'-' if a.value is None else f'{a.value:.4g}'} {a.comparison} {a.threshold:g}",
                _when(a.starts_at or a.pending_since),
                "yes" if a.acked_at else "",
            )
            for a in items
        ],
    )


_ID_LENGTH = 32  # alert ids are uuid4 hex


@alerts_app.command("ack")
def ack(
    alert_id: str = typer.Argument(..., help="The alert's id (or its first 6+ characters)."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Acknowledge an alert: its notifications stop, its state goes on."""
    with _client(server, token) as client:
        # A whole id goes straight to the server (which answers 404 for an unknown one);
        # only a prefix is looked up, among the newest 1,000 alerts.
        full = (
            alert_id
            if len(alert_id) == _ID_LENGTH
            else _resolve(alert_id, client.list_alerts(limit=1000).items, lambda a: a.id, "alert")
        )
        alert = client.ack_alert(full)
    console.print(
        f"alert {_short(alert.id)} ({alert.model} {alert.rule}, {alert.state}): acknowledged"
    )


def _rules_table(title: str, rules: Sequence[Any]) -> None:
    print_table(
        title,
        [
            Column("id", is_name=True, priority=2),
            Column("model / rule", is_name=True),
            Column("condition", wraps=True),
            Column("window", "right", priority=1),
            Column("min n", "right", priority=3),
            Column("severity"),
        ],
        [
            (
                _short(r.id),
                f"{r.model} {r.name}",
                f"{r.metric} {r.comparison} {r.threshold:g}"
                + (" " + " ".join(f"{k}={v}" for k, v in r.scope.items()) if r.scope else ""),
                f"{r.window_s:g}s",
                r.min_n,
                r.severity,
            )
            for r in rules
        ],
    )


@alerts_app.command("rules")
def rules(
    model: str | None = typer.Argument(None, help="Only this model's rules."),
    defaults: bool = typer.Option(
        False, "--defaults", help="Create MODEL's default rules it does not have yet."
    ),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List alert rules, or create a model's default rules with --defaults."""
    if defaults and model is None:
        raise InvalidInput("--defaults needs a MODEL: pocketml alerts rules digits --defaults")
    with _client(server, token) as client:
        if defaults and model is not None:
            created = client.create_default_alert_rules(model).items
            console.print(f"created {len(created)} default rule(s) for {model}")
        items = client.list_alert_rules(model=model).items
        _rules_table("Alert rules", items)


@alerts_app.command("add-rule")
def add_rule(
    model: str = typer.Argument(..., help="Model name."),
    name: str = typer.Argument(..., help="Rule name (a-z, 0-9, '_', '.', '-')."),
    metric: str = typer.Argument(..., help="Metric, e.g. latency_p95_ms, error_rate."),
    comparison: str = typer.Argument(..., help="One of > >= < <=."),
    threshold: float = typer.Argument(..., help="The threshold."),
    window_s: float = typer.Option(3600.0, "--window", help="Trailing window, seconds."),
    min_n: int = typer.Option(100, "--min-n", help="Observations needed to judge."),
    severity: str = typer.Option("warning", "--severity", help="info, warning or critical."),
    for_s: float = typer.Option(0.0, "--for", help="Seconds a breach is pending first."),
    cooldown_s: float = typer.Option(1800.0, "--cooldown", help="Quiet seconds after resolving."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Create one alert rule: METRIC COMPARISON THRESHOLD over a window."""
    with _client(server, token) as client:
        rule = client.create_alert_rule(
            model,
            name=name,
            metric=metric,
            comparison=comparison,
            threshold=threshold,
            window_s=window_s,
            min_n=min_n,
            severity=severity,
            for_s=for_s,
            cooldown_s=cooldown_s,
        )
        _rules_table("Created", [rule])


@alerts_app.command("delete-rule")
def delete_rule(
    rule_id: str = typer.Argument(..., help="The rule's id (or its first 6+ characters)."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Delete an alert rule and its alerts."""
    with _client(server, token) as client:
        full = _resolve(rule_id, client.list_alert_rules().items, lambda r: r.id, "rule")
        client.delete_alert_rule(full)
    console.print(f"deleted rule {_short(full)}")


@webhook_app.command("add")
def webhook_add(
    url: str = typer.Argument(..., help="The receiver's http(s) URL."),
    fmt: str = typer.Option(
        "pocketml", "--format", help="Body shape: pocketml, alertmanager or slack."
    ),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Add a receiver; prints its signing secret ONCE."""
    with _client(server, token) as client:
        created = client.add_webhook(url, fmt=fmt)
    console.print(f"webhook {_short(created.id)} -> {created.url} ({created.format})")
    console.print("secret (shown once; the receiver verifies X-PocketML-Signature with it):")
    console.print(created.secret, highlight=False, soft_wrap=True)


@webhook_app.command("list")
def webhook_list(server: str = ServerOption, token: str | None = TokenOption) -> None:
    """List receivers."""
    with _client(server, token) as client:
        items = client.list_webhooks().items
    print_table(
        "Webhooks",
        [Column("id", is_name=True), Column("format"), Column("url", wraps=True)],
        [(_short(e.id), e.format, e.url) for e in items],
    )


def _endpoint_id(client: AdminClient, ref: str | None) -> str:
    items = client.list_webhooks().items
    if ref is None:
        if len(items) != 1:
            raise InvalidInput(
                f"the app has {len(items)} webhooks; name one: pocketml alerts webhook test ID"
            )
        return items[0].id
    return _resolve(ref, items, lambda e: e.id, "webhook")


@webhook_app.command("test")
def webhook_test(
    endpoint_id: str | None = typer.Argument(None, help="Receiver id (omit if only one)."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Send a signed test event now and show what the receiver answered."""
    with _client(server, token) as client:
        delivery = client.test_webhook(_endpoint_id(client, endpoint_id))
    answer = delivery.last_error or f"HTTP {delivery.last_status}"
    console.print(
        f"test delivery {_short(delivery.id)} to {delivery.url}: {delivery.status} ({answer})"
    )


@webhook_app.command("delete")
def webhook_delete(
    endpoint_id: str = typer.Argument(..., help="Receiver id (or its first 6+ characters)."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Remove a receiver and its delivery log."""
    with _client(server, token) as client:
        full = _endpoint_id(client, endpoint_id)
        client.delete_webhook(full)
    console.print(f"deleted webhook {_short(full)}")


@alerts_app.command("deliveries")
def deliveries(
    status: str | None = typer.Option(None, "--status", help="pending, delivered or dead."),
    limit: int = typer.Option(50, "--limit", help="Newest deliveries to show."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """The webhook delivery log: each event to each receiver, attempts and fate."""
    with _client(server, token) as client:
        items = client.list_deliveries(status=status, limit=limit).items
    print_table(
        "Webhook deliveries",
        [
            Column("id", is_name=True, priority=2),
            Column("event"),
            Column("status"),
            Column("tries", "right"),
            Column("last answer", wraps=True),
            Column("at", priority=1),
        ],
        [
            (
                _short(d.id),
                d.event,
                d.status,
                d.attempts,
                d.last_error or ("-" if d.last_status is None else f"HTTP {d.last_status}"),
                _when(d.finished_at or d.created_at),
            )
            for d in items
        ],
    )
