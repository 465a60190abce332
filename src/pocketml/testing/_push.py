"""One way to push a model version in a test: real model files, one metadata shape.

A pushed variant is a metadata entry (name, format, precision, sha256, ...) and the file
it describes; ``model_variant`` writes a small valid file of the format with
``write_model_file`` and returns both. ``push_version`` pushes through the admin HTTP API
(what users and devices see); ``push_to_registry`` calls ``Registry.push_version``
directly, for tests of the services below the server that run without HTTP.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketml.testing._model_files import write_model_file

if TYPE_CHECKING:
    from pocketml.registry import Registry, VersionInfo
    from pocketml.server.client import AdminClient
    from pocketml.server.schemas import VersionPublic

__all__ = ["DIGITS_SCHEMA", "Variant", "model_variant", "push_to_registry", "push_version"]

Variant = tuple[dict[str, Any], Path]
"""A variant to push: its ``VersionCreate`` entry and its model file."""

DIGITS_SCHEMA: dict[str, Any] = {
    "format_version": 1,
    "name": "digits",
    "inputs": [{"name": "pixels", "dtype": "float32", "shape": [None, 64], "layout": "NC"}],
    "outputs": [
        {"name": "probabilities", "kind": "probabilities", "labels": [str(i) for i in range(10)]}
    ],
}
"""The model schema of the 8x8 digits (64 features, 10 classes) that every test model fits:
the ONNX files of ``write_model_file`` run under it in cloud predict. Copy before changing."""


def model_variant(
    workdir: Path,
    name: str,
    *,
    fmt: str = "onnx",
    precision: str = "fp32",
    seed: int | str | None = None,
    size: int = 2000,
    filename: str | None = None,
    **fields: Any,
) -> Variant:
    """Write a small valid model file and return its variant entry with the file.

    Args:
        workdir: where the file is written.
        name: the variant's name.
        fmt: its format ("onnx", "ort", "tflite" or "coreml").
        precision: its precision.
        seed: what makes the bytes distinct (default: the name).
        size: about how many bytes the file has.
        filename: the file's name in ``workdir`` (default ``<name>.bin``, or
            ``<name>-<seed>.bin`` with a seed).
        fields: more fields of the entry (``role``, ``profiles``, ``metrics``, ``encrypt``...).

    Returns:
        ``(entry, path)``; the entry carries the file's sha256.
    """
    if filename is None:
        filename = f"{name}.bin" if seed is None else f"{name}-{seed}.bin"
    path = write_model_file(workdir / filename, fmt, seed=name if seed is None else seed, size=size)
    entry = {
        "name": name,
        "format": fmt,
        "precision": precision,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        **fields,
    }
    return entry, path


def push_version(
    client: AdminClient,
    model: str,
    variants: Sequence[Variant],
    *,
    schema: Mapping[str, Any] | None = None,
    stage: str | None = None,
    **meta: Any,
) -> VersionPublic:
    """Push a version of ``model`` with these variants through the admin API.

    Args:
        client: an ``AdminClient`` with an app admin's token.
        model: the model's name.
        variants: ``model_variant`` results.
        schema: when given, the model is created with it first if it does not exist.
        stage: when given, the version is moved to it ("production", ...).
        meta: more ``VersionCreate`` fields (``card``, ``metrics``, ``version``...).

    Returns:
        The pushed version (after the stage change, if any).
    """
    if schema is not None and model not in {m.name for m in client.list_models().items}:
        client.create_model(model, schema=dict(schema))
    body = {**meta, "variants": [entry for entry, _ in variants]}
    version = client.push_files(model, body, {entry["name"]: path for entry, path in variants})
    if stage is not None:
        version = client.set_stage(model, version.version, stage)
    return version


def push_to_registry(
    registry: Registry, app_id: str, model: str, variants: Sequence[Variant], **meta: Any
) -> VersionInfo:
    """Push a version of ``model`` straight into an open ``Registry`` (no HTTP).

    Args:
        registry: an open registry.
        app_id: the app that owns ``model`` (which must exist).
        model: the model's name.
        variants: ``model_variant`` results.
        meta: more ``VersionCreate`` fields.

    Returns:
        The stored version.
    """
    from pocketml.registry import VersionCreate

    body = VersionCreate.model_validate({**meta, "variants": [entry for entry, _ in variants]})
    files = {entry["name"]: path for entry, path in variants}
    return registry.push_version(app_id, model, body, files)
