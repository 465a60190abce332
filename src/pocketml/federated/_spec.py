"""``TaskSpec``: every setting of a federated task with its default and its bounds, once.

The admin route, the CLI and the service all go through :func:`parse_task_spec`; a bad
value is an ``InvalidInput`` that names the field, says what was expected and what to do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pocketml.errors import InvalidInput
from pocketml.fl import LocalRecipe

__all__ = ["AGGREGATORS", "SECAGG_MIN_SUM", "Requirements", "TaskSpec", "parse_task_spec"]

AGGREGATORS = ("fedavg", "trimmed_mean", "median")
MAX_CLIENTS_PER_ROUND = 1000
SECAGG_MIN_SUM = 3
"""The fewest inputs a SecAgg round ever unmasks the sum of (whatever ``min_reports`` and
the threshold allow): the sum of two tells each of them the other's update. It is no
defence against one actor holding all but one of the inputs (docs/federated.md, SecAgg)."""
MAX_ROUNDS = 10_000
MAX_TIMEOUT_S = 7 * 86_400.0
ROLLOUT_OPTIONS = frozenset({"schedule", "min_dwell_s", "min_samples", "on_breach", "guardrails"})


@dataclass(frozen=True)
class Requirements:
    """What a device must meet to join (announced at check-in as ``requires``)."""

    charging: bool = True
    wifi: bool = True
    idle: bool = False
    min_samples: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The announcement's ``requires`` object."""
        return asdict(self)


