"""Flower's half of benchmarks/fl_vs_flower.py; runs inside benchmarks/.venv-flower.

    benchmarks/.venv-flower/bin/python benchmarks/_flower_side.py TASK.npz CONFIG.json OUT.json

Not run by hand: fl_vs_flower.py writes the task (the digits split, each round's cohort),
starts this script in Flower's own venv and reads back the accuracy after each round and
the server's time per round. The Flower side is pocketml's Flower module,
``pocketml.federated.flower`` (imported from the worktree's ``src``; flwr brings numpy and
``cryptography``, the venv adds ``sqlalchemy`` for the package's import): its ``HeadClient``
trains with pocketml's ``train_head``, so both sides run the same local recipe, and its
``strategy_for`` maps the task to Flower's ``FedAvg`` and
``DifferentialPrivacyServerSideFixedClipping``.

Flower's legacy strategies are driven directly, round by round, the way Flower's own
``Server.fit_round`` drives them: ``configure_fit`` with a client manager, each selected
client's ``fit``, then ``aggregate_fit``. The client manager returns the cohort the task
names (pocketml's cohort for that round), so the two sides see the same clients, and the
module's ``in_process_proxy`` calls each client in process (no gRPC, no Ray). Server time
per round counts ``configure_fit`` + ``aggregate_fit`` (with the Parameters
serialisation they do), not the clients' training.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

T_START = time.perf_counter()

import numpy as np  # noqa: E402
from flwr.common import Parameters, ndarrays_to_parameters  # noqa: E402
from flwr.server.client_manager import SimpleClientManager  # noqa: E402
from flwr.server.client_proxy import ClientProxy  # noqa: E402
from flwr.server.criterion import Criterion  # noqa: E402
from flwr.server.strategy import FedAvg  # noqa: E402
from flwr.supercore.privacy_accounting import (  # noqa: E402
    GaussianPrivacyEvent,
    NeighboringRelation,
    PrivacyConfig,
    SamplingMethod,
)
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant  # noqa: E402

from pocketml.federated import TaskSpec  # noqa: E402
from pocketml.federated.flower import (  # noqa: E402
    HeadClient,
    client_app,
    head_from_parameters,
    head_to_ndarrays,
    in_process_proxy,
    strategy_for,
)
from pocketml.fl import Head, LocalRecipe  # noqa: E402

T_IMPORTED = time.perf_counter()


class CohortClientManager(SimpleClientManager):
    """Flower's client manager, except that ``sample`` returns the task's cohort for the
    round (pocketml's), in place of ``random.sample`` over the registered clients."""

    def __init__(self, cohorts: np.ndarray) -> None:
        super().__init__()
        self.cohorts = cohorts
        self.round = 0

    def sample(
        self,
        num_clients: int,
        min_num_clients: int | None = None,
        criterion: Criterion | None = None,
    ) -> list[ClientProxy]:
        cohort = self.cohorts[self.round]
        assert num_clients == cohort.size, (num_clients, cohort.size)
        return [self.clients[str(int(c))] for c in cohort]


def run(task_path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Run the rounds of one configuration; return the accuracy curve and timings."""
    t0 = time.perf_counter()
    data = np.load(task_path)
    offsets = data["offsets"]
    parts = [data["indices"][offsets[i] : offsets[i + 1]] for i in range(offsets.size - 1)]
    recipe = LocalRecipe(**config["recipe"])
    cohorts = data["cohorts"]
    n_clients, per_round = len(parts), cohorts.shape[1]
    manager = CohortClientManager(cohorts)
    for c, shard in enumerate(parts):
        # pocketml.federated.flower's client (train_head; no client clipping here: Flower's
        # server-side DP wrapper clips, as in the comparison's design).
        client = HeadClient.create(
            c,
            (data["x_train"][shard], data["y_train"][shard]),
            recipe,
            clip_norm=None,
            seed=config["seed"],
            uniform_weights=config.get("uniform_weights", False),
        )
        manager.register(in_process_proxy(str(c), client.to_client()))
    n_classes = int(max(data["y_train"].max(), data["y_test"].max())) + 1
    head = Head.zeros(data["x_train"].shape[1], n_classes)
    # The task as pocketml.federated.flower maps it: Flower's FedAvg, wrapped in
    # DifferentialPrivacyServerSideFixedClipping(z, C, m) with DP. The ε report is left out
    # so the server time per round is Flower's own work.
    spec = TaskSpec(
        version=1,
        rounds=int(cohorts.shape[0]),
        clients_per_round=per_round,
        recipe=recipe,
        noise_multiplier=config["noise_multiplier"],
        clip_norm=config.get("clip_norm", 1.0),
    )
    strategy = strategy_for(spec, head, population=n_clients, account_privacy=False)
    if config["noise_multiplier"] > 0:
        # The wrapper draws its noise from numpy's global RNG (np.random.normal).
        np.random.seed(config["seed"])
        if config.get("shared_noise"):
            np.random.normal = _pocketml_noise(config["seed"])
    parameters = strategy.initialize_parameters(manager)
    assert parameters is not None
    startup = time.perf_counter() - t0
    accuracy, server_ms = [], []
    for rnd in range(1, cohorts.shape[0] + 1):
        manager.round = rnd - 1
        start = time.perf_counter()
        instructions = strategy.configure_fit(rnd, parameters, manager)
        server = time.perf_counter() - start
        results = [(proxy, proxy.fit(ins, None, None)) for proxy, ins in instructions]
        start = time.perf_counter()
        aggregated, _ = strategy.aggregate_fit(rnd, results, [])
        server += time.perf_counter() - start
        assert isinstance(aggregated, Parameters)
        parameters = aggregated
        server_ms.append(server * 1000)
        accuracy.append(head_from_parameters(parameters).accuracy(data["x_test"], data["y_test"]))
    final = head_from_parameters(parameters)
    epsilon = {}
    if config["noise_multiplier"] > 0:
        epsilon = {
            method.value: _flower_epsilon(
                config["noise_multiplier"], per_round, n_clients, cohorts.shape[0], method
            )
            for method in (SamplingMethod.NO_AMPLIFICATION, SamplingMethod.POISSON)
        }
    return {
        "epsilon": epsilon,
        "accuracy": accuracy,
        "head": final.to_vector().tolist(),
        "server_ms_median": statistics.median(server_ms),
        "setup_s": startup,
    }


def _flower_epsilon(
    z: float, per_round: int, population: int, rounds: int, sampling: SamplingMethod
) -> float:
    """ε at δ = 1e-5 from Flower's own accountant (``flwr[dp]``'s ``RdpAccountant``) for the
    event its message-API wrapper records each round. That wrapper
    (``flwr.serverapp.strategy.DifferentialPrivacyServerSideFixedClipping(...,
    accountant=...)``) accepts only ``no-amplification``; ``poisson`` is what the
    accountant computes when asked directly, for comparison with pocketml's."""
    accountant = RdpAccountant(
        PrivacyConfig(1e-5, population, NeighboringRelation.ADD_OR_REMOVE_ONE, sampling)
    )
    accountant.compose(GaussianPrivacyEvent(z, per_round, population), rounds)
    return float(accountant.get_privacy_spent().epsilon)


def _pocketml_noise(seed: int) -> Any:
    """A stand-in for ``np.random.normal`` that draws from pocketml's noise stream (``simulate``'s
    ``default_rng([seed, 1])``), in the same order pocketml draws it (weights row-major,
    then bias): a diagnostic that takes the noise draws out of the comparison, leaving
    what the two servers compute differently. Only the DP wrapper calls np.random.normal
    here (the clients' training uses its own Generator)."""
    stream = np.random.default_rng([seed, 1])

    def normal(loc: float = 0.0, scale: float = 1.0, size: Any = None) -> Any:
        return loc + scale * stream.standard_normal(size)

    return normal


def run_ray(task_path: Path, rounds: int, seed: int) -> dict[str, Any]:
    """Flower's own simulation engine (``run_simulation`` on Ray, 50 supernodes) on the
    FedAvg task: timings only. Flower samples the cohorts here (``random.sample``), so the
    accuracy is not paired with pocketml's and is reported, not compared."""
    t_import = time.perf_counter()
    import flwr.client  # noqa: F401  (timed: what a ClientApp needs)
    from flwr.common import Context
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.simulation import run_simulation

    start_import_done = time.perf_counter()
    data = dict(np.load(task_path))  # plain arrays: Ray pickles the client app's closure
    offsets = data["offsets"]
    parts = [data["indices"][offsets[i] : offsets[i + 1]] for i in range(offsets.size - 1)]
    n_clients, per_round = len(parts), data["cohorts"].shape[1]
    recipe = LocalRecipe(2, 16, 0.1)
    marks: list[float] = []
    final: list[Parameters] = []

    shards = [(data["x_train"][shard], data["y_train"][shard]) for shard in parts]
    client = client_app(shards.__getitem__, recipe, clip_norm=None, seed=seed)

    def fit_config(rnd: int) -> dict[str, Any]:
        marks.append(time.perf_counter())
        return {"round": rnd - 1}

    def evaluate(rnd: int, ndarrays: list[np.ndarray], config: dict[str, Any]) -> Any:
        final[:] = [ndarrays_to_parameters(ndarrays)]
        return None

    def server_fn(context: Context) -> ServerAppComponents:
        head = Head.zeros(data["x_train"].shape[1], 10)
        strategy = FedAvg(
            fraction_fit=per_round / n_clients,
            fraction_evaluate=0.0,
            min_fit_clients=per_round,
            min_available_clients=n_clients,
            on_fit_config_fn=fit_config,
            evaluate_fn=evaluate,
            initial_parameters=ndarrays_to_parameters(head_to_ndarrays(head)),
        )
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))

    random.seed(seed)
    start = time.perf_counter()
    run_simulation(
        ServerApp(server_fn=server_fn),
        client,
        num_supernodes=n_clients,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    total = time.perf_counter() - start
    marks.append(start + total)
    return {
        "rounds": rounds,
        "import_simulation_s": start_import_done - t_import,
        "first_round_s": marks[1] - start,
        "round_s": [b - a for a, b in itertools.pairwise(marks[1:])],
        "total_s": total,
        "accuracy": head_from_parameters(final[0]).accuracy(data["x_test"], data["y_test"]),
    }


def main() -> None:
    if sys.argv[1] == "ray":
        task, rounds, seed = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        report = {"import_s": T_IMPORTED - T_START, **run_ray(task, rounds, seed)}
        Path(sys.argv[5]).write_text(json.dumps(report))
        return
    task_path, config_path, out_path = map(Path, sys.argv[1:4])
    logging.getLogger("flwr").setLevel(logging.ERROR)  # one INFO line per clip and noise
    logging.getLogger("absl").setLevel(logging.ERROR)  # dp-accounting's notes on orders
    configs = json.loads(config_path.read_text())
    import flwr

    numpy_normal = np.random.normal
    runs = []
    for c in configs:
        runs.append(run(task_path.with_name(c["task"]), c))
        np.random.normal = numpy_normal
    out = {
        "flwr": flwr.__version__,
        "numpy": np.__version__,
        "import_s": T_IMPORTED - T_START,
        "runs": runs,
    }
    Path(out_path).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
