"""Federated rounds end to end in memory, on non-IID client data: the math of a task
without devices, HTTP or a database (the device SDK and routes run the same functions).

Each round: sample ``clients_per_round`` of ``n_clients`` (uniformly without replacement),
each trains the global head on its own samples (:func:`pocketml.fl.train_head`), and the
server aggregates — FedAvg, a robust aggregator, or DP-FedAvg — optionally under SecAgg+
(clients clip to ``clip_norm`` and encode; the server learns only the sum). The head
moves by the aggregate (server learning rate 1). With noise, the privacy spent after each
round comes from :class:`PrivacyAccountant` with ``q = clients_per_round / n_clients``.

Attackers (``malicious_fraction`` of the population, fixed for the task) train on flipped
labels and/or multiply their update; ``malicious_absent`` makes them never report instead,
which is what a perfect defence achieves (the bound the robust aggregators are measured
against). ``"fltrust"`` gives the server a root set of ``root_samples`` training samples
(drawn with the seed; class-balanced unless ``root_balanced`` is off) on which it trains
the round's reference update. Balance matters: with 100 samples drawn at random, the
classes the root set under-represents lose their honest clients' trust and FLTrust lost
5.7 points without any attacker; 10 per class lost none (docs/benchmarks.md).

Under secure aggregation the server sees only a sum, so robust aggregators and adaptive
clipping (which needs each update's norm) are refused; DP noise is added to the unmasked
sum by the server (central DP: the server is trusted with the sum, not the updates).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from pocketml.errors import InvalidInput
from pocketml.federated._accountant import PrivacyAccountant
from pocketml.federated._aggregate import (
    centered_clipping,
    coordinate_median,
    fedavg,
    fltrust,
    trimmed_mean,
)
from pocketml.federated._dp import DPFedAvg
from pocketml.federated._inmemory import run_secagg_round
from pocketml.fl import FixedPoint, Head, LocalRecipe, SecAggConfig, clip_update, train_head

__all__ = ["SimulationConfig", "SimulationResult", "simulate", "split_non_iid"]

AGGREGATORS = ("fedavg", "trimmed_mean", "median", "centered_clipping", "fltrust")


@dataclass(frozen=True)
class SimulationConfig:
    """A simulated federated task.

    Attributes:
        n_clients: the population.
        clients_per_round: the cohort sampled each round.
        rounds: rounds to run.
        classes_per_client: how many classes each client's data holds (non-IID).
        recipe: the local training recipe.
        aggregator: "fedavg", "trimmed_mean", "median", "centered_clipping" or "fltrust"
            (without DP).
        trim_fraction: for "trimmed_mean".
        clip_norm: L2 bound of each update (required for DP and SecAgg).
        noise_multiplier: DP-FedAvg's ``z``; 0 for no DP.
        delta: the δ ε is reported at.
        secure_aggregation: run every round through SecAgg+ (all pairs).
        malicious_fraction: clients that train on flipped labels and scale their update.
        malicious_scale: the factor those clients multiply their update by.
        malicious_flip: whether those clients train on flipped labels (``k -> K-1-k``).
        malicious_absent: those clients never report (the perfect defence's bound).
        root_samples: the server's root set for "fltrust" (samples of the training set).
        root_balanced: draw the root set with the same count of every class (the
            remainder to randomly chosen classes) rather than uniformly.
        seed: everything (split, sampling, training, noise) follows from it.
    """

    n_clients: int = 50
    clients_per_round: int = 10
    rounds: int = 30
    classes_per_client: int = 2
    recipe: LocalRecipe = field(default_factory=lambda: LocalRecipe(2, 16, 0.1))
    aggregator: str = "fedavg"
    trim_fraction: float = 0.2
    clip_norm: float | None = None
    noise_multiplier: float = 0.0
    delta: float = 1e-5
    secure_aggregation: bool = False
    malicious_fraction: float = 0.0
    malicious_scale: float = 10.0
    seed: int = 0
    malicious_flip: bool = True
    malicious_absent: bool = False
    root_samples: int = 100
    root_balanced: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.clients_per_round <= self.n_clients:
            raise InvalidInput("clients_per_round must be in [1, n_clients]")
        if self.aggregator not in AGGREGATORS:
            raise InvalidInput(f"aggregator must be one of {AGGREGATORS}; got {self.aggregator!r}")
        if (self.noise_multiplier > 0 or self.secure_aggregation) and self.clip_norm is None:
            raise InvalidInput(
                "clip_norm is required with noise_multiplier > 0 or secure_aggregation"
            )
        if (self.noise_multiplier > 0 or self.secure_aggregation) and self.aggregator != "fedavg":
            raise InvalidInput(
                f"aggregator {self.aggregator!r} needs every update in the clear; "
                "DP-FedAvg and secure aggregation use the (clipped) mean"
            )
        if not 0 <= self.malicious_fraction < 1:
            raise InvalidInput("malicious_fraction must be in [0, 1)")
        if self.aggregator == "fltrust" and self.root_samples < 1:
            raise InvalidInput(
                f"aggregator 'fltrust' needs a root set; got root_samples={self.root_samples}"
            )


@dataclass(frozen=True)
class SimulationResult:
    """Test accuracy after each round, ε after each round (empty without DP), the head."""

    accuracy: list[float]
    epsilon: list[float]
    head: Head


def split_non_iid(
    labels: np.ndarray, n_clients: int, classes_per_client: int, seed: int
) -> list[np.ndarray]:
    """Give each client the samples of ``classes_per_client`` classes (shards of them).

    Every class's samples are cut into equal shards and each client takes one shard of
    each of its classes; classes are dealt round-robin from a shuffled order, so every
    class is held by about the same number of clients.
    """
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    if not 1 <= classes_per_client <= classes.size:
        raise InvalidInput(f"classes_per_client must be in [1, {classes.size}]")
    order = np.concatenate(
        [
            rng.permutation(classes)
            for _ in range(classes_per_client * n_clients // classes.size + 1)
        ]
    )
    owned = [order[i * classes_per_client : (i + 1) * classes_per_client] for i in range(n_clients)]
    holders = {c: [i for i, own in enumerate(owned) if c in own] for c in classes}
    parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
    for c, who in holders.items():
        idx = rng.permutation(np.flatnonzero(labels == c))
        for shard, client in zip(np.array_split(idx, max(len(who), 1)), who, strict=False):
            parts[client].append(shard)
    return [np.concatenate(p) if p else np.array([], dtype=np.int64) for p in parts]


def simulate(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    config: SimulationConfig,
) -> SimulationResult:
    """Run ``config.rounds`` federated rounds and return the accuracy curve and ε.

    The cohort is a fixed-size sample while the accountant assumes Poisson sampling with
    ``q = clients_per_round / n_clients`` (the usual approximation in simulations; the
    server's selection should be Poisson for the reported ε to be exact). No client drops
    out here, so a SecAgg round always completes.

    Raises:
        InvalidInput: an inconsistent configuration.
    """
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    parts = split_non_iid(train_y, config.n_clients, config.classes_per_client, config.seed)
    # Separate streams: with or without noise, the same clients are sampled each round.
    rng, noise_rng = (
        np.random.default_rng([config.seed, 0]),
        np.random.default_rng([config.seed, 1]),
    )
    entropy = random.Random(config.seed)
    n_bad = round(config.malicious_fraction * config.n_clients)
    malicious = set(rng.choice(config.n_clients, n_bad, replace=False).tolist())
    head = Head.zeros(train_x.shape[1], n_classes)
    m = config.clients_per_round
    dp = accountant = None
    if config.noise_multiplier > 0:
        assert config.clip_norm is not None
        dp = DPFedAvg(config.clip_norm, config.noise_multiplier, m)
        accountant = PrivacyAccountant(config.noise_multiplier, m / config.n_clients, config.delta)
    root = _root_set(train_y, config)
    accuracy, epsilon = [], []
    for rnd in range(config.rounds):
        chosen = [int(c) for c in rng.choice(config.n_clients, m, replace=False) if parts[c].size]
        if config.malicious_absent:
            chosen = [c for c in chosen if c not in malicious]
        updates, counts = [], []
        for c in chosen:
            y = train_y[parts[c]]
            if c in malicious and config.malicious_flip:
                y = n_classes - 1 - y
            delta = train_head(
                head,
                train_x[parts[c]],
                y,
                config.recipe,
                seed=config.seed * 100_003 + rnd * 1_009 + c,
            )
            updates.append(delta * (config.malicious_scale if c in malicious else 1.0))
            counts.append(parts[c].size)
        if not updates:  # every sampled client was an absent attacker: nothing to apply
            step = np.zeros(head.to_vector().size)
        elif config.aggregator == "fltrust":
            step = _fltrust_step(updates, head, train_x[root], train_y[root], config, rnd)
        else:
            step = _aggregate(updates, counts, config, dp, noise_rng, entropy, rnd)
        head = head.with_vector(head.to_vector() + step)
        accuracy.append(head.accuracy(test_x, test_y))
        if accountant is not None:
            epsilon.append(accountant.spend_round().epsilon)
    return SimulationResult(accuracy, epsilon, head)


def _root_set(labels: np.ndarray, config: SimulationConfig) -> np.ndarray:
    if config.aggregator != "fltrust":
        return np.array([], dtype=np.int64)
    # Its own stream: the split, the cohorts and the attackers stay those of the other runs.
    rng = np.random.default_rng([config.seed, 2])
    if not config.root_balanced:
        if config.root_samples > labels.size:
            raise InvalidInput(
                f"root_samples must be at most the {labels.size} training samples; "
                f"got {config.root_samples}"
            )
        return rng.choice(labels.size, config.root_samples, replace=False)
    classes = np.unique(labels)
    per_class = np.full(classes.size, config.root_samples // classes.size)
    per_class[rng.permutation(classes.size)[: config.root_samples % classes.size]] += 1
    pools = [np.flatnonzero(labels == c) for c in classes]
    if any(k > pool.size for k, pool in zip(per_class, pools, strict=True)):
        raise InvalidInput(
            f"a class-balanced root set of {config.root_samples} needs up to "
            f"{per_class.max()} samples of every class; some class has fewer. "
            "Pass a smaller root_samples or root_balanced=False"
        )
    return np.concatenate(
        [rng.choice(pool, k, replace=False) for k, pool in zip(per_class, pools, strict=True)]
    )


def _fltrust_step(
    updates: list[np.ndarray],
    head: Head,
    root_x: np.ndarray,
    root_y: np.ndarray,
    config: SimulationConfig,
    rnd: int,
) -> np.ndarray:
    # The server trains the round's head with the clients' recipe on its own root set.
    reference = train_head(head, root_x, root_y, config.recipe, seed=config.seed + rnd)
    if config.clip_norm is not None:
        updates = [clip_update(d, config.clip_norm)[0] for d in updates]
    # Rescaled to the cohort's median length, not the root update's (see fltrust's norm).
    norm = float(np.median([np.linalg.norm(d) for d in updates]))
    return fltrust(updates, reference, norm=norm)


def _aggregate(
    updates: list[np.ndarray],
    counts: list[int],
    config: SimulationConfig,
    dp: DPFedAvg | None,
    rng: np.random.Generator,
    entropy: random.Random,
    rnd: int,
) -> np.ndarray:
    if config.secure_aggregation:
        assert config.clip_norm is not None
        ids = tuple(range(1, len(updates) + 1))
        secagg = SecAggConfig(
            f"sim-{config.seed}-{rnd}",
            ids,
            threshold=len(ids) // 2 + 1,
            encoding=FixedPoint(32, config.clip_norm, len(ids)),
            n_values=updates[0].size,
        )
        clipped = {
            u: clip_update(d, config.clip_norm)[0] for u, d in zip(ids, updates, strict=True)
        }
        total = run_secagg_round(secagg, clipped, randbytes=entropy.randbytes).total
        if dp is None:
            return total / len(ids)
        noise = rng.normal(0.0, dp.noise_multiplier * config.clip_norm, size=total.shape)
        return (total + noise) / dp.expected_clients
    if dp is not None:
        return dp.aggregate(updates, rng).update
    if config.clip_norm is not None:
        updates = [clip_update(d, config.clip_norm)[0] for d in updates]
    if config.aggregator == "trimmed_mean":
        return trimmed_mean(updates, config.trim_fraction)
    if config.aggregator == "median":
        return coordinate_median(updates)
    if config.aggregator == "centered_clipping":
        return centered_clipping(updates)
    return fedavg(updates, counts)
