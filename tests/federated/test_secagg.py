"""SecAgg+ rounds end to end in memory: exact sums, dropouts, fail-safe aborts, privacy."""

from __future__ import annotations

import random
from dataclasses import astuple

import numpy as np
import pytest

from pocketml.errors import IntegrityError, InvalidInput
from pocketml.federated import SecAggServer, run_secagg_round
from pocketml.fl import (
    PRIME,
    FixedPoint,
    KeyAdvertisement,
    MaskedInput,
    SecAggAborted,
    SecAggClient,
    SecAggConfig,
    Share,
    UnmaskResponse,
    clip_update,
    neighbours_of,
)


def _config(n: int, threshold: int, d: int = 40, neighbours: int | None = None) -> SecAggConfig:
    return SecAggConfig(
        round_id="task-1/round-3",
        client_ids=tuple(range(1, n + 1)),
        threshold=threshold,
        encoding=FixedPoint(bits=32, clip_norm=1.0, max_clients=n),
        n_values=d,
        neighbours=neighbours,
        graph_seed=b"public-graph-seed",
    )


def _updates(config: SecAggConfig, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {u: clip_update(rng.normal(size=config.n_values), 1.0)[0] for u in config.client_ids}


def _plain_encoded_sum(config: SecAggConfig, updates: dict[int, np.ndarray], who) -> np.ndarray:
    total = np.zeros(config.n_values, dtype=np.uint64)
    for u in who:
        total = config.encoding.add(total, config.encoding.encode(updates[u]))
    return total


def test_masks_cancel_exactly_when_every_client_reports() -> None:
    config = _config(20, threshold=14)
    updates = _updates(config, 0)

    result = run_secagg_round(config, updates, randbytes=random.Random(0).randbytes)

    np.testing.assert_array_equal(result.encoded_sum, _plain_encoded_sum(config, updates, updates))
    np.testing.assert_allclose(result.total, np.sum(list(updates.values()), axis=0), atol=1e-5)


def test_100_clients_with_30_percent_dropout_give_the_survivors_exact_sum() -> None:
    config = _config(100, threshold=60)
    updates = _updates(config, 1)
    dropped = set(np.random.default_rng(2).choice(config.client_ids, 30, replace=False).tolist())

    result = run_secagg_round(
        config, updates, drop_after_sharing=dropped, randbytes=random.Random(1).randbytes
    )

    assert result.survivors == set(config.client_ids) - dropped
    np.testing.assert_array_equal(
        result.encoded_sum, _plain_encoded_sum(config, updates, result.survivors)
    )


def test_the_secagg_plus_graph_is_k_regular_and_symmetric() -> None:
    config = _config(30, threshold=5, neighbours=8)

    graph = {u: set(neighbours_of(config, u)) for u in config.client_ids}

    assert {len(v) for v in graph.values()} == {8}
    assert all(u in graph[v] for u in graph for v in graph[u])
    assert all(u not in graph[u] for u in graph)


def test_a_neighbourhood_round_with_dropouts_gives_the_exact_sum() -> None:
    config = _config(40, threshold=5, neighbours=8)
    updates = _updates(config, 3)

    result = run_secagg_round(
        config, updates, drop_after_sharing={3, 17, 29}, randbytes=random.Random(3).randbytes
    )

    np.testing.assert_array_equal(
        result.encoded_sum, _plain_encoded_sum(config, updates, result.survivors)
    )


def test_too_few_survivors_fail_the_round_instead_of_returning_a_sum() -> None:
    config = _config(10, threshold=7)

    with pytest.raises(SecAggAborted, match="threshold is 7"):
        run_secagg_round(
            config,
            _updates(config, 4),
            drop_after_sharing={1, 2, 3, 4},
            randbytes=random.Random(4).randbytes,
        )


def test_a_survivor_whose_share_holders_dropped_fails_the_round_safely() -> None:
    # k = 4, t = 3: when two of client 1's four neighbours drop, only two shares of its
    # self-mask seed survive, and the server must refuse to produce a sum.
    config = _config(12, threshold=3, neighbours=4)
    lost = set(neighbours_of(config, 1)[:2])

    with pytest.raises(SecAggAborted, match="client 1's self-mask seed"):
        run_secagg_round(
            config,
            _updates(config, 5),
            drop_after_sharing=lost,
            randbytes=random.Random(5).randbytes,
        )


def test_what_the_server_stores_is_indistinguishable_from_uniform() -> None:
    # Every client's update is zero: any structure in the stored values would come from
    # the update. Each of the 32 bits must be set half the time and the top byte must
    # fill its 256 buckets evenly (chi-square, p = 0.001, fixed seeds).
    config = _config(10, threshold=7, d=4000)
    zeros = {u: np.zeros(config.n_values) for u in config.client_ids}

    result = run_secagg_round(config, zeros, randbytes=random.Random(6).randbytes)
    stored = np.concatenate(list(result.server.stored_masked_inputs().values()))

    bits = (stored[:, None] >> np.arange(32, dtype=np.uint64)) & np.uint64(1)
    assert np.abs(bits.mean(axis=0) - 0.5).max() < 0.01
    counts = np.bincount((stored >> np.uint64(24)).astype(np.int64), minlength=256)
    expected = stored.size / 256
    assert ((counts - expected) ** 2 / expected).sum() < 330.5  # chi2(255) at p = 0.001


def _started_round(config: SecAggConfig) -> tuple[dict[int, SecAggClient], SecAggServer]:
    rng = random.Random(7)
    clients = {u: SecAggClient(u, config, randbytes=rng.randbytes) for u in config.client_ids}
    server = SecAggServer(config)
    roster = server.receive_keys(c.advertise_keys() for c in clients.values())
    for u, c in clients.items():
        server.receive_shares(u, c.share_keys(roster))
    return clients, server


def test_a_client_answers_the_unmask_request_only_once() -> None:
    config = _config(5, threshold=3)
    clients, server = _started_round(config)
    for u, c in clients.items():
        server.receive_masked_input(c.mask_update(np.zeros(40, dtype=np.uint64), server.inbox(u)))
    clients[1].unmask({1, 2, 3, 4, 5}, set())

    # A lying server asking again with client 2 "dropped" would learn both its secrets.
    with pytest.raises(InvalidInput, match="once per round"):
        clients[1].unmask({1, 3, 4, 5}, {2})


def test_the_server_refuses_a_self_mask_share_of_a_dropped_client() -> None:
    config = _config(5, threshold=3)
    clients, server = _started_round(config)
    for u in (1, 2, 3, 4):
        server.receive_masked_input(
            clients[u].mask_update(np.zeros(40, dtype=np.uint64), server.inbox(u))
        )
    survivors, dropped = server.unmask_request()
    response = clients[1].unmask(survivors, dropped)
    response.self_mask_shares[5] = response.mask_key_shares.pop(5)

    with pytest.raises(InvalidInput, match="self_mask_shares must name survivors"):
        server.receive_unmask(response)


def test_a_tampered_share_ciphertext_is_detected() -> None:
    config = _config(4, threshold=3)
    clients, server = _started_round(config)
    inbox = server.inbox(1)
    inbox[2] = inbox[2][:-1] + bytes([inbox[2][-1] ^ 1])
    clients[1].mask_update(np.zeros(40, dtype=np.uint64), inbox)

    with pytest.raises(IntegrityError, match="from client 2 do not decrypt"):
        clients[1].unmask({1, 2, 3, 4}, set())


def test_a_masked_input_from_a_client_outside_the_round_is_refused() -> None:
    config = _config(4, threshold=3)
    clients, server = _started_round(config)
    masked = clients[1].mask_update(np.zeros(40, dtype=np.uint64), server.inbox(1))
    server.receive_masked_input(masked)

    with pytest.raises(InvalidInput, match="client_id 1 cannot upload"):
        server.receive_masked_input(masked)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 2}, "threshold must be in"),
        ({"threshold": 3, "neighbours": 3}, "neighbours must be an even"),
        ({"threshold": 3, "client_ids": (1, 1, 2)}, "distinct"),
    ],
)
def test_an_unsafe_round_configuration_is_refused(kwargs: dict, match: str) -> None:  # type: ignore[type-arg]
    base = {
        "round_id": "r",
        "client_ids": (1, 2, 3, 4, 5),
        "encoding": FixedPoint(max_clients=10),
        "n_values": 3,
    }
    with pytest.raises(InvalidInput, match=match):
        SecAggConfig(**{**base, **kwargs})


