"""Check-in entries are checked field by field; cache paths and request URLs are confined."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from pocketml.device._entry import MODEL_NAME, VARIANT_NAME, parse_manifest
from pocketml.device._net import DeviceHttp
from pocketml.device._store import CacheDir
from pocketml.errors import IntegrityError, InvalidInput
from pocketml.registry._types import MODEL_NAME_PATTERN, VARIANT_NAME_PATTERN

SHA = "ab" * 32
ENTRY: dict[str, Any] = {
    "name": "digits",
    "version": 2,
    "variant": "small-onnx",
    "format": "onnx",
    "precision": "fp32",
    "model_sha256": SHA,
    "package": {
        "id": SHA,
        "url": f"/v1/packages/{SHA}",
        "size": 4096,
        "sha256": SHA,
        "signing_key_id": "ed25519:1df10ad5f5c06880",
        "content_key_id": None,
    },
    "download_policy": {"wifi_only": False, "charging_only": False, "max_cellular_bytes": 1},
    "hybrid": {"mode": "cascade", "threshold": 0.8, "cloud_variant": "big-onnx"},
}


def test_the_sdk_spells_model_and_variant_names_as_the_registry_does() -> None:
    assert f"^{MODEL_NAME.pattern}$" == MODEL_NAME_PATTERN
    assert f"^{VARIANT_NAME.pattern}$" == VARIANT_NAME_PATTERN


def test_one_bad_entry_is_refused_and_the_others_are_kept() -> None:
    bad = copy.deepcopy(ENTRY) | {"name": "other"}
    bad["package"]["size"] = True

    parsed = parse_manifest({"models": [ENTRY, bad]})

    assert [e.name for e in parsed.entries] == ["digits"]
    assert [(r.name, "package.size" in str(r.error)) for r in parsed.rejected] == [("other", True)]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_cellular_bytes", -1),
        ("max_cellular_bytes", 2**64),
        ("wifi_only", "false"),
    ],
)
def test_a_download_policy_out_of_range_is_refused(field: str, value: Any) -> None:
    entry = copy.deepcopy(ENTRY)
    entry["download_policy"][field] = value

    assert parse_manifest({"models": [entry]}).rejected


def test_a_package_key_that_is_not_a_sha256_never_becomes_a_path(tmp_path: Path) -> None:
    cache = CacheDir(tmp_path / "cache")

    for key in ("../../x", str(tmp_path / "x"), "AB" * 32, ""):
        with pytest.raises(IntegrityError, match="64 lower-case hex"):
            cache.partial_path(key)


def test_a_symlink_planted_in_the_cache_cannot_lead_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "partial").symlink_to(outside)

    with pytest.raises(IntegrityError, match="outside the cache directory"):
        CacheDir(tmp_path / "cache").partial_path(SHA)


@pytest.mark.parametrize("path", ["https://evil.example/v1/checkin", "//evil.example/x", "v1"])
def test_api_calls_go_to_the_configured_server_only(path: str) -> None:
    http = DeviceHttp("http://127.0.0.1:9", "pml_dev_key")

    with pytest.raises(InvalidInput, match="configured server only"):
        http.request("GET", path)
