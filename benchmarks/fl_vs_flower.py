"""pocketml's federated rounds side by side with Flower's strategies, in one run.

    PYTHONPATH=src python benchmarks/fl_vs_flower.py [--rounds 40] [--seeds 30]
        [--ray-rounds 10] [--json FILE]

The task of fl_accuracy.py: digits (pixels / 16 stand in for a frozen backbone's
embeddings), 1,400 training samples split non-IID over 50 clients of two classes each
(``split_non_iid``), 20 clients per round, each trains the softmax head for 2 epochs
(batch 16, lr 0.1) with pocketml's numpy ``train_head``, 397 test samples.

Flower runs in its own venv, ``benchmarks/.venv-flower`` (created on first use, then
reused; gitignored), with ``flwr[simulation]==1.42.0`` and numpy (no torch), in a
subprocess (``benchmarks/_flower_side.py``). Its legacy strategies ``FedAvg`` and
``DifferentialPrivacyServerSideFixedClipping`` are driven round by round with in-process
``ClientProxy`` stand-ins (no Ray, no gRPC: server time is the strategy's own work). Per
seed both sides get the same split, the same cohort each round (pocketml's sampling is
replayed and handed to Flower's client manager) and the same local training seeds, so
the rows differ only in what the server computes and, with DP, in the noise draws.

Rows: FedAvg; DP-FedAvg with fixed clipping (C = 1) at z = 0.5 and z = 1.0. Columns:
accuracy after the last round (mean and range over seeds), pocketml - Flower in points
(mean ± standard error), pocketml's ε at δ = 1e-5 for this population (q = 0.4), median
server ms per round, start-up. Flower 1.42's own accountant (``flwr[dp]``) is asked too:
its message-API DP wrapper accepts it only without sampling amplification, so the ε it
would report is printed beside the one it computes with Poisson sampling (which should
equal pocketml's: both wrap dp-accounting's RDP accountant). Under each DP row,
"= noise": Flower's wrapper fed pocketml's noise draws (common random numbers: the same
expected gap with far less variance; what is left is Flower's FedAvg weighting the clipped
updates by num_examples where pocketml's DP-FedAvg takes their plain sum / m). Wiring
checks in the JSON: FedAvg's heads agree to ~1e-16; with shared noise and Flower's clients
reporting num_examples = 1, DP heads agree to ~1e-15. Last, Flower's own Ray simulation
engine (``run_simulation``, 50 supernodes) runs the FedAvg task for ``--ray-rounds``
rounds: wall time per round with training, and start-up, against ``simulate``'s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from pocketml.data import load_digits
from pocketml.federated import (
    DPFedAvg,
    PrivacyAccountant,
    SimulationConfig,
    fedavg,
    simulate,
    split_non_iid,
)
from pocketml.fl import Head, LocalRecipe, train_head

SHORT = {"fedavg": "FedAvg", "dp-fedavg z=0.5 C=1": "DP z=0.5", "dp-fedavg z=1.0 C=1": "DP z=1.0"}
HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-flower"
FLWR = "flwr[simulation,dp]==1.42.0"
CASES: dict[str, dict[str, float]] = {
    "fedavg": {"noise_multiplier": 0.0},
    "dp-fedavg z=0.5 C=1": {"noise_multiplier": 0.5, "clip_norm": 1.0},
    "dp-fedavg z=1.0 C=1": {"noise_multiplier": 1.0, "clip_norm": 1.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--ray-rounds", type=int, default=10, help="0: skip the Ray run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.ERROR)  # dp-accounting's notes on orders
    python = _flower_python()
    with threadpool_limits(1):
        report = _run(args.rounds, args.seeds, args.ray_rounds, python)
    _print(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _flower_python() -> Path:
    """Return the Flower venv's interpreter, creating the venv or (re)installing the pinned
    flwr on first use (or after an interrupted install)."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    version = FLWR.split("==")[1]
    # sqlalchemy: _flower_side.py imports pocketml.federated (its Flower module), whose
    # package imports the service's tables.
    probe = f"import flwr, dp_accounting, ray, sqlalchemy; assert flwr.__version__ == {version!r}"
    if subprocess.run([str(python), "-c", probe], capture_output=True).returncode != 0:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", FLWR, "numpy", "sqlalchemy"],
            check=True,
        )
    return python