def _unmask_all(
    config: SecAggConfig, dropped_clients: set[int]
) -> tuple[dict[int, SecAggClient], SecAggServer, dict[int, UnmaskResponse]]:
    clients, server = _started_round(config)
    for u, c in clients.items():
        if u not in dropped_clients:
            encoded = config.encoding.encode(np.full(config.n_values, 0.01))
            server.receive_masked_input(c.mask_update(encoded, server.inbox(u)))
    survivors, dropped = server.unmask_request()
    return clients, server, {u: clients[u].unmask(survivors, dropped) for u in survivors}


@pytest.mark.parametrize("kind", ["self_mask_shares", "mask_key_shares"])
def test_a_wrong_share_stops_the_round_instead_of_giving_a_wrong_sum(kind: str) -> None:
    config = _config(6, threshold=4)
    _, server, responses = _unmask_all(config, dropped_clients={6})
    shares = getattr(responses[1], kind)
    owner = min(shares)
    shares[owner] = Share(shares[owner].x, (shares[owner].y + 1) % PRIME)
    # Client 1 has the lowest id, so its share is among the t the server interpolates.
    for response in responses.values():
        server.receive_unmask(response)

    with pytest.raises(SecAggAborted, match=f"client {owner}'s .* does not match"):
        server.aggregate()


