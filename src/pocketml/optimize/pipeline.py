"""``pocketml build``: data -> model -> convert -> quantize -> benchmark -> select, one command.

``run_build(config, out_dir)`` writes into ``out_dir``:

    build.json        every variant (fp32 conversions and optimized files) with its
                      compatibility, metrics, benchmark and the profiles it was chosen for,
                      plus the per-profile selections: what ``pocketml push`` uploads
    benchmarks.json   the raw benchmark results
    variants.png      accuracy vs. p95 latency, marker size = file size, colour = format
    profile.json      the reference profile of the validation split, when a profiler is given
    schema.json, card.md, run.json, <arch>/..., optimized/...
    teacher-<arch>/   with ``[distill]``: the teacher's ONNX fp32 file, listed with role "cloud"

Extra training rows (``extra_training``, e.g. consented samples from the loop) join the
training split only, after the split (the validation and test splits stay exactly those
of ``load_splits(config)``), deduplicated against it, copies of validation or test rows
dropped, and repeated ``extra_weight`` times.
With ``[distill]`` the teacher is trained first on those same rows, and the device model
is the student distilled from it (``pocketml.optimize.distill``).

A variant that cannot be produced (a converter that does not take the model, an operator
it lacks, a quantizer that does not apply, an "int8" file that is not quantized) is
recorded in ``build.json``'s ``skipped`` list with its reason and the build goes on; only a
build left with no variant at all fails. An optimized file that is not smaller than its
fp32 source is kept and flagged (``flags``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pocketml._native import quiet_native
from pocketml.bench import BUILTIN_PROFILES, Benchmark, BenchmarkResult, DeviceProfile, Variant
from pocketml.bench import load_profiles as load_profile_file
from pocketml.convert import convert_model, file_sha256, path_size, to_ort
from pocketml.convert.build import BuildVariant, VariantGroup, write_build
from pocketml.convert.coreml import coreml_compatibility
from pocketml.convert.onnx import onnx_compatibility
from pocketml.convert.ort import ort_compatibility
from pocketml.convert.tflite import tflite_compatibility
from pocketml.data import Dataset, Splits, augment_dataset, load_dataset, parse_augmentations
from pocketml.errors import ConversionError, InvalidInput, PocketMLError
from pocketml.optimize.audit import is_quantized, size_flag
from pocketml.optimize.config import BuildConfig
from pocketml.optimize.distill import Distiller
from pocketml.optimize.quantize import (
    CoremlFp16Quantizer,
    CoremlWeightQuantizer,
    OnnxDynamicQuantizer,
    OnnxFp16Quantizer,
    OnnxStaticQuantizer,
    Quantizer,
    TfliteDynamicQuantizer,
    TfliteFp16Quantizer,
    TfliteStaticQuantizer,
)
from pocketml.optimize.select import Budget, Selection, VariantSelector, plot_variants
from pocketml.protocol import FORMATS
from pocketml.train import TrainConfig, TrainedModel, evaluate, model_inputs, train

if TYPE_CHECKING:
    from pocketml.sketch import ReferenceProfile

__all__ = [
    "BuildOutcome",
    "SkippedVariant",
    "VariantMatrix",
    "load_splits",
    "optimize_and_select",
    "reference_rows",
    "resolve_profiles",
    "run_build",
]

StepFn = Callable[[str], None]
# Builds a version's reference profile from the model and a held-out split
# (``pocketml.sketch.profile_model``); optional, so library builds that skip it stay fast.
Profiler = Callable[["TrainedModel", "Dataset"], "ReferenceProfile"]


@dataclass(frozen=True)
class SkippedVariant:
    """A variant the build could not produce, and why (the build went on without it)."""

    name: str
    format: str
    method: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "format": self.format,
            "method": self.method,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class BuildOutcome:
    """What ``run_build`` produced."""

    out_dir: Path
    model: TrainedModel
    variants: tuple[BuildVariant, ...]
    results: tuple[BenchmarkResult, ...]
    selections: tuple[Selection, ...]
    build_json: Path
    plot: Path | None
    skipped: tuple[SkippedVariant, ...] = ()
    teacher: TrainedModel | None = None
    fingerprints: dict[str, str | None] = field(default_factory=dict)


def resolve_profiles(config: BuildConfig) -> list[DeviceProfile]:
    """The device profiles the config names: built-in ones or from ``profiles_file``.

    Raises:
        InvalidInput: a profile name that is neither built in nor in the file.
    """
    known = dict(BUILTIN_PROFILES)
    if config.profiles_file is not None:
        known.update(load_profile_file(config.profiles_file))
    missing = [name for name in config.profiles if name not in known]
    if missing:
        raise InvalidInput(
            f"unknown device profile(s) {', '.join(missing)}; known: {', '.join(sorted(known))}. "
            "Define them in a file named by profiles_file."
        )
    return [known[name] for name in config.profiles]


def _train_config(config: BuildConfig, *, epochs: int | None = None) -> TrainConfig:
    return TrainConfig(
        seed=config.train.seed,
        epochs=epochs or config.train.epochs,
        batch_size=config.train.batch_size,
        learning_rate=config.train.learning_rate,
        # the teacher keeps its best validation epoch without stopping early: with the
        # student's patience the demo's cnn-large stopped at epoch 2 to 6 (docs/compression.md)
        patience=epochs or config.train.patience,
        augmentations=tuple(parse_augmentations(config.train.augment)),
    )


def _model(
    config: BuildConfig, splits: Splits, teacher: TrainedModel | None = None
) -> tuple[TrainedModel, dict[str, Any] | None]:
    if config.model.path is not None:
        model = TrainedModel.load(config.model.path)
        record = config.model.path / "run.json"
        return model, json.loads(record.read_text()) if record.is_file() else None
    train_config = _train_config(config)
    if teacher is not None and config.distill is not None:
        distiller = Distiller(
            teacher,
            temperature=config.distill.temperature,
            alpha=config.distill.alpha,
            consistent=config.distill.consistent,
            epochs=config.distill.epochs,
        )
        distilled = distiller.train(
            str(config.model.architecture), splits, train_config, baseline=False
        )
        return distilled.model, distilled.record.to_dict()
    result = train(
        splits, config.model.architecture, config=train_config, model_name=config.model.name
    )
    return result.model, result.record.to_dict()


def _teacher(config: BuildConfig, splits: Splits) -> TrainedModel | None:
    if config.distill is None:
        return None
    section = config.distill
    result = train(
        splits,
        section.teacher,
        config=_train_config(config, epochs=section.teacher_epochs),
        model_name=config.model.name,
    )
    return result.model


def load_splits(config: BuildConfig) -> Splits:
    """The splits ``run_build`` trains, validates and tests on (before any extra rows).

    The test split is the golden holdout: the same data and seed give the same rows, and
    extra training rows never enter it.

    Raises:
        PocketMLError subclasses from loading the data source.
    """
    dataset = load_dataset(config.data.source, target=config.data.target, shape=config.data.shape)
    return _split(config, dataset)


def _split(config: BuildConfig, dataset: Dataset) -> Splits:
    return dataset.split(
        validation=config.data.validation, test=config.data.test, seed=config.train.seed
    )


def _row_hashes(dataset: Dataset, quantum: float) -> list[bytes]:
    """One sha256 per row over its features rounded to ``quantum`` and its int64 label.

    Rounded, not bit-exact: a sample that went through a device's float32 normalization and
    the server's inversion comes back a few ulps off, and must still be recognised as the
    same row (above all as a copy of a golden-holdout row).
    """
    flat = dataset.features.reshape(len(dataset), -1).astype(np.float64)
    features = np.ascontiguousarray(np.round(flat / quantum), dtype="<i8")
    labels = dataset.labels.astype("<i8")
    return [
        hashlib.sha256(row.tobytes() + label.tobytes()).digest()
        for row, label in zip(features, labels, strict=True)
    ]


def _quantum(dataset: Dataset) -> float:
    """The rounding step of duplicate detection: 1e-4 of the data's spread."""
    spread = float(np.std(dataset.features)) if len(dataset) else 0.0
    return spread * 1e-4 if spread > 0 else 1e-6


