"""Device profiles: the classes of device a variant is benchmarked and selected for.

A profile says which model formats a device class runs, how many inference threads it
gives a model, how much memory a model may use, a latency target, and a *speed factor*:
how fast one of its CPU cores runs these models relative to one core of the host that
measured the benchmark. Latency on a profile is **estimated** as
``host latency / speed_factor``; the factors below are documented assumptions (see
docs/optimize.md), not measurements. Measure on real devices and load your own profiles
from TOML or YAML with :func:`load_profiles` when the estimate matters.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from pocketml.errors import InvalidInput, MissingDependencyError

__all__ = ["BUILTIN_PROFILES", "KNOWN_FORMATS", "DeviceProfile", "load_profiles"]

KNOWN_FORMATS = ("onnx", "ort", "tflite", "coreml")


@dataclass(frozen=True)
class DeviceProfile:
    """One class of device.

    Attributes:
        name: short id, e.g. "android-mid".
        description: what hardware the profile stands for.
        formats: model formats the device runs, in order of preference.
        threads: inference threads an app gives the model.
        memory_limit_mb: peak memory a model may add (MB = 10**6 bytes).
        speed_factor: single-core speed relative to the benchmark host (0.25 = 4× slower).
        target_latency_ms: latency target of one inference (p95), or None.
        target_fps: frame-rate target (sets the latency target to 1000/fps), or None.
        is_cpu_only: True when models run on CPU cores only (no GPU/NPU delegate).
    """

    name: str
    description: str
    formats: tuple[str, ...]
    threads: int
    memory_limit_mb: float
    speed_factor: float
    target_latency_ms: float | None = None
    target_fps: float | None = None
    is_cpu_only: bool = True

    @property
    def latency_budget_ms(self) -> float | None:
        """The stricter of the latency target and the frame-rate target, in ms."""
        limits = [v for v in (self.target_latency_ms, _fps_to_ms(self.target_fps)) if v]
        return min(limits) if limits else None

    def estimate_latency_ms(self, host_ms: float) -> float:
        """Estimate this device's latency from a latency measured on the host.

        Args:
            host_ms: latency measured on the benchmark host (same thread count).

        Returns:
            ``host_ms / speed_factor``: an estimate, never a measurement.
        """
        return host_ms / self.speed_factor

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["formats"] = list(self.formats)
        return out


def _fps_to_ms(fps: float | None) -> float | None:
    return 1000.0 / fps if fps else None


# Speed factors: one core of the profile's reference device against one core of a current
# x86-64 server core (the host these numbers were chosen on), for small CNNs in ONNX
# Runtime / LiteRT with NEON or AVX2 kernels. Rationale in docs/optimize.md.
BUILTIN_PROFILES: dict[str, DeviceProfile] = {
    p.name: p
    for p in (
        DeviceProfile(
            "android-low",
            "Entry Android phone: Cortex-A53/A55 cores at ~1.8 GHz, 2-3 GB RAM",
            ("tflite", "ort", "onnx"),
            threads=2,
            memory_limit_mb=150,
            speed_factor=0.2,
            target_fps=10,
        ),
        DeviceProfile(
            "android-mid",
            "Mid-range Android phone: Cortex-A76/A78 big cores, 4-6 GB RAM",
            ("tflite", "ort", "onnx"),
            threads=4,
            memory_limit_mb=400,
            speed_factor=0.45,
            target_fps=30,
        ),
        DeviceProfile(
            "android-high",
            "Flagship Android phone: Cortex-X3/X4 prime core, 8-12 GB RAM",
            ("tflite", "ort", "onnx"),
            threads=4,
            memory_limit_mb=1000,
            speed_factor=0.9,
            target_fps=60,
        ),
        DeviceProfile(
            "iphone",
            "Recent iPhone (A15-A17): Core ML with GPU/Neural Engine, 6 GB RAM",
            ("coreml", "tflite", "ort", "onnx"),
            threads=2,
            memory_limit_mb=1000,
            speed_factor=1.1,
            target_fps=60,
            is_cpu_only=False,
        ),
        DeviceProfile(
            "edge-linux",
            "Edge box, Raspberry Pi 4/5 class: Cortex-A72/A76 at 1.8-2.4 GHz",
            ("onnx", "ort", "tflite"),
            threads=4,
            memory_limit_mb=500,
            speed_factor=0.35,
            target_latency_ms=100,
        ),
        DeviceProfile(
            "cloud",
            "pocketml server: x86-64 cores like the benchmark host",
            ("onnx", "ort"),
            threads=1,
            memory_limit_mb=4000,
            speed_factor=1.0,
            target_latency_ms=50,
        ),
    )
}

_FIELD_TYPES: dict[str, str] = {
    "description": "a string",
    "formats": f"a list drawn from {', '.join(KNOWN_FORMATS)}",
    "threads": "an integer >= 1",
    "memory_limit_mb": "a number > 0",
    "speed_factor": "a number > 0",
    "target_latency_ms": "a number > 0",
    "target_fps": "a number > 0",
    "is_cpu_only": "true or false",
    "extends": "the name of a built-in profile",
}


def _bad(source: str, name: str, key: str, value: object) -> InvalidInput:
    return InvalidInput(
        f"{source}: profile {name!r}: field {key!r} must be {_FIELD_TYPES[key]}; "
        f"got {value!r}. Fix the field in the file."
    )


def _is_positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


_VALIDATORS: dict[str, Callable[[Any], bool]] = {
    "description": lambda v: isinstance(v, str),
    "formats": lambda v: (
        isinstance(v, list)
        and bool(v)
        and all(isinstance(f, str) for f in v)
        and set(v) <= set(KNOWN_FORMATS)
    ),
    "threads": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "memory_limit_mb": _is_positive_number,
    "speed_factor": _is_positive_number,
    "target_latency_ms": _is_positive_number,
    "target_fps": _is_positive_number,
    "is_cpu_only": lambda v: isinstance(v, bool),
}


def _check_field(source: str, name: str, key: str, value: object) -> object:
    if not _VALIDATORS[key](value):
        raise _bad(source, name, key, value)
    if key == "formats":
        return tuple(value)  # type: ignore[arg-type]
    return float(value) if _is_positive_number(value) and key != "threads" else value  # type: ignore[arg-type]


def _build_profile(source: str, name: str, raw: object) -> DeviceProfile:
    if not isinstance(raw, dict):
        raise InvalidInput(
            f"{source}: profile {name!r} must be a table of fields; got {raw!r}. "
            "Write it as [profiles.NAME] with its fields below."
        )
    unknown = sorted(set(raw) - set(_FIELD_TYPES))
    if unknown:
        raise InvalidInput(
            f"{source}: profile {name!r}: unknown field {unknown[0]!r}; expected fields "
            f"are {', '.join(_FIELD_TYPES)}. Remove or rename it."
        )
    base_name = raw.get("extends")
    values = {k: _check_field(source, name, k, v) for k, v in raw.items() if k != "extends"}
    if base_name is not None:
        if base_name not in BUILTIN_PROFILES:
            raise _bad(source, name, "extends", base_name)
        return replace(BUILTIN_PROFILES[base_name], name=name, **values)  # type: ignore[arg-type]
    required = ("formats", "threads", "memory_limit_mb", "speed_factor")
    missing = [k for k in required if k not in values]
    if missing:
        raise InvalidInput(
            f"{source}: profile {name!r}: field {missing[0]!r} is required (expected "
            f"{_FIELD_TYPES[missing[0]]}); it is missing. Add it, or set "
            "extends = '<built-in profile>' to inherit it."
        )
    values.setdefault("description", f"user profile {name}")
    return DeviceProfile(name=name, **values)  # type: ignore[arg-type]


def _read_document(path: Path) -> object:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"{path} is not valid TOML: {exc}. Fix the syntax.") from exc
    try:
        import yaml
    except ImportError as exc:
        raise MissingDependencyError("PyYAML", "build", "to read YAML profiles") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {exc}. Fix the syntax.") from exc


def load_profiles(path: Path | str) -> dict[str, DeviceProfile]:
    """Read user-defined device profiles from a TOML or YAML file.

    The file holds a ``profiles`` table of named profiles. Each has the fields of
    :class:`DeviceProfile` (``formats``, ``threads``, ``memory_limit_mb`` and
    ``speed_factor`` are required), or ``extends = "android-mid"`` to start from a
    built-in profile and override some fields::

        [profiles.pixel-7a]
        extends = "android-mid"
        speed_factor = 0.55

    Args:
        path: a ``.toml``, ``.yaml`` or ``.yml`` file.

    Returns:
        The file's profiles by name (merge with ``BUILTIN_PROFILES`` as needed).

    Raises:
        InvalidInput: the file is missing, unreadable, or a field is wrong;
            the message names the profile and the field.
        MissingDependencyError: a YAML file and PyYAML is not installed.
    """
    path = Path(path)
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise InvalidInput(
            f"profiles file must end in .toml, .yaml or .yml; got {path.name!r}. Rename it."
        )
    if not path.is_file():
        raise InvalidInput(f"profiles file {str(path)!r} does not exist. Check the path.")
    document = _read_document(path)
    profiles = document.get("profiles") if isinstance(document, dict) else None
    if not isinstance(profiles, dict) or not profiles:
        raise InvalidInput(
            f"{path.name}: expected a top-level 'profiles' table with at least one profile; "
            f"got {type(profiles).__name__ if profiles is not None else 'nothing'}. "
            "Add [profiles.NAME] sections."
        )
    return {str(n): _build_profile(path.name, str(n), raw) for n, raw in profiles.items()}