def test_keys_from_a_client_outside_the_round_are_refused() -> None:
    config = _config(4, threshold=3)
    stranger = SecAggClient(1, config).advertise_keys()
    server = SecAggServer(config)

    with pytest.raises(InvalidInput, match="client_id 9"):
        server.receive_keys([KeyAdvertisement(9, *astuple(stranger)[1:])])


def test_shares_addressed_to_a_client_that_is_not_a_neighbour_are_refused() -> None:
    config = _config(4, threshold=3)
    rng = random.Random(8)
    clients = {u: SecAggClient(u, config, randbytes=rng.randbytes) for u in config.client_ids}
    server = SecAggServer(config)
    roster = server.receive_keys(c.advertise_keys() for c in clients.values())
    sealed = clients[1].share_keys(roster)
    sealed[7] = sealed[2]

    with pytest.raises(InvalidInput, match="exactly its 3 neighbours"):
        server.receive_shares(1, sealed)


def test_a_masked_input_of_the_wrong_length_is_refused() -> None:
    config = _config(4, threshold=3)
    _, server = _started_round(config)

    with pytest.raises(InvalidInput, match="values must be 40 unsigned ints"):
        server.receive_masked_input(MaskedInput(1, np.zeros(39, dtype=np.uint64)))


def test_a_batch_of_keys_with_one_bad_advert_stores_none_of_them() -> None:
    config = _config(4, threshold=3)
    good = SecAggClient(1, config).advertise_keys()
    bad = KeyAdvertisement(2, b"short", b"x" * 32, b"c" * 32)
    server = SecAggServer(config)

    with pytest.raises(InvalidInput, match="32 bytes each"):
        server.receive_keys([good, bad])
    assert server.receive_keys([]) == {}


def test_a_client_step_out_of_order_is_refused() -> None:
    client = SecAggClient(1, _config(4, threshold=3))

    with pytest.raises(InvalidInput, match="share_keys is step 2"):
        client.share_keys({})