def _with_extra_rows(splits: Splits, extra: Dataset, weight: int) -> tuple[Splits, dict[str, Any]]:
    """``splits`` with ``extra``'s new rows appended ``weight`` times to the training split.

    Raises:
        InvalidInput: other classes (or order), another sample shape or layout, NaN or
            infinite values, or a weight < 1.
    """
    train_part = splits.train
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
        raise InvalidInput(f"extra_weight must be an int >= 1; got {weight!r}. Try 1.")
    if extra.class_names != train_part.class_names:
        raise InvalidInput(
            f"extra training rows have classes {list(extra.class_names)}; the build's data "
            f"has {list(train_part.class_names)} (same names in the same order). Map the "
            "labels to the model's classes before adding them."
        )
    if extra.layout != train_part.layout or extra.sample_shape != train_part.sample_shape:
        raise InvalidInput(
            f"extra training rows are {extra.layout} samples of shape {extra.sample_shape}; "
            f"the build's data is {train_part.layout} of shape {train_part.sample_shape}. "
            "Add rows in the raw units and shape of the dataset."
        )
    bad = int((~np.isfinite(extra.features.reshape(len(extra), -1))).any(axis=1).sum())
    if bad:
        raise InvalidInput(
            f"{bad} of {len(extra)} extra training rows hold NaN or infinite values; drop or "
            "repair them before training on them."
        )
    quantum = _quantum(train_part)
    seen = set(_row_hashes(train_part, quantum))
    # a copy of a validation or test row would leak the golden holdout into training
    held_out = set(_row_hashes(splits.validation, quantum)) | set(_row_hashes(splits.test, quantum))
    keep, holdout_copies = [], 0
    for index, digest in enumerate(_row_hashes(extra, quantum)):
        if digest in held_out:
            holdout_copies += 1
        elif digest not in seen:
            seen.add(digest)
            keep.append(index)
    kept = extra.subset(np.asarray(keep, dtype=np.int64))
    repeated = np.tile(np.arange(len(kept)), weight)
    features = np.concatenate([train_part.features, kept.features[repeated]])
    labels = np.concatenate([train_part.labels, kept.labels[repeated]])
    combined = Dataset(
        name=train_part.name,
        features=features,
        labels=labels,
        class_names=train_part.class_names,
        layout=train_part.layout,
        feature_names=train_part.feature_names,
        value_range=train_part.value_range,
    )
    info = {
        "rows": len(extra),
        "kept": len(kept),
        "duplicates": len(extra) - len(kept) - holdout_copies,
        "holdout_copies": holdout_copies,
        "weight": weight,
        "training_rows": len(combined),
    }
    return Splits(combined, splits.validation, splits.test, splits.seed), info


