"""Variant choice: which file of a version one device should run (ONE replaceable function).

``choose_variant(device, version)`` is the only place the rule lives; staged rollouts and
experiments wrap it (they pick the version, this picks the file). The rule:

1. only ``role == "device"`` variants whose format the device listed;
2. a ``compatibility["min_runtime"]`` such as ``"onnxruntime>=1.13"`` must be met when the
   device reported that runtime's version (compared with ``packaging.version``);
3. ORT files built for platform ``arm`` go to android/ios, ``amd64`` to linux, when both
   exist (otherwise the one that exists is fine: it runs, only slower);
4. then prefer a variant whose ``profiles`` contain the device's class; then the device's
   format order; then, for variants made for the class, the smallest file first
   (int8 < fp16 < fp32 by size); for the rest, fp32 first (the safe default).

Nothing loadable -> ``None``: the device is never sent a file it cannot load.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from packaging.version import InvalidVersion, Version

from pocketml.delivery._types import CheckinFacts
from pocketml.registry import VariantInfo, VersionInfo

__all__ = ["choose_variant", "parse_min_runtime", "runtime_satisfies"]

logger = logging.getLogger(__name__)

_MIN_RUNTIME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.-]*)\s*(>=|==|>|<=|<)\s*([0-9][^\s(,;]*)")
# A web page runs ORT's WASM build: no platform-specific ORT file suits it (None).
_ORT_PLATFORM = {"android": "arm", "ios": "arm", "linux": "amd64"}
_FP32_FIRST = {"fp32": 0, "fp16": 1, "int8": 2}


@lru_cache(maxsize=1024)
def parse_min_runtime(spec: str) -> tuple[str, str, Version] | None:
    """Parse ``"onnxruntime>=1.13"`` into ``("onnxruntime", ">=", Version("1.13"))``.

    Args:
        spec: a variant's ``compatibility["min_runtime"]`` text.

    Returns:
        (runtime name in lower case, operator, version), or None when it cannot be parsed
        (the constraint is then not enforced).
    """
    match = _MIN_RUNTIME.match(spec)
    if match is None:
        return None
    try:
        return match.group(1).lower(), match.group(2), Version(match.group(3))
    except InvalidVersion:
        return None


def runtime_satisfies(variant: VariantInfo, device: CheckinFacts) -> bool:
    """True unless the variant needs a newer runtime than the one the device reported.

    Args:
        variant: a variant with an optional ``compatibility["min_runtime"]``.
        device: the device's facts (``runtimes``: name -> version).

    Returns:
        False only when the device reported the runtime and its version fails the spec.
    """
    spec = variant.compatibility.get("min_runtime")
    if not isinstance(spec, str):
        return True
    parsed = parse_min_runtime(spec)
    if parsed is None:
        return True
    name, op, needed = parsed
    reported = device.runtime_versions.get(name)
    if reported is None:
        return True
    try:
        have = Version(reported)
    except InvalidVersion:
        return False
    return {
        ">=": have >= needed,
        ">": have > needed,
        "==": have == needed,
        "<=": have <= needed,
        "<": have < needed,
    }[op]


def _ort_platform_ok(candidates: list[VariantInfo], device: CheckinFacts) -> list[VariantInfo]:
    """Drop ORT files built for the other platform when both platforms were built."""
    ort_platforms = {v.compatibility.get("platform") for v in candidates if v.format == "ort"} - {
        None
    }
    if len(ort_platforms) < 2:
        return candidates
    wanted = _ORT_PLATFORM.get(device.platform)
    return [
        v
        for v in candidates
        if v.format != "ort" or v.compatibility.get("platform") in (None, wanted)
    ]


def choose_variant(device: CheckinFacts, version: VersionInfo) -> VariantInfo | None:
    """Pick the variant of ``version`` this device should download and run.

    Args:
        device: the device's facts (platform, formats in preference order, runtimes, class).
        version: the model version on offer, with all its variants.

    Returns:
        The chosen variant, or None when no variant is loadable on this device.
    """
    candidates = [
        v
        for v in version.variants
        if v.role == "device" and v.format in device.formats and runtime_satisfies(v, device)
    ]
    candidates = _ort_platform_ok(candidates, device)
    if not candidates:
        return None
    format_rank = {fmt: i for i, fmt in enumerate(device.formats)}

    def key(v: VariantInfo) -> tuple[object, ...]:
        made_for_class = device.device_class is not None and device.device_class in v.profiles
        if made_for_class:
            size_rank: tuple[int, int] = (0, v.size)
        else:
            size_rank = (_FP32_FIRST.get(v.precision, 3), v.size)
        return (0 if made_for_class else 1, format_rank[v.format], size_rank, v.name)

    return min(candidates, key=key)
