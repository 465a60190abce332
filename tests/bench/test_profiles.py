"""Built-in device profiles and loading user profiles from TOML and YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketml.bench import BUILTIN_PROFILES, DeviceProfile, load_profiles
from pocketml.errors import InvalidInput


def test_builtin_profiles_cover_the_documented_device_classes() -> None:
    assert set(BUILTIN_PROFILES) == {
        "android-low", "android-mid", "android-high", "iphone", "edge-linux", "cloud"
    }  # fmt: skip
    assert "coreml" in BUILTIN_PROFILES["iphone"].formats
    assert "coreml" not in BUILTIN_PROFILES["android-mid"].formats


def test_frame_rate_target_sets_the_latency_budget() -> None:
    assert BUILTIN_PROFILES["android-mid"].latency_budget_ms == pytest.approx(1000 / 30)


def test_latency_estimate_divides_host_latency_by_the_speed_factor() -> None:
    profile = BUILTIN_PROFILES["android-low"]
    assert profile.estimate_latency_ms(2.0) == pytest.approx(2.0 / profile.speed_factor)


def test_toml_profile_loads_with_every_field(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(
        '[profiles.kiosk]\nformats = ["onnx"]\nthreads = 2\nmemory_limit_mb = 256\n'
        "speed_factor = 0.5\ntarget_latency_ms = 40\n",
        encoding="utf-8",
    )
    profiles = load_profiles(path)
    assert profiles["kiosk"] == DeviceProfile(
        "kiosk", "user profile kiosk", ("onnx",), 2, 256.0, 0.5, target_latency_ms=40.0
    )


def test_yaml_profile_extends_a_builtin_profile(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(
        "profiles:\n  pixel:\n    extends: android-mid\n    speed_factor: 0.6\n", encoding="utf-8"
    )
    pixel = load_profiles(path)["pixel"]
    assert pixel.speed_factor == 0.6
    assert pixel.formats == BUILTIN_PROFILES["android-mid"].formats
    assert pixel.name == "pixel"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("threads = 'four'", "field 'threads' must be an integer >= 1; got 'four'"),
        ("speed_factor = -1", "field 'speed_factor' must be a number > 0; got -1"),
        ("formats = ['apk']", "field 'formats' must be a list drawn from"),
        ("colour = 'red'", "unknown field 'colour'"),
        ("extends = 'nokia-3310'", "field 'extends' must be the name of a built-in"),
        ("is_cpu_only = 'yes'", "field 'is_cpu_only' must be true or false"),
    ],
    ids=["threads", "speed", "formats", "unknown", "extends", "bool"],
)
def test_bad_field_error_names_profile_and_field(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        f'[profiles.bad]\nformats = ["onnx"]\nmemory_limit_mb = 9\n{body}\n'
        if "formats" not in body
        else f"[profiles.bad]\n{body}\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidInput, match="profile 'bad'") as info:
        load_profiles(path)
    assert message in str(info.value)


def test_missing_required_field_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[profiles.bad]\nformats = ["onnx"]\nthreads = 1\n', encoding="utf-8")
    with pytest.raises(InvalidInput, match="field 'memory_limit_mb' is required"):
        load_profiles(path)


def test_file_without_profiles_table_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("title = 'x'\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="'profiles' table"):
        load_profiles(path)


def test_invalid_toml_syntax_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[profiles.x\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="not valid TOML"):
        load_profiles(path)


def test_unknown_file_type_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"\.toml, \.yaml or \.yml"):
        load_profiles(path)
