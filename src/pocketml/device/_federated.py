"""Federated training on the device: ``Device.federated_step()`` (docs/federated-device.md).

Opt-in twice: the app's user consents (``Device.set_federated_consent(True)``, persisted,
off by default) and the app stores labelled examples (``Device.add_training_example``) that
never leave the device. Then, whenever the app's background job runs (the OS says the
phone is charging, on Wi-Fi and idle), it calls ``Device.federated_step()``, which does
at most one round's worth of work and returns a ``FederatedReport``:

1. an update owed from before (a cut connection, an app kill) is sent again, the same
   bytes under the same ``Idempotency-Key`` (the server counts it once); a SecAgg round
   whose keys died with the process is abandoned (a dropout the protocol recovers from);
2. else the last check-in's ``federated`` announcements are read; the first task this
   device is eligible for (it holds ``base_version``, meets ``requires``, has
   ``min_samples`` examples) is joined; the signed round document is fetched and verified
   with the app's package-signing keys; the examples are embedded by the installed
   package's ``head.embedding_output``, the head trained (``pocketml.fl.train_head``,
   numpy), the update clipped (if the round says so: noised from OS entropy and clipped
   again), stored, then uploaded (plain, with its ``clipped`` flag) or masked step by
   step (SecAgg+, ``_federated_secagg``).

It gives up cleanly, telling the server (``leave``), when the deadline passes, the battery
runs low, Wi-Fi is lost, the device is unplugged or in use while the task requires
otherwise, or the user withdraws (``forget_me``, consent off: ``forget`` /
``set_consent``); the round is then ``abandoned`` on disk and never worked on again.
Why not inside ``sync()``: a check-in runs often and must stay fast; training and a
multi-minute SecAgg round belong in the OS's deferrable background window.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pocketml.device._federated_round import (
    Announcement,
    LocalUpdate,
    RoundDocument,
    embed,
    label_indices,
    local_update,
    parse_announcements,
    round_seed,
    verify_round_document,
)
from pocketml.device._federated_secagg import SecAggSession
from pocketml.device._federated_store import FederatedStore, RoundRecord
from pocketml.device._model import _normalization
from pocketml.device._net import DeviceHttp
from pocketml.device._resolve import ModelResolver
from pocketml.device._store import CacheDir
from pocketml.device._types import DeviceState, ProtocolError
from pocketml.errors import IntegrityError, InvalidInput, PocketMLError, Unavailable
from pocketml.protocol import UPLOAD_CLIPPED_PARAM

__all__ = ["FEDERATED_MIN_BATTERY", "FederatedParticipant", "FederatedReport"]

logger = logging.getLogger(__name__)

# Off the charger below this charge, a round is given up whatever the task requires.
FEDERATED_MIN_BATTERY = 0.2

FederatedStatus = Literal[
    "skipped", "not_selected", "waiting", "uploaded", "done", "gave_up", "failed"
]


@dataclass(frozen=True)
class FederatedReport:
    """What one ``federated_step()`` did.

    Attributes:
        status: ``skipped`` (nothing to do or not eligible: see ``reason``),
            ``not_selected`` (the server did not take this device for the round),
            ``waiting`` (a SecAgg round waits for the other devices, or an upload waits
            for the network: call again after ``poll_after_s``), ``uploaded`` (the
            update reached the server), ``done`` (a SecAgg round this device finished
            aggregated), ``gave_up`` (deadline, battery, Wi-Fi, idle, or ``forget_me`` /
            consent withdrawn while a step was under way: see ``reason``) or
            ``failed`` (the round failed or was refused: see ``reason``).
        reason: why, in a few words (``no consent``, ``wifi_lost``, an error code...).
        task_id, round: the round concerned, if any.
        samples: local examples trained on.
        update_norm: the update's L2 norm before clipping.
        clipped: whether the trained update's norm exceeded ``clip_norm`` (the local
            noise never sets it).
        poll_after_s: when to call again (``waiting``).
    """

    status: FederatedStatus
    reason: str | None = None
    task_id: str | None = None
    round: int | None = None
    samples: int = 0
    update_norm: float | None = None
    clipped: bool = False
    poll_after_s: float = 0.0


class FederatedParticipant:
    """The device's federated side; ``Device`` builds one and delegates to it.

    Args:
        store: the federated state on disk (consent, examples, rounds).
        http: the device's HTTP client (device key).
        cache: the device cache (last check-in, active packages).
        resolver: loads the installed package of a model.
        state: the conditions callbacks (network, charging, idle, battery).
        device_id: returns this install's id.
        trusted_keys: ``manifest -> {key_id: raw key}``: the app's trusted signing keys
            (the pinned keyring, followed as in a sync).
        wall_clock: unix seconds (deadlines are wall time; tests pin it).
    """

    def __init__(
        self,
        store: FederatedStore,
        http: DeviceHttp,
        cache: CacheDir,
        resolver: ModelResolver,
        state: DeviceState,
        device_id: Callable[[], str],
        trusted_keys: Callable[[Mapping[str, Any]], Mapping[str, bytes]],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.http = http
        self.cache = cache
        self.resolver = resolver
        self.state = state
        self.device_id = device_id
        self.trusted_keys = trusted_keys
        self.wall_clock = wall_clock
        self._session: tuple[RoundRecord, SecAggSession, LocalUpdate] | None = None
        self._masked_recorded = False  # the session's masked input is recorded on disk

    # -- consent, examples, forgetting -----------------------------------------------------

    def set_consent(self, value: bool) -> int:
        """Store the user's consent. Turning it off deletes the examples and stops every
        round in progress (as ``forget``); turning it on again resumes none of them.
        Returns the examples deleted."""
        if value:
            return self.store.set_consent(True, self.wall_clock())
        return self._stop_rounds("consent withdrawn", lambda at: self.store.set_consent(False, at))

    def forget(self) -> int:
        """``forget_me``'s federated part: delete the examples and stop every round in
        progress. Returns the examples deleted.

        On disk first (one transaction): the examples go, every round owed work becomes
        ``abandoned`` and loses its stored update, and a SecAgg round in memory (its keys,
        its update) is dropped, so no later step sends anything derived from the deleted
        examples. Then each stopped round is left (``POST .../leave``, reason ``user``,
        best effort). A masked input or update the server already acknowledged cannot be
        recalled by the device.
        """
        return self._stop_rounds("forget_me", self.store.forget)

    def _stop_rounds(self, detail: str, wipe: Callable[[float], int]) -> int:
        """Drop the SecAgg session, run ``wipe`` (which abandons the open rounds), mark the
        session's round abandoned too, then leave every stopped round."""
        with self.store.lock:
            session, self._session = self._session, None
            stopped = {(r.task_id, r.round_id): r for r in self.store.open_rounds()}
            at = self.wall_clock()
            deleted = wipe(at)
            if session is not None:  # its round may be "uploaded" (masked input sent)
                record = session[0]
                stopped.setdefault((record.task_id, record.round_id), record)
                self.store.set_stage(
                    record.task_id, record.round_id, "abandoned", at, detail=detail
                )
        for record in stopped.values():
            self._leave(record, "user")
        return deleted

    def add_example(self, model: str, x: Any, label: str) -> None:
        """Store one labelled input for on-device training (nothing without consent).

        Raises:
            InvalidInput: not finite, or an empty label.
        """
        if not self.store.consent():
            return
        tensor = np.asarray(x, dtype=np.float32)
        if not np.all(np.isfinite(tensor)) or tensor.size == 0:
            raise InvalidInput("a training example must be a non-empty, finite array")
        if not isinstance(label, str) or not 0 < len(label) <= 256:
            raise InvalidInput(f"a label must be a non-empty string; got {label!r}")
        self.store.add_example(model, tensor, label, self.wall_clock())

    # -- the step ---------------------------------------------------------------------------

    def step(self) -> FederatedReport:
        """Do the next piece of federated work (see the module docstring); never raises
        for the network or the server's refusals: they are in the report."""
        if not self.store.consent():
            if self._session is not None:  # withdrawn through another handle on the store
                self._give_up(self._session[0], "user", "consent withdrawn")
            return FederatedReport("skipped", "no consent")
        if self._session is not None:
            return self._advance_secagg()
        for record in self.store.open_rounds():
            report = self._resume(record)
            if report is not None:
                return report
        _, manifest = self.cache.last_checkin()
        announcements = parse_announcements(manifest or {})
        if not announcements:
            return FederatedReport("skipped", "no open task")
        reason = "no open task"
        for announcement in announcements:
            if self.store.round(announcement.task_id, str(announcement.round)) is not None:
                reason = "round already joined"
                continue
            problem = self._ineligible(announcement)
            if problem is None:
                return self._join(announcement, manifest or {})
            reason = problem
        return FederatedReport("skipped", reason)

    def _ineligible(self, ann: Announcement) -> str | None:
        held = self.cache.active().get(ann.model, {})
        if held.get("version") != ann.base_version:
            return f"does not hold {ann.model} v{ann.base_version}"
        if ann.join_until < self.wall_clock():
            return "joins closed"
        lost = self._lost_condition(
            {
                "charging": ann.requires_charging,
                "wifi": ann.requires_wifi,
                "idle": ann.requires_idle,
            }
        )
        if lost is not None:
            return lost
        have = self.store.count_examples(ann.model)
        if have < ann.min_samples:
            return f"too few samples ({have} < {ann.min_samples})"
        return None

    def _lost_condition(self, requires: Mapping[str, bool]) -> str | None:
        """The leave reason of a condition that does not hold now, or None."""
        charging = bool(self.state.is_charging())
        if requires.get("wifi") and self.state.network_type() != "wifi":
            return "wifi_lost"
        if requires.get("charging") and not charging:
            return "battery_low"
        level = self.state.battery_level()
        if not charging and level is not None and level < FEDERATED_MIN_BATTERY:
            return "battery_low"
        if requires.get("idle") and not self.state.is_idle():
            return "not_idle"
        return None

    def _join(self, ann: Announcement, manifest: Mapping[str, Any]) -> FederatedReport:
        body = {
            "device_id": self.device_id(),
            "round": ann.round,
            "conditions": {
                "charging": bool(self.state.is_charging()),
                "wifi": self.state.network_type() == "wifi",
                "idle": bool(self.state.is_idle()),
            },
            "num_samples": self.store.count_examples(ann.model),
            "base_version": ann.base_version,
        }
        try:
            answer = self.http.request("POST", ann.join_url, json=body).json()
        except Unavailable as exc:
            return FederatedReport("waiting", f"network: {exc}", ann.task_id, ann.round)
        except PocketMLError as exc:  # 403 not eligible/selected, 409 closed, 404
            if exc.code != "fl_not_eligible":  # the others do not change within the round
                self.store.refuse(
                    ann.task_id, str(ann.round), ann.model, exc.code, self.wall_clock()
                )
            return FederatedReport("not_selected", exc.code, ann.task_id, ann.round)
        try:
            client_id = int(answer["client_id"])
            round_url = str(answer["round_url"])
            deadline = float(answer["deadline"])
            secure = bool(answer["secagg"])
        except (KeyError, TypeError, ValueError) as exc:
            return FederatedReport(
                "failed", f"join answer malformed: {exc}", ann.task_id, ann.round
            )
        record = self.store.join(
            ann.task_id,
            str(ann.round),
            model=ann.model,
            secure=secure,
            deadline=deadline,
            upload_key=f"fl.{secrets.token_hex(16)}",
            round_url=round_url,
            client_id=client_id,
            requires={
                "charging": ann.requires_charging,
                "wifi": ann.requires_wifi,
                "idle": ann.requires_idle,
            },
            at=self.wall_clock(),
        )
        return self._work(record, manifest)

    def _resume(self, record: RoundRecord) -> FederatedReport | None:
        """Work left from an earlier step or process; None when the record needs none."""
        if self.wall_clock() > record.deadline:
            return self._give_up(record, "timeout")
        if record.secure:  # its keys lived in the process that was killed
            return self._give_up(record, "error", "restarted mid-round (SecAgg keys lost)")
        if record.stage == "ready" and record.payload is not None:
            return self._upload(record, record.payload, None, record.clipped)
        _, manifest = self.cache.last_checkin()
        return self._work(record, manifest or {})

    def _work(self, record: RoundRecord, manifest: Mapping[str, Any]) -> FederatedReport:
        task, number = record.task_id, int(record.round_id)
        lost = self._lost_condition(record.requires)
        if lost is not None:
            return self._give_up(record, lost)
        try:
            doc = self._document(record, manifest)
            update = self._train(record.model, doc, number)
        except Unavailable as exc:
            return FederatedReport("waiting", f"network: {exc}", task, number, poll_after_s=2.0)
        except PocketMLError as exc:
            logger.warning("federated round %s/%s refused: %s", task, number, exc)
            return self._give_up(record, "error", f"{exc.code}: {exc}", status="failed")
        lost = self._lost_condition(record.requires)  # training took a while: ask again
        if lost is not None or self.wall_clock() > record.deadline:
            return self._give_up(record, lost or "timeout")
        if record.secure:
            session = SecAggSession(
                self.http,
                record.round_url,
                self.device_id(),
                record.client_id,
                doc,
                update.vector,
                record.upload_key,
            )
            self._session = (record, session, update)
            self._masked_recorded = False
            return self._advance_secagg()
        payload = update.vector.astype("<f4").tobytes()
        # The flag is not noised: with local noise it would tell the server a bit the
        # local DP guarantee does not cover, so such a round sends none (the server then
        # measures the update it received, as for an SDK that predates the flag).
        flag = None if doc.local_noise_std > 0 else update.clipped
        if not self.store.set_stage(
            task,
            record.round_id,
            "ready",
            self.wall_clock(),
            payload=payload,
            clipped=flag,
        ):  # forget_me or consent withdrawn while it trained: nothing is sent
            return self._stopped(record)
        return self._upload(record, payload, update, flag)

    def _document(self, record: RoundRecord, manifest: Mapping[str, Any]) -> RoundDocument:
        response = self.http.request(
            "GET", record.round_url, params={"device_id": self.device_id()}
        )
        doc = verify_round_document(response.content, response.headers, self.trusted_keys(manifest))
        held = self.cache.active().get(record.model, {})
        if (doc.task_id, str(doc.round), doc.model) != (
            record.task_id,
            record.round_id,
            record.model,
        ) or held.get("version") != doc.base_version:
            raise IntegrityError(
                "the round document is for another task, round, model or version than the "
                "one joined; not participating"
            )
        if (doc.secagg is not None) != record.secure:
            raise ProtocolError("the round document and the join answer disagree on secagg")
        return doc

    def _train(self, model: str, doc: RoundDocument, number: int) -> LocalUpdate:
        resolved = self.resolver.resolve(model)
        if resolved.local is None or resolved.schema is None:
            raise InvalidInput(f"{model} has no loadable local package to embed with")
        raw, labels = self.store.examples(model)
        schema = resolved.schema
        x = raw.reshape((raw.shape[0], *schema.input.sample_shape))
        scale, shift = _normalization(schema)
        if scale is not None:
            x = x * scale + (0 if shift is None else shift)
        embeddings = embed(resolved.local.runner, doc.embedding_output, x)
        classes = schema.labels
        y = label_indices(labels, classes, doc.head.bias.shape[0])
        seed = round_seed(self.device_id(), doc.task_id, number)
        return local_update(doc, embeddings, y, seed=seed)

    def _upload(
        self,
        record: RoundRecord,
        payload: bytes,
        update: LocalUpdate | None,
        clipped: bool | None,
    ) -> FederatedReport:
        """PUT the stored update with its ``clipped`` flag, stored with it (None: not sent).

        Adaptive clipping counts the flag: the server cannot tell whether an update it
        receives already clipped was clipped.
        """
        samples = update.samples if update else self.store.count_examples(record.model)
        params: dict[str, str | int] = {
            "device_id": self.device_id(),
            "num_samples": max(samples, 1),
        }
        if clipped is not None:
            params[UPLOAD_CLIPPED_PARAM] = "true" if clipped else "false"
        try:
            self.http.request(
                "PUT",
                f"{record.round_url}/update",
                params=params,
                content=payload,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Idempotency-Key": record.upload_key,
                },
            )
        except Unavailable as exc:  # kept as "ready": the next step sends the same bytes
            return _report("waiting", f"network: {exc}", record, update, poll_after_s=2.0)
        except PocketMLError as exc:
            self.store.set_stage(
                record.task_id, record.round_id, "abandoned", self.wall_clock(), detail=exc.code
            )
            return _report("failed", exc.code, record, update)
        self.store.set_stage(record.task_id, record.round_id, "uploaded", self.wall_clock())
        return _report("uploaded", None, record, update)

    def _advance_secagg(self) -> FederatedReport:
        assert self._session is not None
        record, session, update = self._session
        current = self.store.round(record.task_id, record.round_id)
        if current is None or current.stage == "abandoned":  # forget_me, consent off
            return self._stopped(record)
        if not self.store.consent():
            return self._give_up(record, "user", "consent withdrawn")
        if self.wall_clock() > record.deadline:
            return self._give_up(record, "timeout")
        lost = self._lost_condition(record.requires)
        if lost is not None:
            return self._give_up(record, lost)
        try:
            progress = session.advance()
        except Unavailable as exc:
            return _report("waiting", f"network: {exc}", record, update, poll_after_s=2.0)
        except PocketMLError as exc:
            return self._give_up(record, "error", f"{exc.code}: {exc}", status="failed")
        if "masked_input" in session.sent and not self._masked_recorded:
            self.store.set_stage(record.task_id, record.round_id, "uploaded", self.wall_clock())
            self._masked_recorded = True
        if progress.outcome == "waiting":
            return _report(
                "waiting",
                f"secagg {progress.phase}",
                record,
                update,
                poll_after_s=progress.poll_after_s,
            )
        self._session = None
        if progress.outcome == "done":
            return _report("done", None, record, update)
        return self._give_up(record, "error", progress.detail, status="failed")

    def _give_up(
        self,
        record: RoundRecord,
        reason: str,
        detail: str | None = None,
        *,
        status: FederatedStatus = "gave_up",
    ) -> FederatedReport:
        """Stop working on ``record`` for good: on disk first, then tell the server."""
        if self._session is not None and self._session[0].task_id == record.task_id:
            self._session = None
        current = self.store.round(record.task_id, record.round_id)
        if current is not None and current.stage in ("joined", "ready"):
            self.store.set_stage(
                record.task_id,
                record.round_id,
                "abandoned",
                self.wall_clock(),
                detail=detail or reason,
            )
        self._leave(record, reason)
        return FederatedReport(status, detail or reason, record.task_id, int(record.round_id))

    def _stopped(self, record: RoundRecord) -> FederatedReport:
        """The report of a round ``_stop_rounds`` ended (and left) while a step was under
        way: the step sends nothing more."""
        if self._session is not None and self._session[0] is record:
            self._session = None
        current = self.store.round(record.task_id, record.round_id)
        detail = current.detail if current is not None and current.detail else "abandoned"
        return FederatedReport("gave_up", detail, record.task_id, int(record.round_id))

    def _leave(self, record: RoundRecord, reason: str) -> None:
        try:  # polite, optional: the server stops waiting for this device
            self.http.request(
                "POST",
                f"{record.round_url}/leave",
                json={"device_id": self.device_id(), "reason": reason},
            )
        except PocketMLError as exc:
            logger.info("leave not delivered (harmless): %s", exc)


def _report(
    status: FederatedStatus,
    reason: str | None,
    record: RoundRecord,
    update: LocalUpdate | None,
    *,
    poll_after_s: float = 0.0,
) -> FederatedReport:
    return FederatedReport(
        status,
        reason,
        record.task_id,
        int(record.round_id),
        samples=update.samples if update else 0,
        update_norm=update.norm if update else None,
        clipped=update.clipped if update else False,
        poll_after_s=poll_after_s,
    )
