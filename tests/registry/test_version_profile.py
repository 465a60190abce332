"""A version's reference profile: stored with it, shipped signed, kept when re-signed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pocketml.errors import NotFound
from pocketml.protect import (
    PROFILE_MEMBER,
    Keyring,
    VerifiedPackage,
    canonical_json,
    read_member,
    verify_package,
)
from pocketml.registry import Registry, VersionInfo

Push = Callable[..., VersionInfo]
PROFILE = {"format": 1, "blocks": ["brightness_0", "@confidence"], "reference": {"n": 40}}


def verified_package(
    registry: Registry, app_id: str, package_id: str, tmp_path: Path
) -> VerifiedPackage:
    ref = registry.get_package(app_id, package_id)
    path = tmp_path / f"{package_id}.pmlpkg"
    path.write_bytes(b"".join(registry.artifacts.iter_range(ref.key)))
    trusted = Keyring.from_dict(registry.get_keyring(app_id)).trusted_keys()
    return verify_package(path, trusted_keys=trusted, app_id=app_id)


def test_a_pushed_profile_is_stored_with_the_version(
    registry: Registry, app_id: str, push: Push
) -> None:
    version = push(app_id, reference_profile=PROFILE)

    assert version.has_profile
    assert version.reference_profile_sha256 == hashlib.sha256(canonical_json(PROFILE)).hexdigest()
    assert registry.get_reference_profile(app_id, "digits", version.version) == PROFILE
    listed = registry.list_versions(app_id, "digits").items[0]
    assert listed.reference_profile_sha256 == version.reference_profile_sha256


def test_every_package_of_the_version_ships_the_profile_signed(
    registry: Registry, app_id: str, push: Push, tmp_path: Path
) -> None:
    version = push(
        app_id, reference_profile=PROFILE, variants=("plain", "secret"), encrypted=("secret",)
    )

    for variant in version.variants:
        verified = verified_package(registry, app_id, variant.package_id, tmp_path)
        entry = verified.manifest["members"][PROFILE_MEMBER]
        assert entry["sha256"] == version.reference_profile_sha256
        assert json.loads(read_member(verified, PROFILE_MEMBER)) == PROFILE


def test_a_version_pushed_without_a_profile_has_none_and_its_packages_lack_it(
    registry: Registry, app_id: str, push: Push, tmp_path: Path
) -> None:
    version = push(app_id)

    assert not version.has_profile
    assert registry.get_reference_profile(app_id, "digits", version.version) is None
    verified = verified_package(registry, app_id, version.variants[0].package_id, tmp_path)
    assert not verified.has_profile


def test_the_profile_of_a_missing_version_is_not_found(registry: Registry, app_id: str) -> None:
    with pytest.raises(NotFound, match="no version 9"):
        registry.get_reference_profile(app_id, "digits", 9)


def test_packages_re_signed_after_a_revocation_keep_the_profile(
    registry: Registry, app_id: str, push: Push, tmp_path: Path
) -> None:
    version = push(app_id, reference_profile=PROFILE)
    old = registry.get_app(app_id).signing_key_id
    registry.rotate_signing_key(app_id)

    registry.revoke_signing_key(app_id, old)

    variant = registry.get_version(app_id, "digits", version.version).variants[0]
    assert variant.package_id != version.variants[0].package_id
    verified = verified_package(registry, app_id, variant.package_id, tmp_path)
    assert json.loads(read_member(verified, PROFILE_MEMBER)) == PROFILE
