"""The optional profile.json member: hashed, signed, tamper-evident, and absent in old packages."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from protect_helpers import Kit, build, read_members, tamper_member, write_members

from pocketml.errors import InvalidInput
from pocketml.protect import (
    PROFILE_MEMBER,
    MemberHashMismatch,
    MissingMember,
    PackageInfo,
    SignatureInvalid,
    canonical_json,
    read_member,
)

PROFILE = {"format": 1, "bins": [{"name": "brightness_0", "edges": [0.5, 1.5]}], "n": 3}


@pytest.fixture
def with_profile(kit: Kit) -> PackageInfo:
    """A plain package of the kit's model that ships PROFILE."""
    return build(kit.tmp / "digits.onnx", kit.tmp / "profiled.pkg", kit.key, profile=PROFILE)


def test_the_profile_is_a_member_hashed_in_the_signed_manifest(
    kit: Kit, with_profile: PackageInfo
) -> None:
    verified = kit.verify(with_profile.path)

    entry = verified.manifest["members"][PROFILE_MEMBER]
    assert verified.has_profile
    assert entry["sha256"] == hashlib.sha256(canonical_json(PROFILE)).hexdigest()
    assert json.loads(read_member(verified, PROFILE_MEMBER)) == PROFILE


@pytest.mark.parametrize("how", ["flip", "cut", "append"])
def test_a_tampered_profile_is_refused_like_any_member(
    kit: Kit, with_profile: PackageInfo, how: str
) -> None:
    tampered = tamper_member(kit, with_profile.path, PROFILE_MEMBER, how)

    with pytest.raises(MemberHashMismatch, match=r"profile\.json"):
        kit.verify(tampered)


def test_a_profile_removed_from_a_package_that_lists_it_is_refused(
    kit: Kit, with_profile: PackageInfo
) -> None:
    members = read_members(with_profile.path)
    del members[PROFILE_MEMBER]

    with pytest.raises(MissingMember, match=r"profile\.json"):
        kit.verify(write_members(kit.tmp / "dropped.pkg", members))


def test_a_profile_cannot_be_unlisted_without_breaking_the_signature(
    kit: Kit, with_profile: PackageInfo
) -> None:
    members = read_members(with_profile.path)
    manifest = json.loads(members["manifest.json"])
    del manifest["members"][PROFILE_MEMBER]
    del members[PROFILE_MEMBER]
    members["manifest.json"] = canonical_json(manifest)

    with pytest.raises(SignatureInvalid):
        kit.verify(write_members(kit.tmp / "unlisted.pkg", members))


def test_a_package_without_a_profile_still_verifies(kit: Kit) -> None:
    verified = kit.verify(kit.plain.path)

    assert not verified.has_profile
    assert PROFILE_MEMBER not in read_members(kit.plain.path)


def test_an_encrypted_package_ships_its_profile_in_the_clear(kit: Kit, tmp_path: Path) -> None:
    package = build(
        kit.tmp / "digits.onnx",
        tmp_path / "enc.pkg",
        kit.key,
        content_key=kit.content_key,
        profile=PROFILE,
    )

    verified = kit.verify(package.path)

    assert verified.is_encrypted and verified.has_profile
    assert json.loads(read_member(verified, PROFILE_MEMBER)) == PROFILE


def test_a_profile_that_is_not_a_json_object_is_refused_before_any_work(
    kit: Kit, tmp_path: Path
) -> None:
    out = tmp_path / "never.pkg"

    with pytest.raises(InvalidInput, match="profile must be a dict"):
        build(kit.tmp / "digits.onnx", out, kit.key, profile=[1, 2])

    assert not out.exists()
