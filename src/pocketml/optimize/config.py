"""``pocketml.toml``: the configuration of ``pocketml build``.

One file says which data, which model (a training recipe or a trained model directory),
which targets and optimizations, how to benchmark, and the budgets per device profile::

    [data]
    source = "digits"

    [model]
    architecture = "cnn-small"        # or: path = "runs/cnn-small"

    [train]
    seed = 0
    epochs = 30

    [convert]
    targets = ["onnx", "ort", "tflite", "coreml"]

    [optimize]
    onnx = ["static-int8", "fp16", "dynamic-int8"]
    tflite = ["dynamic-int8", "full-int8", "fp16"]
    coreml = ["fp16", "int8-weights"]

    [budgets.android-low]
    max_size_mb = 0.05
    max_p95_ms = 2.0
    max_accuracy_drop = 0.01

    [distill]                         # optional: a cloud teacher, the device model its student
    teacher = "cnn-large"
    teacher_epochs = 40
    temperature = 4.0
    alpha = 0.7

Unknown keys and bad values are rejected with the field named (``field 'budgets.x.max_size_mb'``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pocketml.errors import InvalidInput, NotFound
from pocketml.schema import describe_validation_error
from pocketml.train.architectures import TORCH_ARCHITECTURES

__all__ = ["BuildConfig", "DistillSection", "load_build_config"]

Target = Literal["onnx", "ort", "tflite", "coreml"]
DEFAULT_PROFILES = ("android-low", "android-mid", "android-high", "iphone", "edge-linux")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSection(_Section):
    """Where the data comes from and how it is split."""

    source: str = "digits"
    target: str | None = None
    shape: tuple[int, ...] | None = Field(
        None, min_length=1, max_length=3, description="Sample shape of a Parquet tensor column."
    )
    validation: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)


class ModelSection(_Section):
    """A training recipe (``architecture``) or a trained model directory (``path``)."""

    name: str | None = None
    architecture: str | None = None
    path: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelSection:
        if (self.architecture is None) == (self.path is None):
            raise ValueError("set exactly one of 'architecture' (train) or 'path' (trained model)")
        return self


class TrainSection(_Section):
    """Training parameters (used with ``model.architecture``)."""

    seed: int = 0
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    patience: int = Field(5, ge=1)
    augment: str = ""


class ConvertSection(_Section):
    """Targets of the plain (fp32) conversion."""

    targets: list[Target] = Field(default=["onnx", "ort", "tflite", "coreml"])
    opset: int = Field(17, ge=13, le=21)
    ort_platform: Literal["arm", "amd64"] = "arm"
    atol: float = Field(1e-4, gt=0)


class OptimizeSection(_Section):
    """Post-training optimizations per format.

    A list you set needs its format in ``convert.targets``; a list you leave out follows
    the targets (``targets = ["onnx", "ort"]`` alone gets the ONNX defaults only).
    """

    onnx: list[Literal["static-int8", "dynamic-int8", "fp16"]] = Field(
        default=["static-int8", "fp16", "dynamic-int8"]
    )
    tflite: list[Literal["dynamic-int8", "full-int8", "fp16"]] = Field(
        default=["dynamic-int8", "full-int8", "fp16"]
    )
    coreml: list[Literal["fp16", "int8-weights"]] = Field(default=["fp16", "int8-weights"])
    calibration_samples: int = Field(256, ge=1)
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"


class BenchSection(_Section):
    """Benchmark settings (each variant runs in its own subprocess)."""

    warmup: int = Field(20, ge=0)
    iterations: int = Field(200, ge=5)
    threads: int = Field(1, ge=1)


class BudgetSection(_Section):
    """Budgets of one device profile; unset means no limit. MB = 10**6 bytes."""

    max_size_mb: float | None = Field(None, gt=0)
    max_p95_ms: float | None = Field(None, gt=0)
    max_accuracy_drop: float | None = Field(None, ge=0, le=1)
    min_accuracy: float | None = Field(None, ge=0, le=1)


class DistillSection(_Section):
    """Distil the device model (``model.architecture``) from a cloud teacher.

    The teacher is trained first on the same training rows (``teacher_epochs`` epochs; the
    best validation epoch is kept, no early stop), shipped as the build's ``cloud`` variant,
    and the device model is the student distilled from it (``pocketml.optimize.distill``).
    """

    teacher: str = Field("cnn-large", description="A PyTorch architecture (mlp, cnn-*).")
    teacher_epochs: int = Field(40, ge=1, le=1000)
    temperature: float = Field(4.0, gt=0, le=100)
    alpha: float = Field(0.7, ge=0, le=1)
    consistent: bool = Field(
        True, description="Consistent teaching: clean + augmented rows, best val KD loss kept."
    )
    epochs: int | None = Field(
        None, ge=1, le=1000, description="The student's epochs (default: 2 x train.epochs)."
    )

    @field_validator("teacher")
    @classmethod
    def _pytorch_teacher(cls, value: str) -> str:
        if value not in TORCH_ARCHITECTURES:
            raise ValueError(
                f"the teacher must be one of {', '.join(TORCH_ARCHITECTURES)}; got {value!r}"
            )
        return value


class MonitorSection(_Section):
    """The conditions the version's reference profile describes (docs/monitoring.md).

    The reference profile is built from the held-out validation split. When the field
    differs from the training data in a known way (phones photograph in low light),
    ``reference_augment`` applies those augmentations to the validation split first (seed
    ``train.seed + 5``), so the shipped conditions read as "no drift" and the label-free
    estimate is calibrated for them.
    """

    reference_augment: str = Field(
        "", max_length=200, description="Augmentations of the reference rows (e.g. dim=0.4)."
    )

    @field_validator("reference_augment")
    @classmethod
    def _parses(cls, value: str) -> str:
        from pocketml.data import parse_augmentations

        try:
            parse_augmentations(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
        return value


class BuildConfig(_Section):
    """The whole ``pocketml.toml``."""

    data: DataSection = Field(default_factory=DataSection)
    model: ModelSection
    train: TrainSection = Field(default_factory=TrainSection)
    convert: ConvertSection = Field(default_factory=ConvertSection)
    optimize: OptimizeSection = Field(default_factory=OptimizeSection)
    bench: BenchSection = Field(default_factory=BenchSection)
    profiles: list[str] = Field(default=list(DEFAULT_PROFILES), min_length=1)
    profiles_file: Path | None = None
    budgets: dict[str, BudgetSection] = Field(default_factory=dict)
    distill: DistillSection | None = None
    monitor: MonitorSection = Field(default_factory=MonitorSection)

    @model_validator(mode="after")
    def _consistent(self) -> BuildConfig:
        if self.distill is not None and self.model.architecture not in TORCH_ARCHITECTURES:
            raise ValueError(
                "distill needs a PyTorch student to train: set model.architecture to one of "
                f"{', '.join(TORCH_ARCHITECTURES)} (got "
                f"{self.model.architecture or self.model.path}); or drop the [distill] section"
            )
        for fmt in ("onnx", "tflite", "coreml"):
            # A list that was set and is not the default names a choice; the default list
            # (written out when a stored config is dumped, then read back) follows the
            # targets, so a recipe round-trips through its own JSON.
            chosen = fmt in self.optimize.model_fields_set and getattr(
                self.optimize, fmt
            ) != OptimizeSection.model_fields[fmt].get_default(call_default_factory=True)
            if chosen and getattr(self.optimize, fmt) and fmt not in self.convert.targets:
                raise ValueError(
                    f"optimize.{fmt} needs '{fmt}' in convert.targets; "
                    f"add it or empty optimize.{fmt}"
                )
        unknown = sorted(set(self.budgets) - set(self.profiles))
        if unknown:
            raise ValueError(
                f"budgets for profile(s) {', '.join(unknown)} not listed in 'profiles' "
                f"({', '.join(self.profiles)})"
            )
        return self

    def optimizations(self, model_format: str) -> list[str]:
        """The options to apply to ``model_format``: none when it is not a target."""
        if model_format not in self.convert.targets:
            return []
        return list(getattr(self.optimize, model_format))


def load_build_config(path: Path | str) -> BuildConfig:
    """Read and validate a ``pocketml.toml``; relative paths are resolved against its folder.

    Raises:
        NotFound: the file does not exist.
        InvalidInput: bad TOML or a bad field (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"build config {str(path)!r} does not exist; see docs/optimize.md")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path.name} is not valid TOML: {exc}") from exc
    try:
        config = BuildConfig.model_validate(raw)
    except ValidationError as exc:
        raise InvalidInput(f"{path.name}: {describe_validation_error(exc)}") from exc
    base = path.parent
    updates: dict[str, object] = {}
    if config.model.path is not None and not config.model.path.is_absolute():
        updates["model"] = config.model.model_copy(update={"path": base / config.model.path})
    if config.profiles_file is not None and not config.profiles_file.is_absolute():
        updates["profiles_file"] = base / config.profiles_file
    source = Path(config.data.source)
    if config.data.source != "digits" and not source.is_absolute() and (base / source).exists():
        updates["data"] = config.data.model_copy(update={"source": str(base / source)})
    return config.model_copy(update=updates) if updates else config
