"""ONNX -> ORT format, ONNX Runtime's mobile format, optimized for a target platform.

An ORT file bakes in graph optimizations ("Fixed" style) for one instruction set: ``arm``
for phones, ``amd64`` for x86 hosts. Building for the wrong platform works but runs slower
(1.6–2.5× measured here), so the target follows the device class. The converter also
reports the operators the file needs (what a reduced-size ORT mobile build must include).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from pocketml._native import quiet_native
from pocketml.errors import ConversionError, InvalidInput, MissingDependencyError

__all__ = ["ORT_PLATFORMS", "ort_compatibility", "to_ort"]

ORT_PLATFORMS = ("arm", "amd64")


def to_ort(onnx_path: Path | str, path: Path | str, *, platform: str = "arm") -> Path:
    """Convert an ONNX file to an ORT-format file at ``path``, optimized for ``platform``.

    Also writes ``<path>.required_operators.config`` next to it.

    Raises:
        InvalidInput: unknown platform.
        ConversionError: ONNX Runtime rejected the model.
    """
    if platform not in ORT_PLATFORMS:
        raise InvalidInput(
            f"ORT platform must be one of {', '.join(ORT_PLATFORMS)}; got {platform!r}"
        )
    try:
        from onnxruntime.tools.convert_onnx_models_to_ort import (
            OptimizationStyle,
            convert_onnx_models_to_ort,
        )
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "device", "to build ORT files") from exc
    onnx_path, path = Path(onnx_path), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pocketml-ort-") as tmp:
        work = Path(tmp)
        (work / "in").mkdir()
        shutil.copyfile(onnx_path, work / "in" / "model.onnx")
        try:
            with quiet_native():
                convert_onnx_models_to_ort(
                    work / "in",
                    output_dir=work / "out",
                    optimization_styles=[OptimizationStyle.Fixed],
                    target_platform=platform,
                )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ConversionError(
                f"ort: ONNX Runtime could not convert {onnx_path.name}: {exc}"
            ) from exc
        produced = work / "out" / "model.ort"
        if not produced.is_file():
            raise ConversionError(f"ort: ONNX Runtime produced no ORT file for {onnx_path.name}")
        shutil.move(produced, path)
        configs = list((work / "out").glob("*.config"))
        if configs:
            shutil.move(configs[0], path.with_name(path.name + ".required_operators.config"))
    return path


def ort_compatibility(path: Path | str, platform: str) -> dict[str, Any]:
    """What a device needs to run this ORT file: platform, operators, minimum runtime."""
    path = Path(path)
    operators: list[str] = []
    config = path.with_name(path.name + ".required_operators.config")
    if config.is_file():
        for line in config.read_text().splitlines():
            if line and not line.startswith("#"):
                _domain, _opset, ops = line.split(";")
                operators.extend(ops.split(","))
    import onnxruntime

    return {
        "platform": platform,
        "operators": sorted(set(operators)),
        # ORT files are read by the runtime version that wrote them and newer ones.
        "min_runtime": f"onnxruntime>={onnxruntime.__version__.rsplit('.', 1)[0]}",
    }