def _quantizers(config: BuildConfig, calibration: np.ndarray) -> list[tuple[str, str, Quantizer]]:
    """(format, option, quantizer) for every optimization the config asks for."""
    opt = config.optimize
    onnx: dict[str, Quantizer] = {
        "static-int8": OnnxStaticQuantizer(calibration, calibration_method=opt.calibration_method),
        "dynamic-int8": OnnxDynamicQuantizer(),
        "fp16": OnnxFp16Quantizer(),
    }
    tflite: dict[str, Quantizer] = {
        "dynamic-int8": TfliteDynamicQuantizer(),
        "full-int8": TfliteStaticQuantizer(calibration),
        "fp16": TfliteFp16Quantizer(),
    }
    coreml: dict[str, Quantizer] = {
        "fp16": CoremlFp16Quantizer(),
        "int8-weights": CoremlWeightQuantizer(),
    }
    chosen: list[tuple[str, str, Quantizer]] = []
    chosen += [("onnx", o, onnx[o]) for o in config.optimizations("onnx")]
    chosen += [("tflite", o, tflite[o]) for o in config.optimizations("tflite")]
    chosen += [("coreml", o, coreml[o]) for o in config.optimizations("coreml")]
    return chosen


def _compatibility(path: Path, model_format: str, platform: str) -> dict[str, Any]:
    if model_format == "onnx":
        return onnx_compatibility(path)
    if model_format == "ort":
        return ort_compatibility(path, platform)
    if model_format == "tflite":
        return tflite_compatibility(path)
    return coreml_compatibility(path)


