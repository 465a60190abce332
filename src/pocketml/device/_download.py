"""Download a package into ``partial/<sha256>.part``, resuming with HTTP Range.

A cut connection keeps the bytes already written; the next attempt (in this sync or the
next) asks for ``Range: bytes=<have>-`` and appends the 206 body. A server that ignores
the range (200) restarts the file from zero. Network failures are retried with
exponential backoff and jitter; anything else (404, 401) is raised at once.

Never more than the announced ``package.size`` bytes reach the disk: a ``Content-Length``
past it is refused before the first byte, and a stream that runs past it is cut, its
partial file deleted and :class:`OversizeDownload` raised (not retried: the same server
would send the same bytes). Any status but 200 and 206 (a redirect, say) is refused.
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

__all__ = ["DownloadResult", "OversizeDownload", "download_package"]


class OversizeDownload(IntegrityError):
    """The server sent (or announced) more bytes than the check-in entry's package size."""

    code = "download_oversize"


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
    if have >= ref.size:  # not a prefix of this package (or a finished bad one): start over
        part.unlink()
        have = 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with http.stream_package(ref.url, headers) as response:
        if response.status_code >= 400:
            response.read()
            raise error_from_response(response)
        have, mode = _start_offset(response, ref, have)
        resumed = mode == "ab"
        progress("started", have, resumed, None)
        fetched = 0
        with part.open(mode) as sink:
            for chunk in response.iter_bytes():  # as received: a cut keeps every byte
                if have + len(chunk) > ref.size:
                    sink.close()
                    part.unlink(missing_ok=True)
                    raise _oversize(ref, f"the stream ran past byte {ref.size}")
                sink.write(chunk)
                have += len(chunk)
                fetched += len(chunk)
                progress("progress", have, resumed, None)
    return fetched, resumed


def _start_offset(response: httpx.Response, ref: PackageRef, have: int) -> tuple[int, str]:
    """Where the body starts (``have`` or 0) and the file mode; refuses odd answers."""
    status = response.status_code
    if status == 206 and have:
        content_range = response.headers.get("content-range", "")
        if not content_range.startswith(f"bytes {have}-"):
            raise Unavailable(
                f"the server answered Range bytes={have}- with {content_range!r}; "
                "retrying the download from the start"
            )
        start, mode = have, "ab"
    elif status == 200:
        start, mode = 0, "wb"
    else:
        raise IntegrityError(
            f"the package download answered HTTP {status}; expected 200, or 206 to a Range "
            "request. Redirects are not followed: serve packages from package.url itself."
        )
    length = response.headers.get("content-length")
    if length is not None and (not length.isdigit() or start + int(length) > ref.size):
        raise _oversize(ref, f"Content-Length {length[:20]} from byte {start}")
    return start, mode


def _oversize(ref: PackageRef, detail: str) -> OversizeDownload:
    return OversizeDownload(
        f"package {ref.sha256[:16]} is announced as {ref.size} bytes but the server sent "
        f"more ({detail}). Nothing past the announced size was written; the partial file "
        "was deleted and the previous model stays active."
    )


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
        OversizeDownload: the server sent more bytes than the manifest's size.
        IntegrityError: an answer that is neither 200 nor 206.
        InvalidInput: ``ref.url`` is on a host the device may not fetch from.
        PocketMLError: the server refused (404, 401, ...).
    """
    part.parent.mkdir(parents=True, exist_ok=True)
    if part.exists() and part.stat().st_size == ref.size:  # fetched by an earlier sync
        return DownloadResult(0, False, 0)
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
            error: Unavailable = Unavailable(
                f"the download of package {ref.sha256[:16]} ended at {size} of {ref.size} bytes"
            )
        except httpx.HTTPError as exc:
            error = translate(exc, http.base_url)
            error.__cause__ = exc
        except Unavailable as exc:
            error = exc
        if attempt > retries:
            raise error
        sleep(backoff.delay(attempt - 1, rng))
