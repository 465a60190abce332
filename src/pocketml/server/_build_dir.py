"""Read a BUILD_DIR (written by ``pocketml convert``/``build``/``demo``) into a push.

Layout: ``build.json`` =
``{"format_version": 1, "model", "schema": "schema.json", "card": "card.md",
"dataset_fingerprint", "source_framework", "params", "metrics", "run_record": "run.json",
"reference_profile": "profile.json" or null (sent as the push's ``reference_profile``),
"variants": [{"name", "file", "format", "precision", "role", "sha256", "size",
"compatibility", "metrics", "benchmarks", "profiles"}]}`` with every path relative to the
directory. Each variant file is checked (exists, size, sha256) before anything is sent.
A Core ML ``.mlpackage`` is a directory: it is zipped deterministically (sorted entries,
fixed timestamps and modes) and the zip is uploaded as the variant's file.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pocketml.errors import IntegrityError, InvalidInput, NotFound
from pocketml.protocol import file_sha256

__all__ = ["PreparedBuild", "PreparedVariant", "prepare_build", "zip_directory"]

CHUNK = 1 << 20
_EPOCH = (1980, 1, 1, 0, 0, 0)


class _BuildVariant(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    file: str = Field(min_length=1)
    format: Literal["onnx", "ort", "tflite", "coreml"]
    precision: Literal["fp32", "fp16", "int8"]
    role: Literal["device", "cloud"] = "device"
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    size: int | None = Field(None, ge=0)
    compatibility: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    benchmarks: dict[str, Any] = Field(default_factory=dict)
    profiles: list[str] = Field(default_factory=list)


class _BuildManifest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format_version: Literal[1]
    model: str = Field(min_length=1)
    schema_file: str = Field("schema.json", alias="schema")
    card: str | None = "card.md"
    dataset_fingerprint: str | None = None
    source_framework: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    run_record: str | None = None
    reference_profile: str | None = None
    variants: list[_BuildVariant] = Field(min_length=1)


@dataclass(frozen=True)
class PreparedVariant:
    """One variant ready to upload: the file to send and its checked hash and size."""

    name: str
    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class PreparedBuild:
    """A BUILD_DIR turned into a push: model name, schema, metadata JSON, files."""

    model: str
    schema: dict[str, Any]
    metadata: dict[str, Any]
    variants: tuple[PreparedVariant, ...]
    work_dir: Path

    def cleanup(self) -> None:
        """Delete the temporary zips of directory variants."""
        shutil.rmtree(self.work_dir, ignore_errors=True)


def zip_directory(directory: Path, out_path: Path) -> Path:
    """Zip a directory deterministically: same tree, same bytes.

    Args:
        directory: e.g. a Core ML ``.mlpackage``.
        out_path: the zip to write.

    Returns:
        ``out_path``.
    """
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    with zipfile.ZipFile(out_path, "w") as archive:
        for path in files:
            info = zipfile.ZipInfo(
                f"{directory.name}/{path.relative_to(directory).as_posix()}", _EPOCH
            )
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with path.open("rb") as source, archive.open(info, "w", force_zip64=True) as target:
                while chunk := source.read(CHUNK):
                    target.write(chunk)
    return out_path


def _load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise NotFound(f"{what} {str(path)!r} does not exist; rebuild with `pocketml convert`.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{what} {str(path)!r} is not valid JSON: {exc}.") from exc


def _parse_manifest(build_dir: Path) -> _BuildManifest:
    raw = _load_json(build_dir / "build.json", "build manifest")
    try:
        return _BuildManifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"'{'.'.join(str(p) for p in err['loc'])}': {err['msg']}" for err in exc.errors()
        )
        raise InvalidInput(
            f"{build_dir / 'build.json'} is not a valid build manifest: {problems}. "
            "Rebuild the directory with `pocketml convert`."
        ) from exc


def _prepare_variant(build_dir: Path, variant: _BuildVariant, work_dir: Path) -> PreparedVariant:
    path = (build_dir / variant.file).resolve()
    if not path.exists():
        raise NotFound(
            f"variant {variant.name!r}: file {variant.file!r} is missing from {build_dir}; "
            "rebuild the directory."
        )
    if path.is_dir():  # .mlpackage: upload a deterministic zip of the directory
        zipped = zip_directory(path, work_dir / f"{variant.name}.zip")
        return PreparedVariant(variant.name, zipped, file_sha256(zipped), zipped.stat().st_size)
    size = path.stat().st_size
    if variant.size is not None and variant.size != size:
        raise IntegrityError(
            f"variant {variant.name!r}: build.json says {variant.size} bytes, "
            f"{variant.file} has {size}; the file changed after the build, rebuild it."
        )
    digest = file_sha256(path)
    if variant.sha256 is not None and variant.sha256 != digest:
        raise IntegrityError(
            f"variant {variant.name!r}: sha256 mismatch: build.json declares "
            f"{variant.sha256}, {variant.file} hashes to {digest}; rebuild the directory."
        )
    return PreparedVariant(variant.name, path, digest, size)


def prepare_build(
    build_dir: Path, *, model: str | None = None, encrypt: bool = False
) -> PreparedBuild:
    """Parse and check a BUILD_DIR, ready for ``AdminClient.push_files``.

    Args:
        build_dir: the directory holding ``build.json``.
        model: push under this model name instead of build.json's ``model``.
        encrypt: encrypt every variant inside its package.

    Returns:
        The prepared build; call its ``cleanup()`` afterwards (zipped ``.mlpackage`` dirs).

    Raises:
        NotFound: build.json, the schema or a variant file is missing.
        InvalidInput: build.json is malformed (bad JSON, unknown format, ...).
        IntegrityError: a variant file's size or sha256 differs from build.json.
    """
    manifest = _parse_manifest(build_dir)
    schema = _load_json(build_dir / manifest.schema_file, "model schema")
    card_path = build_dir / manifest.card if manifest.card else None
    card = card_path.read_text(encoding="utf-8") if card_path and card_path.is_file() else ""
    run_record = (
        _load_json(build_dir / manifest.run_record, "run record") if manifest.run_record else {}
    )
    profile = None
    if manifest.reference_profile:
        profile = _load_json(build_dir / manifest.reference_profile, "reference profile")
    work_dir = Path(tempfile.mkdtemp(prefix="pocketml-push-"))
    try:
        variants = tuple(_prepare_variant(build_dir, v, work_dir) for v in manifest.variants)
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    metadata = {
        "dataset_fingerprint": manifest.dataset_fingerprint,
        "source_framework": manifest.source_framework,
        "params": manifest.params,
        "metrics": manifest.metrics,
        "run_record": run_record if isinstance(run_record, dict) else {"record": run_record},
        "card": card,
        "variants": [
            {
                "name": v.name,
                "format": v.format,
                "precision": v.precision,
                "role": v.role,
                "sha256": prepared.sha256,
                "compatibility": v.compatibility,
                "metrics": v.metrics,
                "benchmarks": v.benchmarks,
                "profiles": v.profiles,
                "encrypt": encrypt,
            }
            for v, prepared in zip(manifest.variants, variants, strict=True)
        ],
    }
    if profile is not None:  # absent otherwise: servers before the profile refuse the key
        metadata["reference_profile"] = profile
    return PreparedBuild(
        model=model or manifest.model,
        schema=schema,
        metadata=metadata,
        variants=variants,
        work_dir=work_dir,
    )