def _optimized_variants(
    config: BuildConfig,
    fp32: dict[str, Path],
    calibration: np.ndarray,
    out: Path,
    prefix: str,
    on_step: StepFn,
) -> tuple[list[BuildVariant], list[SkippedVariant]]:
    variants: list[BuildVariant] = []
    skipped: list[SkippedVariant] = []
    out.mkdir(parents=True, exist_ok=True)
    for model_format, option, quantizer in _quantizers(config, calibration):
        on_step(f"{model_format} {option}")
        name = f"{prefix}-{model_format}-{option}"
        source = fp32.get(model_format)
        if source is None:
            reason = f"no fp32 {model_format} file to start from (its conversion was skipped)"
            skipped.append(SkippedVariant(name, model_format, option, reason))
            continue
        try:
            made = _quantize(config, quantizer, source, out, prefix, model_format, option)
        except PocketMLError as exc:
            skipped.append(SkippedVariant(name, model_format, option, str(exc)))
            continue
        for variant_name, variant_format, path, precision, method in made:
            flag = size_flag(path_size(path), path_size(fp32[variant_format]))
            variants.append(
                BuildVariant(
                    name=variant_name,
                    path=path,
                    format=variant_format,
                    precision=precision,
                    role="device",
                    sha256=file_sha256(path),
                    size=path_size(path),
                    method=method,
                    compatibility=_compatibility(path, variant_format, config.convert.ort_platform),
                    flags=[flag] if flag else [],
                )
            )
    return variants, skipped


def _quantize(
    config: BuildConfig,
    quantizer: Quantizer,
    source: Path,
    out: Path,
    prefix: str,
    model_format: str,
    option: str,
) -> list[tuple[str, str, Path, str, str]]:
    """Apply one quantizer (and build its ORT file); (name, format, path, precision, method).

    Raises:
        ConversionError: the quantizer failed, or wrote an int8 file that is not quantized
            (the file is removed: a copy of fp32 labelled int8 would mislead).
    """
    name = f"{prefix}-{model_format}-{option}"
    dst = out / f"{name}{Path(FORMATS[model_format].build_file).suffix}"
    with quiet_native():  # the quantizers draw their own tqdm bars and log notes
        done = quantizer.apply(source, dst)
    if done.precision == "int8" and not is_quantized(done.path, model_format):
        _remove(done.path)
        raise ConversionError(
            f"{option} left every weight in float (coremltools skips tensors under 2,048 "
            "elements; ONNX Runtime and LiteRT skip operators they do not quantize): the "
            "file would be fp32 labelled int8, so it is not shipped. Use the fp32 or fp16 "
            "variant."
        )
    made = [(name, model_format, done.path, done.precision, done.method)]
    if model_format == "onnx" and "ort" in config.convert.targets and option != "fp16":
        ort_path = to_ort(
            done.path, out / f"{prefix}-ort-{option}.ort", platform=config.convert.ort_platform
        )
        made.append((f"{prefix}-ort-{option}", "ort", ort_path, done.precision, done.method))
    return made


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


@dataclass(frozen=True)
class VariantMatrix:
    """Every variant of one model with its benchmark, and the choice per profile."""

    variants: tuple[BuildVariant, ...]
    results: tuple[BenchmarkResult, ...]
    selections: tuple[Selection, ...]
    skipped: tuple[SkippedVariant, ...] = ()


def optimize_and_select(
    config: BuildConfig,
    model: TrainedModel,
    group: VariantGroup,
    splits: Splits,
    out: Path,
    profiles: list[DeviceProfile],
    *,
    on_step: StepFn | None = None,
    show_progress: bool = True,
) -> VariantMatrix:
    """Quantize ``group``'s fp32 files, benchmark everything, choose a variant per profile.

    Args:
        config: the optimize, bench, budgets and convert sections are used.
        model: the trained model (for its input preparation).
        group: its plain conversions (``convert_model`` results).
        splits: its data; calibration samples come from train, measurements from test.
        out: build directory; optimized files go to ``out/optimized``.
    """
    step = on_step or (lambda _text: None)
    prefix = group.name
    fp32 = {c.target: c.path for c in group.results}
    x_test = model_inputs(model, splits.test)
    x_train = model_inputs(model, splits.train)
    rng = np.random.default_rng(config.train.seed)
    take = min(config.optimize.calibration_samples, len(x_train))
    calibration = x_train[rng.choice(len(x_train), size=take, replace=False)]
    optimized, skipped = _optimized_variants(
        config, fp32, calibration, out / "optimized", prefix, lambda t: step(f"optimizing: {t}")
    )

    step("benchmarking")
    plain = [BuildVariant.from_conversion(group, c) for c in group.results]
    all_variants = [*plain, *optimized]
    bench = Benchmark(
        warmup=config.bench.warmup, iterations=config.bench.iterations, threads=config.bench.threads
    )
    results = bench.run(
        [Variant(v.name, v.path, v.format, v.precision, v.method) for v in all_variants],
        x_test,
        splits.test.labels,
        reference=f"{prefix}-onnx-fp32" if "onnx" in fp32 else None,
        show_progress=show_progress,
    )

    step("selecting")
    budgets = {name: Budget(**b.model_dump()) for name, b in config.budgets.items()}
    selections = VariantSelector(budgets=budgets).select(results, profiles)
    chosen: dict[str, list[str]] = {}
    for selection in selections:
        if selection.variant is not None:
            chosen.setdefault(selection.variant.name, []).append(selection.profile.name)
    by_name = {r.name: r for r in results}
    final = tuple(
        replace(
            v,
            profiles=chosen.get(v.name, []),
            metrics={**v.metrics, **_metrics(by_name[v.name])},
            benchmarks=_benchmarks(by_name[v.name]),
        )
        for v in all_variants
    )
    return VariantMatrix(final, tuple(results), tuple(selections), tuple(skipped))


