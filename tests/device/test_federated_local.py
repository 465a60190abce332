"""The device's federated pieces that need no server: consent, examples, the signed round
document, the embedding and the local update (the HTTP flows: test_federated.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pocketml.device import Device
from pocketml.device._federated_round import (
    SIGNATURE_CONTEXT,
    local_update,
    parse_announcements,
    round_seed,
    verify_round_document,
)
from pocketml.device._federated_store import MAX_EXAMPLES_PER_MODEL, FederatedStore
from pocketml.device._types import ProtocolError
from pocketml.errors import IntegrityError, InvalidInput
from pocketml.fl import clip_update, l2_norm, train_head
from pocketml.protect import SigningKey

from .conftest import LINUX

KEY = SigningKey.from_private_bytes(bytes(range(32)))
TRUSTED = {KEY.key_id: KEY.public_bytes()}


def _document(**changes: Any) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.1, size=4 * 3 + 3).astype("<f4").tobytes()
    doc = {
        "task_id": "flt_0123456789abcdef",
        "round": 2,
        "model": "digits",
        "base_version": 1,
        "kind": "head",
        "head": {"embedding_output": "embedding", "dim": 4, "classes": 3},
        "n_values": 15,
        "weights": base64.b64encode(weights).decode(),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "recipe": {"epochs": 2, "batch_size": 4, "learning_rate": 0.5, "l2": 0.0},
        "clip_norm": 0.3,
        "local_noise_std": 0.0,
        "deadline": 2e9,
        "upload": "float32",
        "secagg": None,
    }
    doc.update(changes)
    return doc


def _signed(doc: dict[str, Any], key: SigningKey = KEY) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    signature = base64.b64encode(key.sign(SIGNATURE_CONTEXT + body)).decode()
    return body, {"Pocketml-Signature-Key": key.key_id, "Pocketml-Signature": signature}


def test_a_signed_round_document_verifies_and_decodes_the_head() -> None:
    body, headers = _signed(_document())

    doc = verify_round_document(body, headers, TRUSTED)

    assert (doc.task_id, doc.round, doc.n_values) == ("flt_0123456789abcdef", 2, 15)
    assert doc.head.weights.shape == (4, 3) and doc.head.bias.shape == (3,)


@pytest.mark.parametrize(
    "tamper",
    ["body", "no_signature", "untrusted_key", "package_context"],
)
def test_a_round_document_that_is_not_signed_by_a_trusted_key_is_refused(tamper: str) -> None:
    body, headers = _signed(_document())
    if tamper == "body":
        body = body.replace(b'"clip_norm":0.3', b'"clip_norm":9.0')
    elif tamper == "no_signature":
        del headers["Pocketml-Signature"]
    elif tamper == "untrusted_key":
        body, headers = _signed(_document(), SigningKey.from_private_bytes(bytes(32)))
    else:  # a signature over the bare body (as a package's would be) must not pass
        headers["Pocketml-Signature"] = base64.b64encode(KEY.sign(body)).decode()

    with pytest.raises(IntegrityError):
        verify_round_document(body, headers, TRUSTED)


def test_weights_that_do_not_match_their_signed_sha256_are_refused() -> None:
    body, headers = _signed(_document(weights_sha256="0" * 64))

    with pytest.raises(IntegrityError, match="sha256"):
        verify_round_document(body, headers, TRUSTED)


def test_a_signed_document_with_a_wrong_n_values_is_a_protocol_error() -> None:
    body, headers = _signed(_document(n_values=16))

    with pytest.raises(ProtocolError, match="n_values"):
        verify_round_document(body, headers, TRUSTED)


def test_the_local_update_is_clipped_to_the_rounds_norm_and_reproducible() -> None:
    body, headers = _signed(_document())
    doc = verify_round_document(body, headers, TRUSTED)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4)) * 3, rng.integers(0, 3, size=30)

    first = local_update(doc, x, y, seed=7)
    again = local_update(doc, x, y, seed=7)

    assert first.clipped and first.norm > doc.clip_norm
    assert l2_norm(first.vector) <= doc.clip_norm
    np.testing.assert_array_equal(first.vector, again.vector)


@pytest.mark.parametrize("trained_norm", ["below", "above"])
def test_a_noised_update_is_clipped_again_to_the_rounds_norm(trained_norm: str) -> None:
    # Noise after clipping pushed every update over clip_norm: the server refused each
    # plain upload and FixedPoint.encode each SecAgg one (review H1).
    clip = 0.3 if trained_norm == "above" else 50.0
    body, headers = _signed(_document(local_noise_std=100.0, clip_norm=clip))
    doc = verify_round_document(body, headers, TRUSTED)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4)) * 3, rng.integers(0, 3, size=30)

    update = local_update(doc, x, y, seed=7, noise_rng=np.random.default_rng(2))

    assert l2_norm(update.vector) <= doc.clip_norm
    assert update.clipped is (trained_norm == "above")  # the training's norm, not the noise's
    assert (update.norm > doc.clip_norm) is update.clipped


def test_the_local_noise_is_not_derived_from_what_the_server_knows() -> None:
    # The training seed is round_seed(device_id, task, round): all three are on the wire.
    # A noise drawn from it could be regenerated and subtracted by the server (review H2).
    body, headers = _signed(_document(local_noise_std=0.05, clip_norm=5.0))
    doc = verify_round_document(body, headers, TRUSTED)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4)), rng.integers(0, 3, size=30)
    seed = round_seed("a3f9c2d18e7b4f60", doc.task_id, doc.round)

    first = local_update(doc, x, y, seed=seed)
    second = local_update(doc, x, y, seed=seed)

    exact, _ = clip_update(train_head(doc.head, x, y, doc.recipe, seed=seed), doc.clip_norm)
    guessed = np.random.default_rng(seed).normal(0.0, doc.local_noise_std, exact.shape)
    assert not np.allclose(first.vector - guessed, exact, atol=1e-3)
    assert not np.allclose(first.vector, second.vector)  # a fresh draw each time
    assert first.norm == second.norm  # the training itself stays reproducible


def test_malformed_announcements_are_skipped_and_good_ones_kept() -> None:
    good = {
        "task_id": "flt_0123456789abcdef",
        "model": "digits",
        "base_version": 1,
        "round": 1,
        "kind": "head",
        "requires": {"charging": True, "wifi": True, "idle": False, "min_samples": 4},
        "join_url": "/v1/federated/tasks/flt_0123456789abcdef/join",
        "join_until": 2e9,
    }
    manifest = {"federated": [{**good, "kind": "whole-model"}, {**good, "round": 0}, good, 7]}

    found = parse_announcements(manifest)

    assert [a.task_id for a in found] == ["flt_0123456789abcdef"]
    assert found[0].min_samples == 4 and found[0].requires_charging


def test_federated_consent_is_off_by_default_and_persists(tmp_path: Path) -> None:
    with Device("http://127.0.0.1:9", "pml_dev_x", LINUX, tmp_path) as device:
        assert device.federated_consent is False
        device.add_training_example("digits", np.ones(64), "3")  # ignored: no consent
        assert device.federated.store.count_examples("digits") == 0
        device.set_federated_consent(True)
        device.add_training_example("digits", np.ones(64), "3")

    with Device("http://127.0.0.1:9", "pml_dev_x", LINUX, tmp_path) as device:
        assert device.federated_consent is True
        assert device.federated.store.count_examples("digits") == 1
        assert device.federated_step().reason == "no open task"


def test_withdrawing_consent_deletes_the_examples_and_stops_participation(
    tmp_path: Path,
) -> None:
    with Device("http://127.0.0.1:9", "pml_dev_x", LINUX, tmp_path) as device:
        device.set_federated_consent(True)
        device.add_training_example("digits", np.ones(64), "3")

        device.set_federated_consent(False)

        assert device.federated.store.count_examples("digits") == 0
        assert device.federated_step().reason == "no consent"


def test_bad_examples_are_refused(tmp_path: Path) -> None:
    with Device("http://127.0.0.1:9", "pml_dev_x", LINUX, tmp_path) as device:
        device.set_federated_consent(True)
        with pytest.raises(InvalidInput):
            device.add_training_example("digits", np.array([np.nan, 1.0]), "3")
        with pytest.raises(InvalidInput):
            device.add_training_example("digits", np.ones(4), "")


def test_the_example_store_keeps_the_newest_examples_within_its_bound(tmp_path: Path) -> None:
    store = FederatedStore(tmp_path / "federated.db")
    store.set_consent(True, 0.0)
    for i in range(MAX_EXAMPLES_PER_MODEL + 3):
        store.add_example("digits", np.full(2, float(i)), str(i % 10), float(i))

    x, labels = store.examples("digits")

    assert x.shape == (MAX_EXAMPLES_PER_MODEL, 2)
    assert x[0, 0] == 3.0 and labels[-1] == str((MAX_EXAMPLES_PER_MODEL + 2) % 10)
    store.close()


def test_an_abandoned_round_is_never_brought_back(tmp_path: Path) -> None:
    # A step under way when forget_me ran must not move the round back to ready/uploaded.
    store = FederatedStore(tmp_path / "federated.db")
    store.join(
        "flt_0123456789abcdef",
        "1",
        model="digits",
        secure=False,
        deadline=2e9,
        upload_key="fl.0123456789abcdef",
        round_url="/v1/federated/tasks/flt_0123456789abcdef/rounds/1",
        client_id=1,
        requires={},
        at=0.0,
    )
    store.forget(1.0)

    moved = [
        store.set_stage("flt_0123456789abcdef", "1", "ready", 2.0, payload=b"update"),
        store.set_stage("flt_0123456789abcdef", "1", "uploaded", 3.0),
    ]

    record = store.round("flt_0123456789abcdef", "1")
    assert moved == [False, False]
    assert record is not None
    assert (record.stage, record.payload, record.detail) == ("abandoned", None, "forget_me")
    store.close()


def test_a_store_written_before_the_clipped_flag_opens_and_records_it(tmp_path: Path) -> None:
    # A phone updated mid-round: its federated.db has no `clipped` column yet.
    path = tmp_path / "federated.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE rounds (task_id TEXT NOT NULL, round_id TEXT NOT NULL, "
        "model TEXT NOT NULL, stage TEXT NOT NULL, secure INTEGER NOT NULL, "
        "deadline REAL NOT NULL, upload_key TEXT NOT NULL, round_url TEXT NOT NULL, "
        "client_id INTEGER NOT NULL, requires TEXT NOT NULL, payload BLOB, detail TEXT, "
        "updated_at REAL NOT NULL, PRIMARY KEY (task_id, round_id));"
        "INSERT INTO rounds VALUES ('flt_0123456789abcdef', '1', 'digits', 'ready', 0, 2e9, "
        "'fl.0123456789abcdef', '/v1/federated/tasks/flt_0123456789abcdef/rounds/1', 1, "
        "'{}', x'00', NULL, 0);"
    )
    old.close()
    store = FederatedStore(path)

    resumed = store.round("flt_0123456789abcdef", "1")
    store.join(
        "flt_0123456789abcdef",
        "2",
        model="digits",
        secure=False,
        deadline=2e9,
        upload_key="fl.fedcba9876543210",
        round_url="/v1/federated/tasks/flt_0123456789abcdef/rounds/2",
        client_id=1,
        requires={},
        at=1.0,
    )
    store.set_stage("flt_0123456789abcdef", "2", "ready", 2.0, payload=b"u", clipped=True)

    assert resumed is not None and resumed.payload == b"\x00"
    assert resumed.clipped is None  # unknown: uploaded without the parameter
    fresh = store.round("flt_0123456789abcdef", "2")
    assert fresh is not None and fresh.clipped is True
    store.close()