def _cohorts(config: SimulationConfig) -> np.ndarray:
    """pocketml's cohort for every round: ``simulate``'s sampling stream, replayed."""
    rng = np.random.default_rng([config.seed, 0])
    rng.choice(config.n_clients, round(config.malicious_fraction * config.n_clients), replace=False)
    return np.array(
        [
            rng.choice(config.n_clients, config.clients_per_round, replace=False)
            for _ in range(config.rounds)
        ]
    )


def _run(rounds: int, n_seeds: int, ray_rounds: int, python: Path) -> dict[str, Any]:
    data = load_digits()
    x = data.features.reshape(len(data.labels), -1) / 16.0
    order = np.random.default_rng(0).permutation(len(data.labels))
    tr, te = order[:1400], order[1400:]
    recipe = LocalRecipe(epochs=2, batch_size=16, learning_rate=0.1)
    base = {"n_clients": 50, "clients_per_round": 20, "rounds": rounds, "recipe": recipe}
    seeds = list(range(n_seeds))
    ours: dict[str, list[dict[str, Any]]] = {name: [] for name in CASES}
    flower_configs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            parts = split_non_iid(data.labels[tr], 50, 2, seed)
            task = f"task-{seed}.npz"
            np.savez(
                Path(tmp) / task,
                x_train=x[tr],
                y_train=data.labels[tr],
                x_test=x[te],
                y_test=data.labels[te],
                indices=np.concatenate(parts),
                offsets=np.cumsum([0] + [p.size for p in parts]),
                cohorts=_cohorts(SimulationConfig(**base, seed=seed)),
            )
            for name, extra in CASES.items():
                config = SimulationConfig(**base, **extra, seed=seed)
                start = time.perf_counter()
                result = simulate(x[tr], data.labels[tr], x[te], data.labels[te], config)
                ours[name].append(
                    {
                        "seconds": time.perf_counter() - start,
                        "accuracy": result.accuracy[-1],
                        "epsilon": result.epsilon[-1] if result.epsilon else None,
                        "head": result.head.to_vector(),
                    }
                )
                variants = [(False, False)]
                if extra["noise_multiplier"] > 0:
                    variants += [(True, False)] + ([(True, True)] if seed == 0 else [])
                for shared, uniform in variants:
                    flower_configs.append(
                        {
                            "task": task,
                            "name": name,
                            "seed": seed,
                            "shared_noise": shared,
                            "uniform_weights": uniform,
                            "noise_multiplier": extra["noise_multiplier"],
                            "clip_norm": extra.get("clip_norm"),
                            "recipe": {"epochs": 2, "batch_size": 16, "learning_rate": 0.1},
                        }
                    )
        (Path(tmp) / "configs.json").write_text(json.dumps(flower_configs))
        env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src"), "OPENBLAS_NUM_THREADS": "1"}
        start = time.perf_counter()
        subprocess.run(
            [
                str(python),
                str(HERE / "_flower_side.py"),
                str(Path(tmp) / "task-0.npz"),
                str(Path(tmp) / "configs.json"),
                str(Path(tmp) / "out.json"),
            ],
            check=True,
            env=env,
        )
        flower_wall = time.perf_counter() - start
        flower = json.loads((Path(tmp) / "out.json").read_text())
        ray = _ray(python, Path(tmp), ray_rounds, env) if ray_rounds > 1 else None
    # flower["runs"] is in the order of flower_configs.
    theirs = {
        (c["seed"], c["name"], c["shared_noise"], c["uniform_weights"]): r
        for c, r in zip(flower_configs, flower["runs"], strict=True)
    }
    rows: dict[str, Any] = {}
    for name, extra in CASES.items():
        acc_ours = [r["accuracy"] for r in ours[name]]
        runs = [theirs[seed, name, False, False] for seed in seeds]
        acc_flower = [r["accuracy"][-1] for r in runs]
        gaps = [100 * (a - b) for a, b in zip(acc_ours, acc_flower, strict=True)]
        row: dict[str, Any] = {
            "pocketml": _summary(acc_ours),
            "flower": _summary(acc_flower),
            "difference_points": _summary(gaps),
            "max_abs_head_difference": max(
                float(np.max(np.abs(o["head"] - np.asarray(f["head"]))))
                for o, f in zip(ours[name], runs, strict=True)
            ),
            "flower_server_ms_per_round": statistics.median(r["server_ms_median"] for r in runs),
            "pocketml_server_ms_per_round": _our_server_ms(x[tr], data.labels[tr], recipe, extra),
        }
        if extra["noise_multiplier"] > 0:
            same = [theirs[seed, name, True, False] for seed in seeds]
            row["flower_same_noise"] = _summary([r["accuracy"][-1] for r in same])
            row["difference_points_same_noise"] = _summary(
                [
                    100 * (o["accuracy"] - r["accuracy"][-1])
                    for o, r in zip(ours[name], same, strict=True)
                ]
            )
            row["max_abs_head_difference_same_noise"] = max(
                float(np.max(np.abs(o["head"] - np.asarray(r["head"]))))
                for o, r in zip(ours[name], same, strict=True)
            )
            # Wiring check: Flower's clients reporting num_examples = 1 (uniform FedAvg, as
            # pocketml's DP-FedAvg averages) and pocketml's noise -> the same model.
            uniform = theirs[seeds[0], name, True, True]
            row["max_abs_head_difference_same_noise_uniform_weights_seed0"] = float(
                np.max(np.abs(ours[name][0]["head"] - np.asarray(uniform["head"])))
            )
            row["pocketml_epsilon"] = ours[name][0]["epsilon"]
            unamplified = PrivacyAccountant(extra["noise_multiplier"], 1.0, 1e-5)
            unamplified.rounds = rounds
            row["pocketml_epsilon_no_amplification"] = unamplified.spent().epsilon
            row["flower_accountant_epsilon"] = runs[0]["epsilon"]
            row["delta"] = 1e-5
        rows[name] = row
    if rows["fedavg"]["max_abs_head_difference"] > 1e-9:
        raise SystemExit(
            "FedAvg's heads differ between pocketml and Flower: the cohort replay "
            "(_cohorts) no longer matches simulate's sampling; update _cohorts."
        )
    return {
        "task": "non-IID digits head, 50 clients x 2 classes, 20 per round",
        "rounds": rounds,
        "seeds": seeds,
        "flwr": flower["flwr"],
        "flower_numpy": flower["numpy"],
        "flower_driver": "legacy strategies driven directly, in-process ClientProxy stand-ins",
        "startup_s": {
            "pocketml": _our_startup(),
            "flower_import": flower["import_s"],
            "flower_strategy_setup": statistics.median(r["setup_s"] for r in flower["runs"]),
            "flower_subprocess_wall_all_runs": flower_wall,
        },
        "rows": rows,
        "simulate_s_per_round": {
            "pocketml_fedavg": statistics.median(r["seconds"] for r in ours["fedavg"]) / rounds,
            "flower_ray": ray,
        },
    }


