"""``POCKETML_SERVER__PUBLIC_URL``: absolute package links in check-in answers, validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from test_checkin_route import facts, push_digits

from pocketml.config import ServerSettings
from pocketml.testing import live_server, server_settings


def checkin_package_url(home: Path, database_url: str, work: Path, **server: str) -> str:
    settings = server_settings(home, database_url, devices={"catalog_ttl_s": 0}, **server)
    with live_server(settings) as live:
        app = live.create_app("app-a")
        version = push_digits(live, app, work)
        with live.http(app.device_key) as http:
            manifest = http.post("/v1/checkin", json=facts()).json()
    (entry,) = manifest["models"]
    assert entry["version"] == version.version
    url: str = entry["package"]["url"]
    return url


def test_with_a_public_url_package_links_are_absolute(tmp_path: Path, database_url: str) -> None:
    url = checkin_package_url(
        tmp_path / "home", database_url, tmp_path, public_url="https://cdn.example.com/pml/"
    )

    assert url.startswith("https://cdn.example.com/pml/v1/packages/")
    assert len(url.rsplit("/", 1)[1]) == 64  # the package id


def test_without_a_public_url_package_links_stay_relative(
    tmp_path: Path, database_url: str
) -> None:
    url = checkin_package_url(tmp_path / "home", database_url, tmp_path)

    assert url.startswith("/v1/packages/")


@pytest.mark.parametrize(
    "value",
    ["cdn.example.com", "ftp://cdn.example.com", "https://", "https://cdn.example.com/?a=1",
     "https://cdn.example.com/#top", "https://user:secret@cdn.example.com"],
)  # fmt: skip
def test_a_public_url_that_is_not_a_base_url_is_refused_at_start_up(value: str) -> None:
    with pytest.raises(ValidationError, match="public_url"):
        ServerSettings(public_url=value)


def test_a_public_url_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from pocketml.config import Settings

    monkeypatch.setenv("POCKETML_SERVER__PUBLIC_URL", "http://10.0.0.5:8000")

    assert Settings().server.public_url == "http://10.0.0.5:8000"