@dataclass(frozen=True)
class TaskSpec:
    """A federated task's settings (``TaskSpec()`` holds every default but ``version``).

    Attributes:
        version: the base version (its head starts the task; its backbone stays frozen).
        rounds: rounds to aggregate; the task succeeds after that many.
        clients_per_round: the cohort size (``m``; with DP the expected size).
        min_reports: reports a round needs to aggregate; fewer close it without a model.
        round_timeout_s: from a round's opening to its upload deadline.
        join_window_s: how long a round takes joins (None: a quarter of the timeout).
        max_retries: rounds closed without a model (or failed) before the task fails.
        recipe: the local training recipe (epochs, batch size, learning rate, l2).
        requires: device conditions and the minimum local samples.
        targeting: rollout-style targeting rules (who is announced the task).
        aggregator: ``fedavg``, ``trimmed_mean`` or ``median`` (robust ones need plain
            updates: no SecAgg, no DP).
        trim_fraction: per-side fraction the trimmed mean drops.
        max_sample_weight: the most samples one device's update weighs in FedAvg (the
            counts are self-claimed; None: no cap).
        clip_norm: the L2 bound every update is clipped to (the initial one if adaptive).
        adaptive_clipping: move the clip norm toward the median update norm (DP, no SecAgg).
        noise_multiplier: DP noise ``z`` (0: no DP, no ε claimed).
        delta: the δ ε is reported at.
        population: devices the task may reach; with DP the sampling probability is
            ``clients_per_round / population`` (required with DP).
        secagg: mask updates so the server only learns their sum.
        secagg_threshold: the SecAgg threshold as a fraction of a client's neighbours
            (0.5: the smallest majority, ``k//2 + 1``; it tolerates the most dropouts).
        secagg_neighbours: ``k`` of the SecAgg+ graph (even), or None for all pairs.
        secagg_step_timeout_s: the longest a SecAgg phase waits for its messages.
        local_noise_std: Gaussian noise a device adds after clipping, then clips again so
            the upload stays within ``clip_norm`` (0: none).
        seed: seeds the server's DP noise (tests and reproducible runs); None: OS entropy.
        fedbuff: asynchronous buffered aggregation (FedBuff): a device may report for a
            round up to ``fedbuff_max_staleness`` rounds old; the server steps as soon as
            ``fedbuff_buffer`` updates are in (each weighted by ``(1 + τ)^-α``), so slow
            devices do not stall a round. Plain FedAvg only (no DP, no SecAgg).
        fedbuff_buffer: ``K`` (None: ``clients_per_round``).
        fedbuff_max_staleness / fedbuff_staleness_exponent / fedbuff_server_learning_rate:
            the oldest round lag accepted, ``α`` and ``η_g``.
        rollout: start a staged rollout of the result with these options (``schedule``,
            ``min_dwell_s``, ``min_samples``, ``on_breach``, ``guardrails``: the rollouts'
            own, checked by them); None leaves the result a candidate.
    """

    version: int
    rounds: int = 10
    clients_per_round: int = 10
    min_reports: int = 2
    round_timeout_s: float = 600.0
    join_window_s: float | None = None
    max_retries: int = 3
    recipe: LocalRecipe = field(default_factory=LocalRecipe)
    requires: Requirements = field(default_factory=Requirements)
    targeting: tuple[dict[str, Any], ...] = ()
    aggregator: str = "fedavg"
    trim_fraction: float = 0.2
    max_sample_weight: int | None = None
    clip_norm: float = 1.0
    adaptive_clipping: bool = False
    noise_multiplier: float = 0.0
    delta: float = 1e-5
    population: int | None = None
    secagg: bool = False
    secagg_threshold: float = 0.5
    secagg_neighbours: int | None = None
    secagg_step_timeout_s: float = 60.0
    local_noise_std: float = 0.0
    seed: int | None = None
    fedbuff: bool = False
    fedbuff_buffer: int | None = None
    fedbuff_max_staleness: int = 5
    fedbuff_staleness_exponent: float = 0.5
    fedbuff_server_learning_rate: float = 1.0
    rollout: dict[str, Any] | None = None

    @property
    def join_window(self) -> float:
        """Seconds a round takes joins."""
        return self.join_window_s if self.join_window_s is not None else self.round_timeout_s / 4

    @property
    def dp(self) -> bool:
        """True when the task adds DP noise (and reports ε)."""
        return self.noise_multiplier > 0

    @property
    def sampling_probability(self) -> float | None:
        """``q = clients_per_round / population`` with DP, else None."""
        if not self.dp or self.population is None:
            return None
        return min(1.0, self.clients_per_round / self.population)

    @property
    def buffer_size(self) -> int:
        """FedBuff's ``K``: updates per server step."""
        return self.fedbuff_buffer if self.fedbuff_buffer is not None else self.clients_per_round

    @property
    def count_stddev(self) -> float:
        """σ_b of adaptive clipping's noisy unclipped count: ``max(1, m / 20)`` (the paper's
        ``m / 20``, at least 1)."""
        return max(1.0, self.clients_per_round / 20)

    @property
    def max_cohort(self) -> int:
        """The most devices a round selects: ``m``, or ``2 m`` with DP's Poisson sampling
        (whose cohort size varies around ``m``)."""
        return self.clients_per_round * (2 if self.dp else 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what is stored and shown)."""
        data = asdict(self)
        data["targeting"] = list(self.targeting)
        return data


def _fail(name: str, rule: str, value: Any, fix: str = "") -> InvalidInput:
    return InvalidInput(f"{name} must be {rule}; got {value!r}.{' ' + fix if fix else ''}")


def _int(raw: Mapping[str, Any], name: str, default: Any, low: int, high: int) -> Any:
    value = raw.get(name, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(name, f"an integer in [{low}, {high}]", value)
    return value


def _float(raw: Mapping[str, Any], name: str, default: Any, low: float, high: float) -> Any:
    value = raw.get(name, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(name, f"a number in [{low:g}, {high:g}]", value)
    value = float(value)
    if not math.isfinite(value) or not low <= value <= high:
        raise _fail(name, f"a number in [{low:g}, {high:g}]", value)
    return value


def _bool(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if not isinstance(value, bool):
        raise _fail(name, "true or false", value)
    return value


def parse_task_spec(raw: Mapping[str, Any]) -> TaskSpec:
    """Validate a task's settings (missing ones take their default).

    Raises:
        InvalidInput: an unknown field, a value out of its bounds, or settings that do not
            combine (the message names the field and what to change).
    """
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"a task spec is an object; got {type(raw).__name__}.")
    known = {f.name for f in fields(TaskSpec)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInput(f"unknown task settings {unknown}; known: {sorted(known)}.")
    if "version" not in raw:
        raise InvalidInput("version is required: the model version the task starts from.")
    recipe_raw = raw.get("recipe") or {}
    requires_raw = raw.get("requires") or {}
    if not isinstance(recipe_raw, Mapping) or not isinstance(requires_raw, Mapping):
        raise InvalidInput("recipe and requires must be objects.")
    extra = sorted(set(recipe_raw) - {"epochs", "batch_size", "learning_rate", "l2"})
    extra += sorted(set(requires_raw) - {"charging", "wifi", "idle", "min_samples"})
    if extra:
        raise InvalidInput(f"unknown recipe or requires fields {extra}.")
    defaults = LocalRecipe()
    recipe = LocalRecipe(
        epochs=_int(recipe_raw, "epochs", defaults.epochs, 1, 100),
        batch_size=_int(recipe_raw, "batch_size", defaults.batch_size, 1, 100_000),
        learning_rate=_float(recipe_raw, "learning_rate", defaults.learning_rate, 1e-9, 100.0),
        l2=_float(recipe_raw, "l2", defaults.l2, 0.0, 100.0),
    )
    requires = Requirements(
        charging=_bool(requires_raw, "charging", True),
        wifi=_bool(requires_raw, "wifi", True),
        idle=_bool(requires_raw, "idle", False),
        min_samples=_int(requires_raw, "min_samples", 1, 1, 2**31 - 1),
    )
    targeting = raw.get("targeting") or []
    if not isinstance(targeting, list) or not all(isinstance(r, Mapping) for r in targeting):
        raise _fail("targeting", "a list of rule objects", targeting)
    rollout = raw.get("rollout")
    if rollout is not None:
        if not isinstance(rollout, Mapping) or not set(rollout) <= ROLLOUT_OPTIONS:
            raise _fail(
                "rollout", f"null or an object with keys in {sorted(ROLLOUT_OPTIONS)}", rollout
            )
        rollout = dict(rollout)
    aggregator = raw.get("aggregator", "fedavg")
    if aggregator not in AGGREGATORS:
        raise _fail("aggregator", f"one of {', '.join(AGGREGATORS)}", aggregator)
    spec = TaskSpec(
        version=_int(raw, "version", None, 1, 2**31 - 1),
        rounds=_int(raw, "rounds", 10, 1, MAX_ROUNDS),
        clients_per_round=_int(raw, "clients_per_round", 10, 1, MAX_CLIENTS_PER_ROUND),
        min_reports=_int(raw, "min_reports", 2, 1, MAX_CLIENTS_PER_ROUND),
        round_timeout_s=_float(raw, "round_timeout_s", 600.0, 1.0, MAX_TIMEOUT_S),
        join_window_s=_float(raw, "join_window_s", None, 0.1, MAX_TIMEOUT_S),
        max_retries=_int(raw, "max_retries", 3, 0, 1000),
        recipe=recipe,
        requires=requires,
        targeting=tuple(dict(r) for r in targeting),
        aggregator=aggregator,
        trim_fraction=_float(raw, "trim_fraction", 0.2, 0.0, 0.49),
        max_sample_weight=_int(raw, "max_sample_weight", None, 1, 10**9),
        clip_norm=_float(raw, "clip_norm", 1.0, 1e-6, 1e6),
        adaptive_clipping=_bool(raw, "adaptive_clipping", False),
        noise_multiplier=_float(raw, "noise_multiplier", 0.0, 0.0, 100.0),
        delta=_float(raw, "delta", 1e-5, 1e-12, 0.1),
        population=_int(raw, "population", None, 1, 10**10),
        secagg=_bool(raw, "secagg", False),
        secagg_threshold=_float(raw, "secagg_threshold", 0.5, 0.5, 1.0),
        secagg_neighbours=_int(raw, "secagg_neighbours", None, 2, MAX_CLIENTS_PER_ROUND),
        secagg_step_timeout_s=_float(raw, "secagg_step_timeout_s", 60.0, 0.1, MAX_TIMEOUT_S),
        local_noise_std=_float(raw, "local_noise_std", 0.0, 0.0, 100.0),
        seed=_int(raw, "seed", None, 0, 2**63 - 1),
        fedbuff=_bool(raw, "fedbuff", False),
        fedbuff_buffer=_int(raw, "fedbuff_buffer", None, 1, MAX_CLIENTS_PER_ROUND),
        fedbuff_max_staleness=_int(raw, "fedbuff_max_staleness", 5, 0, 1000),
        fedbuff_staleness_exponent=_float(raw, "fedbuff_staleness_exponent", 0.5, 0.0, 10.0),
        fedbuff_server_learning_rate=_float(raw, "fedbuff_server_learning_rate", 1.0, 1e-6, 100.0),
        rollout=rollout,
    )
    _check_combination(spec)
    return spec


def _check_combination(spec: TaskSpec) -> None:
    if spec.min_reports > spec.clients_per_round:
        raise InvalidInput(
            f"min_reports ({spec.min_reports}) must be <= clients_per_round "
            f"({spec.clients_per_round})."
        )
    if spec.join_window > spec.round_timeout_s:
        raise InvalidInput(
            f"join_window_s ({spec.join_window:g}) must be <= round_timeout_s "
            f"({spec.round_timeout_s:g})."
        )
    if spec.dp and spec.population is None:
        raise InvalidInput(
            "population is required with noise_multiplier > 0: the privacy guarantee "
            "depends on the sampling probability clients_per_round / population."
        )
    if spec.dp and spec.population is not None and spec.population < spec.clients_per_round:
        raise InvalidInput(
            f"population ({spec.population}) must be >= clients_per_round "
            f"({spec.clients_per_round})."
        )
    if spec.adaptive_clipping and not spec.dp:
        raise InvalidInput("adaptive_clipping is part of DP-FedAvg: set noise_multiplier > 0.")
    if spec.adaptive_clipping and 2 * spec.count_stddev <= 1 / spec.noise_multiplier:
        raise InvalidInput(
            f"adaptive_clipping needs noise_multiplier > {1 / (2 * spec.count_stddev):.3g} with "
            f"clients_per_round {spec.clients_per_round} (the clip-count query takes part of "
            "the noise); raise noise_multiplier or turn adaptive_clipping off."
        )
    if spec.aggregator != "fedavg" and (spec.secagg or spec.dp):
        raise InvalidInput(
            f"aggregator {spec.aggregator!r} needs every update in the clear: it combines "
            "with neither secagg nor DP; use aggregator fedavg."
        )
    if spec.secagg and spec.adaptive_clipping:
        raise InvalidInput(
            "adaptive_clipping needs each update's norm, which secagg hides; drop one."
        )
    if spec.secagg and spec.clients_per_round < SECAGG_MIN_SUM:
        raise InvalidInput(
            f"secagg needs clients_per_round >= {SECAGG_MIN_SUM} (a sum of fewer inputs "
            "tells each one the other's update)."
        )
    if spec.fedbuff and (spec.secagg or spec.dp or spec.aggregator != "fedavg"):
        raise InvalidInput(
            "fedbuff combines with plain FedAvg only: turn secagg and DP off and keep "
            "aggregator fedavg (a buffered, staleness-weighted sum has no round cohort)."
        )
    if spec.fedbuff and spec.min_reports > spec.buffer_size:
        raise InvalidInput(
            f"min_reports ({spec.min_reports}) must be <= fedbuff_buffer ({spec.buffer_size})."
        )
    k = spec.secagg_neighbours
    if k is not None and k % 2:
        raise _fail("secagg_neighbours", "an even number (or null for all pairs)", k)
