"""Demo chapter 11 "Learn together" on its own: a small fleet, two rounds, a real server.

The whole demo (tests/test_demo.py) runs every chapter; this test runs the federated one
against a briefly trained cnn-small so its failures point here and it stays fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from pocketml import testing
from pocketml.convert.onnx import to_onnx
from pocketml.data import load_digits, parse_augmentations
from pocketml.demo._federated import FederatedDemo, learn_together
from pocketml.server.client import AdminClient
from pocketml.testing import OPERATOR_TOKEN, live_server
from pocketml.train import TrainConfig, train


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, object]:
    """A cnn-small trained for a few epochs, its ONNX file and the splits."""
    out = tmp_path_factory.mktemp("small")
    splits = load_digits().split(seed=0)
    run = train(
        splits,
        "cnn-small",
        config=TrainConfig(
            seed=0, epochs=4, augmentations=tuple(parse_augmentations("dim=0.6,noise=0.2"))
        ),
        model_name="digits",
        out_dir=out / "run",
    )
    return to_onnx(run.model, out / "small.onnx"), run.model.schema, splits


def test_phones_learn_together_and_the_result_is_rolled_out(
    tmp_path: Path, small: tuple[Path, object, object]
) -> None:
    onnx_path, schema, splits = small
    console = Console(record=True, width=100)
    settings = testing.server_settings(
        tmp_path / "home", devices={"catalog_ttl_s": 0}, rollout_eval={"interval_s": 0.5}
    )
    with live_server(settings) as live:
        with AdminClient(live.url, OPERATOR_TOKEN) as operator:
            created = operator.create_app("fl-demo")
        with AdminClient(live.url, created.admin_token) as admin:
            report = learn_together(
                console,
                url=live.url,
                admin=admin,
                device_key=created.device_key,
                onnx_path=onnx_path,
                schema=schema,  # type: ignore[arg-type]
                splits=splits,  # type: ignore[arg-type]
                out_dir=tmp_path / "chapter",
                config=FederatedDemo(phones=9, rounds=2, unplugged_per_round=1),
            )
            version = admin.show_version("digits", report["result_version"])

    assert report["task"]["state"] == "succeeded" and report["task"]["rounds_done"] == 2
    assert report["epsilon"] is not None and report["epsilon"] > 0
    aggregated = [r for r in report["rounds"] if r and "survivors" in r]
    assert len(aggregated) == 2  # (a retried round, if any, closed without a model)
    assert all(len(r["dropped"]) == 1 for r in aggregated)  # unplugged, recovered
    assert report["accuracy_after"] > report["accuracy_before"]
    assert version.stage == "production"  # the rollout completed
    text = console.export_text()
    assert "privacy spent" in text and "federated rounds" in text