def reference_rows(config: BuildConfig, splits: Splits) -> Dataset:
    """The rows a build's reference profile describes: the validation split, in the
    conditions of ``monitor.reference_augment`` when set (seed ``train.seed + 5``)."""
    augment = config.monitor.reference_augment
    if not augment:
        return splits.validation
    return augment_dataset(
        splits.validation, parse_augmentations(augment), seed=config.train.seed + 5
    )


def run_build(
    config: BuildConfig,
    out_dir: Path | str,
    *,
    on_step: StepFn | None = None,
    show_progress: bool = True,
    profiler: Profiler | None = None,
    extra_training: Dataset | None = None,
    extra_weight: int = 1,
) -> BuildOutcome:
    """Run the whole build described by ``config`` into ``out_dir``.

    Args:
        on_step: called with a short description before each step (progress display).
        show_progress: let the benchmark draw its own progress bar.
        profiler: builds the reference profile (``profile.json``) from the model and the
            held-out validation split; None writes no profile.
        extra_training: more labelled rows in the dataset's raw units, same class names in
            the same order (e.g. consented samples): appended to the training split only,
            rows identical to a training, validation or test row dropped (a hash of
            features and label).
        extra_weight: how many times each kept extra row is repeated (its weight), >= 1.

    Raises:
        InvalidInput: extra rows that do not fit the data (classes, shape), a weight < 1,
            or extra rows for a build that does not train (``model.path``).
        PocketMLError subclasses from each stage, with the stage named in the message.
    """
    step = on_step or (lambda _text: None)
    out = Path(out_dir)
    if extra_training is not None and config.model.path is not None:
        raise InvalidInput(
            "extra training rows need a build that trains: model.path loads a trained "
            "model. Set model.architecture instead, or drop the extra rows."
        )
    out.mkdir(parents=True, exist_ok=True)
    profiles = resolve_profiles(config)

    step("loading data")
    dataset = load_dataset(config.data.source, target=config.data.target, shape=config.data.shape)
    splits = _split(config, dataset)
    fingerprints: dict[str, str | None] = {"dataset": dataset.fingerprint, "extra": None}
    extra_info: dict[str, Any] | None = None
    if extra_training is not None:
        splits, extra_info = _with_extra_rows(splits, extra_training, extra_weight)
        fingerprints["extra"] = extra_training.fingerprint
    fingerprints["training"] = splits.train.fingerprint

    teacher: TrainedModel | None = None
    distill_info: dict[str, Any] | None = None
    if config.distill is not None:
        step(f"training the teacher ({config.distill.teacher})")
        teacher = _teacher(config, splits)
    step(
        "distilling"
        if teacher is not None
        else ("training" if config.model.architecture else "loading the model")
    )
    model, record = _model(config, splits, teacher)
    if record is not None:
        record.setdefault("dataset", {})["fingerprints"] = fingerprints
    # an imported model's architecture is "custom": its own name says more in the tables
    prefix = model.schema.name if model.params.get("imported") else model.architecture
    x_test = model_inputs(model, splits.test)

    step("converting")
    failed: list[SkippedVariant] = []

    def record_failure(target: str, exc: PocketMLError) -> None:
        failed.append(SkippedVariant(f"{prefix}-{target}-fp32", target, "none", str(exc)))

    conversions = convert_model(
        model,
        config.convert.targets,
        out / prefix,
        samples=x_test,
        labels=splits.test.labels,
        opset=config.convert.opset,
        ort_platform=config.convert.ort_platform,
        atol=config.convert.atol,
        on_step=lambda target: step(f"converting to {target}"),
        on_failure=record_failure,
    )
    if not conversions:
        reasons = "; ".join(f"{s.format}: {s.reason}" for s in failed)
        raise ConversionError(
            f"no target could be converted, so there is nothing to build: {reasons}"
        )
    metrics = (record or {}).get("metrics", {})
    group = VariantGroup(prefix, "device", model.framework, conversions, metrics)
    matrix = optimize_and_select(
        config, model, group, splits, out, profiles, on_step=step, show_progress=show_progress
    )
    final, results, selections = matrix.variants, matrix.results, matrix.selections
    skipped = (*failed, *matrix.skipped)
    all_metrics = {prefix: {k: metrics.get(k) for k in ("accuracy", "macro_f1")}}
    if teacher is not None and config.distill is not None:
        step("converting the teacher to onnx")
        cloud_group, teacher_metrics = _cloud_variant(config, teacher, splits, out)
        final = (
            *final,
            *(BuildVariant.from_conversion(cloud_group, c) for c in cloud_group.results),
        )
        all_metrics[cloud_group.name] = {
            k: teacher_metrics.get(k) for k in ("accuracy", "macro_f1")
        }
        distill_info = {
            **config.distill.model_dump(mode="json"),
            "teacher_metrics": {k: teacher_metrics.get(k) for k in ("accuracy", "macro_f1")},
            "teacher_best_epoch": teacher.params.get("best_epoch"),
            "student_metrics": all_metrics[prefix],
        }
        if record is not None:
            record["distill"] = distill_info
    plot = (
        plot_variants(results, out / "variants.png")
        if any(r.is_executed for r in results)
        else None
    )
    (out / "benchmarks.json").write_text(
        json.dumps([r.to_dict() for r in results], indent=2) + "\n"
    )
    profile = None
    if profiler is not None:
        # The validation split, not the training rows: on rows it fitted a model is
        # overconfident, which would read as confidence drift on day one and bias the
        # label-free accuracy estimate upwards (+1.2 points measured, docs/benchmarks.md).
        step("profiling the validation split")
        profile = profiler(model, reference_rows(config, splits))
    params: dict[str, Any] = {
        "config": config.model_dump(mode="json"),
        "fingerprints": fingerprints,
    }
    if extra_info is not None:
        params["extra_training"] = extra_info
    if distill_info is not None:
        params["distill"] = distill_info
    build_json = write_build(
        out,
        schema=model.schema,
        groups=[],
        extra_variants=final,
        run_record=record,
        dataset_fingerprint=dataset.fingerprint,
        params=params,
        extra={
            "selections": [s.to_dict() for s in selections],
            "skipped": [s.to_dict() for s in skipped],
            "source_framework": model.framework,
            "metrics": all_metrics,
        },
        profile=profile,
    )
    return BuildOutcome(
        out,
        model,
        final,
        results,
        selections,
        build_json,
        plot,
        skipped,
        teacher=teacher,
        fingerprints=fingerprints,
    )


