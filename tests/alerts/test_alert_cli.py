"""``pocketml alerts ...`` against a live server, in a child process at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alerts_kit import Live, receiver, serve


@pytest.fixture
def live(tmp_path: Path, database_url: str) -> Iterator[Live]:
    with serve(tmp_path, database_url) as running:
        yield running


def cli(live: Live, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETML_")}
    env |= {"POCKETML_SERVER_URL": live.server.url, "POCKETML_TOKEN": live.app.admin_token}
    env |= {"COLUMNS": "80", "POCKETML_HOME": str(live.server.settings.home)}
    command = [sys.executable, "-m", "pocketml", "alerts", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def fits(result: subprocess.CompletedProcess[str]) -> bool:
    return all(len(line) <= 80 for line in result.stdout.splitlines())


def test_rules_defaults_webhook_test_list_ack_and_deliveries(live: Live) -> None:
    with receiver() as hook:
        rules = cli(live, "rules", "digits", "--defaults")
        added = cli(live, "webhook", "add", hook.url, "--format", "slack")
        hook.secret = added.stdout.strip().splitlines()[-1]
        tested = cli(live, "webhook", "test")
        custom = cli(live, "add-rule", "digits", "latency", "latency_p95_ms", ">", "250",
                     "--window", "600", "--min-n", "100")  # fmt: skip
        live.send_latencies(400.0)
        live.replica.evaluate()
        listed = cli(live, "list", "--state", "firing")
        (alert,) = live.replica.list_alerts(live.app.app_id, states=["firing"])
        acked = cli(live, "ack", alert.id[:8])
        log = cli(live, "deliveries")
    for result in (rules, added, tested, custom, listed, acked, log):
        assert result.returncode == 0, result.stderr
        assert fits(result), result.stdout
    assert "created 7 default rule(s) for digits" in rules.stdout
    assert "fallback-share" in rules.stdout and "latency_p95_ms > 250" in rules.stdout
    assert hook.got[0].signature_ok and hook.got[0].json["text"].startswith("[TEST] [FIRING]")
    assert ": delivered (HTTP 200)" in tested.stdout
    assert alert.id[:12] in listed.stdout and "firing" in listed.stdout
    assert "acknowledged" in acked.stdout
    assert live.replica.get_alert(live.app.app_id, alert.id).acked_at is not None
    assert "test" in log.stdout and "delivered" in log.stdout


def test_cli_errors_name_what_to_fix(live: Live) -> None:
    no_model = cli(live, "rules", "--defaults")
    short = cli(live, "ack", "abc")
    unknown = cli(live, "ack", "abcdef")
    bad_metric = cli(live, "add-rule", "digits", "x", "nope", ">", "1")
    assert no_model.returncode == 2 and "--defaults needs a MODEL" in no_model.stderr
    assert short.returncode == 2 and "at least 6 characters" in short.stderr
    assert unknown.returncode == 2 and "no alert id starts with 'abcdef'" in unknown.stderr
    assert bad_metric.returncode == 2 and "metric must be one of" in bad_metric.stderr
