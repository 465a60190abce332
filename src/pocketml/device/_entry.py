"""Reading a check-in manifest: every field the SDK uses is checked before it is used.

A check-in answer comes from the network, so each ``models[]`` entry is validated field by
field (names and variants as the registry spells them, sha256 as 64 lower-case hex, sizes
and versions bounded non-negative integers, URLs and routes as plain paths) and refused
with a :class:`ProtocolError` naming the field. One bad entry never takes the others down:
:func:`parse_manifest` returns the good entries and, separately, why each bad one was
refused; the Device keeps its previous view of a model whose new entry it cannot read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pocketml.device._types import (
    FORMATS,
    DownloadPolicy,
    HybridPolicy,
    ModelEntry,
    MonitorPolicy,
    PackageRef,
    ProtocolError,
)
from pocketml.errors import PocketMLError
from pocketml.protocol import CapturePolicy
from pocketml.schema import ModelSchema

__all__ = [
    "KEY_ID",
    "MAX_PACKAGE_BYTES",
    "MODEL_NAME",
    "SHA256",
    "ParsedManifest",
    "RejectedEntry",
    "keep_previous_entries",
    "parse_manifest",
    "parse_manifest_models",
]

# The registry's spelling of names (pocketml.registry: MODEL_NAME_PATTERN and
# VARIANT_NAME_PATTERN; the device may not import it, tests/device check they agree).
MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SHA256 = re.compile(r"[0-9a-f]{64}")
# Signing and content key ids ("ed25519:<16 hex>", "aes:<16 hex>"): they go into a URL path.
KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:-]{0,127}")
# A package is a zip without ZIP64 records (format version 1): below 4 GiB.
MAX_PACKAGE_BYTES = 0xFFFFFFFF
MAX_VERSION = 2**63 - 1
MAX_URL_CHARS = 2048
_ROUTE = re.compile(r"/v1/[A-Za-z0-9._~/-]{1,256}")


@dataclass(frozen=True)
class RejectedEntry:
    """A ``models[]`` entry the SDK refused to use.

    Attributes:
        index: its position in ``models``.
        name: its model name when that much was readable, else None.
        error: why it was refused.
    """

    index: int
    name: str | None
    error: ProtocolError


@dataclass(frozen=True)
class ParsedManifest:
    """The usable entries of a manifest and the refused ones."""

    entries: list[ModelEntry]
    rejected: list[RejectedEntry]


def _bad(where: str, expected: str, value: Any) -> ProtocolError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return ProtocolError(
        f"the server's manifest field '{where}' must be {expected}; got {shown}. "
        "Is the server a compatible pocketml version (or is something rewriting answers)?"
    )


def _field(data: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(data, Mapping) or key not in data:
        raise ProtocolError(f"the server's manifest lacks '{where}{key}'")
    return data[key]


def _text(data: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str]) -> str:
    value = _field(data, key, where)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _bad(where + key, f"a string matching {pattern.pattern}", value)
    return value


def _int(data: Mapping[str, Any], key: str, where: str, low: int, high: int) -> int:
    value = _field(data, key, where)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _bad(where + key, f"an integer in [{low}, {high}]", value)
    return value


def _number(data: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = data.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
        raise _bad(where + key, "a number in [0, 1]", value)
    return float(value)


def _flag(data: Mapping[str, Any], key: str, where: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise _bad(where + key, "true or false", value)
    return value


def _optional_text(data: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str]) -> Any:
    return None if data.get(key) is None else _text(data, key, where, pattern)


def _package(raw: Any, where: str) -> PackageRef:
    if not isinstance(raw, Mapping):
        raise _bad(where.rstrip("."), "an object or null", raw)
    url = _field(raw, "url", where)
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL_CHARS:
        raise _bad(where + "url", f"a URL of at most {MAX_URL_CHARS} characters", url)
    return PackageRef(
        id=_text(raw, "id", where, KEY_ID),
        url=url,
        size=_int(raw, "size", where, 1, MAX_PACKAGE_BYTES),
        sha256=_text(raw, "sha256", where, SHA256),
        signing_key_id=_text(raw, "signing_key_id", where, KEY_ID),
        content_key_id=_optional_text(raw, "content_key_id", where, KEY_ID),
    )


def _download(raw: Any, where: str) -> DownloadPolicy:
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise _bad(where.rstrip("."), "an object", raw)
    cap = raw.get("max_cellular_bytes", DownloadPolicy.max_cellular_bytes)
    if not isinstance(cap, int) or isinstance(cap, bool) or not 0 <= cap <= 2**63 - 1:
        raise _bad(where + "max_cellular_bytes", "a non-negative 64-bit integer", cap)
    return DownloadPolicy(
        wifi_only=_flag(raw, "wifi_only", where),
        charging_only=_flag(raw, "charging_only", where),
        max_cellular_bytes=cap,
    )


def _hybrid(raw: Any, where: str, name: str) -> HybridPolicy:
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise _bad(where.rstrip("."), "an object", raw)
    mode = raw.get("mode", "local")
    if mode not in ("local", "cloud", "cascade"):
        raise _bad(where + "mode", "'local', 'cloud' or 'cascade'", mode)
    route = raw.get("cloud_route") or f"/v1/models/{name}/predict"
    # A relative path on the server: an absolute or "//host" route would carry the
    # device key to another host.
    if not isinstance(route, str) or not _ROUTE.fullmatch(route) or ".." in route or "//" in route:
        raise _bad(where + "cloud_route", "a path under /v1/ on the server", route)
    return HybridPolicy(
        mode=mode,
        threshold=_number(raw, "threshold", where, 0.8),
        cloud_route=route,
        cloud_variant=_optional_text(raw, "cloud_variant", where, VARIANT_NAME),
        timeout_ms=_int({"timeout_ms": 1500, **raw}, "timeout_ms", where, 1, 600_000),
        max_retries=_int({"max_retries": 2, **raw}, "max_retries", where, 0, 100),
    )


def _monitor(raw: Any, where: str) -> MonitorPolicy | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise _bad(where.rstrip("."), "an object", raw)
    defaults = MonitorPolicy()
    enabled = raw.get("enabled", defaults.enabled)
    if not isinstance(enabled, bool):
        raise _bad(where + "enabled", "true or false", enabled)
    epsilon = raw.get("epsilon_per_day")
    if epsilon is not None and (
        not isinstance(epsilon, int | float)
        or isinstance(epsilon, bool)
        or not 0.001 <= epsilon <= 100
    ):
        raise _bad(where + "epsilon_per_day", "null or a number in [0.001, 100]", epsilon)
    return MonitorPolicy(
        enabled=enabled,
        window_s=_int({"window_s": defaults.window_s, **raw}, "window_s", where, 60, 86_400),
        max_rows=_int({"max_rows": defaults.max_rows, **raw}, "max_rows", where, 1, 10**9),
        epsilon_per_day=None if epsilon is None else float(epsilon),
    )


def _capture(raw: Any, where: str) -> CapturePolicy | None:
    if raw is None:
        return None
    try:
        return CapturePolicy.from_dict(raw, where.rstrip("."))
    except PocketMLError as exc:
        raise ProtocolError(f"the manifest's {exc}") from exc


def _parse_entry(raw: Any, index: int) -> ModelEntry:
    where = f"models[{index}]."
    name = _text(raw, "name", where, MODEL_NAME)
    package = None if raw.get("package") is None else _package(raw["package"], f"{where}package.")
    version = raw.get("version")
    if version is not None or package is not None:
        version = _int(raw, "version", where, 1, MAX_VERSION)
    variant, model_format, model_sha256 = raw.get("variant"), raw.get("format"), None
    if package is not None:  # what the package is checked against before it is installed
        variant = _text(raw, "variant", where, VARIANT_NAME)
        model_format = _field(raw, "format", where)
        if model_format not in FORMATS:
            raise _bad(where + "format", f"one of {', '.join(FORMATS)}", model_format)
        model_sha256 = _text(raw, "model_sha256", where, SHA256)
    hybrid = _hybrid(raw.get("hybrid"), f"{where}hybrid.", name)
    if package is not None and variant == hybrid.cloud_variant:
        raise _bad(where + "variant", "a device variant (not the cloud variant)", variant)
    precision = raw.get("precision")
    schema = raw.get("schema")
    if schema is not None:  # the cloud normalizes with it before any package is here
        if not isinstance(schema, Mapping):
            raise _bad(where + "schema", "a model schema object or null", schema)
        try:
            ModelSchema.from_dict(dict(schema))
        except PocketMLError as exc:
            raise _bad(where + "schema", f"a model schema ({exc})", "...") from exc
    return ModelEntry(
        name=name,
        version=version,
        variant=variant if isinstance(variant, str) else None,
        format=model_format if isinstance(model_format, str) else None,
        precision=precision if isinstance(precision, str) else None,
        package=package,
        model_sha256=model_sha256,
        download=_download(raw.get("download_policy"), f"{where}download_policy."),
        hybrid=hybrid,
        schema=schema if isinstance(schema, Mapping) else None,
        monitor=_monitor(raw.get("monitor"), f"{where}monitor."),
        capture=_capture(raw.get("capture"), f"{where}capture."),
    )


def parse_manifest(manifest: Any) -> ParsedManifest:
    """Parse and check the ``models`` list of a check-in manifest, entry by entry.

    Args:
        manifest: the decoded JSON body of ``POST /v1/checkin``.

    Returns:
        The usable entries, and each refused entry with its reason.

    Raises:
        ProtocolError: ``models`` itself is missing or not a list, or a model name repeats.
    """
    models = _field(manifest, "models", "")
    if not isinstance(models, list):
        raise _bad("models", "a list", models)
    entries: list[ModelEntry] = []
    rejected: list[RejectedEntry] = []
    for index, raw in enumerate(models):
        try:
            if not isinstance(raw, Mapping):
                raise _bad(f"models[{index}]", "an object", raw)
            entries.append(_parse_entry(raw, index))
        except ProtocolError as exc:
            name = raw.get("name") if isinstance(raw, Mapping) else None
            ok = isinstance(name, str) and MODEL_NAME.fullmatch(name)
            rejected.append(RejectedEntry(index, name if ok else None, exc))
    names = [entry.name for entry in entries] + [r.name for r in rejected if r.name]
    if len(set(names)) != len(names):
        raise ProtocolError(f"the server's manifest lists a model twice: {sorted(names)}")
    return ParsedManifest(entries, rejected)


def parse_manifest_models(manifest: Any) -> list[ModelEntry]:
    """The usable entries of a manifest (see :func:`parse_manifest`)."""
    return parse_manifest(manifest).entries


def keep_previous_entries(
    manifest: dict[str, Any], previous: Mapping[str, Any] | None, rejected: list[RejectedEntry]
) -> dict[str, Any]:
    """``manifest`` with each refused entry replaced by the last good entry of its model.

    The saved manifest drives predictions between check-ins, so a model whose new entry
    was refused keeps the policy (and the package) it had; a refused entry without a
    usable predecessor is dropped.
    """
    if not rejected:
        return manifest
    try:
        usable = {e.name for e in parse_manifest_models(previous)} if previous else set()
    except ProtocolError:
        usable = set()
    raw_before = {
        raw["name"]: raw
        for raw in (previous or {}).get("models", [])
        if isinstance(raw, Mapping) and raw.get("name") in usable
    }
    refused = {r.index: r.name for r in rejected}
    models = []
    for index, raw in enumerate(manifest["models"]):
        if index not in refused:
            models.append(raw)
        elif refused[index] in raw_before:
            models.append(raw_before[refused[index]])
    return {**manifest, "models": models}