def _cloud_variant(
    config: BuildConfig, teacher: TrainedModel, splits: Splits, out: Path
) -> tuple[VariantGroup, dict[str, Any]]:
    """The teacher as the build's cloud model: an ONNX fp32 file and its test metrics.

    Raises:
        ConversionError / ParityError: the teacher does not convert to ONNX.
    """
    name = f"teacher-{teacher.architecture}"
    conversions = convert_model(
        teacher,
        ["onnx"],
        out / name,
        samples=model_inputs(teacher, splits.test),
        labels=splits.test.labels,
        opset=config.convert.opset,
        atol=config.convert.atol,
    )
    teacher_metrics = evaluate(teacher, splits.test)
    return VariantGroup(
        name, "cloud", teacher.framework, conversions, teacher_metrics
    ), teacher_metrics


def _metrics(result: BenchmarkResult) -> dict[str, Any]:
    return {"accuracy": result.accuracy, "macro_f1": result.macro_f1, "agreement": result.agreement}


def _benchmarks(result: BenchmarkResult) -> dict[str, Any]:
    keys = (
        "load_ms",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "throughput_per_s",
        "peak_memory_mb",
        "zip_size_bytes",
        "threads",
        "is_executed",
        "note",
    )
    data = result.to_dict()
    return {k: data[k] for k in keys}
