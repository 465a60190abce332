"""The session cache: loaded models keyed by model sha256, bounded by total model bytes.

Entries are evicted least-recently-used first once the sum of their model file sizes
exceeds ``capacity_bytes`` (a model larger than the whole budget is still served, alone).
Model files are extracted once from their verified package into ``<home>/models/`` and
named by their sha256, so a restart reuses them and two versions sharing a file share
one session.
"""

from __future__ import annotations

import base64
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.protocol import FORMATS, file_sha256
from pocketml.registry import Registry, VariantInfo
from pocketml.runtime import Runner, open_runner
from pocketml.schema import ModelSchema

__all__ = ["LoadedModel", "SessionCache", "extract_variant"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve: its runner, schema and labels, and what it is."""

    sha256: str
    size: int
    runner: Runner
    schema: ModelSchema
    labels: tuple[str, ...]
    is_logits: bool
    batch_ms: float = float("inf")

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) for a validated float32 batch."""
        out = np.asarray(self.runner.run(batch), dtype=np.float32)
        out = out.reshape(len(batch), -1)
        if self.is_logits:
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        return out


def _extension(model_format: str) -> str:
    fmt = FORMATS.get(model_format)
    return fmt.extensions[0] if fmt is not None and fmt.is_runnable else "bin"


def extract_variant(
    registry: Registry, app_id: str, variant: VariantInfo, models_dir: Path
) -> Path:
    """Extract the model file of ``variant`` from its verified package (once).

    The package is copied from the artifact store, verified against the app's public
    keys (signature and every hash), decrypted with the app's content key when needed,
    and the model lands at ``models_dir/<sha256>.<ext>``. An existing file whose sha256
    matches is reused.

    Returns:
        The path of the plaintext model file.

    Raises:
        IntegrityError: the package or the extracted file fails verification.
        NotFound: the package is not in the app.
    """
    from pocketml.protect import install_package

    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / f"{variant.sha256}.{_extension(variant.format)}"
    if target.is_file() and file_sha256(target) == variant.sha256:
        return target
    ref = registry.get_package(app_id, variant.package_id)
    tmp_pkg = models_dir / f".pkg-{variant.package_id}-{secrets.token_hex(4)}.tmp"
    try:
        with registry.artifacts.open_read(ref.key) as src, tmp_pkg.open("wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                dst.write(chunk)
        app = registry.get_app(app_id)
        install_package(
            tmp_pkg,
            target,
            trusted_keys={k: base64.b64decode(v) for k, v in app.public_keys.items()},
            app_id=app_id,
            content_key=lambda key_id: registry.get_content_key(app_id, key_id),
            model_sha256=variant.sha256,
        )
    finally:
        tmp_pkg.unlink(missing_ok=True)
    logger.info("extracted %s (%s) into %s", variant.name, variant.sha256[:12], target)
    return target


class SessionCache:
    """LRU cache of ``LoadedModel`` by model sha256, bounded by total model bytes.

    Args:
        capacity_bytes: the budget of summed model file sizes.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._entries: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0

    @property
    def total_bytes(self) -> int:
        """Summed model sizes of the cached entries."""
        return sum(entry.size for entry in self._entries.values())

    def keys(self) -> list[str]:
        """Cached sha256s, least recently used first."""
        return list(self._entries)

    def get(self, sha256: str) -> LoadedModel | None:
        """The cached entry (marked most recently used), or None."""
        with self._lock:
            entry = self._entries.get(sha256)
            if entry is not None:
                self._entries.move_to_end(sha256)
            return entry

    def get_or_load(self, sha256: str, load: Callable[[], LoadedModel]) -> LoadedModel:
        """The cached entry, or ``load()`` it, insert it and evict LRU entries over budget."""
        entry = self.get(sha256)
        if entry is not None:
            return entry
        entry = load()
        with self._lock:
            self._entries[sha256] = entry
            self._entries.move_to_end(sha256)
            while len(self._entries) > 1 and self.total_bytes > self.capacity_bytes:
                evicted, _ = self._entries.popitem(last=False)
                self.evictions += 1
                logger.info("evicted model %s from the session cache", evicted[:12])
        return entry


def _probe_ms(runner: Runner, schema: ModelSchema, rows: int) -> float:
    """Median milliseconds of one ``rows``-row run on zeros (after one warm-up run).

    The first run also warms the session (memory arenas, kernels), so the first real
    request does not pay for it. A model that cannot run zeros gets ``inf``.
    """
    batch = np.zeros((rows, *schema.inputs[0].sample_shape), dtype=np.float32)
    timings = []
    try:
        for _ in range(4):
            started = time.perf_counter()
            runner.run(batch)
            timings.append((time.perf_counter() - started) * 1000)
    except Exception as exc:
        logger.warning("probe run of the model failed (%s); it runs in the executor", exc)
        return float("inf")
    return sorted(timings[1:])[1]


def load_model(
    path: Path,
    variant: VariantInfo,
    schema: dict[str, Any],
    threads: int,
    probe_rows: int = 0,
) -> LoadedModel:
    """Open ``path`` in its runtime and pair it with its schema.

    Args:
        path: the model file.
        variant: its registry record (format, sha256, size).
        schema: the model's schema dict.
        threads: intra-op threads of the runtime.
        probe_rows: when > 0, time a batch of this many rows (``LoadedModel.batch_ms``).

    Raises:
        InvalidInput: the runtime cannot load the file. SchemaError: a bad schema.
    """
    parsed = ModelSchema.from_dict(schema)
    runner = open_runner(path, variant.format, threads=threads)
    return LoadedModel(
        sha256=variant.sha256,
        size=variant.size,
        runner=runner,
        schema=parsed,
        labels=tuple(parsed.labels),
        is_logits=parsed.outputs[0].kind == "logits",
        batch_ms=_probe_ms(runner, parsed, probe_rows) if probe_rows > 0 else float("inf"),
    )
