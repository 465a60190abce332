"""A pocketml federated task as a Flower ServerApp / ClientApp (flwr is an optional extra).

For fleets that already run Flower on Python-capable edge devices, and for simulating a task
side by side with Flower. pocketml does not depend on flwr: this module imports it inside
its functions, so ``import pocketml.federated.flower`` works without it and each entry point
raises :class:`~pocketml.errors.MissingDependencyError` when it is missing.

- :func:`client_app` (and :class:`HeadClient`): a Flower client that trains the head with
  :func:`pocketml.fl.train_head` on its local ``(embeddings, labels)`` and clips the update
  with :func:`pocketml.fl.clip_update`, as a pocketml device does.
- :func:`strategy_for` / :func:`server_app`: a :class:`~pocketml.federated.TaskSpec`'s rounds,
  cohort, aggregator and DP settings as a Flower strategy, Flower's own where one fits
  (``FedAvg``, ``FedTrimmedAvg``, ``FedMedian``, ``DifferentialPrivacyServerSideFixedClipping``;
  centered clipping is pocketml's inside a ``FedAvg``), with (ε, δ) from pocketml's
  :class:`~pocketml.federated.PrivacyAccountant` after every round.
- :func:`run_in_process`: the rounds through Flower's own ``Server`` with the clients in this
  process (no gRPC, no Ray): tests, benchmarks, quick side-by-side runs.
- :func:`head_from_parameters`: the final Flower parameters as the :class:`~pocketml.fl.Head`
  a pocketml version takes (docs/federated.md, "Running a task on Flower").

flwr's legacy strategy API (``flwr.server.strategy``) is used: it is what ``ServerApp``'s
``server_fn`` takes in flwr 1.x and what Flower's DP wrappers wrap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pocketml.errors import InvalidInput, MissingDependencyError
from pocketml.federated._accountant import PrivacyAccountant, PrivacySpent
from pocketml.federated._aggregate import centered_clipping
from pocketml.federated._spec import TaskSpec
from pocketml.fl import Head, LocalRecipe, clip_update, train_head

__all__ = [
    "FLOWER_AGGREGATORS",
    "FlowerRound",
    "HeadClient",
    "client_app",
    "client_seed",
    "head_from_parameters",
    "head_to_ndarrays",
    "in_process_proxy",
    "replace_aggregator",
    "run_in_process",
    "server_app",
    "strategy_for",
]

FLOWER_AGGREGATORS = ("fedavg", "trimmed_mean", "median", "centered_clipping")
Partition = tuple[np.ndarray, np.ndarray]
"""A client's local ``(embeddings, labels)``."""


def _flwr() -> Any:
    try:
        import flwr
    except ImportError as exc:
        raise MissingDependencyError("flwr", "flower", "running a task on Flower") from exc
    return flwr


def client_seed(seed: int, round_index: int, client: int) -> int:
    """The local training seed of ``client`` in round ``round_index`` (0-based): the same
    derivation as ``pocketml.federated.simulate`` so both sides shuffle alike."""
    return seed * 100_003 + round_index * 1_009 + client


def head_to_ndarrays(head: Head) -> list[np.ndarray]:
    """A head as Flower's parameter list: ``[weights, bias]``."""
    return [np.asarray(head.weights, dtype=np.float64), np.asarray(head.bias, dtype=np.float64)]


def head_from_parameters(parameters: Any) -> Head:
    """The :class:`~pocketml.fl.Head` held by Flower parameters.

    Args:
        parameters: a ``flwr.common.Parameters`` or a list ``[weights, bias]`` of arrays
            (what a ``NumPyClient`` and ``History`` hold).

    Raises:
        InvalidInput: not two arrays of shapes ``(features, classes)`` and ``(classes,)``,
            or values that are not finite.
    """
    if hasattr(parameters, "tensors"):
        from flwr.common import parameters_to_ndarrays

        parameters = parameters_to_ndarrays(parameters)
    arrays = [np.asarray(a, dtype=np.float64) for a in parameters]
    if len(arrays) != 2 or arrays[0].ndim != 2 or arrays[1].shape != (arrays[0].shape[1],):
        shapes = [a.shape for a in arrays]
        raise InvalidInput(f"Flower parameters must be [weights (f, c), bias (c,)]; got {shapes}")
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise InvalidInput("Flower parameters must be finite (no NaN or Inf)")
    return Head(arrays[0], arrays[1])


