"""One federated round on the device, without the network: read, verify, embed, train.

docs/federated-protocol.md is the wire; this module turns its documents into values and
does the local work every client must do the same way (a Kotlin or Swift client mirrors
it step by step):

- ``parse_announcements`` reads the check-in's optional ``federated`` list (an entry that
  does not parse is skipped and logged: a malformed offer never breaks a sync).
- ``verify_round_document`` checks the round document's Ed25519 signature with the app's
  trusted package-signing keys *before* parsing it, then its weights' sha256.
- ``embed`` runs the installed package up to the output the document names
  (``head.embedding_output``): the frozen backbone's embedding of each local sample.
- ``local_update`` trains the head (``pocketml.fl.train_head``), clips the update to the
  round's ``clip_norm``, adds the optional local noise (OS entropy) and clips again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pocketml.device._types import ProtocolError
from pocketml.errors import IntegrityError, InvalidInput, UnsupportedError
from pocketml.fl import Head, LocalRecipe, add_gaussian_noise, clip_update, l2_norm, train_head
from pocketml.protect import verify_signature
from pocketml.protocol import (
    ROUND_SIGNATURE_CONTEXT,
    ROUND_SIGNATURE_HEADER,
    ROUND_SIGNATURE_KEY_HEADER,
    TASK_ID_PATTERN,
)
from pocketml.runtime import Runner

__all__ = [
    "SIGNATURE_CONTEXT",
    "Announcement",
    "LocalUpdate",
    "RoundDocument",
    "embed",
    "local_update",
    "parse_announcements",
    "round_seed",
    "verify_round_document",
]

logger = logging.getLogger(__name__)

# The context prefix of a round document's signature (docs/federated-protocol.md, §3): it
# keeps the signature from ever passing for a package's or a keyring's.
SIGNATURE_CONTEXT = ROUND_SIGNATURE_CONTEXT
_SIGNATURE_HEADER = ROUND_SIGNATURE_HEADER.lower()
_SIGNATURE_KEY_HEADER = ROUND_SIGNATURE_KEY_HEADER.lower()
_TASK_ID = re.compile(TASK_ID_PATTERN)
# A head of more values than this is not a head (and not worth a phone's memory).
MAX_HEAD_VALUES = 4_000_000


@dataclass(frozen=True)
class Announcement:
    """One open task of the check-in answer (``manifest.federated[]``).

    Attributes:
        task_id: the task.
        model: the model whose installed package embeds the samples.
        base_version: the version the device must hold.
        round: the round taking joins.
        requires_charging, requires_wifi, requires_idle: conditions while participating.
        min_samples: the least number of local labelled examples.
        join_url: the join route (a path on the server).
        join_until: unix time after which the round takes no joins.
    """

    task_id: str
    model: str
    base_version: int
    round: int
    requires_charging: bool
    requires_wifi: bool
    requires_idle: bool
    min_samples: int
    join_url: str
    join_until: float


def parse_announcements(manifest: Mapping[str, Any]) -> list[Announcement]:
    """The well-formed entries of ``manifest["federated"]`` (absent: none).

    Entries of another ``kind`` than ``"head"`` (a newer server) or with a bad field are
    skipped with a log line, never raised: the check-in itself must not fail on them.
    """
    offered = manifest.get("federated")
    if not isinstance(offered, list):
        return []
    found = []
    for index, item in enumerate(offered):
        try:
            found.append(_announcement(item))
        except (ProtocolError, KeyError, TypeError, ValueError) as exc:
            logger.warning("federated[%d] of the check-in answer is skipped: %s", index, exc)
    return found


def _announcement(item: Any) -> Announcement:
    if not isinstance(item, Mapping):
        raise ProtocolError("an announcement must be an object")
    if item.get("kind") != "head":
        raise ProtocolError(f"kind {item.get('kind')!r} is not supported (only 'head')")
    task_id = item["task_id"]
    if not isinstance(task_id, str) or not _TASK_ID.match(task_id):
        raise ProtocolError(f"task_id {task_id!r} does not match {_TASK_ID.pattern}")
    requires = item["requires"]
    if not isinstance(requires, Mapping):
        raise ProtocolError("requires must be an object")
    join_url = item["join_url"]
    if not isinstance(join_url, str) or not join_url.startswith("/"):
        raise ProtocolError("join_url must be a path on the server")
    return Announcement(
        task_id=task_id,
        model=_string(item, "model"),
        base_version=_int(item, "base_version", 1),
        round=_int(item, "round", 1),
        requires_charging=bool(requires.get("charging", False)),
        requires_wifi=bool(requires.get("wifi", False)),
        requires_idle=bool(requires.get("idle", False)),
        min_samples=_int(requires, "min_samples", 1),
        join_url=join_url,
        join_until=_number(item, "join_until"),
    )


@dataclass(frozen=True)
class RoundDocument:
    """The verified round document (docs/federated-protocol.md, §3).

    Attributes:
        task_id, round, model, base_version: what the round is.
        embedding_output: the package output that gives the embedding.
        head: the round's global head (``dim x classes`` weights, ``classes`` bias).
        recipe: local SGD settings.
        clip_norm: the L2 bound of the update.
        local_noise_std: Gaussian noise added on the device after clipping (0: none).
        deadline: unix time after which the update is refused.
        secagg: the SecAgg+ parameters (a mapping), or None for a plain round.
    """

    task_id: str
    round: int
    model: str
    base_version: int
    embedding_output: str
    head: Head
    recipe: LocalRecipe
    clip_norm: float
    local_noise_std: float
    deadline: float
    secagg: Mapping[str, Any] | None

    @property
    def n_values(self) -> int:
        """Length of an update: ``dim * classes + classes``."""
        return self.head.size


def verify_round_document(
    body: bytes, headers: Mapping[str, str], trusted_keys: Mapping[str, bytes]
) -> RoundDocument:
    """Check the signature of a round document, then parse it.

    Args:
        body: the exact bytes of the answer.
        headers: its headers (names compared case-insensitively).
        trusted_keys: the app's trusted signing keys, ``{key_id: raw Ed25519 key}`` (the
            keyring the device pinned; revoked keys are not in it).

    Raises:
        IntegrityError: no signature, a key the device does not trust, a signature that
            does not match, or weights whose sha256 differs: do not participate.
        ProtocolError: a signed document with a missing or malformed field.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    key_id, signature = lowered.get(_SIGNATURE_KEY_HEADER), lowered.get(_SIGNATURE_HEADER)
    if not key_id or not signature:
        raise IntegrityError("the round document is not signed; not participating")
    public = trusted_keys.get(key_id)
    if public is None:
        raise IntegrityError(
            f"the round document is signed by {key_id[:40]!r}, which this device does not "
            "trust (unknown or revoked); not participating"
        )
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise IntegrityError("the round document's signature is not base64") from exc
    verify_signature(public, SIGNATURE_CONTEXT + body, raw_signature)
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"the signed round document is not JSON: {exc}") from exc
    if not isinstance(doc, Mapping):
        raise ProtocolError("the round document must be a JSON object")
    try:
        return _document(doc)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, IntegrityError | ProtocolError):
            raise
        raise ProtocolError(f"the round document has a malformed field: {exc}") from exc


