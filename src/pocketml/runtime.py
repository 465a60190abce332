"""Run a model file with the real runtime of its format (core: the device SDK uses it too).

ONNX and ORT-format files run in ONNX Runtime, TFLite files in LiteRT (ai-edge-litert).
Core ML cannot execute on Linux, so ``open_runner`` refuses it with a clear error. Parity
checks, benchmarks and the cloud serving code all go through ``Runner.run``; the device
SDK's hot path uses ``Runner.fast_run``, which does the same checks once instead of per call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pocketml._native import quiet_native
from pocketml.errors import InvalidInput, MissingDependencyError, UnsupportedError
from pocketml.protocol import RUNNABLE_FORMATS

__all__ = ["RUNNABLE_FORMATS", "Runner", "open_runner"]

logger = logging.getLogger(__name__)


@dataclass
class Runner:
    """A loaded model file. ``run`` maps a float batch to the model's first output."""

    path: Path
    model_format: str
    input_name: str
    input_shape: tuple[int | str | None, ...]
    _session: Any = field(repr=False)

    @property
    def session(self) -> Any:
        """The runtime's own object (an ORT ``InferenceSession`` or a LiteRT ``Interpreter``).

        For benchmarks that compare against the bare runtime; prediction code uses ``run``.
        """
        return self._session

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on ``batch`` (N, ...) and return its first output (N, ...).

        Raises:
            InvalidInput: the batch's trailing shape does not match the model's input.
        """
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        expected = self.input_shape[1:]
        is_static = all(isinstance(d, int) for d in expected)
        if is_static and tuple(batch.shape[1:]) != expected:
            raise InvalidInput(
                f"input must have shape (N, {', '.join(map(str, expected))}); "
                f"got {tuple(batch.shape)}"
            )
        if self.model_format == "tflite":
            return self._run_tflite(batch)
        outputs = self._session.run(None, {self.input_name: batch})
        return np.asarray(outputs[0])

    def fast_run(self) -> Callable[[np.ndarray], np.ndarray]:
        """A run of the first output for hot loops: the per-call checks done once, here.

        ``run`` converts and checks its batch on every call, and ONNX Runtime's
        ``InferenceSession.run`` re-validates input names, graph capture and value ownership
        on every call too (a few µs at batch 1, more than the model itself for small
        models; ``benchmarks/device_predict_overhead.py`` measures it). A caller that
        already holds a valid batch (the device SDK's ``LocalModel`` checks the shape and
        normalizes once per call) skips both: for ONNX Runtime the returned function calls
        the session's underlying run directly, after a probe on zeros has answered exactly
        like the public ``run``; if that private entry point is missing or answers
        differently (another onnxruntime version), the public ``InferenceSession.run`` is
        used. For LiteRT it is ``run`` itself.

        Returns:
            ``run(batch) -> first output (N, ...)``; ``batch`` must be a C-contiguous
            float32 array of the model's input shape (a dynamic axis: any size), no
            further checks are made.
        """
        if self.model_format == "tflite":
            return self.run
        session = self._session
        names = [output.name for output in session.get_outputs()]
        input_name = self.input_name
        public = session.run
        inner = getattr(getattr(session, "_sess", None), "run", None)
        run = inner if inner is not None and self._answers_like(inner, names) else None

        if run is None:

            def checked(batch: np.ndarray) -> np.ndarray:
                return np.asarray(public(names, {input_name: batch})[0])

            return checked

        def fast(batch: np.ndarray) -> np.ndarray:
            out: np.ndarray = run(names, {input_name: batch}, None)[0]
            return out

        return fast

    def _answers_like(self, inner: Callable[..., Any], names: list[str]) -> bool:
        """Whether ORT's private run gives the public run's answer on a zero batch."""
        shape = tuple(d if isinstance(d, int) else 1 for d in self.input_shape)
        probe = np.zeros(shape, dtype=np.float32)
        try:
            fast = inner(names, {self.input_name: probe}, None)
            slow = self._session.run(names, {self.input_name: probe})
            return bool(np.array_equal(np.asarray(fast[0]), np.asarray(slow[0])))
        except Exception:  # any difference in the private API: use the public one
            logger.debug("onnxruntime private run unavailable; using InferenceSession.run")
            return False

    def _run_tflite(self, batch: np.ndarray) -> np.ndarray:
        # TFLite files are exported with the batch of 1 phones use; resizing them fails
        # where a reshape baked that batch in, so larger batches run sample by sample.
        interpreter = self._session
        input_detail = interpreter.get_input_details()[0]
        output_detail = interpreter.get_output_details()[0]
        model_batch = int(input_detail["shape"][0])
        dtype = input_detail["dtype"]
        if dtype in (np.int8, np.uint8):  # full-integer model: quantize the input
            scale, zero_point = input_detail["quantization"]
            info = np.iinfo(dtype)
            batch = np.clip(np.round(batch / scale + zero_point), info.min, info.max).astype(dtype)
        outputs = []
        for start in range(0, batch.shape[0], model_batch):
            chunk = batch[start : start + model_batch]
            if chunk.shape[0] != model_batch:  # pad the last chunk
                pad = np.zeros((model_batch - chunk.shape[0], *chunk.shape[1:]), chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            interpreter.set_tensor(input_detail["index"], chunk)
            interpreter.invoke()
            outputs.append(np.array(interpreter.get_tensor(output_detail["index"])))
        out = np.concatenate(outputs)[: batch.shape[0]]
        if output_detail["dtype"] in (np.int8, np.uint8):
            scale, zero_point = output_detail["quantization"]
            out = (out.astype(np.float32) - zero_point) * scale
        return out


def open_runner(path: Path | str, model_format: str, *, threads: int = 1) -> Runner:
    """Load ``path`` in the runtime of ``model_format`` ("onnx", "ort" or "tflite").

    Args:
        path: the model file.
        model_format: one of ``RUNNABLE_FORMATS``.
        threads: intra-op threads (1 mirrors a phone's single inference thread).

    Raises:
        UnsupportedError: the format cannot execute on this host (Core ML on Linux).
        InvalidInput: the file is missing or the runtime cannot load it.
        MissingDependencyError: the runtime is not installed.
    """
    path = Path(path)
    if model_format not in RUNNABLE_FORMATS:
        raise UnsupportedError(
            f"{model_format!r} models cannot be executed on this host; runnable formats are "
            f"{', '.join(RUNNABLE_FORMATS)} (Core ML runs only on Apple platforms)."
        )
    if not path.is_file():
        raise InvalidInput(f"model file {str(path)!r} does not exist")
    if model_format == "tflite":
        return _open_tflite(path, threads)
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "device", "to run ONNX models") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise InvalidInput(f"ONNX Runtime cannot load {path.name}: {exc}") from exc
    first = session.get_inputs()[0]
    return Runner(path, model_format, first.name, tuple(first.shape), session)


def _open_tflite(path: Path, threads: int) -> Runner:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise MissingDependencyError("ai-edge-litert", "build", "to run TFLite models") from exc
    try:
        with quiet_native():  # LiteRT logs an INFO line from C++; a CLI entry point may discard it
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
    except Exception as exc:  # LiteRT raises RuntimeError/ValueError on a bad file
        raise InvalidInput(f"LiteRT cannot load {path.name}: {exc}") from exc
    detail = interpreter.get_input_details()[0]
    shape = tuple(int(d) for d in detail["shape"])
    return Runner(path, "tflite", str(detail["name"]), shape, interpreter)
