"""Keyring documents and the rule a device applies to an offered keyring (accept_keyring)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from pocketml.protect import (
    Keyring,
    KeyringInvalid,
    KeyringStale,
    SigningKey,
    accept_keyring,
    follow_keyrings,
)
from pocketml.protect.keyring import KEYRING_CONTEXT, MAX_CHAIN

APP = "app_keyring"


def _key(seed: int) -> SigningKey:
    return SigningKey.from_private_bytes(bytes([seed]) * 32)


A, B, C, D = _key(1), _key(2), _key(3), _key(4)


def ring(
    sequence: int,
    keys: tuple[SigningKey, ...],
    active: SigningKey,
    *,
    revoked: tuple[SigningKey, ...] = (),
    app_id: str = APP,
) -> Keyring:
    return Keyring(
        app_id=app_id,
        sequence=sequence,
        issued_at="2026-12-04T18:00:00Z",
        active=active.key_id,
        keys={k.key_id: k.public_bytes() for k in keys},
        revoked=tuple(k.key_id for k in revoked),
    )


def edited(keyring: Keyring, **changes: Any) -> dict[str, Any]:
    data = keyring.to_dict()
    data.update(changes)
    return data


FIRST = ring(1, (A,), A).signed_by(A)
ROTATED = ring(2, (A, B), B).signed_by(A, B)  # what the server issues on rotation
REVOKED = ring(3, (B,), B, revoked=(A,)).signed_by(B)  # ... and on revoking A


class TestDocument:
    def test_a_keyring_round_trips_through_its_canonical_json(self) -> None:
        assert Keyring.from_json(ROTATED.to_json()) == ROTATED

    def test_the_json_form_has_sorted_keys_and_no_spaces(self) -> None:
        raw = ROTATED.to_json()
        assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()

    def test_signatures_cover_the_context_prefix_and_the_document(self) -> None:
        signed = ROTATED.signed_bytes()
        assert signed.startswith(KEYRING_CONTEXT)
        assert json.loads(signed[len(KEYRING_CONTEXT) :]) == ROTATED.document()

    def test_valid_signers_are_the_keys_that_signed(self) -> None:
        assert ROTATED.valid_signers() == {A.key_id, B.key_id}

    def test_trusted_keys_are_the_keys_and_never_a_revoked_one(self) -> None:
        assert REVOKED.trusted_keys() == {B.key_id: B.public_bytes()}

    def test_a_key_outside_the_keyring_cannot_sign_it(self) -> None:
        with pytest.raises(KeyringInvalid, match="not one of its keys"):
            ring(1, (A,), A).signed_by(C)

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"sequence": 0}, "sequence"),
            ({"sequence": True}, "sequence"),
            ({"sequence": 2**63}, "sequence"),
            ({"app_id": "x" * 65}, "app_id"),
            ({"active": "ed25519:0000000000000000"}, "active key"),
            ({"revoked": [A.key_id]}, "revoked and trusted"),
            ({"revoked": "all"}, "list of key ids"),
            ({"keys": {"rsa:1": base64.b64encode(A.public_bytes()).decode()}}, "key ids like"),
            ({"keys": []}, "must be objects"),
            ({"extra": 1}, "exactly the fields"),
        ],
    )
    def test_a_malformed_field_is_refused(self, changes: dict[str, Any], message: str) -> None:
        with pytest.raises(KeyringInvalid, match=message):
            Keyring.from_dict(edited(FIRST, **changes))

    def test_a_missing_field_is_refused(self) -> None:
        data = FIRST.to_dict()
        del data["signatures"]
        with pytest.raises(KeyringInvalid, match="exactly the fields"):
            Keyring.from_dict(data)

    @pytest.mark.parametrize("bad", ["not base64!", "AAAA", 17, "A" * 10_000])
    def test_malformed_base64_is_refused(self, bad: Any) -> None:
        with pytest.raises(KeyringInvalid, match="base64 of 32 bytes"):
            Keyring.from_dict(edited(FIRST, keys={A.key_id: bad}))

    def test_a_key_whose_id_does_not_match_its_bytes_is_refused(self) -> None:
        forged = {A.key_id: base64.b64encode(C.public_bytes()).decode()}
        with pytest.raises(KeyringInvalid, match="does not match its bytes"):
            Keyring.from_dict(edited(FIRST, keys=forged))

    def test_text_that_is_not_json_is_refused(self) -> None:
        with pytest.raises(KeyringInvalid, match="must be JSON"):
            Keyring.from_json(b"{not json")


class TestAccept:
    def test_a_fresh_install_trusts_a_self_signed_keyring_on_first_use(self) -> None:
        assert accept_keyring(None, FIRST.to_dict(), app_id=APP) == FIRST

    def test_a_rotation_signed_by_the_pinned_key_is_followed(self) -> None:
        assert accept_keyring(FIRST, ROTATED.to_dict(), app_id=APP) == ROTATED

    def test_a_revocation_signed_by_a_key_still_trusted_is_followed(self) -> None:
        assert accept_keyring(ROTATED, REVOKED.to_dict(), app_id=APP) == REVOKED

    def test_a_device_still_trusting_a_kept_key_jumps_forward(self) -> None:
        later = ring(3, (A, B, C), C).signed_by(A, B, C)  # the server signs with every kept key
        assert accept_keyring(FIRST, later.to_dict(), app_id=APP) == later

    def test_bare_shipped_keys_act_as_sequence_zero(self) -> None:
        shipped = {A.key_id: A.public_bytes()}
        assert accept_keyring(shipped, ROTATED.to_dict(), app_id=APP) == ROTATED

    def test_the_same_keyring_again_keeps_the_pin(self) -> None:
        assert accept_keyring(ROTATED, ROTATED.to_dict(), app_id=APP) is ROTATED

    def test_an_older_keyring_is_stale(self) -> None:
        with pytest.raises(KeyringStale, match="not newer"):
            accept_keyring(REVOKED, ROTATED.to_dict(), app_id=APP)

    def test_an_equal_sequence_with_other_content_is_stale(self) -> None:
        other = ring(2, (A, C), C).signed_by(A, C)
        with pytest.raises(KeyringStale):
            accept_keyring(ROTATED, other.to_dict(), app_id=APP)

    def test_a_tampered_document_is_refused(self) -> None:
        tampered = edited(ROTATED, sequence=9)
        with pytest.raises(KeyringInvalid, match="does not verify"):
            accept_keyring(FIRST, tampered, app_id=APP)

    def test_a_keyring_signed_only_by_an_unknown_key_is_refused(self) -> None:
        takeover = ring(2, (C,), C).signed_by(C)
        with pytest.raises(KeyringInvalid, match="none of which this device trusts"):
            accept_keyring(FIRST, takeover.to_dict(), app_id=APP)

    def test_a_key_cannot_endorse_a_keyring_that_drops_it(self) -> None:
        # B is trusted now, but once it leaves the keys its signature endorses nothing.
        bye = ring(3, (C,), C, revoked=(A,)).signed_by(C)
        with_b = {**bye.to_dict()}
        with_b["signatures"] = {
            **with_b["signatures"],
            B.key_id: base64.b64encode(B.sign(bye.signed_bytes())).decode(),
        }
        with pytest.raises(KeyringInvalid, match="not one of its keys"):
            accept_keyring(ROTATED, with_b, app_id=APP)

    def test_a_signature_by_a_revoked_key_endorses_nothing(self) -> None:
        # A was revoked in REVOKED; a later keyring signed only by A (still listed) is refused.
        back = ring(4, (A, C), C).signed_by(A, C)
        with pytest.raises(KeyringInvalid, match="none of which this device trusts"):
            accept_keyring(REVOKED, back.to_dict(), app_id=APP)

    def test_a_revoked_key_never_comes_back(self) -> None:
        back = ring(4, (A, B), B).signed_by(B)
        with pytest.raises(KeyringInvalid, match="revoked"):
            accept_keyring(REVOKED, back.to_dict(), app_id=APP)

    def test_a_keyring_not_signed_by_its_active_key_is_refused(self) -> None:
        unproven = ring(2, (A, D), D).signed_by(A)
        with pytest.raises(KeyringInvalid, match="not signed by its active key"):
            accept_keyring(FIRST, unproven.to_dict(), app_id=APP)

    def test_a_keyring_of_another_app_is_refused(self) -> None:
        other = ring(2, (A, B), B, app_id="app_other").signed_by(A, B)
        with pytest.raises(KeyringInvalid, match="is for app"):
            accept_keyring(FIRST, other.to_dict(), app_id=APP)

    def test_a_first_keyring_with_a_bad_signature_is_refused_on_first_use(self) -> None:
        data = FIRST.to_dict()
        data["signatures"] = {A.key_id: base64.b64encode(b"\0" * 64).decode()}
        with pytest.raises(KeyringInvalid, match="does not verify"):
            accept_keyring(None, data, app_id=APP)


class TestChain:
    def test_a_device_whose_only_key_was_revoked_cannot_jump_directly(self) -> None:
        with pytest.raises(KeyringInvalid, match="none of which this device trusts"):
            accept_keyring(FIRST, REVOKED.to_dict(), app_id=APP)

    def test_it_walks_the_published_chain_instead(self) -> None:
        chain = [FIRST.to_dict(), ROTATED.to_dict()]
        assert follow_keyrings(FIRST, REVOKED.to_dict(), chain, app_id=APP) == REVOKED

    def test_a_tampered_step_of_the_chain_stops_the_walk(self) -> None:
        chain = [edited(ROTATED, issued_at="2030-01-01T00:00:00Z")]
        with pytest.raises(KeyringInvalid, match="does not verify"):
            follow_keyrings(FIRST, REVOKED.to_dict(), chain, app_id=APP)

    def test_a_chain_that_skips_the_endorsing_step_does_not_help(self) -> None:
        with pytest.raises(KeyringInvalid, match="none of which"):
            follow_keyrings(FIRST, REVOKED.to_dict(), [FIRST.to_dict()], app_id=APP)

    def test_a_stale_offer_is_not_rescued_by_a_chain(self) -> None:
        with pytest.raises(KeyringStale):
            follow_keyrings(REVOKED, ROTATED.to_dict(), [FIRST.to_dict()], app_id=APP)

    def test_an_overlong_chain_is_refused(self) -> None:
        chain = [ROTATED.to_dict()] * (MAX_CHAIN + 1)
        with pytest.raises(KeyringInvalid, match="at most"):
            follow_keyrings(FIRST, REVOKED.to_dict(), chain, app_id=APP)

    def test_the_registry_publishes_as_many_keyrings_as_devices_walk(self) -> None:
        from pocketml.registry._rows import KEYRING_CHAIN

        assert KEYRING_CHAIN == MAX_CHAIN