def _document(doc: Mapping[str, Any]) -> RoundDocument:
    if doc.get("kind") != "head":
        raise ProtocolError(f"round kind {doc.get('kind')!r} is not supported (only 'head')")
    head = doc["head"]
    dim, classes = _int(head, "dim", 1), _int(head, "classes", 2)
    n_values = dim * classes + classes
    if n_values != _int(doc, "n_values", 1) or n_values > MAX_HEAD_VALUES:
        raise ProtocolError(
            f"n_values must be dim*classes+classes = {n_values} (at most {MAX_HEAD_VALUES})"
        )
    raw = base64.b64decode(_string(doc, "weights", 8 * MAX_HEAD_VALUES), validate=True)
    if hashlib.sha256(raw).hexdigest() != doc.get("weights_sha256"):
        raise IntegrityError("the round's weights do not match their signed sha256")
    if len(raw) != 4 * n_values:
        raise ProtocolError(f"weights must be {4 * n_values} bytes; got {len(raw)}")
    vector = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    if not np.all(np.isfinite(vector)):
        raise ProtocolError("the round's weights are not finite")
    recipe_doc = doc["recipe"]
    secagg = doc.get("secagg")
    upload = doc.get("upload")
    if (upload == "secagg") != isinstance(secagg, Mapping) or upload not in ("float32", "secagg"):
        raise ProtocolError(f"upload {upload!r} and secagg disagree")
    noise = _number(doc, "local_noise_std")
    clip = _number(doc, "clip_norm")
    if noise < 0 or clip <= 0:
        raise ProtocolError("clip_norm must be > 0 and local_noise_std >= 0")
    return RoundDocument(
        task_id=_string(doc, "task_id"),
        round=_int(doc, "round", 1),
        model=_string(doc, "model"),
        base_version=_int(doc, "base_version", 1),
        embedding_output=_string(head, "embedding_output"),
        head=Head.zeros(dim, classes).with_vector(vector),
        recipe=LocalRecipe(
            epochs=_int(recipe_doc, "epochs", 1),
            batch_size=_int(recipe_doc, "batch_size", 1),
            learning_rate=_number(recipe_doc, "learning_rate"),
            l2=_number(recipe_doc, "l2"),
        ),
        clip_norm=clip,
        local_noise_std=noise,
        deadline=_number(doc, "deadline"),
        secagg=secagg if isinstance(secagg, Mapping) else None,
    )


