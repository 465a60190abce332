"""Streaming: a 64 MB model is built, verified and extracted without being held in memory."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from protect_helpers import APP, build, model_bytes

from pocketml.protect import ContentKey, SigningKey, extract_model, verify_package
from pocketml.protocol import file_sha256

MODEL_MB = 64
PEAK_LIMIT = 16 * 1024 * 1024


def _peak(action: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = action()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _write_model(path: Path) -> str:
    chunk, hasher = model_bytes(1 << 20, seed=7), hashlib.sha256()
    with path.open("wb") as handle:
        for index in range(MODEL_MB):
            block = index.to_bytes(4, "big") + chunk[4:]  # every MiB differs
            hasher.update(block)
            handle.write(block)
    return hasher.hexdigest()


def test_64_mb_encrypted_package_streams_in_bounded_memory(tmp_path: Path) -> None:
    source = tmp_path / "big.tflite"
    digest = _write_model(source)
    key, content_key = SigningKey.generate(), ContentKey.generate()

    info, build_peak = _peak(
        lambda: build(
            source, tmp_path / "big.pkg", key, model_format="tflite", content_key=content_key
        )
    )
    verified, verify_peak = _peak(
        lambda: verify_package(info.path, trusted_keys={key.key_id: key.public_bytes()}, app_id=APP)
    )
    out, extract_peak = _peak(
        lambda: extract_model(verified, tmp_path / "out.tflite", content_key=content_key)
    )

    size = MODEL_MB << 20
    assert info.size > size
    assert max(build_peak, verify_peak, extract_peak) < PEAK_LIMIT, (
        build_peak,
        verify_peak,
        extract_peak,
    )
    assert verified.manifest["model_sha256"] == digest
    assert (file_sha256(out), out.stat().st_size) == (digest, size)
    print(  # shown with -s: the numbers for the notes
        f"\n64 MB package: peak build {build_peak / 2**20:.1f} MiB, "
        f"verify {verify_peak / 2**20:.1f} MiB, extract {extract_peak / 2**20:.1f} MiB"
    )
