"""Contract suites for converter and quantizer plugins, like scikit-learn's estimator checks.

A plugin passes when it does what pocketml's own converters and quantizers do, so a build
can use it without special cases:

- it writes a file of the format it declares, and that file loads in its runtime;
- the file computes what its source computes, within the tolerance the plugin declares;
- it is deterministic: the same input gives the same model;
- it leaves its input unchanged (the source model, the source file);
- it refuses bad input with pocketml's errors (``InvalidInput``, ``ConversionError``, ...),
  never with a library's exception, and writes nothing when it refuses.

``check_converter`` and ``check_quantizer`` run every check and return the names of those
that ran; the first broken promise raises ``AssertionError`` with what was expected and
what happened. Formats that cannot run here (Core ML on Linux) are spec-checked instead of
run, and their determinism is not checked (their packages carry fresh identifiers).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.convert import RUNNABLE_FORMATS, check_coreml_spec, check_parity, open_runner
from pocketml.errors import PocketMLError
from pocketml.optimize import Quantizer, file_size
from pocketml.train.model import TrainedModel

__all__ = ["Convert", "check_converter", "check_quantizer"]

Convert = Callable[[TrainedModel, Path], Path]
"""A converter: writes ``model`` in its format at the path given and returns that path."""


@contextmanager
def _workdir(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix="pocketml-check-") as tmp:
        yield Path(tmp)


def _tree_sha256(path: Path) -> str:
    """sha256 of a file, or of every file (names and bytes) under a directory."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else "").encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _outputs(path: Path, model_format: str, samples: np.ndarray) -> np.ndarray:
    try:
        return open_runner(path, model_format).run(samples)
    except PocketMLError as exc:
        raise AssertionError(f"{path.name} does not load or run as {model_format}: {exc}") from exc


def _assert_same_model(first: Path, second: Path, model_format: str, samples: np.ndarray) -> None:
    a, b = _outputs(first, model_format, samples), _outputs(second, model_format, samples)
    assert np.array_equal(a, b), (
        f"two runs on the same input gave different models: max |Δ| = "
        f"{float(np.max(np.abs(a - b))):.3g} between {first.parent.name}/{first.name} and "
        f"{second.parent.name}/{second.name}; expected identical outputs (seed every random "
        "choice)."
    )


def _assert_refuses(what: str, action: Callable[[], Any], leftover: Path) -> None:
    try:
        action()
    except PocketMLError:
        pass
    except Exception as exc:
        raise AssertionError(
            f"{what}: expected a pocketml error (InvalidInput, ConversionError, ...); got "
            f"{type(exc).__name__}: {exc}. Translate it with `raise ConversionError(...) from exc`."
        ) from exc
    else:
        raise AssertionError(f"{what}: expected a pocketml error; the call succeeded.")
    assert not leftover.exists(), f"{what}: the refused call left {leftover} behind."