class HeadClient:
    """A Flower ``NumPyClient`` that trains the head on local data as a pocketml device does.

    ``fit`` trains the round's head with :func:`~pocketml.fl.train_head`, clips the update
    to ``clip_norm`` with :func:`~pocketml.fl.clip_update` and returns the trained head
    (``head + clipped update``) with the number of local samples (1 with
    ``uniform_weights``) and ``{"clipped": 0|1}``. The round comes from the fit config's
    ``"round"`` (0-based), which :func:`strategy_for` sends.

    Built by :meth:`create` (a subclass of ``flwr.client.NumPyClient`` made on first use,
    so this module imports without flwr).
    """

    _cls: Any = None

    @classmethod
    def create(
        cls,
        client: int,
        partition: Partition,
        recipe: LocalRecipe,
        *,
        clip_norm: float | None,
        seed: int,
        uniform_weights: bool = False,
    ) -> Any:
        """Return a ``NumPyClient`` for ``client`` (its index) training on ``partition``."""
        if cls._cls is None:
            cls._cls = _numpy_client_class()
        embeddings, labels = (np.asarray(a) for a in partition)
        if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],) or labels.size == 0:
            raise InvalidInput(
                f"client {client}: a partition is (embeddings (n, f), labels (n,)) with n >= 1; "
                f"got {embeddings.shape} and {labels.shape}"
            )
        return cls._cls(client, embeddings, labels, recipe, clip_norm, seed, uniform_weights)


