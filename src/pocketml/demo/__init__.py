"""``pocketml demo``: the whole pocketml story on the bundled digits data.

Each lifecycle stage adds a chapter here. Today: data (fingerprint, validation) -> train
``cnn-small`` (for devices) and ``cnn-large`` (for the cloud) -> convert both to ONNX, ORT,
TFLite and Core ML with parity checks -> optimize cnn-small (int8/fp16), benchmark every
variant and choose one per device class -> ship: a server started in-process on a free port,
an app, the build pushed as a signed version, promoted, and one package downloaded and
verified the way a device will -> 50 simulated phones run hybrid inference on low-light
digits -> a good version rolls out 10 % -> 100 %, a worse one is rolled back by its
guardrails, an A/B test between two good versions -> hold the line: the signing key rotated
and revoked under a live phone, a lying network replaying the revoked package, hostile
requests -> phones learn together: federated rounds with DP and SecAgg+ on their own photos,
the result rolled out -> ``report.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pocketml._tables import Column, fitted_table
from pocketml._version import __version__
from pocketml.config import (
    AlertSettings,
    LoopSettings,
    RolloutEvalSettings,
    ServerSettings,
    Settings,
)
from pocketml.convert import TARGETS, ConversionResult, convert_model
from pocketml.convert.build import VariantGroup, write_build
from pocketml.data import load_digits, parse_augmentations, validate_dataset
from pocketml.demo._devices import monitoring_reference, run_devices, split_holdout
from pocketml.demo._federated import FederatedDemo, learn_together
from pocketml.demo._loop import close_the_loop
from pocketml.demo._safe import ship_safely
from pocketml.demo._ship import ship
from pocketml.demo._trust import hold_the_line
from pocketml.demo._watch import watch_the_world
from pocketml.errors import InvalidInput
from pocketml.optimize import plot_variants
from pocketml.optimize.config import (
    BenchSection,
    BuildConfig,
    DistillSection,
    ModelSection,
    MonitorSection,
    TrainSection,
)
from pocketml.optimize.pipeline import VariantMatrix, optimize_and_select, resolve_profiles
from pocketml.server.background import serve_in_thread
from pocketml.server.client import AdminClient
from pocketml.sketch import profile_model
from pocketml.train import TrainConfig, TrainResult, model_inputs, train

_DEMO_OPERATOR_TOKEN = "pml_op_demo-operator-token"

__all__ = ["CHAPTERS", "DemoConfig", "run_demo"]


def _parquet_summary(root: Path) -> dict[str, int]:
    """Events and files of the exported telemetry under ``root``."""
    import pyarrow.parquet as pq

    files = sorted(root.rglob("*.parquet")) if root.is_dir() else []
    return {"files": len(files), "events": sum(pq.read_metadata(f).num_rows for f in files)}


@dataclass(frozen=True)
class DemoConfig:
    """Knobs of the demo (the defaults are what ``pocketml demo`` runs)."""

    seed: int = 0
    epochs_small: int = 30
    epochs_large: int = 12
    targets: tuple[str, ...] = TARGETS
    bench_iterations: int = 100
    train_augment: str = "dim=0.6,noise=0.2"
    low_light: str = "dim=0.4,noise=0.15"
    devices: int = 50
    rollout_schedule: tuple[float, ...] = (10.0, 100.0)
    rollout_min_samples: int = 100
    samples_per_device: int = 30
    # chapter 7: the android-low phones' new camera, and the fleet that watches it
    new_camera: str = "dim=0.7,noise=0.35"
    watch_devices: int = 20
    # chapter 8: the recipe the loop re-runs distils the device model (for epochs_small
    # epochs) from a cnn-large teacher trained this long; the canary's rollout steps
    teacher_epochs: int = 20
    loop_schedule: tuple[float, ...] = (25.0, 100.0)
    # chapter 11: the phones that learn together and the rounds they run
    federated_phones: int = 30
    federated_rounds: int = 5


# The chapters, numbered as the demo prints them (``pocketml demo --chapter N``).
CHAPTERS: dict[int, str] = {
    1: "Data",
    2: "Train",
    3: "Convert",
    4: "Optimize",
    5: "Ship",
    6: "Run on devices",
    7: "Watch the world change",
    8: "Close the loop",
    9: "Ship safely",
    10: "Hold the line",
    11: "Learn together",
}


class _Story:
    """Which chapters a run shows: the rest it builds on runs quietly under a spinner.

    Chapters 1-5 are a chain (each builds on the one before; 5 starts the server); 6, 7,
    9, 10 and 11 each build on 5 only, and 8 (the loop) on 7, whose alert starts it. Showing
    chapter 10 alone runs 1-5 quietly and skips 6 to 9; showing 8 runs 1-5 and 7 quietly.
    """

    def __init__(self, console: Console, chapters: Collection[int] | None) -> None:
        wanted = set(CHAPTERS) if chapters is None else set(chapters)
        unknown = sorted(wanted - set(CHAPTERS))
        if unknown or not wanted:
            raise InvalidInput(
                f"demo chapters are {min(CHAPTERS)}-{max(CHAPTERS)} "
                f"({', '.join(f'{n} {name}' for n, name in CHAPTERS.items())}); got "
                f"{unknown or 'none'}. Pass --chapter with one of those numbers."
            )
        self.wanted = wanted
        self.console = console
        self._quiet = Console(quiet=True)
        self._status: Any = None

    def subtitle(self) -> str:
        if self.wanted == set(CHAPTERS):
            return ""
        return " (chapter " + ", ".join(str(n) for n in sorted(self.wanted)) + ")"

    def shows(self, chapter: int) -> bool:
        """Whether ``chapter`` runs at all: shown, or needed by a later shown chapter."""
        return (
            chapter in self.wanted
            or (chapter <= 5 and chapter < max(self.wanted))
            or (chapter == 7 and 8 in self.wanted)
        )

    def done(self, chapter: int) -> bool:
        """Whether the run may stop after ``chapter`` (nothing later is shown)."""
        return chapter >= max(self.wanted)

    def begin(self, chapter: int, about: str = "") -> Console:
        """Print ``chapter``'s heading; the console it prints to: the real one, or a silent
        one while a spinner says what is being prepared."""
        if chapter in self.wanted:
            if self._status is not None:
                self._status.stop()
                self._status = None
            self.console.print(
                f"\n[bold]{chapter}. {CHAPTERS[chapter]}[/bold]" + (f" ({about})" if about else "")
            )
            return self.console
        text = f"preparing: {chapter}. {CHAPTERS[chapter]} (runs quietly; later chapters need it)"
        if self._status is None:
            self._status = self.console.status(text)
            self._status.start()
        else:
            self._status.update(text)
        return self._quiet

    def finish(self, out_dir: Path, report: dict[str, Any]) -> dict[str, Any]:
        """Write ``report.json`` and say what the run wrote and how long each part took."""
        if self._status is not None:
            self._status.stop()
        (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        timings = report["timings_s"]
        self.console.print(
            f"\nWrote its outputs and report.json to [bold]{out_dir}[/bold] "
            f"in {report['duration_s']:.0f} s ("
            + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items())
            + ")."
        )
        return report


def _train_with_progress(
    console: Console, dataset: Any, architecture: str, config: TrainConfig, out_dir: Path
) -> TrainResult:
    with Progress(
        SpinnerColumn(),
        TextColumn(f"training [bold]{architecture}[/bold]"),
        BarColumn(),
        TextColumn("epoch {task.completed}/{task.total} {task.fields[stats]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(architecture, total=config.epochs, stats="")

        def on_epoch(epoch: int, total: int, stats: dict[str, float]) -> None:
            progress.update(task, completed=epoch, stats=f"val_acc {stats['val_accuracy']:.3f}")

        return train(
            dataset,
            architecture,
            config=config,
            model_name="digits",
            out_dir=out_dir,
            progress=on_epoch,
        )


def _convert_with_progress(
    console: Console, result: TrainResult, targets: tuple[str, ...], out_dir: Path
) -> list[ConversionResult]:
    architecture = result.model.architecture
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"converting {architecture}", total=len(targets))

        def on_step(target: str) -> None:
            done = targets.index(target)
            progress.update(task, completed=done, description=f"{architecture} → {target}")

        return convert_model(
            result.model,
            targets,
            out_dir,
            samples=model_inputs(result.model, result.splits.test),
            labels=result.splits.test.labels,
            on_step=on_step,
        )


def run_demo(
    out_dir: Path | str,
    *,
    console: Console | None = None,
    config: DemoConfig | None = None,
    chapters: Collection[int] | None = None,
) -> dict[str, Any]:
    """Run the demo into ``out_dir`` and return the report (also written as report.json).

    Args:
        out_dir: directory for every output.
        console: where the story is told; default a new Rich console.
        config: the demo's knobs; default what ``pocketml demo`` runs.
        chapters: the chapter numbers (``CHAPTERS``) to show; None shows them all. The
            chapters a shown one builds on (1-4 build what 5 ships; 5 starts the server
            6-8 use) run first without output; later chapters do not run.

    Raises:
        InvalidInput: a chapter number that is not in ``CHAPTERS``.
    """
    config = config or DemoConfig()
    story = _Story(console or Console(), chapters)
    console = story.console
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    console.rule(
        f"[bold]pocketml {__version__} demo[/bold]: digits, from data to every mobile format"
        + story.subtitle()
    )

    timings: dict[str, float] = {}
    last = [started]

    def lap(chapter: str) -> None:
        now = time.perf_counter()
        timings[chapter] = round(now - last[0], 1)
        last[0] = now

    console = story.begin(1)
    digits = load_digits()
    splits = digits.split(seed=config.seed)
    console.print(
        f"   digits: {len(digits)} images {digits.sample_shape}, {digits.num_classes} classes, "
        f"split {splits.sizes()}\n   fingerprint {digits.fingerprint}"
    )

    lap("data")
    if story.done(1):
        return story.finish(out_dir, _partial_report(digits, splits, {}, timings, started))
    console = story.begin(2, f"seed {config.seed}, early stopping on validation")
    runs: dict[str, TrainResult] = {}
    for architecture, epochs in (
        ("cnn-small", config.epochs_small),
        ("cnn-large", config.epochs_large),
    ):
        train_config = TrainConfig(
            seed=config.seed,
            epochs=epochs,
            augmentations=tuple(parse_augmentations(config.train_augment)),
        )
        runs[architecture] = _train_with_progress(
            console, splits, architecture, train_config, out_dir / "runs" / architecture
        )
        metrics = runs[architecture].metrics
        console.print(
            f"   {architecture:<10} {runs[architecture].model.num_parameters():>8,} params  "
            f"accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
            f"({runs[architecture].record.duration_s:.1f} s)"
        )
    schema = runs["cnn-small"].model.schema
    report_validation = validate_dataset(digits, schema)
    console.print(
        f"   validation of all {report_validation.num_rows} rows against the exported schema: "
        + (
            "[green]no violations[/green]"
            if report_validation.is_valid
            else f"{report_validation.counts()}"
        )
    )

    lap("train")
    if story.done(2):
        return story.finish(out_dir, _partial_report(digits, splits, runs, timings, started))
    console = story.begin(3, "parity checked on the held-out split in the real runtimes")
    conversions = {
        arch: _convert_with_progress(console, run, config.targets, out_dir / arch)
        for arch, run in runs.items()
    }
    rows = []
    table = Table(title="Converted models (held-out test split)", title_justify="left")
    for column in ("model", "format", "file size", "parity max |Δp| / top-1", "accuracy"):
        table.add_column(column, justify="right" if column in ("file size", "accuracy") else "left")
    for arch, results in conversions.items():
        for result in results:
            accuracy = f"{result.accuracy:.4f}" if result.accuracy is not None else "not run here"
            table.add_row(
                arch,
                result.target,
                f"{result.size / 1024:,.1f} KiB",
                result.check.summary(),
                accuracy,
            )
            rows.append({"model": arch, **result.to_dict()})
    console.print(table)

    small = VariantGroup(
        "cnn-small", "device", "pytorch", conversions["cnn-small"], runs["cnn-small"].metrics
    )
    cloud = VariantGroup(
        "cnn-large",
        "cloud",
        "pytorch",
        [r for r in conversions["cnn-large"] if r.target == "onnx"],
        runs["cnn-large"].metrics,
    )
    lap("convert")
    if story.done(3):
        return story.finish(out_dir, _partial_report(digits, splits, runs, timings, started))
    console = story.begin(
        4,
        "int8/fp16 per format, each variant benchmarked in its own process, then the best "
        "variant per device class",
    )
    matrix = _optimize(console, runs["cnn-small"], small, out_dir, config)
    lap("optimize")
    write_build(
        out_dir,
        schema=schema,
        groups=[cloud],
        extra_variants=matrix.variants,
        run_record=runs["cnn-small"].record.to_dict(),
        dataset_fingerprint=digits.fingerprint,
        # the recipe the loop (chapter 8) re-runs with the samples the phones send
        params={"config": _recipe(config).model_dump(mode="json")},
        extra={
            "source_framework": "pytorch",
            "selections": [s.to_dict() for s in matrix.selections],
            "metrics": {
                arch: {k: run.metrics.get(k) for k in ("accuracy", "macro_f1")}
                for arch, run in runs.items()
            },
        },
        profile=profile_model(
            runs["cnn-small"].model,
            monitoring_reference(splits, config.low_light, seed=config.seed),
        ),
    )
    if story.done(4):
        return story.finish(out_dir, _partial_report(digits, splits, runs, timings, started))
    console = story.begin(5, "registry server in-process on 127.0.0.1, SQLite + local artifacts")
    settings = Settings(
        home=out_dir / "server-home",
        operator_token=SecretStr(_DEMO_OPERATOR_TOKEN),
        database_url=None,
        artifact_url=None,
        # the guardrail and alert evaluators look often, so the demo does not wait long
        server=ServerSettings(
            rollout_eval=RolloutEvalSettings(interval_s=0.5),
            alerts=AlertSettings(eval_interval_s=0.5, delivery_interval_s=0.2),
            loop=LoopSettings(interval_s=0.5),
        ),
    )
    with serve_in_thread(settings) as url:
        created, version, shipped = ship(console, url, _DEMO_OPERATOR_TOKEN, out_dir)
        lap("ship")
        devices: dict[str, Any] | None = None
        safely: dict[str, Any] | None = None
        trust: dict[str, Any] | None = None
        watched: dict[str, Any] | None = None
        looped: dict[str, Any] | None = None
        if story.shows(6):
            console = story.begin(
                6,
                f"{config.devices} simulated phones sync, verify and run hybrid inference on "
                "low-light digits",
            )
            devices = run_devices(
                console,
                url=url,
                admin=AdminClient(url, created.admin_token),
                device_key=created.device_key,
                version=version.version,
                small=runs["cnn-small"],
                large=runs["cnn-large"],
                splits=splits,
                low_light=config.low_light,
                devices=config.devices,
                out_dir=out_dir,
                seed=config.seed,
            )
            lap("devices")
        if story.shows(7):
            console = story.begin(
                7,
                "drift and accuracy from on-device sketches, an alert to a signed webhook",
            )
            watched = watch_the_world(
                console,
                url=url,
                admin=AdminClient(url, created.admin_token),
                device_key=created.device_key,
                evaluation=split_holdout(splits)[1],
                low_light=config.low_light,
                new_camera=config.new_camera,
                devices=config.watch_devices,
                out_dir=out_dir / "watch",
                seed=config.seed,
            )
            lap("watch the world")
        if story.shows(8) and watched is not None:
            console = story.begin(
                8,
                "consented samples, a retraining job started by the alert, the gate, a canary "
                "and the recovery, with no person in the loop",
            )
            looped = close_the_loop(
                console,
                url=url,
                admin=AdminClient(url, created.admin_token),
                device_key=created.device_key,
                field=splits.train,
                evaluation=split_holdout(splits)[1],
                low_light=config.low_light,
                new_camera=config.new_camera,
                devices=config.watch_devices,
                schedule=config.loop_schedule,
                min_samples=config.rollout_min_samples,
                before=watched["accuracy_by_class"],
                drift_at=watched["drift_at"],
                out_dir=out_dir / "loop",
                seed=config.seed,
            )
            lap("close the loop")
        if story.shows(9):
            console = story.begin(
                9, "staged rollouts watched by guardrails, automatic rollback, an A/B test"
            )
            safely = ship_safely(
                console,
                url=url,
                admin=AdminClient(url, created.admin_token),
                device_key=created.device_key,
                splits=splits,
                evaluation=split_holdout(splits)[1],
                train_augment=config.train_augment,
                low_light=config.low_light,
                epochs=config.epochs_small,
                devices=config.devices,
                samples_per_device=config.samples_per_device,
                schedule=config.rollout_schedule,
                min_samples=config.rollout_min_samples,
                out_dir=out_dir / "safe",
                seed=config.seed,
            )
            lap("ship safely")
        if story.shows(10):
            console = story.begin(
                10,
                "signing keys rotated and revoked under a live phone, a lying network, "
                "hostile requests",
            )
            trust = hold_the_line(
                console,
                url=url,
                admin=AdminClient(url, created.admin_token),
                device_key=created.device_key,
                sample=splits.test.features[0],
                out_dir=out_dir / "trust",
            )
            lap("hold the line")
        learned: dict[str, Any] | None = None
        if story.shows(11):
            console = story.begin(
                11,
                "phones train the head on their own photos; DP-FedAvg, SecAgg+, the result "
                "rolled out",
            )
            learned = learn_together(
                console,
                url=url,
                admin=AdminClient(url, created.admin_token),
                device_key=created.device_key,
                onnx_path=next(r.path for r in conversions["cnn-small"] if r.target == "onnx"),
                schema=schema,
                splits=splits,
                out_dir=out_dir / "federated",
                config=FederatedDemo(
                    phones=config.federated_phones, rounds=config.federated_rounds
                ),
                seed=config.seed,
            )
            lap("learn together")
    telemetry = _parquet_summary(settings.home / "telemetry")
    if devices is not None or safely is not None:
        console.print(
            f"   telemetry: {telemetry['events']:,} device events stored by the server and "
            f"exported to {telemetry['files']} day-partitioned Parquet files under "
            f"{settings.home / 'telemetry'} (the exporter's last pass runs at shutdown; "
            "DuckDB, pandas and Spark read them as they are)",
            highlight=False,
        )
    console.print(
        f"   browse it later: POCKETML_HOME={settings.home} POCKETML_OPERATOR_TOKEN="
        f"{_DEMO_OPERATOR_TOKEN} pocketml server, then /ui with the app's admin token"
    )
    report = _partial_report(digits, splits, runs, timings, started)
    report.update(
        {
            "shipped": shipped,
            "devices": devices,
            "ship_safely": safely,
            "hold_the_line": trust,
            "watch_the_world": watched,
            "close_the_loop": looped,
            "learn_together": learned,
            "telemetry_parquet": telemetry,
            "rows": rows,
            "selections": [sel.to_dict() for sel in matrix.selections],
        }
    )
    return story.finish(out_dir, report)


def _partial_report(
    digits: Any,
    splits: Any,
    runs: dict[str, TrainResult],
    timings: dict[str, float],
    started: float,
) -> dict[str, Any]:
    """What every run reports, whichever chapters it reached."""
    return {
        "pocketml_version": __version__,
        "dataset": {"name": "digits", "fingerprint": digits.fingerprint, "splits": splits.sizes()},
        "runs": {arch: run.record.to_dict() for arch, run in runs.items()},
        "duration_s": round(time.perf_counter() - started, 1),
        "timings_s": timings,
    }


def _recipe(config: DemoConfig) -> BuildConfig:
    """The production version's recipe, as ``pocketml build`` would store it: cnn-small for
    the phones, distilled from a cnn-large cloud teacher, on digits with the demo's seed
    and augmentation, the reference profile in the phones' low light."""
    return BuildConfig(
        model=ModelSection(architecture="cnn-small"),
        train=TrainSection(
            seed=config.seed, epochs=config.epochs_small, augment=config.train_augment
        ),
        bench=BenchSection(warmup=10, iterations=config.bench_iterations),
        distill=DistillSection(
            teacher="cnn-large", teacher_epochs=config.teacher_epochs, epochs=config.epochs_small
        ),
        monitor=MonitorSection(reference_augment=config.low_light),
    )