def _model_state(model: TrainedModel, samples: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """What a converter must not change: the model's outputs and (torch) its tensors."""
    outputs = model.predict_proba(samples)  # first: it puts a torch module in eval mode
    tensors: list[Any] = []
    if model.framework == "pytorch":
        tensors = [t.detach().clone() for t in model.estimator.state_dict().values()]
        tensors.append(model.estimator.training)
    return outputs, tensors


def check_converter(
    convert: Convert,
    model_format: str,
    model: TrainedModel,
    samples: np.ndarray,
    *,
    atol: float = 1e-4,
    min_agreement: float = 0.99,
    suffix: str | None = None,
    workdir: Path | None = None,
) -> list[str]:
    """Run the converter contract on ``convert`` (e.g. ``pocketml.convert.to_onnx``).

    Args:
        convert: ``convert(model, path) -> path`` writes ``model`` as ``model_format``.
        model_format: the format it declares ("onnx", "ort", "tflite", "coreml", ...).
        model: a small trained model of a framework the converter supports.
        samples: held-out, normalized inputs (N, *sample_shape) to compare outputs on.
        atol: the largest difference of any probability it promises.
        min_agreement: the smallest share of samples on which both pick the same class.
        suffix: the file name suffix the converter expects (default ``.<model_format>``;
            ``.mlpackage`` for Core ML).
        workdir: where files are written (default: a temporary directory).

    Returns:
        The names of the checks that passed.

    Raises:
        AssertionError: a check failed; the message says which promise broke and how.
    """
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    name = f"model{suffix or '.' + model_format}"
    passed: list[str] = []
    with _workdir(workdir) as work:
        before = _model_state(model, samples)
        first = Path(convert(model, work / "first" / name))
        assert first.exists(), f"the converter returned {first}, which does not exist."
        passed.append("writes_a_file")
        if model_format in RUNNABLE_FORMATS:
            outputs = _outputs(first, model_format, samples)
            reference = model.predict_proba(samples)
            report = check_parity(
                model_format,
                reference,
                outputs,
                atol=atol,
                min_agreement=min_agreement,
                raise_on_failure=False,
            )
            assert report.passed, f"the converted model does not match its source: {report}"
        else:
            spec = check_coreml_spec(model, first)
            assert spec.passed, f"the converted model fails its spec check: {spec}"
        passed.append("matches_the_source_model")
        second = Path(convert(model, work / "second" / name))
        if model_format in RUNNABLE_FORMATS:
            _assert_same_model(first, second, model_format, samples)
            passed.append("is_deterministic")
        after = _model_state(model, samples)
        assert np.array_equal(before[0], after[0]) and all(
            bool((a == b).all()) if hasattr(a, "all") else a == b
            for a, b in zip(before[1], after[1], strict=True)
        ), "the converter changed the model it converted (its outputs, weights or mode)."
        passed.append("leaves_the_model_unchanged")
        broken = replace(model, estimator=object())
        _assert_refuses(
            "converting a model whose estimator is not a model",
            lambda: convert(broken, work / "broken" / name),
            work / "broken" / name,
        )
        passed.append("refuses_bad_input")
    return passed


def check_quantizer(
    quantizer: Quantizer,
    source: Path,
    samples: np.ndarray,
    *,
    atol: float = 0.1,
    min_agreement: float = 0.9,
    workdir: Path | None = None,
) -> list[str]:
    """Run the quantizer contract on ``quantizer`` (any ``pocketml.optimize.Quantizer``).

    Args:
        quantizer: has ``method``, ``precision``, ``model_format`` and ``apply(src, dst)``.
        source: a float model file (or ``.mlpackage``) of ``quantizer.model_format``.
        samples: inputs (N, ...) to compare the quantized model with its source.
        atol: the largest difference of any output it promises.
        min_agreement: the smallest share of samples on which both pick the same class.
        workdir: where files are written (default: a temporary directory).

    Returns:
        The names of the checks that passed.

    Raises:
        AssertionError: a check failed; the message says which promise broke and how.
    """
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    fmt = quantizer.model_format
    source = Path(source)
    passed: list[str] = []
    with _workdir(workdir) as work:
        before = _tree_sha256(source)
        first = work / "first" / f"quantized{source.suffix}"
        first.parent.mkdir(parents=True)
        result = quantizer.apply(source, first)
        assert result.path == first and first.exists(), (
            f"apply(src, dst) must write dst ({first}) and return it; returned {result.path}."
        )
        labels = (result.method, result.precision, result.model_format, result.size_bytes)
        declared = (quantizer.method, quantizer.precision, fmt, file_size(first))
        assert labels == declared, (
            f"the result must carry the quantizer's labels and the file's size {declared}; "
            f"got {labels}."
        )
        passed.append("writes_the_declared_format")
        if fmt in RUNNABLE_FORMATS:
            report = check_parity(
                f"{quantizer.method} {quantizer.precision} {fmt}",
                _outputs(source, fmt, samples),
                _outputs(first, fmt, samples),
                atol=atol,
                min_agreement=min_agreement,
                raise_on_failure=False,
            )
            assert report.passed, f"the quantized model drifts from its source: {report}"
            passed.append("matches_the_source_model")
        second = work / "second" / f"quantized{source.suffix}"
        second.parent.mkdir(parents=True)
        quantizer.apply(source, second)
        if fmt in RUNNABLE_FORMATS:
            _assert_same_model(first, second, fmt, samples)
            passed.append("is_deterministic")
        assert _tree_sha256(source) == before, f"apply changed its source file {source}."
        passed.append("leaves_the_source_unchanged")
        _assert_refuses_bad_sources(quantizer, source, work)
        passed.append("refuses_bad_input")
    return passed


def _assert_refuses_bad_sources(quantizer: Quantizer, source: Path, work: Path) -> None:
    bad = work / "bad"
    bad.mkdir()
    missing = bad / f"missing{source.suffix}"
    _assert_refuses(
        "quantizing a source that does not exist",
        lambda: quantizer.apply(missing, bad / f"out-missing{source.suffix}"),
        bad / f"out-missing{source.suffix}",
    )
    renamed = bad / "model.unknown"
    if source.is_dir():
        shutil.copytree(source, renamed)
    else:
        shutil.copyfile(source, renamed)
    _assert_refuses(
        "quantizing a source named as another format",
        lambda: quantizer.apply(renamed, bad / f"out-renamed{source.suffix}"),
        bad / f"out-renamed{source.suffix}",
    )
    garbage = bad / f"garbage{source.suffix}"
    if source.is_dir():
        garbage.mkdir()
        (garbage / "Manifest.json").write_bytes(b"\x00 not a model")
    else:
        garbage.write_bytes(b"\x08\x00 not a model " * 64)
    _assert_refuses(
        "quantizing bytes that are not a model",
        lambda: quantizer.apply(garbage, bad / f"out-garbage{source.suffix}"),
        bad / f"out-garbage{source.suffix}",
    )
