"""Federated learning on the wire: the check-in announcement, the round signature, the codes.

What the server and every device SDK must agree on for federated tasks
(docs/federated-protocol.md is the prose form):

- ``FEDERATED_ANNOUNCEMENT_FIELDS`` / ``FEDERATED_REQUIRES_FIELDS``: one entry of the
  manifest's optional ``federated`` list (an open task the device is targeted by).
- ``ROUND_SIGNATURE_CONTEXT`` and the two headers: a round document is signed with the
  app's package-signing key over ``ROUND_SIGNATURE_CONTEXT + body``.
- The error codes of federated routes (``FEDERATED_ERRORS``): each class subclasses the
  catalog class of its status, so a client that does not know the code raises that class.
- ``SECAGG_PHASES``, ``LEAVE_REASONS``, ``TASK_ID_PATTERN``.
- ``UPLOAD_CLIPPED_PARAM``: the plain upload's optional query parameter saying whether the
  device clipped its update.
"""

from __future__ import annotations

from pocketml import errors as e
from pocketml.protocol._fields import INT32_MAX, INT64_MAX, WireField

__all__ = [
    "FEDERATED_ANNOUNCEMENT_FIELDS",
    "FEDERATED_ERRORS",
    "FEDERATED_REQUIRES_FIELDS",
    "IDEMPOTENCY_KEY_PATTERN",
    "LEAVE_REASONS",
    "ROUND_SIGNATURE_CONTEXT",
    "ROUND_SIGNATURE_HEADER",
    "ROUND_SIGNATURE_KEY_HEADER",
    "SECAGG_PHASES",
    "TASK_ID_PATTERN",
    "UPLOAD_CLIPPED_PARAM",
    "FlAlreadyReported",
    "FlNormTooLarge",
    "FlNotEligible",
    "FlNotFinite",
    "FlNotSelected",
    "FlRoundClosed",
    "FlSecAggInvalid",
    "FlTaskClosed",
    "FlWrongPhase",
    "FlWrongRound",
    "FlWrongShape",
]

TASK_ID_PATTERN = r"^flt_[0-9a-f]{16}$"
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{8,128}$"
ROUND_SIGNATURE_CONTEXT = b"pocketml-fl-round-v1\x00"
"""Prefix of what a round document's Ed25519 signature covers (then the body's bytes):
it keeps the signature from ever passing for a package or keyring signature."""
UPLOAD_CLIPPED_PARAM = "clipped"
"""Query parameter of the plain-round upload (``PUT .../rounds/{round}/update``):
``true`` | ``false``, whether the update's L2 norm exceeded ``clip_norm`` before the device
clipped it. Adaptive clipping counts it (the uploaded bytes are always within the norm,
so the server cannot measure it); absent, the server's own measurement counts."""
ROUND_SIGNATURE_KEY_HEADER = "Pocketml-Signature-Key"
ROUND_SIGNATURE_HEADER = "Pocketml-Signature"
SECAGG_PHASES: tuple[str, ...] = (
    "selecting",
    "advertise",
    "share",
    "masked_input",
    "unmask",
    "done",
    "failed",
)
LEAVE_REASONS: tuple[str, ...] = (
    "battery_low",
    "wifi_lost",
    "not_idle",
    "timeout",
    "user",
    "error",
)

FEDERATED_REQUIRES_FIELDS: tuple[WireField, ...] = (
    WireField("charging", "boolean", "The device must be charging while it participates."),
    WireField("wifi", "boolean", "The device must be on Wi-Fi (unmetered) while it participates."),
    WireField("idle", "boolean", "The device must be idle (screen off) while it participates."),
    WireField(
        "min_samples",
        "integer",
        "The least number of consented labelled local samples.",
        minimum=1,
        maximum=INT32_MAX,
    ),
)

FEDERATED_ANNOUNCEMENT_FIELDS: tuple[WireField, ...] = (
    WireField("task_id", "string", "The federated task.", pattern=TASK_ID_PATTERN),
    WireField("model", "string", "The model the task trains.", min_length=1, max_length=64),
    WireField(
        "base_version",
        "integer",
        "The version whose package the device must hold (its backbone embeds the samples).",
        minimum=1,
        maximum=INT64_MAX,
    ),
    WireField("round", "integer", "The round now taking joins.", minimum=1, maximum=INT32_MAX),
    WireField("kind", "string", "What is trained on the device.", choices=("head",)),
    WireField("requires", "object", "Conditions to meet while participating (`requires.*`)."),
    WireField("join_url", "string", "Path of the join route.", max_length=200),
    WireField(
        "join_until",
        "number",
        "Unix time after which the round takes no more joins.",
        minimum=0,
        maximum=INT64_MAX,
    ),
)


class FlNotEligible(e.Forbidden):
    """Join refused: a required condition, ``num_samples`` or ``base_version`` fails (403)."""

    code = "fl_not_eligible"


class FlNotSelected(e.Forbidden):
    """The device was not sampled for, or is not in, the round's cohort (403)."""

    code = "fl_not_selected"


class FlRoundClosed(e.Conflict):
    """The round takes no more joins or updates: window or deadline passed, or over (409)."""

    code = "fl_round_closed"


class FlWrongRound(e.Conflict):
    """A round number that is not the task's open round (409)."""

    code = "fl_wrong_round"


class FlTaskClosed(e.Conflict):
    """The task finished, failed or was cancelled (409)."""

    code = "fl_task_closed"


class FlAlreadyReported(e.Conflict):
    """A second, different upload or SecAgg message of a device for one round (409)."""

    code = "fl_already_reported"


class FlWrongPhase(e.Conflict):
    """A SecAgg message outside its phase (409; the message names the phase now)."""

    code = "fl_wrong_phase"


class FlWrongShape(e.ValidationFailed):
    """An update of the wrong length (422, field ``update``)."""

    code = "fl_wrong_shape"


class FlNotFinite(e.ValidationFailed):
    """An update holding NaN or Inf (422, field ``update``)."""

    code = "fl_not_finite"


class FlNormTooLarge(e.ValidationFailed):
    """An update whose L2 norm is above the round's clip norm (422, field ``update``)."""

    code = "fl_norm_too_large"


class FlSecAggInvalid(e.ValidationFailed):
    """A malformed SecAgg message: sizes, recipients, share kinds (422, naming the field)."""

    code = "fl_secagg_invalid"


FEDERATED_ERRORS: tuple[type[e.PocketMLError], ...] = (
    FlNotEligible,
    FlNotSelected,
    FlRoundClosed,
    FlWrongRound,
    FlTaskClosed,
    FlAlreadyReported,
    FlWrongPhase,
    FlWrongShape,
    FlNotFinite,
    FlNormTooLarge,
    FlSecAggInvalid,
)
"""Every error code of the federated routes, each a subclass of its status's catalog class."""
