"""The steps of a push that touch files: format and hash checks, storage, packages.

``Registry.push_version`` runs them in order and then writes the rows in one transaction;
these functions never touch the database.

``check_model_files`` makes sure each file is what its variant's format says before
anything is stored, so a device is never sent a package it cannot load: ONNX and ORT
files are opened once by ONNX Runtime (graph optimizations off: parsing and checking the
graph only, well under a second for hundreds of megabytes); TFLite files must carry the
``TFL3`` FlatBuffer identifier; Core ML files must be a zipped ``.mlpackage`` with its
``Manifest.json`` or a ``.mlmodel`` protobuf (whose first field is the spec version).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pocketml.errors import IntegrityError, InvalidInput
from pocketml.registry._rows import NewVariant, NewVersion
from pocketml.registry._types import ModelInfo, VersionCreate
from pocketml.registry.artifacts import ArtifactHashMismatch, ArtifactRef, ArtifactStore
from pocketml.registry.store import new_id

if TYPE_CHECKING:
    from pocketml.protect import ContentKey, SigningKey

__all__ = [
    "ModelFileRejected",
    "build_packages",
    "check_files",
    "check_model_files",
    "new_version",
    "store_model_files",
]

_TFLITE_ID = b"TFL3"


class ModelFileRejected(InvalidInput):
    """A variant's file is not a file of its declared format (HTTP 422 naming the variant)."""

    def __init__(self, variant: str, message: str) -> None:
        super().__init__(message)
        self.variant = variant


def check_model_files(meta: VersionCreate, files: Mapping[str, Path]) -> None:
    """Check that every variant's file is a model of its declared format.

    Raises:
        ModelFileRejected: the first variant whose file is not what its format says.
    """
    for variant in meta.variants:
        problem = _format_problem(Path(files[variant.name]), variant.format)
        if problem is not None:
            raise ModelFileRejected(
                variant.name,
                f"variant {variant.name!r} is declared as format {variant.format!r} but its "
                f"file {problem}. Upload the model file that was built for this variant.",
            )


def _format_problem(path: Path, model_format: str) -> str | None:
    with path.open("rb") as handle:
        head = handle.read(8)
    if model_format == "tflite":
        return None if head[4:8] == _TFLITE_ID else "lacks the TFLite identifier 'TFL3'"
    if model_format == "coreml":
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            if any(name.endswith(".mlpackage/Manifest.json") for name in names):
                return None
            return "is a zip without an .mlpackage/Manifest.json (not a zipped .mlpackage)"
        if head[:1] == b"\x08":  # Model.specificationVersion, field 1, varint
            return None
        return "is neither a zipped .mlpackage nor a .mlmodel"
    return _onnxruntime_problem(path, model_format)


def _onnxruntime_problem(path: Path, model_format: str) -> str | None:
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - a server dependency
        return None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    options.add_session_config_entry(
        "session.load_model_format", "ORT" if model_format == "ort" else "ONNX"
    )
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (unexported) error types
        text = str(exc).replace(str(path), "<upload>").strip()  # no server paths in replies
        reason = text.splitlines()[0][:200] if text else type(exc).__name__
        return f"does not load in ONNX Runtime ({reason})"
    return None


def store_model_files(
    artifacts: ArtifactStore, meta: VersionCreate, files: Mapping[str, Path]
) -> dict[str, ArtifactRef]:
    """Store each variant's model file, checking its declared sha256.

    Returns:
        variant name -> ArtifactRef of its model file.

    Raises:
        IntegrityError: "sha256 mismatch for variant X: declared .., got ..".
    """
    refs: dict[str, ArtifactRef] = {}
    for variant in meta.variants:
        try:
            refs[variant.name] = artifacts.put_file(
                Path(files[variant.name]), expected_sha256=variant.sha256
            )
        except ArtifactHashMismatch as exc:
            raise IntegrityError(
                f"sha256 mismatch for variant {variant.name}: declared {exc.expected}, "
                f"got {exc.actual}. The upload was corrupted or the build record is "
                "stale; rebuild or re-upload the variant."
            ) from exc
    return refs


