"""``LocalModel``: predictions from the active local model, the cloud, or both (cascade).

The local hot path is kept lean (the overhead over a bare ``InferenceSession.run`` is
measured by ``benchmarks/device_predict_overhead.py``): the loaded model's fast run, the
normalization constants and the labels are resolved once per activated package into a
``_Snapshot``; a call does one shape check, one normalization (one allocation), the
run, an argmax, and hands a tuple to the telemetry buffer. Everything else (JSON, SQLite)
happens at flush time. A LocalModel holds its collaborators (the resolver, the telemetry
buffer, the cloud client), never the ``Device`` itself.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pocketml.device._capture import CaptureTap, SampleCapture
from pocketml.device._cloud import CloudAnswer, CloudClient
from pocketml.device._resolve import Loaded, ModelResolver
from pocketml.device._sketcher import Sketcher, SketchTracker
from pocketml.device._telemetry import DeviceTelemetry
from pocketml.device._types import HybridPolicy, Prediction
from pocketml.errors import InvalidInput, PocketMLError, Unavailable
from pocketml.schema import ModelSchema

__all__ = ["LocalModel"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Snapshot:
    """Everything a call needs, rebuilt when the device activates another package."""

    generation: int
    policy: HybridPolicy
    local: Loaded | None
    sample_shape: tuple[int, ...] | None
    batch_shape: tuple[int, ...] | None
    scale: Any  # y = x * scale + shift (the schema's normalization folded), or None
    shift: Any  # None when the shift is all zeros
    wall_offset: float  # time.time() - clock(): event timestamps without a time.time() call
    labels: tuple[str, ...]
    is_logits: bool
    pid_prefix: str
    sketch: SketchTracker | None = None  # bins what the local model scores (profile events)
    capture: CaptureTap | None = None  # consented sample capture (None: policy off)


def _normalization(schema: ModelSchema | None) -> tuple[Any, Any]:
    """``(x * s - mean) / std`` folded into ``x * a + b`` (two operations per call)."""
    if schema is None or schema.input.normalization is None:
        return None, None
    spec, norm = schema.input, schema.input.normalization
    mean = np.asarray(norm.mean, dtype=np.float32)
    std = np.asarray(norm.std, dtype=np.float32)
    if spec.layout == "NCHW" and mean.size > 1:
        mean, std = mean.reshape(1, -1, 1, 1), std.reshape(1, -1, 1, 1)
    scale = (np.float32(norm.scale) / std).astype(np.float32)
    shift = (-mean / std).astype(np.float32)
    return scale, (shift if np.any(shift) else None)


class LocalModel:
    """A model name on this device; get one with ``Device.model(name)``.

    Args:
        name: the model's name.
        resolver: resolves the name to its policy, schema and loaded model.
        telemetry: where inference and error events go.
        cloud: the cloud prediction client.
        clock: monotonic seconds (latency).
        device_id: returns this install's id (sent with cloud predictions).
        sketcher: the device's sketch windows (None: nothing is sketched).
        capture: the device's consented sample capture (None: nothing is captured).
    """

    def __init__(
        self,
        name: str,
        *,
        resolver: ModelResolver,
        telemetry: DeviceTelemetry,
        cloud: CloudClient,
        clock: Callable[[], float],
        device_id: Callable[[], str],
        sketcher: Sketcher | None = None,
        capture: SampleCapture | None = None,
    ) -> None:
        self.name = name
        self._capture = capture
        self._sketcher = sketcher
        self._resolver = resolver
        self._telemetry = telemetry
        self._cloud = cloud
        self._clock = clock
        self._device_id = device_id
        self._snap: _Snapshot | None = None
        self._counter = itertools.count(1)

    # -- state ------------------------------------------------------------------------------

    def _snapshot(self) -> _Snapshot:
        snap = self._snap
        if snap is None or snap.generation != self._resolver.generation:
            snap = self._build_snapshot()
            self._snap = snap
        return snap

    def _build_snapshot(self) -> _Snapshot:
        generation = self._resolver.generation
        resolved = self._resolver.resolve(self.name)
        policy, schema, loaded = resolved.policy, resolved.schema, resolved.local
        scale, shift = _normalization(schema)
        sample_shape = schema.input.sample_shape if schema is not None else None
        labels = tuple(schema.labels) if schema is not None else ()
        version = loaded.version if loaded is not None else None
        prefix = f"{secrets.token_hex(5)}-"
        self._telemetry.register_prefix(prefix, self.name, version)
        sketch = None
        if (
            self._sketcher is not None
            and resolved.profile is not None
            and schema is not None
            and version is not None
        ):
            sketch = self._sketcher.tracker(
                self.name, version, resolved.profile, schema.input.layout, resolved.monitor
            )
        tap = None
        if self._capture is not None and resolved.capture is not None:
            layout = schema.input.layout if schema is not None else None
            tap = self._capture.tap(self.name, resolved.capture, resolved.profile, layout)
        return _Snapshot(
            generation=generation,
            policy=policy,
            local=loaded,
            sample_shape=sample_shape,
            batch_shape=None if sample_shape is None else (1, *sample_shape),
            scale=scale,
            shift=shift,
            labels=labels,
            is_logits=schema is not None and schema.outputs[0].kind == "logits",
            pid_prefix=prefix,
            wall_offset=time.time() - self._clock(),
            sketch=sketch,
            capture=tap,
        )

    @property
    def version(self) -> int | None:
        """The version of the active local model (None when there is none)."""
        local = self._snapshot().local
        return None if local is None else local.version

    @property
    def policy(self) -> HybridPolicy:
        """The hybrid policy from the last manifest."""
        return self._snapshot().policy

    # -- input ------------------------------------------------------------------------------

    def _prepare(self, x: Any, snap: _Snapshot) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float32)
        if arr.shape != snap.batch_shape:
            arr = self._reshape(arr, snap)
        if snap.scale is None:
            return arr
        out: np.ndarray = arr * snap.scale
        if snap.shift is not None:
            out += snap.shift
        return out

    def _reshape(self, arr: np.ndarray, snap: _Snapshot) -> np.ndarray:
        if snap.sample_shape is None:  # no schema known: send what was given
            return arr[np.newaxis] if arr.ndim < 2 else arr
        if arr.shape != snap.sample_shape:
            expected = ", ".join(map(str, snap.sample_shape))
            raise InvalidInput(
                f"{self.name}: input must be one sample of shape ({expected}) or a "
                f"batch of one (1, {expected}); got {arr.shape}"
            )
        return arr.reshape(snap.batch_shape)

    # -- predict ----------------------------------------------------------------------------

    def predict(self, x: Any) -> Prediction:
        """Predict one raw sample (or a batch of one) as the hybrid policy says.

        Args:
            x: raw input values (the schema's normalization is applied here).

        Returns:
            The Prediction (``source`` says where it was computed).

        Raises:
            InvalidInput: wrong input shape.
            Unavailable: no usable local model and the cloud failed too.
        """
        clock = self._clock
        started = clock()
        snap = self._snap
        if snap is None or snap.generation != self._resolver.generation:
            snap = self._snapshot()
        arr = self._prepare(x, snap)
        local = snap.local
        policy = snap.policy
        if local is None or policy.mode == "cloud":
            return self._cloud_only(arr, snap, started)
        probs = local.run(arr)[0]
        if snap.is_logits:
            probs = _softmax(probs)
        index = int(probs.argmax())
        confidence = probs.item(index)
        if snap.sketch is not None:  # the local model's own answer, whoever answers
            snap.sketch.add(x, index, confidence, snap.wall_offset + clock())
        pid = snap.pid_prefix + str(next(self._counter))
        if policy.mode == "cascade" and confidence < policy.threshold:
            return self._escalate(arr, snap, started, pid, probs, index, confidence)
        label = snap.labels[index] if index < len(snap.labels) else str(index)
        if snap.capture is not None:
            snap.capture.offer(x, arr, pid, label, confidence, local.version)
        ended = clock()
        latency_ms = (ended - started) * 1000.0
        self._telemetry.record(
            (
                snap.wall_offset + ended,
                self.name,
                local.version,
                local.variant,
                "local",
                latency_ms,
                confidence,
                label,
                pid,
            )
        )
        return Prediction(label, probs, confidence, "local", local.version, latency_ms, pid, index)

    async def apredict(self, x: Any) -> Prediction:
        """Async twin of :meth:`predict` (the cloud call does not block the event loop)."""
        started = self._clock()
        snap = self._snapshot()
        arr = self._prepare(x, snap)
        local = snap.local
        pid = snap.pid_prefix + str(next(self._counter))
        cloud = self._cloud
        if local is None or snap.policy.mode == "cloud":
            try:
                answer = await cloud.apredict(self.name, snap.policy, arr, self._body(pid))
            except PocketMLError as exc:
                return self._after_cloud_failure(exc, arr, snap, started, pid)
            return self._from_cloud(answer, snap, started, pid, arr)
        probs, index, confidence = self._score(arr, snap)
        if snap.sketch is not None:
            snap.sketch.add(x, index, confidence, snap.wall_offset + self._clock())
        if snap.policy.mode == "cascade" and confidence < snap.policy.threshold:
            try:
                answer = await cloud.apredict(self.name, snap.policy, arr, self._body(pid))
            except PocketMLError as exc:
                return self._fallback(snap, started, pid, exc, (probs, index, confidence), arr)
            return self._from_cloud(answer, snap, started, pid, arr)
        return self._finish(
            snap,
            "local",
            local.version,
            local.variant,
            probs,
            index,
            confidence,
            started,
            pid,
            seen=arr,
        )

    # -- helpers ----------------------------------------------------------------------------

    def _body(self, pid: str) -> dict[str, Any]:
        return {"device_id": self._device_id(), "prediction_id": pid}

    def _escalate(
        self,
        arr: np.ndarray,
        snap: _Snapshot,
        started: float,
        pid: str,
        probs: np.ndarray,
        index: int,
        confidence: float,
    ) -> Prediction:
        try:
            answer = self._cloud.predict(self.name, snap.policy, arr, self._body(pid))
        except PocketMLError as exc:
            return self._fallback(snap, started, pid, exc, (probs, index, confidence), arr)
        return self._from_cloud(answer, snap, started, pid, arr)

    def _cloud_only(self, arr: np.ndarray, snap: _Snapshot, started: float) -> Prediction:
        """Policy ``cloud``, or no usable local model: ask the cloud.

        When the cloud fails and a local model is loaded, its answer is returned with
        ``source="fallback"`` (the app always gets an answer); without one the failure
        is raised as ``Unavailable`` with the reason.
        """
        pid = snap.pid_prefix + str(next(self._counter))
        try:
            answer = self._cloud.predict(self.name, snap.policy, arr, self._body(pid))
        except PocketMLError as exc:
            return self._after_cloud_failure(exc, arr, snap, started, pid)
        return self._from_cloud(answer, snap, started, pid, arr)

    def _score(self, arr: np.ndarray, snap: _Snapshot) -> tuple[np.ndarray, int, float]:
        """The local model's probabilities, top index and confidence for ``arr``."""
        assert snap.local is not None
        probs = snap.local.run(arr)[0]
        if snap.is_logits:
            probs = _softmax(probs)
        index = int(probs.argmax())
        return probs, index, float(probs[index])

    def _fallback(
        self,
        snap: _Snapshot,
        started: float,
        pid: str,
        exc: PocketMLError,
        scored: tuple[np.ndarray, int, float],
        seen: np.ndarray | None = None,
    ) -> Prediction:
        """The local answer, marked ``fallback``, after the cloud failed (error recorded)."""
        local = snap.local
        assert local is not None
        self._telemetry.emit_error(self.name, local.version, "cloud", str(exc), exc.code)
        probs, index, confidence = scored
        return self._finish(
            snap,
            "fallback",
            local.version,
            local.variant,
            probs,
            index,
            confidence,
            started,
            pid,
            seen=seen,
        )

    def _after_cloud_failure(
        self, exc: PocketMLError, arr: np.ndarray, snap: _Snapshot, started: float, pid: str
    ) -> Prediction:
        """Policy ``cloud`` (or no local model) and the cloud failed: the local answer as
        ``fallback`` when a model is loaded, else the failure (``Unavailable`` with why)."""
        if snap.local is None:
            if isinstance(exc, Unavailable):
                raise self._unavailable(exc) from exc
            raise exc
        return self._fallback(snap, started, pid, exc, self._score(arr, snap), arr)

    def _unavailable(self, exc: Unavailable) -> Unavailable:
        self._telemetry.emit_error(self.name, None, "cloud", str(exc), exc.code)
        return Unavailable(
            f"cannot predict with {self.name!r}: no local model is available (not downloaded "
            "yet, or it failed to load: call Device.sync() on a network that the download "
            f"policy allows), and the cloud failed: {exc}"
        )

    def _from_cloud(
        self,
        answer: CloudAnswer,
        snap: _Snapshot,
        started: float,
        pid: str,
        seen: np.ndarray | None = None,
    ) -> Prediction:
        label = answer.label
        return self._finish(
            snap,
            "cloud",
            answer.version,
            answer.variant,
            answer.probabilities,
            answer.index,
            answer.confidence,
            started,
            pid,
            label=label,
            seen=seen,
        )

    def _finish(
        self,
        snap: _Snapshot,
        source: Any,
        version: int | None,
        variant: str | None,
        probs: np.ndarray,
        index: int,
        confidence: float,
        started: float,
        pid: str,
        label: str | None = None,
        seen: np.ndarray | None = None,
    ) -> Prediction:
        if label is None:
            label = snap.labels[index] if index < len(snap.labels) else str(index)
        if snap.capture is not None and seen is not None:
            snap.capture.offer(None, seen, pid, label, confidence, version)
        ended = self._clock()
        latency_ms = (ended - started) * 1000.0
        self._telemetry.record(
            (
                snap.wall_offset + ended,
                self.name,
                version,
                variant,
                source,
                latency_ms,
                confidence,
                label,
                pid,
            )
        )
        return Prediction(label, probs, confidence, source, version, latency_ms, pid, index)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    out: np.ndarray = shifted / shifted.sum()
    return out