def embed(runner: Runner, output: str, inputs: np.ndarray, *, batch: int = 256) -> np.ndarray:
    """The embeddings of ``inputs`` (already normalized, ``(n, *sample_shape)``).

    The installed package's model must expose the embedding as a graph output named
    ``output`` (a federatable model: docs/federated-device.md). ONNX Runtime computes only
    what that output needs, so the head is not run.

    Raises:
        UnsupportedError: the package is not ONNX or ORT (LiteRT output names are not
            stable across converters; train from the ONNX or ORT variant).
        InvalidInput: the model has no output of that name, or it is not ``(n, d)``.
    """
    if runner.model_format not in ("onnx", "ort"):
        raise UnsupportedError(
            f"federated training reads the embedding from an ONNX or ORT package; this "
            f"device holds a {runner.model_format} package. Give federated devices the "
            "ONNX or ORT variant (DeviceFacts.formats)."
        )
    session = runner.session
    names = [o.name for o in session.get_outputs()]
    if output not in names:
        raise InvalidInput(
            f"the installed model has no output {output!r} (outputs: {names}); the task "
            "needs a federatable version whose model exposes its embedding"
        )
    parts = []
    for start in range(0, inputs.shape[0], batch):
        chunk = np.ascontiguousarray(inputs[start : start + batch], dtype=np.float32)
        parts.append(np.asarray(session.run([output], {runner.input_name: chunk})[0]))
    out = np.concatenate(parts).astype(np.float64)
    if out.ndim != 2 or out.shape[0] != inputs.shape[0]:
        raise InvalidInput(f"the embedding output must be (n, d); got {out.shape}")
    return out


@dataclass(frozen=True)
class LocalUpdate:
    """What local training produced.

    Attributes:
        vector: the update to send, float64, in the head's layout: clipped to the round's
            ``clip_norm`` (with local noise: clipped, noised, clipped again, so its norm
            is always at most ``clip_norm``).
        samples: local examples trained on.
        norm: the update's L2 norm before clipping (and before any noise).
        clipped: whether ``norm`` exceeded ``clip_norm`` (the first clipping shrank it);
            the noise never sets it, so adaptive clipping counts true norms.
    """

    vector: np.ndarray
    samples: int
    norm: float
    clipped: bool


def local_update(
    doc: RoundDocument,
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int,
    noise_rng: np.random.Generator | None = None,
) -> LocalUpdate:
    """Train the round's head on local embeddings; clip; add the local noise; clip again.

    The returned vector's norm is at most ``clip_norm`` whatever the noise.

    Args:
        doc: the verified round document (head, recipe, ``clip_norm``, ``local_noise_std``).
        embeddings, labels: the local examples.
        seed: seeds the training's shuffling only (``round_seed``: reproducible).
        noise_rng: where the local noise comes from; default a generator seeded with 128
            bits of OS entropy (``secrets``), fresh at every call. Never derive it from
            ``seed``: the server knows the device id, task and round, and could subtract
            a noise it can regenerate. Tests pass a seeded generator.

    Raises:
        InvalidInput: shapes disagree with the head (``pocketml.fl.train_head``).
    """
    delta = train_head(doc.head, embeddings, labels, doc.recipe, seed=seed)
    norm = l2_norm(delta)
    clipped, was_clipped = clip_update(delta, doc.clip_norm)
    if doc.local_noise_std > 0:
        rng = noise_rng if noise_rng is not None else _os_entropy_rng()
        noised = add_gaussian_noise(clipped, doc.local_noise_std, rng)
        # Clip again: the server refuses a norm above clip_norm and SecAgg's fixed-point
        # encoding cannot represent one. Clipping is post-processing of the noised
        # update, so the local DP guarantee holds.
        clipped, _ = clip_update(noised, doc.clip_norm)
    return LocalUpdate(clipped, int(labels.shape[0]), norm, was_clipped)


def _os_entropy_rng() -> np.random.Generator:
    """A generator the server cannot reproduce: seeded from the OS's CSPRNG."""
    return np.random.default_rng(secrets.randbits(128))


def label_indices(labels: Sequence[str], classes: Sequence[str], n_classes: int) -> np.ndarray:
    """Map label strings to class indices by the model's labels (or digit strings).

    Raises:
        InvalidInput: a label that is not a class of the model.
    """
    lookup = {name: i for i, name in enumerate(classes)} if classes else {}
    out = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        if label in lookup:
            out[i] = lookup[label]
        elif not lookup and label.isdigit() and int(label) < n_classes:
            out[i] = int(label)
        else:
            raise InvalidInput(
                f"local example label {label!r} is not a class of the model "
                f"({list(classes)[:12]}...)"
            )
    return out


def round_seed(device_id: str, task_id: str, round_number: int) -> int:
    """The seed of a round's local shuffling: the same after a restart, so a recomputed
    update trains on the same batches. Not for the local noise: every input of this seed
    is known to the server (``local_update`` draws the noise from OS entropy)."""
    digest = hashlib.sha256(f"{device_id}|{task_id}|{round_number}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _string(doc: Mapping[str, Any], name: str, longest: int = 256) -> str:
    value = doc[name]
    if not isinstance(value, str) or not 0 < len(value) <= longest:
        raise ProtocolError(f"{name} must be a string of 1 to {longest} characters")
    return value


def _int(doc: Mapping[str, Any], name: str, minimum: int) -> int:
    value = doc[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ProtocolError(f"{name} must be an int >= {minimum}; got {value!r}")
    return value


def _number(doc: Mapping[str, Any], name: str) -> float:
    value = doc[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError(f"{name} must be a finite number; got {value!r}")
    return float(value)
