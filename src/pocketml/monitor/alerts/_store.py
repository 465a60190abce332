"""The SQL of alerting: rules, alert episodes, webhook endpoints, the audit (the outbox's
reads and attempts are in ``_outbox.py``).

Every change that touches two tables is one transaction: an alert transition writes the
alert row, one outbox row per endpoint (none while acknowledged) and its audit entry
together, so a notification is never lost (the outbox row exists iff the change does)
and never sent for a change that rolled back. Audit entries go to the one audit log of
the app (``rollout_audit``, written by the registry and delivery too), with subject = the
alert, rule or endpoint id and actions ``alert.*``, ``alert_rule.*``, ``webhook.*``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pocketml.db import WRITE, UTCDateTime, translate_errors
from pocketml.errors import Conflict, NotFound
from pocketml.monitor.alerts._orm import AlertRow, AlertRuleRow, OutboxRow, WebhookEndpointRow
from pocketml.monitor.alerts._rules import AlertRule
from pocketml.monitor.alerts._types import Alert, WebhookEndpoint

__all__ = ["AlertStore", "StoreBase", "Transition", "audit_entry"]

_AUDIT = sa.table(
    "rollout_audit",
    sa.column("app_id", sa.String),
    sa.column("subject", sa.String),
    sa.column("action", sa.String),
    sa.column("from_state", sa.String),
    sa.column("to_state", sa.String),
    sa.column("actor", sa.String),
    sa.column("reason", sa.Text),
    sa.column("details", sa.JSON),
    sa.column("at", UTCDateTime),
)
LEASES = sa.Table(
    "evaluator_leases",
    sa.MetaData(),  # its own: the table belongs to delivery's ORM and revision 0003
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(128)),
    sa.Column("expires_at", sa.Double),
)
"""The lease table the rollout evaluator uses too (one row per job name)."""

_R: sa.Table = AlertRuleRow.__table__  # type: ignore[assignment]
_A: sa.Table = AlertRow.__table__  # type: ignore[assignment]
_E: sa.Table = WebhookEndpointRow.__table__  # type: ignore[assignment]
_O: sa.Table = OutboxRow.__table__  # type: ignore[assignment]


def _rule(row: Any) -> AlertRule:
    return AlertRule(
        id=row.id,
        app_id=row.app_id,
        model=row.model,
        name=row.name,
        metric=row.metric,
        comparison=row.comparison,
        threshold=row.threshold,
        window_s=row.window_s,
        min_n=row.min_n,
        severity=row.severity,
        for_s=row.for_s,
        cooldown_s=row.cooldown_s,
        scope=dict(row.scope),
        created_by=row.created_by,
        created_at=row.created_at,
    )


def _alert(row: Any) -> Alert:
    return Alert(
        id=row.id,
        app_id=row.app_id,
        rule_id=row.rule_id,
        rule=row.rule_name,
        model=row.model,
        fingerprint=row.fingerprint,
        labels=dict(row.labels),
        state=row.state,
        metric=row.metric,
        comparison=row.comparison,
        threshold=row.threshold,
        severity=row.severity,
        value=row.value,
        n=row.n,
        pending_since=row.pending_since,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        evaluated_at=row.evaluated_at,
        acked_at=row.acked_at,
        acked_by=row.acked_by,
    )


def _endpoint(row: Any) -> WebhookEndpoint:
    return WebhookEndpoint(row.id, row.app_id, row.url, row.format, row.created_by, row.created_at)


_ALERT_COLUMNS = (
    *_A.c,
    _R.c.name.label("rule_name"),
    _R.c.metric,
    _R.c.comparison,
    _R.c.threshold,
    _R.c.severity,
)
_ALERTS = sa.select(*_ALERT_COLUMNS).join(_R, _R.c.id == _A.c.rule_id)


def audit_entry(
    app_id: str,
    subject: str,
    action: str,
    at: datetime,
    *,
    actor: str,
    reason: str = "",
    from_state: str | None = None,
    to_state: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One audit log entry's fields (written by ``AlertStore.audit``)."""
    return {
        "app_id": app_id,
        "subject": subject,
        "action": action,
        "from_state": from_state,
        "to_state": to_state,
        "actor": actor,
        "reason": reason,
        "details": details or {},
        "at": at,
    }