def _optimize(
    console: Console, run: TrainResult, group: VariantGroup, out_dir: Path, config: DemoConfig
) -> VariantMatrix:
    """Quantize cnn-small for every format, benchmark each variant, pick one per profile."""
    build_config = BuildConfig(
        model=ModelSection(architecture="cnn-small"),
        train=TrainSection(seed=config.seed),
        bench=BenchSection(warmup=10, iterations=config.bench_iterations),
    )
    profiles = resolve_profiles(build_config)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("optimizing", total=None)
        matrix = optimize_and_select(
            build_config,
            run.model,
            group,
            run.splits,
            out_dir,
            profiles,
            on_step=lambda text: progress.update(task, description=text),
            show_progress=False,
        )
    fp32_size = {r.model_format: r.size_bytes for r in matrix.results if r.method == "none"}
    columns = (
        Column("profile", is_name=True),
        Column("variant", is_name=True),
        Column("size", "right"),
        Column("vs its fp32", "right", priority=2),
        Column("accuracy", "right"),
        Column("est. p95", "right", priority=1),
    )
    rows: list[tuple[str, ...]] = []
    for selection in matrix.selections:
        chosen = selection.variant
        if chosen is None:
            rows.append((selection.profile.name, "none fits", "", "", "", ""))
            continue
        rows.append(
            (
                selection.profile.name,
                chosen.name,
                f"{chosen.size_bytes / 1024:,.1f} KiB",
                "fp32 itself"
                if chosen.method == "none"
                else f"{fp32_size[chosen.model_format] / chosen.size_bytes:.1f}× smaller",
                f"{chosen.accuracy:.4f}" if chosen.accuracy is not None else "size only",
                f"{selection.estimated_p95_ms:.3f} ms" if selection.estimated_p95_ms else "-",
            )
        )
    table = fitted_table(
        "Chosen variant per device class (latency estimated from this host)",
        columns,
        rows,
        console.width,
    )
    console.print(table)
    console.print(
        f"   {len(matrix.variants)} variants measured; the full table is in benchmarks.json, "
        "the plot in variants.png."
    )
    plot_variants(list(matrix.results), out_dir / "variants.png")
    (out_dir / "benchmarks.json").write_text(
        json.dumps([r.to_dict() for r in matrix.results], indent=2) + "\n"
    )
    return matrix
