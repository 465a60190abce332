"""pocketml.federated.flower run for real through Flower's ``Server`` (skipped without flwr).

flwr is not installed in the project's venv (its pins clash with the server's); run these in
the benchmark's Flower venv (built by ``benchmarks/fl_vs_flower.py``):

    PYTHONPATH=src benchmarks/.venv-flower/bin/python -m pytest --noconftest \
        tests/federated/test_flower.py

(``--noconftest``: the suite's conftest files import the server, whose dependencies that venv
does not have; this file needs none of their fixtures.)

Each round's cohort is every client (``clients_per_round == population``), so the expected
head is computed here step by step with pocketml's own functions and compared.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import random
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

flwr = pytest.importorskip("flwr")

from pocketml.errors import InvalidInput  # noqa: E402
from pocketml.federated import (  # noqa: E402
    PrivacyAccountant,
    TaskSpec,
    centered_clipping,
    coordinate_median,
    fedavg,
    trimmed_mean,
)
from pocketml.federated.flower import (  # noqa: E402
    FlowerRound,
    client_app,
    client_seed,
    head_from_parameters,
    head_to_ndarrays,
    replace_aggregator,
    run_in_process,
    server_app,
    strategy_for,
)
from pocketml.fl import Head, LocalRecipe, clip_update, train_head  # noqa: E402

N_CLIENTS, SEED = 8, 7
RECIPE = LocalRecipe(epochs=1, batch_size=16, learning_rate=0.2)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    logging.getLogger("flwr").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def _partitions() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 6)) * 2
    parts = []
    for i in range(N_CLIENTS):
        labels = rng.integers(0, 3, 20 + 5 * i)  # unequal sizes: FedAvg's weights matter
        parts.append((centers[labels] + rng.normal(size=(labels.size, 6)), labels))
    return parts


def _spec(**changes: object) -> TaskSpec:
    spec = TaskSpec(version=1, rounds=3, clients_per_round=N_CLIENTS, recipe=RECIPE, clip_norm=2.0)
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def _expected(spec: TaskSpec, combine: Callable[[list[np.ndarray], list[int]], np.ndarray]) -> Head:
    """The rounds done by hand: every client trains and clips, ``combine`` aggregates."""
    head = Head.zeros(6, 3)
    parts = _partitions()
    for rnd in range(spec.rounds):
        updates, counts = [], []
        for c, (x, y) in enumerate(parts):
            delta = train_head(head, x, y, spec.recipe, seed=client_seed(SEED, rnd, c))
            updates.append(clip_update(delta, spec.clip_norm)[0])
            counts.append(int(y.size))
        head = head.with_vector(head.to_vector() + combine(updates, counts))
    return head


@pytest.mark.parametrize(
    ("aggregator", "combine"),
    [
        ("fedavg", lambda u, n: fedavg(u, n)),
        ("trimmed_mean", lambda u, n: trimmed_mean(u, 0.2)),
        ("median", lambda u, n: coordinate_median(u)),
        ("centered_clipping", lambda u, n: centered_clipping(u)),
    ],
)
def test_flower_rounds_match_pocketml_aggregators(
    aggregator: str, combine: Callable[[list[np.ndarray], list[int]], np.ndarray]
) -> None:
    spec = replace_aggregator(_spec(trim_fraction=0.2), aggregator)
    head, rounds = run_in_process(spec, Head.zeros(6, 3), _partitions(), seed=SEED)
    expected = _expected(spec, combine)
    np.testing.assert_allclose(head.to_vector(), expected.to_vector(), rtol=0, atol=1e-9)
    assert [r.round for r in rounds] == [1, 2, 3]
    assert all(r.reports == N_CLIENTS and r.privacy is None for r in rounds)
    x = np.concatenate([p[0] for p in _partitions()])
    y = np.concatenate([p[1] for p in _partitions()])
    assert head.accuracy(x, y) > 0.8  # three separable blobs; chance is 1/3


def test_dp_reports_epsilon_after_every_round_from_pocketml_accountant() -> None:
    spec = _spec(noise_multiplier=1.0, clip_norm=1.0, delta=1e-5, population=4 * N_CLIENTS)
    random.seed(0)
    np.random.seed(0)  # Flower's DP wrapper draws its noise from numpy's global RNG
    seen: list[FlowerRound] = []
    head, rounds = run_in_process(
        spec, Head.zeros(6, 3), _partitions(), seed=SEED, on_round=seen.append
    )
    assert seen == rounds and len(rounds) == spec.rounds
    reference = PrivacyAccountant(1.0, N_CLIENTS / (4 * N_CLIENTS), 1e-5)
    for r in rounds:
        expected = reference.spend_round()
        assert r.privacy is not None
        assert r.privacy.epsilon == pytest.approx(expected.epsilon, rel=1e-12)
        assert r.privacy.delta == 1e-5 and r.privacy.rounds == r.round
    assert 0 < rounds[0].privacy.epsilon < rounds[-1].privacy.epsilon  # type: ignore[union-attr]
    # The noise moved the head away from the noiseless rounds (the wrapper really ran).
    plain = _expected(dataclasses.replace(spec, noise_multiplier=0.0), lambda u, n: fedavg(u, n))
    assert not np.allclose(head.to_vector(), plain.to_vector(), atol=1e-3)


def test_dp_metrics_carry_epsilon() -> None:
    spec = _spec(noise_multiplier=0.8, population=N_CLIENTS * 2)
    strategy = strategy_for(spec, Head.zeros(6, 3), population=N_CLIENTS)
    inner = strategy.inner
    assert isinstance(inner, flwr.server.strategy.DifferentialPrivacyServerSideFixedClipping)
    params = strategy.initialize_parameters(None)
    inner.configure_fit(1, params, _Everyone(_partitions()))
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    results = [
        (None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(head_to_ndarrays(h)), 5, {}))
        for h in (Head(np.full((6, 3), 0.1), np.zeros(3)), Head(np.ones((6, 3)), np.ones(3)))
    ]
    np.random.seed(1)
    _, metrics = strategy.aggregate_fit(1, results, [])
    assert metrics["delta"] == spec.delta
    expected = PrivacyAccountant(0.8, N_CLIENTS / (N_CLIENTS * 2), spec.delta).spend_round()
    assert metrics["epsilon"] == pytest.approx(expected.epsilon, rel=1e-12)


class _Everyone:
    """The least of a client manager configure_fit needs (the DP wrapper's bookkeeping)."""

    def __init__(self, parts: list[object]) -> None:
        self.parts = parts

    def num_available(self) -> int:
        return len(self.parts)

    def sample(self, num_clients: int, min_num_clients: int | None = None) -> list[object]:
        return []


def test_settings_flower_cannot_run_are_refused() -> None:
    head = Head.zeros(6, 3)
    with pytest.raises(InvalidInput, match="aggregator"):
        strategy_for(_spec(aggregator="krum"), head, population=N_CLIENTS)
    with pytest.raises(InvalidInput, match="DP"):
        strategy_for(_spec(aggregator="median", noise_multiplier=1.0), head, population=N_CLIENTS)
    with pytest.raises(InvalidInput, match="clients_per_round"):
        strategy_for(_spec(clients_per_round=N_CLIENTS + 1), head, population=N_CLIENTS)
    with pytest.raises(InvalidInput, match="secagg"):
        strategy_for(_spec(secagg=True), head, population=N_CLIENTS)
    with pytest.raises(InvalidInput, match="aggregator"):
        replace_aggregator(_spec(), "mean")


def test_head_from_parameters_round_trip_and_hostile_shapes() -> None:
    from flwr.common import ndarrays_to_parameters

    head = Head(np.arange(6.0).reshape(3, 2), np.array([0.5, -0.5]))
    again = head_from_parameters(ndarrays_to_parameters(head_to_ndarrays(head)))
    np.testing.assert_array_equal(again.to_vector(), head.to_vector())
    with pytest.raises(InvalidInput, match="weights"):
        head_from_parameters([np.zeros((3, 2))])
    with pytest.raises(InvalidInput, match="weights"):
        head_from_parameters([np.zeros((3, 2)), np.zeros(3)])
    with pytest.raises(InvalidInput, match="finite"):
        head_from_parameters([np.full((3, 2), np.nan), np.zeros(2)])


def test_client_app_and_server_app_build() -> None:
    parts = _partitions()
    app = client_app(lambda i: parts[i], RECIPE, clip_norm=1.0, seed=SEED)
    assert isinstance(app, flwr.client.ClientApp)
    server = server_app(_spec(), Head.zeros(6, 3), population=N_CLIENTS)
    assert isinstance(server, flwr.server.ServerApp)


def test_the_docs_flower_example_runs_and_prints_what_the_page_says() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "federated.md").read_text()
    section = doc.split("## Running a task on Flower", 1)[1]
    (snippet,) = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "docs/federated.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[:4] == [
        f"round {r}: ε = {e} at δ = 1e-05"
        for r, e in zip((1, 4, 7, 10), ("5.95", "11.28", "14.56", "17.24"), strict=True)
    ]
    assert lines[4] == "accuracy 1.00"
    assert "ε 5.95, 11.28, 14.56 and 17.24" in section