class Transition:
    """One alert change to write: the row's new values, its audit entry, its events.

    Args:
        alert_id: the episode (new or existing).
        values: the alert row's columns to insert (``insert=True``) or update.
        insert: a new episode.
        expected_state: for an update, the state the row must still be in.
        audit: the audit entry's fields (action, from/to state, reason, details).
        events: outbox rows to write (``endpoint_id``, ``event``, ``body``, ``delivery_id``).
    """

    def __init__(
        self,
        alert_id: str,
        values: dict[str, Any],
        *,
        insert: bool,
        expected_state: str | None,
        audit: dict[str, Any],
        events: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.alert_id = alert_id
        self.values = values
        self.insert = insert
        self.expected_state = expected_state
        self.audit = audit
        self.events = list(events)


class StoreBase:
    """An engine and the two ways to use it: a write transaction, a translated read."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextmanager
    def _write(self, action: str) -> Iterator[sa.Connection]:
        with (
            translate_errors(action),
            self.engine.connect().execution_options(**WRITE) as conn,
            conn.begin(),
        ):
            yield conn

    def _read(self, action: str) -> Any:
        return translate_errors(action)

    @staticmethod
    def audit(conn: sa.Connection, entry: dict[str, Any]) -> None:
        """Append ``entry`` to the audit log inside ``conn``'s transaction."""
        conn.execute(sa.insert(_AUDIT).values(**entry))


class AlertStore(StoreBase):
    """The rules, alerts and webhook endpoints on the registry's engine."""

    # ------------------------------------------------------------------ rules

    def insert_rule(self, values: dict[str, Any], audit: dict[str, Any]) -> AlertRule:
        """Store a rule and its audit entry. Raises Conflict when the name is taken."""
        try:
            with self._write(f"create alert rule {values['name']}") as conn:
                conn.execute(sa.insert(_R).values(**values))
                self.audit(conn, audit)
        except Conflict as exc:
            raise Conflict(
                f"model {values['model']!r} already has an alert rule named {values['name']!r}; "
                "pick another name or delete that rule first."
            ) from exc
        return self.get_rule(values["app_id"], values["id"])

    def has_rules(self) -> bool:
        """True when any app has an alert rule."""
        with self._read("read alert rules"), self.engine.connect() as conn:
            return conn.execute(sa.select(_R.c.id).limit(1)).first() is not None

    def rule_names(self, model_id: str) -> set[str]:
        """The rule names of one model."""
        with self._read("read alert rules"), self.engine.connect() as conn:
            return set(conn.scalars(sa.select(_R.c.name).where(_R.c.model_id == model_id)))

    def get_rule(self, app_id: str, rule_id: str) -> AlertRule:
        """One rule of the app. Raises NotFound."""
        query = sa.select(_R).where(_R.c.app_id == app_id, _R.c.id == rule_id)
        with self._read("read an alert rule"), self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(
                f"no alert rule {rule_id!r} in this app; `pocketml alerts rules` lists them."
            )
        return _rule(row)

    def list_rules(self, app_id: str | None, model: str | None = None) -> list[AlertRule]:
        """The rules of one app (every app with None), by model then name."""
        query = sa.select(_R).order_by(_R.c.app_id, _R.c.model, _R.c.name)
        if app_id is not None:
            query = query.where(_R.c.app_id == app_id)
        if model is not None:
            query = query.where(_R.c.model == model)
        with self._read("read alert rules"), self.engine.connect() as conn:
            return [_rule(row) for row in conn.execute(query)]

    def delete_rule(self, app_id: str, rule_id: str, audit: dict[str, Any]) -> None:
        """Delete a rule (its alerts go with it). Raises NotFound."""
        with self._write("delete an alert rule") as conn:
            gone = conn.execute(sa.delete(_R).where(_R.c.app_id == app_id, _R.c.id == rule_id))
            if gone.rowcount != 1:
                raise NotFound(
                    f"no alert rule {rule_id!r} in this app; `pocketml alerts rules` lists them."
                )
            self.audit(conn, audit)

    # ----------------------------------------------------------------- alerts

    def active_alerts(self, rule_id: str) -> dict[str, Alert]:
        """The rule's pending and firing episodes by fingerprint."""
        query = _ALERTS.where(_A.c.rule_id == rule_id, _A.c.active_key.is_not(None))
        with self._read("read alerts"), self.engine.connect() as conn:
            return {row.fingerprint: _alert(row) for row in conn.execute(query)}

    def last_resolved(self, rule_id: str) -> dict[str, datetime]:
        """When each fingerprint of the rule last resolved."""
        query = (
            sa.select(_A.c.fingerprint, sa.func.max(_A.c.ends_at))
            .where(_A.c.rule_id == rule_id, _A.c.state == "resolved")
            .group_by(_A.c.fingerprint)
        )
        with self._read("read alerts"), self.engine.connect() as conn:
            return {fp: ended for fp, ended in conn.execute(query) if ended is not None}

    def get_alert(self, app_id: str, alert_id: str) -> Alert:
        """One alert episode of the app. Raises NotFound."""
        query = _ALERTS.where(_A.c.app_id == app_id, _A.c.id == alert_id)
        with self._read("read an alert"), self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no alert {alert_id!r} in this app; `pocketml alerts list` lists them.")
        return _alert(row)

    def list_alerts(
        self, app_id: str, *, states: Sequence[str] | None, model: str | None, limit: int
    ) -> list[Alert]:
        """The app's alert episodes, newest first."""
        query = _ALERTS.where(_A.c.app_id == app_id)
        if states:
            query = query.where(_A.c.state.in_(list(states)))
        if model is not None:
            query = query.where(_A.c.model == model)
        query = query.order_by(_A.c.pending_since.desc(), _A.c.id).limit(limit)
        with self._read("read alerts"), self.engine.connect() as conn:
            return [_alert(row) for row in conn.execute(query)]

    def firing_counts(self) -> list[tuple[str, str, str, int]]:
        """(app id, model, severity, firing alerts) over every app."""
        query = (
            sa.select(_A.c.app_id, _A.c.model, _R.c.severity, sa.func.count())
            .join(_R, _R.c.id == _A.c.rule_id)
            # every firing alert is active: the active_key index bounds the scan
            .where(_A.c.active_key.is_not(None), _A.c.state == "firing")
            .group_by(_A.c.app_id, _A.c.model, _R.c.severity)
        )
        with self._read("count firing alerts"), self.engine.connect() as conn:
            return [(a, m, s, int(c)) for a, m, s, c in conn.execute(query)]

    def apply(self, transition: Transition, app_id: str) -> bool:
        """Write one transition (row + outbox + audit) in one transaction.

        Returns:
            False when another writer changed the episode first (nothing written).
        """
        try:
            with self._write("record an alert transition") as conn:
                if transition.insert:
                    conn.execute(sa.insert(_A).values(id=transition.alert_id, **transition.values))
                else:
                    done = conn.execute(
                        sa.update(_A)
                        .where(
                            _A.c.id == transition.alert_id, _A.c.state == transition.expected_state
                        )
                        .values(**transition.values)
                    )
                    if done.rowcount != 1:
                        return False
                for event in transition.events:
                    conn.execute(sa.insert(_O).values(app_id=app_id, **event))
                self.audit(conn, transition.audit)
        except Conflict:  # another evaluator opened the same fingerprint first
            return False
        return True

    def touch(self, alert_id: str, values: dict[str, Any]) -> None:
        """Store the latest reading of an episode that did not change state (no audit)."""
        with self._write("update an alert") as conn:
            conn.execute(sa.update(_A).where(_A.c.id == alert_id).values(**values))

    def ack(
        self, app_id: str, alert_id: str, at: datetime, actor: str, audit: dict[str, Any]
    ) -> Alert:
        """Acknowledge an episode (idempotent: a second ack keeps the first). Raises NotFound."""
        with self._write("acknowledge an alert") as conn:
            found = conn.execute(
                sa.select(_A.c.acked_at).where(_A.c.app_id == app_id, _A.c.id == alert_id)
            ).first()
            if found is None:
                raise NotFound(
                    f"no alert {alert_id!r} in this app; `pocketml alerts list` lists them."
                )
            if found.acked_at is None:
                conn.execute(
                    sa.update(_A).where(_A.c.id == alert_id).values(acked_at=at, acked_by=actor)
                )
                self.audit(conn, audit)
        return self.get_alert(app_id, alert_id)

    # -------------------------------------------------------------- endpoints

    def insert_endpoint(self, values: dict[str, Any], audit: dict[str, Any]) -> WebhookEndpoint:
        """Store an endpoint (secret already wrapped) and its audit entry."""
        with self._write("add a webhook endpoint") as conn:
            conn.execute(sa.insert(_E).values(**values))
            self.audit(conn, audit)
        return self.get_endpoint(values["app_id"], values["id"])

    def get_endpoint(self, app_id: str, endpoint_id: str) -> WebhookEndpoint:
        """One endpoint of the app. Raises NotFound."""
        return _endpoint(self._endpoint_row(app_id, endpoint_id))

    def endpoint_secret(self, app_id: str, endpoint_id: str) -> bytes:
        """The wrapped secret of one endpoint (the service unwraps it)."""
        return bytes(self._endpoint_row(app_id, endpoint_id).secret)

    def _endpoint_row(self, app_id: str, endpoint_id: str) -> Any:
        query = sa.select(_E).where(_E.c.app_id == app_id, _E.c.id == endpoint_id)
        with self._read("read a webhook endpoint"), self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(
                f"no webhook endpoint {endpoint_id!r} in this app; `pocketml alerts webhook list` "
                "lists them."
            )
        return row

    def list_endpoints(self, app_id: str) -> list[WebhookEndpoint]:
        """The app's endpoints, oldest first."""
        query = sa.select(_E).where(_E.c.app_id == app_id).order_by(_E.c.created_at, _E.c.id)
        with self._read("read webhook endpoints"), self.engine.connect() as conn:
            return [_endpoint(row) for row in conn.execute(query)]

    def delete_endpoint(self, app_id: str, endpoint_id: str, audit: dict[str, Any]) -> None:
        """Delete an endpoint and its deliveries. Raises NotFound."""
        with self._write("delete a webhook endpoint") as conn:
            gone = conn.execute(sa.delete(_E).where(_E.c.app_id == app_id, _E.c.id == endpoint_id))
            if gone.rowcount != 1:
                raise NotFound(f"no webhook endpoint {endpoint_id!r} in this app.")
            self.audit(conn, audit)
