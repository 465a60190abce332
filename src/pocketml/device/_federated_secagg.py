"""A device's SecAgg+ round over HTTP: one ``SecAggSession`` per round, advanced by polls.

The protocol (docs/federated.md, "SecAgg+") needs every selected client to finish a phase
before the next one starts, so a device cannot run it start to end in one call: it polls
the round's state route and does the step of the phase it finds (docs/federated-protocol.md,
§5). ``advance`` is one poll and at most one step; the caller (``_federated``) calls it
again after ``poll_after_s``. The session holds the round's private keys in memory only: an
app killed mid-round cannot resume it and simply becomes a dropout, which the protocol
recovers from (the state on disk records the round as abandoned, so it is never joined
again).

Nothing the server sends is trusted beyond what the protocol allows: the cohort's
parameters from the (unsigned) state route must equal the signed round document's, and
``pocketml.fl.SecAggClient`` refuses steps out of order, too few neighbours, shares that do
not decrypt, and a second unmask request.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pocketml.device._federated_round import RoundDocument
from pocketml.device._net import DeviceHttp
from pocketml.device._types import ProtocolError
from pocketml.fl import (
    SHARE_BYTES,
    FixedPoint,
    KeyAdvertisement,
    SecAggClient,
    SecAggConfig,
    UnmaskResponse,
)
from pocketml.protocol import FlRoundClosed

__all__ = ["SecAggProgress", "SecAggSession"]

SecAggOutcome = Literal["waiting", "done", "failed", "out"]
_STEPS = ("advertise", "share", "masked_input", "unmask")


@dataclass(frozen=True)
class SecAggProgress:
    """What one poll found and did.

    Attributes:
        outcome: ``waiting`` (poll again after ``poll_after_s``), ``done`` (the round
            aggregated), ``failed`` (the round failed safely) or ``out`` (this device
            missed a phase and is no longer part of the round).
        phase: the round's phase at the poll.
        sent: the step this poll sent (None when it only looked).
        poll_after_s: when to poll next.
        detail: why the device is out, or the server's reason.
    """

    outcome: SecAggOutcome
    phase: str
    sent: str | None = None
    poll_after_s: float = 2.0
    detail: str | None = None


class SecAggSession:
    """The device's side of one SecAgg+ round.

    Args:
        http: the device's HTTP client.
        round_url: the round's path (``/v1/federated/tasks/{task}/rounds/{round}``).
        device_id: this install's id.
        client_id: the device's number in the round (from the join answer).
        document: the verified round document (its ``secagg`` block is the reference).
        update: the clipped float update to mask.
        upload_key: the ``Idempotency-Key`` of the masked upload.
    """

    def __init__(
        self,
        http: DeviceHttp,
        round_url: str,
        device_id: str,
        client_id: int,
        document: RoundDocument,
        update: np.ndarray,
        upload_key: str,
    ) -> None:
        self.http = http
        self.round_url = round_url
        self.device_id = device_id
        self.client_id = client_id
        self.document = document
        self.update = update
        self.upload_key = upload_key
        self.client: SecAggClient | None = None
        self.sent: set[str] = set()
        self._messages: dict[str, dict[str, Any] | bytes] = {}
        self._unconfirmed: set[str] = set()  # counted as sent without proof (lost answers)

    def advance(self) -> SecAggProgress:
        """Poll the round's state once and send the step its phase asks for (if not sent).

        Raises:
            Unavailable: the network or server failed (retry later: every step is
                idempotent on the server).
            PocketMLError: the server refused a step (403/409/422): stop the round.
            ProtocolError: the state disagrees with the signed round document.
        """
        state = self.http.request(
            "GET", f"{self.round_url}/secagg", params={"device_id": self.device_id}
        ).json()
        if not isinstance(state, Mapping):
            raise ProtocolError("the SecAgg state must be a JSON object")
        phase = str(state.get("phase"))
        poll = _poll_after(state)
        if phase == "done":
            return SecAggProgress("done", phase, poll_after_s=poll)
        if phase == "failed":
            return SecAggProgress("failed", phase, poll_after_s=poll, detail="secagg_aborted")
        if phase not in _STEPS:  # "selecting" or a phase a newer server added
            return SecAggProgress("waiting", phase, poll_after_s=poll)
        self._confirm_delivered(state, phase)
        if phase in self.sent:
            return SecAggProgress("waiting", phase, poll_after_s=poll)
        missed = [step for step in _STEPS[: _STEPS.index(phase)] if step not in self.sent]
        if missed:
            return SecAggProgress(
                "out", phase, poll_after_s=poll, detail=f"missed the {missed[0]} phase"
            )
        # A step's message is computed once and kept: when its answer is lost, the next
        # poll sends the same bytes again (the server answers "duplicate"), never a
        # second, different message (which it would refuse, and SecAggClient forbids).
        if phase not in self._messages:
            self._messages[phase] = getattr(self, f"_{phase}")(state)
        try:
            self._send(phase, self._messages[phase])
        except FlRoundClosed as exc:
            if phase == "masked_input" and "share" in self._unconfirmed:
                # the server's answer to "did my shares arrive?": they did not
                return SecAggProgress(
                    "out", phase, poll_after_s=poll, detail=f"missed the share phase ({exc})"
                )
            raise
        self.sent.add(phase)
        return SecAggProgress("waiting", phase, sent=phase, poll_after_s=poll)

    def _confirm_delivered(self, state: Mapping[str, Any], phase: str) -> None:
        """Count a step whose answer was lost as sent when the state shows it arrived.

        The roster lists this device once its keys arrived; the survivors list it once its
        masked input arrived. Without this, a lost answer followed by a phase change would
        put a device out of a round it is part of.

        The shares are the exception: nothing in the state shows that they arrived (the
        inbox holds the shares sent *to* this device, and no device shares with itself).
        So in the masked_input phase, shares sent whose answer was lost count as sent,
        unconfirmed: the masked input goes out, and the server refuses it
        (``fl_round_closed``: "did not share keys") exactly when they did not arrive.
        Trying is safe: a masked input whose self-mask nobody holds shares of reveals
        nothing, and the server does not store it.
        """
        roster, survivors = state.get("roster"), state.get("survivors")
        arrived = set()
        if isinstance(roster, Mapping) and str(self.client_id) in roster:
            arrived.add("advertise")
        if isinstance(survivors, list) and self.client_id in survivors:
            arrived.add("masked_input")
        if phase == "masked_input" and "share" not in self.sent:
            arrived.add("share")
            self._unconfirmed |= {"share"} & set(self._messages)
        self.sent |= arrived & set(self._messages)

    def _send(self, phase: str, message: dict[str, Any] | bytes) -> None:
        if isinstance(message, bytes):
            self.http.request(
                "PUT",
                f"{self.round_url}/update",
                params={"device_id": self.device_id, "num_samples": 1},
                content=message,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Idempotency-Key": self.upload_key,
                },
            )
            return
        route = {"advertise": "keys", "share": "shares", "unmask": "unmask"}[phase]
        self.http.request(
            "POST",
            f"{self.round_url}/secagg/{route}",
            json={"device_id": self.device_id, **message},
        )

    # -- the four steps: each returns its message ---------------------------------------------

    def _advertise(self, state: Mapping[str, Any]) -> dict[str, Any]:
        self.client = SecAggClient(self.client_id, self._config(state.get("config")))
        advert = self.client.advertise_keys()
        return {
            "cipher_public": _b64(advert.cipher_public),
            "mask_public": _b64(advert.mask_public),
            "seed_commitment": _b64(advert.seed_commitment),
        }

    def _share(self, state: Mapping[str, Any]) -> dict[str, Any]:
        assert self.client is not None
        roster = _mapping(state, "roster")
        adverts = {}
        for key, item in roster.items():
            owner = _client_id(key)
            if not isinstance(item, Mapping):
                raise ProtocolError("a roster entry must be an object")
            adverts[owner] = KeyAdvertisement(
                owner,
                _unb64(item.get("cipher_public"), 32),
                _unb64(item.get("mask_public"), 32),
                _unb64(item.get("seed_commitment"), 32),
            )
        shares = self.client.share_keys(adverts)
        return {"shares": {str(v): _b64(c) for v, c in shares.items()}}

    def _masked_input(self, state: Mapping[str, Any]) -> bytes:
        assert self.client is not None
        inbox = {_client_id(k): _unb64(v, None) for k, v in _mapping(state, "inbox").items()}
        encoding = self.client.config.encoding
        masked = self.client.mask_update(encoding.encode(self.update), inbox)
        return masked.to_bytes(encoding)

    def _unmask(self, state: Mapping[str, Any]) -> dict[str, Any]:
        assert self.client is not None
        survivors = _ids(state.get("survivors"), "survivors")
        dropped = _ids(state.get("dropped"), "dropped")
        return _unmask_body(self.client.unmask(survivors, dropped))

    # -- helpers ----------------------------------------------------------------------------

    def _config(self, config: Any) -> SecAggConfig:
        """The round's SecAggConfig, after checking the state's copy of every signed value."""
        if not isinstance(config, Mapping):
            raise ProtocolError("the SecAgg state of the advertise phase lacks 'config'")
        signed = self.document.secagg or {}
        for name in ("bits", "max_clients", "neighbours", "graph_seed", "secagg_round_id"):
            if config.get(name) != signed.get(name):
                raise ProtocolError(
                    f"the SecAgg state's {name} {config.get(name)!r} differs from the signed "
                    f"round document's {signed.get(name)!r}; not participating"
                )
        if config.get("n_values") != self.document.n_values or not np.isclose(
            float(config.get("clip_norm", -1)), self.document.clip_norm
        ):
            raise ProtocolError("the SecAgg state's n_values or clip_norm differ from the round's")
        ids = config.get("client_ids")
        if not isinstance(ids, list) or self.client_id not in ids:
            raise ProtocolError("the SecAgg cohort does not include this device's client_id")
        return SecAggConfig(
            round_id=str(config["secagg_round_id"]),
            client_ids=tuple(int(i) for i in ids),
            threshold=int(config["threshold"]),
            encoding=FixedPoint(
                bits=int(config["bits"]),
                clip_norm=self.document.clip_norm,
                max_clients=int(config["max_clients"]),
            ),
            n_values=self.document.n_values,
            neighbours=None if config.get("neighbours") is None else int(config["neighbours"]),
            graph_seed=_unb64(config.get("graph_seed"), None),
        )


def _unmask_body(response: UnmaskResponse) -> dict[str, Any]:
    def encode(shares: Mapping[int, Any]) -> dict[str, str]:
        return {str(owner): _b64(s.y.to_bytes(SHARE_BYTES, "big")) for owner, s in shares.items()}

    return {
        "self_mask_shares": encode(response.self_mask_shares),
        "mask_key_shares": encode(response.mask_key_shares),
    }


def _poll_after(state: Mapping[str, Any]) -> float:
    value = state.get("poll_after_s", 2.0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 2.0
    return float(min(max(value, 0.0), 60.0))


def _mapping(state: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = state.get(name)
    if not isinstance(value, Mapping):
        raise ProtocolError(f"the SecAgg state of this phase lacks {name!r}")
    return value


def _client_id(key: Any) -> int:
    try:
        value = int(key)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"client id {key!r} is not an int") from exc
    if not 1 <= value < 2**32:
        raise ProtocolError(f"client id {value} is outside [1, 2^32)")
    return value


def _ids(value: Any, name: str) -> list[int]:
    if not isinstance(value, list):
        raise ProtocolError(f"the SecAgg state of the unmask phase lacks {name!r}")
    return [_client_id(v) for v in value]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: Any, size: int | None) -> bytes:
    if not isinstance(text, str):
        raise ProtocolError("a binary field must be a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError("a binary field is not valid base64") from exc
    if size is not None and len(raw) != size:
        raise ProtocolError(f"a key or commitment must be {size} bytes; got {len(raw)}")
    return raw