def _ray(python: Path, tmp: Path, rounds: int, env: dict[str, str]) -> dict[str, Any]:
    """Flower's Ray simulation engine on seed 0's FedAvg task (timings; see _flower_side)."""
    out = tmp / "ray.json"
    args = [str(rounds), "0", str(out)]
    proc = subprocess.run(
        [str(python), str(HERE / "_flower_side.py"), "ray", str(tmp / "task-0.npz"), *args],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        proc.check_returncode()
    ray: dict[str, Any] = json.loads(out.read_text())
    steady = ray["round_s"][:-1]  # the last one also holds run_simulation's shutdown
    ray["steady_round_s"] = statistics.median(steady)
    ray["startup_s"] = ray["import_s"] + ray["import_simulation_s"] + ray["first_round_s"]
    ray["startup_s"] -= ray["steady_round_s"]
    return ray


def _summary(values: list[float]) -> dict[str, Any]:
    """Mean, range and the standard error of the mean over seeds."""
    return {
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
        "sem": statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0,
        "values": values,
    }


def _our_server_ms(
    x: np.ndarray, y: np.ndarray, recipe: LocalRecipe, extra: dict[str, float], runs: int = 41
) -> float:
    """Median ms of pocketml's server step for one round of 20 real updates (the first
    round's): FedAvg, or DP-FedAvg's clip + sum + noise and the accountant's ε after the
    round. The aggregator and accountant live as long as the task, as in ``simulate``; the
    accountant's first round (its one-round RDP curve, ~60 ms at q = 0.4) is paid once per
    task and left out, like Flower's strategy set-up."""
    parts = split_non_iid(y, 50, 2, 0)
    head = Head.zeros(x.shape[1], 10)
    updates = [train_head(head, x[parts[c]], y[parts[c]], recipe, seed=c) for c in range(20)]
    counts = [parts[c].size for c in range(20)]
    rng = np.random.default_rng(0)
    z = extra["noise_multiplier"]
    dp = DPFedAvg(extra.get("clip_norm", 1.0), z, 20)
    accountant = PrivacyAccountant(z if z > 0 else 1.0, 20 / 50, 1e-5)
    accountant.spend_round()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        if z > 0:
            dp.aggregate(updates, rng)
            accountant.spend_round()
        else:
            fedavg(updates, counts)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def _our_startup() -> float:
    """Seconds for a fresh interpreter to import what ``simulate`` needs (the import itself,
    timed inside the child, as Flower's is)."""
    code = (
        "import time; t = time.perf_counter(); "
        "from pocketml.federated import simulate, SimulationConfig; "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return float(out)


def _print(report: dict[str, Any]) -> None:
    s = report["startup_s"]
    print(
        f"{report['task']},\n{report['rounds']} rounds, {len(report['seeds'])} seeds; "
        f"Flower: flwr {report['flwr']}'s strategies driven directly"
    )
    print(f"  {'run':<11} {'pocketml':>17} {'Flower':>17} {'Δ pts':>11} {'ε':>5} {'ms/round':>10}")
    for name, row in report["rows"].items():
        gap = row["difference_points"]
        eps = f"{row['pocketml_epsilon']:5.1f}" if "pocketml_epsilon" in row else f"{'-':>5}"
        ms = f"{row['pocketml_server_ms_per_round']:.2f}/{row['flower_server_ms_per_round']:.2f}"
        print(
            f"  {SHORT[name]:<11} {_cell(row['pocketml']):>17} {_cell(row['flower']):>17} "
            f"{gap['mean']:+5.2f}±{gap['sem']:.2f} {eps} {ms:>10}"
        )
        if "flower_same_noise" in row:
            same = row["difference_points_same_noise"]
            print(
                f"  {'  = noise':<11} {'':>17} {_cell(row['flower_same_noise']):>17} "
                f"{same['mean']:+5.2f}±{same['sem']:.2f}"
            )
    print(
        f"  start-up (import + set-up): pocketml {s['pocketml']:.2f} s, "
        f"Flower {s['flower_import']:.2f} s + {s['flower_strategy_setup'] * 1000:.0f} ms"
    )
    dp_rows = [row for row in report["rows"].values() if "pocketml_epsilon" in row]
    flower_eps = [row["flower_accountant_epsilon"] for row in dp_rows]
    theirs = " / ".join(f"{e['no-amplification']:.1f}" for e in flower_eps)
    poisson = " / ".join(f"{e['poisson']:.1f}" for e in flower_eps)
    print(
        f"  ε of the DP rows from Flower's accountant: {theirs} without amplification\n"
        f"  (all its wrapper allows), {poisson} with Poisson q = 0.4 (= pocketml's ε)"
    )
    checks = [
        row.get("max_abs_head_difference_same_noise_uniform_weights_seed0", 0.0)
        for row in report["rows"].values()
    ]
    fedavg_gap = report["rows"]["fedavg"]["max_abs_head_difference"]
    print(
        f"  wiring: heads equal to {fedavg_gap:.0e} (FedAvg), "
        f"{max(checks):.0e} (DP, shared noise, weights 1)"
    )
    sim = report["simulate_s_per_round"]
    ray = sim["flower_ray"]
    if ray is not None:
        print(
            f"  a round with training: simulate {sim['pocketml_fedavg'] * 1000:.0f} ms, "
            f"Flower on Ray {ray['steady_round_s'] * 1000:.0f} ms "
            f"(start-up {ray['startup_s']:.1f} s)"
        )
    print("  accuracy: mean [min-max] over seeds; Δ: pocketml - Flower, ± standard error;")
    print("  '= noise': Flower's wrapper fed pocketml's noise draws; ms: pocketml/Flower")


def _cell(summary: dict[str, Any]) -> str:
    return f"{summary['mean']:.3f} [{summary['min']:.2f}-{summary['max']:.2f}]"


if __name__ == "__main__":
    main()
