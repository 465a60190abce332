"""Run records: what a training run used and produced, as JSON, for lineage.

A record holds the parameters, the metrics, the dataset fingerprint and split sizes, the
git commit of the working directory (when inside a repository, with a dirty flag), the
versions of the libraries that matter, and the duration.
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["RunRecord", "git_state", "library_versions"]

_LIBRARIES = ("pocketml", "numpy", "torch", "scikit-learn", "onnx", "onnxruntime")


def git_state(cwd: Path | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the repository around ``cwd``, or None outside one."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a model's behaviour depends on."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class RunRecord:
    """One training run, JSON-serialisable."""

    run_id: str
    model: str
    architecture: str
    framework: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    validation_metrics: dict[str, Any]
    dataset: dict[str, Any]
    started_at: str
    duration_s: float
    git: dict[str, Any] | None = None
    libraries: dict[str, str] = field(default_factory=library_versions)
    host: dict[str, str] = field(
        default_factory=lambda: {"platform": platform.platform(), "machine": platform.machine()}
    )

    @staticmethod
    def now() -> str:
        """The current UTC time in ISO 8601."""
        return datetime.now(UTC).isoformat(timespec="seconds")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def save(self, path: Path | str) -> Path:
        """Write the record as indented JSON."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return path
