"""The sample store: consented samples from devices, their index, and forgetting a device.

A ``POST /v1/samples`` batch is checked whole before anything is written (structure by
``protocol.parse_sample_batch``; then model and version in the app, the tensor's shape
against the model's schema, labels in its vocabulary). The new samples' tensors go to the
ArtifactStore as ONE NPZ chunk per accepted batch (arrays ``arr_0``, ``arr_1``, ... in the
schema's sample shape, normalized as the model saw them); one index row per sample points
into it (``chunk_key``, ``row``). A ``sample_id`` already stored counts as a duplicate and
is not stored again, so a batch re-sent after a lost answer changes nothing.

``labelled`` turns them into ``LabelledSamples`` in the dataset's raw units (the schema's
normalization inverted), with the sample's own label or else the label feedback of the same
(device, prediction id). ``forget_device`` deletes one device's samples, feedback and
telemetry in one transaction and audits it in ``sample_audit`` (this store's own audit
table: the rollout audit belongs to delivery). Telemetry chunks are per (batch, model) and
a batch is one device's, so a device's telemetry is whole chunk rows: deleting them is
exact, no chunk holds two devices' rows to rewrite. Monitor sketches are merged counts of
many devices with no device id (nothing to delete); the privacy ledger keeps the epsilon a
device spent (no data about its inputs) so that forgetting cannot reset a budget.
"""

from __future__ import annotations

import builtins
import io
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import sqlalchemy as sa

from pocketml.db import WRITE, translate_errors, utcnow
from pocketml.errors import NotFound, ValidationFailed
from pocketml.federated import forget_device_rows
from pocketml.loop._samples_sql import (
    AUDIT,
    SAMPLES,
    audit_row,
    check_sample,
    delete_device_rows,
    insert_statement,
    joined,
    other_table,
    when,
)
from pocketml.loop._samples_values import (
    ForgetReport,
    IngestResult,
    SampleInfo,
    SamplePage,
    invert_normalization,
)
from pocketml.loop._types import LabelledSamples
from pocketml.protocol import CapturePolicy, SampleBatch, parse_sample_batch
from pocketml.registry import ArtifactStore, Registry
from pocketml.schema import ModelSchema

__all__ = ["SampleStore"]

logger = logging.getLogger(__name__)


