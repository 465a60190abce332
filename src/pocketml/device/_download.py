"""Download a package into ``partial/<sha256>.part``, resuming with HTTP Range.

A cut connection keeps the bytes already written; the next attempt (in this sync or the
next) asks for ``Range: bytes=<have>-`` and appends the 206 body. A server that ignores
the range (200) restarts the file from zero. Network failures are retried with
exponential backoff and jitter; anything else (404, 401) is raised at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from pocketml.device._net import Backoff, DeviceHttp, error_from_response, translate
from pocketml.device._types import PackageRef
from pocketml.errors import IntegrityError, Unavailable

__all__ = ["DownloadResult", "download_package"]

CHUNK = 64 * 1024
ProgressFn = Callable[[str, int, bool, str | None], None]
"""Called as ``progress(kind, bytes_on_disk, resumed, error)``; kind started/progress."""


@dataclass(frozen=True)
class DownloadResult:
    """What a finished download cost."""

    bytes_fetched: int
    resumed: bool
    attempts: int


def _fetch_once(
    http: DeviceHttp, ref: PackageRef, part: Path, progress: ProgressFn
) -> tuple[int, bool]:
    """One GET: append to ``part`` from its current size. Returns (bytes fetched, resumed)."""
    have = part.stat().st_size if part.exists() else 0
    if have > ref.size:  # not a prefix of this package: start over
        part.unlink()
        have = 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    fetched, resumed = 0, False
    with http.client.stream("GET", ref.url, headers=headers) as response:
        if response.status_code >= 400:
            response.read()
            raise error_from_response(response)
        if response.status_code == 206 and have:
            content_range = response.headers.get("content-range", "")
            if not content_range.startswith(f"bytes {have}-"):
                raise Unavailable(
                    f"the server answered Range bytes={have}- with {content_range!r}; "
                    "retrying the download from the start"
                )
            mode, resumed = "ab", True
        else:
            mode, have = "wb", 0
        progress("started", have, resumed, None)
        with part.open(mode) as sink:
            for chunk in response.iter_bytes():  # as received: a cut keeps every byte
                sink.write(chunk)
                have += len(chunk)
                fetched += len(chunk)
                progress("progress", have, resumed, None)
    return fetched, resumed


def download_package(
    http: DeviceHttp,
    ref: PackageRef,
    part: Path,
    *,
    retries: int,
    backoff: Backoff,
    rng: random.Random,
    sleep: Callable[[float], None],
    progress: ProgressFn,
) -> DownloadResult:
    """Fetch ``ref`` into ``part`` until it holds ``ref.size`` bytes.

    Args:
        http: the device's HTTP clients.
        ref: the package to fetch.
        part: the partial file (kept across failures for resume).
        retries: retries after the first attempt for network failures.
        backoff: delays between attempts.
        rng: jitter source.
        sleep: waits between attempts (injectable).
        progress: progress callback.

    Returns:
        The bytes fetched now, whether any attempt resumed, and the attempt count.

    Raises:
        Unavailable: the network kept failing after every retry.
        IntegrityError: the server sent more bytes than the manifest's size.
        PocketMLError: the server refused (404, 401, ...).
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    total, any_resumed, attempt = 0, False, 0
    while True:
        attempt += 1
        try:
            fetched, resumed = _fetch_once(http, ref, part, progress)
            total += fetched
            any_resumed = any_resumed or resumed
            size = part.stat().st_size
            if size == ref.size:
                return DownloadResult(total, any_resumed, attempt)
            if size > ref.size:
                part.unlink()
                raise IntegrityError(
                    f"package {ref.id[:16]} came with {size} bytes; the manifest says "
                    f"{ref.size}. The partial file was deleted; the next sync starts over."
                )
            error: Unavailable = Unavailable(
                f"the download of package {ref.id[:16]} ended at {size} of {ref.size} bytes"
            )
        except httpx.HTTPError as exc:
            error = translate(exc, http.base_url)
            error.__cause__ = exc
        except Unavailable as exc:
            error = exc
        if attempt > retries:
            raise error
        sleep(backoff.delay(attempt - 1, rng))