def build_packages(
    artifacts: ArtifactStore,
    tmp_dir: Path | None,
    app_id: str,
    model: ModelInfo,
    number: int,
    meta: VersionCreate,
    files: Mapping[str, Path],
    signing: SigningKey,
    content_keys: Mapping[str, ContentKey],
) -> dict[str, ArtifactRef]:
    """Build one signed (optionally encrypted) package per variant and store it.

    Returns:
        variant name -> ArtifactRef of its package (the sha256 is the package id).
    """
    from pocketml.protect import build_package

    refs: dict[str, ArtifactRef] = {}
    with tempfile.TemporaryDirectory(prefix="pocketml-push-", dir=tmp_dir) as tmp:
        for variant in meta.variants:
            out = Path(tmp) / f"{variant.name}.pmlpkg"
            package = build_package(
                _named_model_file(Path(files[variant.name]), variant.format, Path(tmp)),
                out,
                app_id=app_id,
                model=model.name,
                version=number,
                variant=variant.name,
                model_format=variant.format,
                precision=variant.precision,
                schema=model.schema,
                card=meta.card,
                signing_key=signing,
                content_key=content_keys.get(variant.name),
                profile=meta.reference_profile,
            )
            refs[variant.name] = artifacts.put_file(package.path, expected_sha256=package.sha256)
            out.unlink(missing_ok=True)
    return refs


def _named_model_file(path: Path, model_format: str, tmp: Path) -> Path:
    """The upload under a name that says what it is (uploads are spooled as ``*.part``).

    Only Core ML is ambiguous: a zipped ``.mlpackage`` or a single ``.mlmodel``; the zip
    signature tells them apart. The file is hard-linked (copied across file systems).
    """
    if model_format != "coreml":
        return path
    name = "model.mlpackage.zip" if zipfile.is_zipfile(path) else "model.mlmodel"
    named = tmp / f"{path.stem}-{name}"
    try:
        os.link(path, named)
    except OSError:
        shutil.copyfile(path, named)
    return named


def new_version(
    meta: VersionCreate,
    number: int,
    model_refs: Mapping[str, ArtifactRef],
    packages: Mapping[str, ArtifactRef],
    signing_key_id: str,
    content_keys: Mapping[str, ContentKey],
) -> NewVersion:
    """The records of the version and its variants that the store will insert."""
    from pocketml.protect import canonical_json

    variants = tuple(
        NewVariant(
            id=new_id("var"),
            name=v.name,
            format=v.format,
            precision=v.precision,
            role=v.role,
            size=model_refs[v.name].size,
            sha256=model_refs[v.name].sha256,
            model_key=model_refs[v.name].key,
            package_id=packages[v.name].sha256,
            package_key=packages[v.name].key,
            package_size=packages[v.name].size,
            signing_key_id=signing_key_id,
            content_key_id=content_keys[v.name].key_id if v.name in content_keys else None,
            compatibility=dict(v.compatibility),
            metrics=dict(v.metrics),
            benchmarks=dict(v.benchmarks),
            profiles=list(v.profiles),
        )
        for v in meta.variants
    )
    return NewVersion(
        id=new_id("ver"),
        version=number,
        dataset_fingerprint=meta.dataset_fingerprint,
        parent_version=meta.parent_version,
        source_framework=meta.source_framework,
        params=dict(meta.params),
        metrics=dict(meta.metrics),
        run_record=dict(meta.run_record),
        card=meta.card,
        variants=variants,
        reference_profile=None if meta.reference_profile is None else dict(meta.reference_profile),
        reference_profile_sha256=(
            None
            if meta.reference_profile is None
            else hashlib.sha256(canonical_json(dict(meta.reference_profile))).hexdigest()
        ),
    )


def check_files(meta: VersionCreate, files: Mapping[str, Path]) -> None:
    """Raise InvalidInput unless every variant has exactly one file and vice versa."""
    declared = {variant.name for variant in meta.variants}
    given = set(files)
    if declared - given:
        raise InvalidInput(
            f"every variant needs exactly one file; no file for {sorted(declared - given)}. "
            "Upload one file part per variant, named after the variant."
        )
    if given - declared:
        raise InvalidInput(
            f"every file must belong to a declared variant; got files for undeclared "
            f"variants {sorted(given - declared)}. Declare them in the metadata or drop them."
        )