class SampleStore:
    """Consented samples of every app: intake, reading for training, forgetting.

    Args:
        registry: the open registry (its engine holds the tables; models and versions
            are checked against it).
        artifacts: where the NPZ chunks go.
        retention_of: ``(app_id, model, version) -> CapturePolicy`` for ``purge_expired``
            (the server passes delivery's effective policy); default: the protocol's.
    """

    def __init__(
        self,
        registry: Registry,
        artifacts: ArtifactStore,
        *,
        retention_of: Callable[[str, str, int], CapturePolicy] | None = None,
    ) -> None:
        self.registry = registry
        self.artifacts = artifacts
        self.retention_of = retention_of or (lambda app_id, model, version: CapturePolicy())

    @property
    def engine(self) -> sa.Engine:
        """The registry's engine."""
        return self.registry.store.engine

    # -- intake -----------------------------------------------------------------------------

    def ingest(self, app_id: str, body: Any) -> IngestResult:
        """Validate a whole batch, then store its new samples (one chunk, one transaction).

        Args:
            app_id: the authenticated app.
            body: the parsed JSON body (or an already parsed ``SampleBatch``).

        Returns:
            accepted (stored now) and duplicates (sample ids stored before).

        Raises:
            ValidationFailed: naming ``samples[i].field``, the model and version, and what
                was expected against what was given; nothing is stored.
            Unavailable: the database or the artifact store cannot be reached.
        """
        batch = body if isinstance(body, SampleBatch) else parse_sample_batch(body)
        schemas = self._check(app_id, batch)
        ids = [s.sample_id for s in batch.samples]
        with translate_errors("read samples"), self.engine.connect() as conn:
            known = set(
                conn.execute(
                    sa.select(SAMPLES.c.sample_id).where(
                        SAMPLES.c.app_id == app_id, SAMPLES.c.sample_id.in_(ids)
                    )
                ).scalars()
            )
        fresh = [s for s in batch.samples if s.sample_id not in known]
        if not fresh:
            return IngestResult(0, len(known))
        arrays = [
            np.frombuffer(s.data, dtype="<f4")
            .reshape(schemas[s.model][0].input.sample_shape)
            .astype(np.float32)
            for s in fresh
        ]
        buffer = io.BytesIO()
        np.savez(buffer, *arrays)  # arr_0, arr_1, ...: row r is arr_<r>
        buffer.seek(0)
        ref = self.artifacts.put_stream(buffer)
        now = utcnow()
        rows = [
            {
                "app_id": app_id,
                "model_id": schemas[s.model][1],
                "model": s.model,
                "version": s.version,
                "sample_id": s.sample_id,
                "device_id": batch.device_id,
                "device_class": s.device_class,
                "prediction_id": s.prediction_id,
                "predicted": s.predicted,
                "confidence": s.confidence,
                "label": s.label,
                "captured_at": s.captured_at,
                "received_at": now,
                "chunk_key": ref.key,
                "row": row,
                "bytes": len(s.data),
            }
            for row, s in enumerate(fresh)
        ]
        statement = (
            insert_statement(self.engine.dialect.name, SAMPLES)
            .on_conflict_do_nothing(index_elements=["app_id", "sample_id"])
            .returning(SAMPLES.c.id)
        )
        with (
            translate_errors("store samples"),
            self.engine.connect().execution_options(**WRITE) as conn,
            conn.begin(),
        ):
            # RETURNING counts what was inserted on both dialects (a conflict returns none).
            stored = sum(len(conn.execute(statement, row).all()) for row in rows)
        return IngestResult(stored, len(batch.samples) - stored)

    def _check(self, app_id: str, batch: SampleBatch) -> dict[str, tuple[ModelSchema, str]]:
        """Model, version, shape and labels of every sample (raises before any write)."""
        schemas: dict[str, tuple[ModelSchema, str]] = {}
        versions: set[tuple[str, int]] = set()
        for i, sample in enumerate(batch.samples):
            where = f"samples[{i}]"
            if sample.model not in schemas:
                try:
                    info = self.registry.get_model(app_id, sample.model)
                except NotFound as exc:
                    raise ValidationFailed(
                        f"{where}.model: this app has no model {sample.model!r}"
                    ) from exc
                schemas[sample.model] = (ModelSchema.from_dict(info.schema), info.id)
            if (sample.model, sample.version) not in versions:
                try:
                    self.registry.get_version(app_id, sample.model, sample.version)
                except NotFound as exc:
                    raise ValidationFailed(
                        f"{where}.version: model {sample.model!r} has no version {sample.version}"
                    ) from exc
                versions.add((sample.model, sample.version))
            check_sample(where, sample, schemas[sample.model][0])
        return schemas

    # -- reading ----------------------------------------------------------------------------

    def _rows(
        self,
        conn: sa.Connection,
        app_id: str,
        model: str,
        since: float | None,
        until: float | None,
    ) -> builtins.list[Any]:
        return list(conn.execute(joined(app_id, model, since, until)))

    def labelled(
        self, app_id: str, model: str, *, since: float | None = None, until: float | None = None
    ) -> LabelledSamples:
        """The labelled samples of a model, features in raw dataset units.

        A sample's label is its own (captured with feedback), else the label feedback of
        the same (device, prediction id); samples without either, or whose label is not in
        the schema's labels, are left out.

        Args:
            app_id: the app.
            model: the model's name.
            since: unix seconds, received at or after (inclusive).
            until: unix seconds, received before (exclusive).

        Raises:
            NotFound: no such model in the app.
        """
        info = self.registry.get_model(app_id, model)
        schema = ModelSchema.from_dict(info.schema)
        names = tuple(schema.labels)
        index = {label: i for i, label in enumerate(names)}
        with translate_errors("read samples"), self.engine.connect() as conn:
            rows = self._rows(conn, app_id, model, since, until)
        kept = []
        for row in rows:
            label = row.label if row.label is not None else row.feedback_label
            if label in index:
                kept.append((row, index[label]))
        features = self._tensors([row for row, _ in kept], schema.input.sample_shape)
        return LabelledSamples(
            model=model,
            class_names=names,
            features=invert_normalization(schema, features),
            labels=np.asarray([y for _, y in kept], dtype=np.int64),
            predicted=np.asarray([index.get(r.predicted, -1) for r, _ in kept], dtype=np.int64),
            confidence=np.asarray([r.confidence for r, _ in kept], dtype=np.float32),
            sample_id=np.asarray([r.sample_id for r, _ in kept], dtype=str),
            device_id=np.asarray([r.device_id for r, _ in kept], dtype=str),
            device_class=np.asarray([r.device_class for r, _ in kept], dtype=str),
            version=np.asarray([r.version for r, _ in kept], dtype=np.int64),
            captured_at=np.asarray([r.captured_at for r, _ in kept], dtype=np.float64),
        )

    def _tensors(self, rows: builtins.list[Any], sample_shape: tuple[int, ...]) -> np.ndarray:
        out = np.zeros((len(rows), *sample_shape), dtype=np.float32)
        by_chunk: dict[str, list[tuple[int, int]]] = {}
        for i, row in enumerate(rows):
            by_chunk.setdefault(row.chunk_key, []).append((i, row.row))
        for key, members in by_chunk.items():
            with self.artifacts.open_read(key) as handle:
                chunk = np.load(io.BytesIO(handle.read()), allow_pickle=False)
                for i, r in members:
                    out[i] = chunk[f"arr_{r}"]
        return out

    def export_npz(
        self, app_id: str, model: str, *, since: float | None = None
    ) -> tuple[bytes, LabelledSamples]:
        """The labelled samples as an NPZ that ``pocketml.data.load_dataset`` reads.

        Arrays: ``x`` (raw units), ``y``, ``class_names``, ``layout``, and the provenance
        ``sample_id``, ``device_id``, ``device_class``, ``version``.

        Raises:
            NotFound: no such model in the app.
        """
        samples = self.labelled(app_id, model, since=since)
        layout = ModelSchema.from_dict(self.registry.get_model(app_id, model).schema).input.layout
        buffer = io.BytesIO()
        np.savez(
            buffer,
            x=samples.features,
            y=samples.labels,
            class_names=np.asarray(samples.class_names, dtype=str),
            layout=np.asarray(layout),
            sample_id=samples.sample_id.astype(str),
            device_id=samples.device_id.astype(str),
            device_class=samples.device_class.astype(str),
            version=samples.version,
        )
        return buffer.getvalue(), samples

    def count_labelled(self, app_id: str, model: str, *, since: float | None = None) -> int:
        """How many samples of a model have a label (own or feedback) received since."""
        rows = joined(app_id, model, since, None).order_by(None).subquery()
        query = (
            sa.select(sa.func.count())
            .select_from(rows)
            .where(sa.or_(rows.c.label.is_not(None), rows.c.feedback_label.is_not(None)))
        )
        with translate_errors("count samples"), self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def list(
        self,
        app_id: str,
        model: str,
        *,
        device_id: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> SamplePage:
        """A page of a model's index rows (oldest first) and the counts per device class.

        Raises:
            NotFound: no such model in the app.
        """
        self.registry.get_model(app_id, model)
        rows = joined(app_id, model, None, None).subquery()
        is_labelled = sa.or_(rows.c.label.is_not(None), rows.c.feedback_label.is_not(None))
        tally = sa.select(
            rows.c.device_class, is_labelled.label("labelled"), sa.func.count()
        ).group_by(rows.c.device_class, is_labelled)
        query = joined(app_id, model, None, None).limit(limit + 1)
        if device_id is not None:
            query = query.where(SAMPLES.c.device_id == device_id)
        if after is not None:
            query = query.where(SAMPLES.c.id > after)
        with translate_errors("read samples"), self.engine.connect() as conn:
            chosen = list(conn.execute(query))
            grouped = conn.execute(tally).all()
        counts: dict[str, dict[str, int]] = {}
        for device_class, labelled, n in grouped:
            group = counts.setdefault(device_class, {"labelled": 0, "unlabelled": 0})
            group["labelled" if labelled else "unlabelled"] += int(n)
        page = chosen[:limit]
        items = tuple(
            SampleInfo(
                r.sample_id,
                r.model,
                r.version,
                r.device_id,
                r.device_class,
                r.prediction_id,
                r.predicted,
                r.confidence,
                r.label or r.feedback_label,
                r.captured_at,
                r.received_at,
                r.bytes,
            )
            for r in page
        )
        next_after = page[-1].id if len(chosen) > limit else None
        return SamplePage(items, next_after, counts)

    # -- deletion ---------------------------------------------------------------------------

    def forget_device(self, app_id: str, device_id: str, *, actor: str) -> ForgetReport:
        """Delete one device's samples, feedback, telemetry and federated participation
        rows; audited; one transaction.

        Args:
            app_id: the app.
            device_id: the device to forget.
            actor: who asked ("device" for the device itself, else the admin's name).

        Returns:
            The counts deleted and the audit row's id.
        """
        feedback, chunks, batches = (
            other_table("feedback"),
            other_table("telemetry_chunks"),
            other_table("telemetry_batches"),
        )
        with (
            translate_errors("forget a device"),
            self.engine.connect().execution_options(**WRITE) as conn,
            conn.begin(),
        ):
            mine = sa.and_(SAMPLES.c.app_id == app_id, SAMPLES.c.device_id == device_id)
            keys = set(conn.execute(sa.select(SAMPLES.c.chunk_key).where(mine)).scalars())
            counts = {
                "samples": conn.execute(sa.delete(SAMPLES).where(mine)).rowcount,
                "feedback": delete_device_rows(conn, feedback, app_id, device_id),
                "telemetry_chunks": delete_device_rows(conn, chunks, app_id, device_id),
                "telemetry_batches": delete_device_rows(conn, batches, app_id, device_id),
                "federated_participants": forget_device_rows(conn, app_id, device_id),
            }
            audit_id = audit_row(conn, app_id, "forget_device", device_id, actor, counts)
            still = set(
                conn.execute(
                    sa.select(SAMPLES.c.chunk_key).where(SAMPLES.c.chunk_key.in_(keys))
                ).scalars()
            )
        for key in keys - still:  # after the commit: a chunk no row points to
            self.artifacts.delete(key)
        logger.info("forgot device %s of app %s (%s): %s", device_id, app_id, actor, counts)
        return ForgetReport(device_id, chunks=len(keys - still), audit_id=audit_id, **counts)

    def audit(self, app_id: str, *, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """The newest audit rows of an app (forgotten devices, purges)."""
        with translate_errors("read the sample audit"), self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(AUDIT)
                .where(AUDIT.c.app_id == app_id)
                .order_by(AUDIT.c.id.desc())
                .limit(limit)
            ).all()
        return [
            {
                "id": r.id,
                "action": r.action,
                "device_id": r.device_id,
                "actor": r.actor,
                "detail": dict(r.detail),
                "at": r.at.timestamp(),
            }
            for r in rows
        ]

    def purge_expired(self, now: float) -> int:
        """Delete samples received longer ago than their version's ``retention_days``.

        The server's clock decides (a device's clock may be wrong by years).

        Returns:
            The number of samples deleted.
        """
        with translate_errors("read samples"), self.engine.connect() as conn:
            groups = conn.execute(
                sa.select(SAMPLES.c.app_id, SAMPLES.c.model, SAMPLES.c.version).distinct()
            ).all()
        deleted = 0
        for app_id, model, version in groups:
            try:
                days = self.retention_of(app_id, model, version).retention_days
            except NotFound:
                days = CapturePolicy().retention_days
            where = sa.and_(
                SAMPLES.c.app_id == app_id,
                SAMPLES.c.model == model,
                SAMPLES.c.version == version,
                SAMPLES.c.received_at < when(now - days * 86_400),
            )
            with (
                translate_errors("purge samples"),
                self.engine.connect().execution_options(**WRITE) as conn,
                conn.begin(),
            ):
                keys = set(conn.execute(sa.select(SAMPLES.c.chunk_key).where(where)).scalars())
                n = conn.execute(sa.delete(SAMPLES).where(where)).rowcount
                if n:
                    audit_row(
                        conn, app_id, "purge", None, "retention", {"model": model, "samples": n}
                    )
                still = set(
                    conn.execute(
                        sa.select(SAMPLES.c.chunk_key).where(SAMPLES.c.chunk_key.in_(keys))
                    ).scalars()
                )
            for key in keys - still:
                self.artifacts.delete(key)
            deleted += n
        return deleted