def _numpy_client_class() -> Any:
    base: Any = _flwr().client.NumPyClient

    class _HeadClient(base):
        def __init__(
            self,
            client: int,
            embeddings: np.ndarray,
            labels: np.ndarray,
            recipe: LocalRecipe,
            clip_norm: float | None,
            seed: int,
            uniform_weights: bool,
        ) -> None:
            self.client, self.embeddings, self.labels = client, embeddings, labels
            self.recipe, self.clip_norm, self.seed = recipe, clip_norm, seed
            self.uniform_weights = uniform_weights

        def fit(
            self, parameters: list[np.ndarray], config: dict[str, Any]
        ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
            head = head_from_parameters(parameters)
            rnd = int(config.get("round", 0))
            delta = train_head(
                head,
                self.embeddings,
                self.labels,
                self.recipe,
                seed=client_seed(self.seed, rnd, self.client),
            )
            clipped = False
            if self.clip_norm is not None:
                delta, clipped = clip_update(delta, self.clip_norm)
            trained = head.with_vector(head.to_vector() + delta)
            weight = 1 if self.uniform_weights else int(self.labels.size)
            return head_to_ndarrays(trained), weight, {"clipped": int(clipped)}

        def evaluate(
            self, parameters: list[np.ndarray], config: dict[str, Any]
        ) -> tuple[float, int, dict[str, Any]]:
            head = head_from_parameters(parameters)
            accuracy = head.accuracy(self.embeddings, self.labels)
            return 1.0 - accuracy, int(self.labels.size), {"accuracy": accuracy}

    return _HeadClient


def client_app(
    load_partition: Callable[[int], Partition],
    recipe: LocalRecipe,
    *,
    clip_norm: float | None,
    seed: int,
    uniform_weights: bool = False,
) -> Any:
    """A Flower ``ClientApp`` whose clients train the head on their local data.

    Args:
        load_partition: the node's partition id -> its ``(embeddings, labels)`` (the id is
            ``context.node_config["partition-id"]``, which Flower's simulation sets; a real
            SuperNode sets it with ``--node-config "partition-id=3"``).
        recipe: the task's local recipe.
        clip_norm: the L2 bound the client clips its update to (None: no clipping).
        seed: the task seed the shuffling seeds derive from.
        uniform_weights: report 1 sample, so FedAvg weights clients equally.
    """
    flwr = _flwr()

    def client_fn(context: Any) -> Any:
        client = int(context.node_config["partition-id"])
        return HeadClient.create(
            client,
            load_partition(client),
            recipe,
            clip_norm=clip_norm,
            seed=seed,
            uniform_weights=uniform_weights,
        ).to_client()

    return flwr.client.ClientApp(client_fn=client_fn)


@dataclass(frozen=True)
class FlowerRound:
    """What the server reports after a round: the aggregated head's round (1-based), the
    clients that reported and, with DP, the privacy spent so far."""

    round: int
    reports: int
    privacy: PrivacySpent | None


def _check(spec: TaskSpec, population: int) -> None:
    if spec.aggregator not in FLOWER_AGGREGATORS:
        raise InvalidInput(
            f"aggregator must be one of {', '.join(FLOWER_AGGREGATORS)} on Flower; "
            f"got {spec.aggregator!r}"
        )
    if not 1 <= spec.clients_per_round <= population:
        raise InvalidInput(
            f"clients_per_round must be in [1, {population}] (the clients Flower can sample); "
            f"got {spec.clients_per_round}"
        )
    if spec.dp and spec.aggregator != "fedavg":
        raise InvalidInput(
            f"aggregator {spec.aggregator!r} does not combine with DP; use aggregator fedavg."
        )
    if spec.secagg or spec.fedbuff or spec.adaptive_clipping:
        raise InvalidInput(
            "secagg, fedbuff and adaptive_clipping are pocketml's server features; a task on "
            "Flower runs synchronous rounds with fixed clipping (use Flower's SecAgg+ mods "
            "for secure aggregation)."
        )


def strategy_for(
    spec: TaskSpec,
    initial: Head,
    *,
    population: int,
    on_round: Callable[[FlowerRound], None] | None = None,
    evaluate_fn: Callable[[int, list[np.ndarray], dict[str, Any]], Any] | None = None,
    account_privacy: bool = True,
) -> Any:
    """The Flower strategy that runs ``spec``'s rounds from ``initial``.

    ``fedavg`` is Flower's ``FedAvg``, ``trimmed_mean`` its ``FedTrimmedAvg`` (``beta =
    trim_fraction``), ``median`` its ``FedMedian``; ``centered_clipping`` is a ``FedAvg`` whose
    aggregation is pocketml's :func:`~pocketml.federated.centered_clipping` of the clients'
    updates. With ``noise_multiplier > 0`` the strategy is wrapped in Flower's
    ``DifferentialPrivacyServerSideFixedClipping(z, clip_norm, clients_per_round)`` and
    (ε, δ) after every round comes from :class:`~pocketml.federated.PrivacyAccountant` with
    ``q = clients_per_round / population``, put in the round's fit metrics (``epsilon``,
    ``delta``) and passed to ``on_round``.

    Args:
        spec: the task (``aggregator`` may also be ``centered_clipping`` here).
        initial: the starting head (the base version's).
        population: the clients Flower may sample from (with DP, the accountant's
            population; ``spec.population`` is used when set).
        on_round: called after each round's aggregation.
        evaluate_fn: Flower's server-side evaluation callback, passed through.
        account_privacy: False leaves out the (ε, δ) report (benchmarks timing Flower's own
            server work); the rounds are the same.

    Raises:
        InvalidInput: a setting Flower cannot run (see :data:`FLOWER_AGGREGATORS`).
        MissingDependencyError: flwr (or, with DP, dp-accounting) is not installed.
    """
    population = spec.population if spec.population is not None else population
    _check(spec, population)
    _flwr()
    from flwr.common import ndarrays_to_parameters
    from flwr.server import strategy as fs

    common: dict[str, Any] = {
        "fraction_fit": spec.clients_per_round / population,
        "fraction_evaluate": 0.0,
        "min_fit_clients": spec.clients_per_round,
        "min_evaluate_clients": 0,
        "min_available_clients": spec.clients_per_round,
        "on_fit_config_fn": lambda rnd: {"round": rnd - 1},
        "evaluate_fn": evaluate_fn,
        "initial_parameters": ndarrays_to_parameters(head_to_ndarrays(initial)),
        "accept_failures": False,
    }
    inner: Any
    if spec.aggregator == "trimmed_mean":
        inner = fs.FedTrimmedAvg(beta=spec.trim_fraction, **common)
    elif spec.aggregator == "median":
        inner = fs.FedMedian(**common)
    elif spec.aggregator == "centered_clipping":
        inner = _centered_clipping_class(fs.FedAvg)(**common)
    else:
        inner = fs.FedAvg(**common)
    if spec.dp:
        inner = fs.DifferentialPrivacyServerSideFixedClipping(
            inner, spec.noise_multiplier, spec.clip_norm, spec.clients_per_round
        )
    accountant = (
        PrivacyAccountant(
            spec.noise_multiplier, min(1.0, spec.clients_per_round / population), spec.delta
        )
        if spec.dp and account_privacy
        else None
    )
    return _reporting_class(fs.Strategy)(inner, accountant, on_round)


def _centered_clipping_class(fedavg: Any) -> Any:
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays

    class CenteredClipping(fedavg):
        """FedAvg's sampling and configuration, pocketml's centered clipping of the updates."""

        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
            self._current = head_from_parameters(parameters)
            return super().configure_fit(server_round, parameters, client_manager)

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            if not results or (failures and not self.accept_failures):
                return None, {}
            base = self._current.to_vector()
            updates = [
                head_from_parameters(parameters_to_ndarrays(res.parameters)).to_vector() - base
                for _, res in results
            ]
            head = self._current.with_vector(base + centered_clipping(updates))
            return ndarrays_to_parameters(head_to_ndarrays(head)), {}

    return CenteredClipping


def _reporting_class(strategy: Any) -> Any:
    class Reporting(strategy):
        """Delegates to the wrapped strategy; after each aggregation spends a round on the
        accountant and reports it."""

        def __init__(
            self,
            inner: Any,
            accountant: PrivacyAccountant | None,
            on_round: Callable[[FlowerRound], None] | None,
        ) -> None:
            super().__init__()
            self.inner, self.accountant, self.on_round = inner, accountant, on_round

        def __repr__(self) -> str:
            return f"pocketml({self.inner!r})"

        def initialize_parameters(self, client_manager: Any) -> Any:
            return self.inner.initialize_parameters(client_manager)

        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
            return self.inner.configure_fit(server_round, parameters, client_manager)

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            parameters, metrics = self.inner.aggregate_fit(server_round, results, failures)
            privacy = None
            if parameters is not None and self.accountant is not None:
                privacy = self.accountant.spend_round()
                metrics = {**metrics, "epsilon": privacy.epsilon, "delta": privacy.delta}
            if parameters is not None and self.on_round is not None:
                self.on_round(FlowerRound(server_round, len(results), privacy))
            return parameters, metrics

        def configure_evaluate(
            self, server_round: int, parameters: Any, client_manager: Any
        ) -> Any:
            return self.inner.configure_evaluate(server_round, parameters, client_manager)

        def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> Any:
            return self.inner.aggregate_evaluate(server_round, results, failures)

        def evaluate(self, server_round: int, parameters: Any) -> Any:
            return self.inner.evaluate(server_round, parameters)

    return Reporting


def server_app(
    spec: TaskSpec,
    initial: Head,
    *,
    population: int,
    on_round: Callable[[FlowerRound], None] | None = None,
) -> Any:
    """A Flower ``ServerApp`` running ``spec.rounds`` rounds of :func:`strategy_for`."""
    flwr = _flwr()

    def server_fn(context: Any) -> Any:
        strategy = strategy_for(spec, initial, population=population, on_round=on_round)
        return flwr.server.ServerAppComponents(
            strategy=strategy, config=flwr.server.ServerConfig(num_rounds=spec.rounds)
        )

    return flwr.server.ServerApp(server_fn=server_fn)


def run_in_process(
    spec: TaskSpec,
    initial: Head,
    partitions: Sequence[Partition],
    *,
    seed: int,
    on_round: Callable[[FlowerRound], None] | None = None,
    uniform_weights: bool = False,
) -> tuple[Head, list[FlowerRound]]:
    """Run ``spec`` through Flower's ``Server`` with one in-process client per partition.

    The clients are :class:`HeadClient` behind a ``ClientProxy`` that calls them directly;
    Flower's ``SimpleClientManager`` samples each cohort (``random.sample``: seed Python's
    ``random`` for a repeatable run). Returns the final head and every round's report.
    """
    _flwr()
    from flwr.server import Server, SimpleClientManager

    manager = SimpleClientManager()
    for index, partition in enumerate(partitions):
        client = HeadClient.create(
            index,
            partition,
            spec.recipe,
            clip_norm=spec.clip_norm,
            seed=seed,
            uniform_weights=uniform_weights,
        )
        manager.register(in_process_proxy(str(index), client.to_client()))
    rounds: list[FlowerRound] = []

    def report(info: FlowerRound) -> None:
        rounds.append(info)
        if on_round is not None:
            on_round(info)

    strategy = strategy_for(spec, initial, population=len(partitions), on_round=report)
    server = Server(client_manager=manager, strategy=strategy)
    server.fit(num_rounds=spec.rounds, timeout=None)
    return head_from_parameters(server.parameters), rounds


def in_process_proxy(cid: str, client: Any) -> Any:
    """A Flower ``ClientProxy`` that calls ``client`` (a ``flwr.client.Client``, e.g.
    ``HeadClient.create(...).to_client()``) in this process: no gRPC, no Ray."""
    _flwr()
    return _in_process_proxy_class()(cid, client)


def _in_process_proxy_class() -> Any:
    from flwr.server.client_proxy import ClientProxy

    class InProcessClientProxy(ClientProxy):
        """A Flower client in this process: each call goes straight to the ``Client``."""

        def __init__(self, cid: str, client: Any) -> None:
            super().__init__(cid)
            self.client = client

        def get_properties(self, ins: Any, timeout: Any, group_id: Any) -> Any:
            return self.client.get_properties(ins)

        def get_parameters(self, ins: Any, timeout: Any, group_id: Any) -> Any:
            return self.client.get_parameters(ins)

        def fit(self, ins: Any, timeout: Any, group_id: Any) -> Any:
            return self.client.fit(ins)

        def evaluate(self, ins: Any, timeout: Any, group_id: Any) -> Any:
            return self.client.evaluate(ins)

        def reconnect(self, ins: Any, timeout: Any, group_id: Any) -> Any:
            from flwr.common import DisconnectRes

            return DisconnectRes(reason="")

    return InProcessClientProxy


def replace_aggregator(spec: TaskSpec, aggregator: str) -> TaskSpec:
    """``spec`` with ``aggregator`` (``centered_clipping`` is Flower-side only: a stored
    task's spec does not take it)."""
    if aggregator not in FLOWER_AGGREGATORS:
        raise InvalidInput(f"aggregator must be one of {', '.join(FLOWER_AGGREGATORS)}")
    return dataclasses.replace(spec, aggregator=aggregator)
