"""``Device``: one app install talking the device protocol (check-in, sync, predict, report).

The constructor only stores configuration. ``sync()`` checks in and brings every model of
the manifest onto the device; ``model(name)`` gives a :class:`LocalModel` to predict with;
``flush()`` sends queued telemetry and feedback; ``feedback()`` reports a label or thumbs.

``Device`` is a facade over three collaborators it builds and wires: the sync steps
(``_sync``, one model at a time), a ``ModelResolver`` (policy, schema and loaded runtime
per name) and a ``DeviceTelemetry`` (buffer, writer thread, flush, feedback). It owns the
identity, the check-in and the trust pin.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pocketml.device._capture import CaptureFlush, Redactor, SampleCapture
from pocketml.device._cloud import CloudClient
from pocketml.device._entry import keep_previous_entries, parse_manifest, parse_manifest_models
from pocketml.device._federated import FederatedParticipant, FederatedReport
from pocketml.device._federated_store import FederatedStore
from pocketml.device._model import LocalModel
from pocketml.device._net import Backoff, CircuitBreaker, DeviceHttp
from pocketml.device._queue import TelemetryQueue
from pocketml.device._resolve import ModelResolver
from pocketml.device._sketcher import Sketcher
from pocketml.device._store import CacheDir
from pocketml.device._sync import SyncContext, failed_sync, sync_model
from pocketml.device._telemetry import DeviceTelemetry, FlushReport
from pocketml.device._trust import Anchor, follow_keyring, pinned_keyring
from pocketml.device._types import (
    DeviceFacts,
    DeviceState,
    DownloadEvent,
    DownloadPolicy,
    HybridPolicy,
    ModelEntry,
    ModelSync,
    ProtocolError,
    SyncReport,
    disk_free,
)
from pocketml.errors import InvalidInput, PocketMLError
from pocketml.protect import Keyring
from pocketml.schema import ModelSchema

if TYPE_CHECKING:
    import httpx

__all__ = ["Device", "FlushReport", "ForgetReport"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForgetReport:
    """What ``Device.forget_me()`` deleted.

    Attributes:
        samples: consented samples and federated training examples deleted on the device.
        events: telemetry events deleted on the device (buffered and queued).
        feedback: queued feedback messages deleted on the device.
        server: the server's report (row counts deleted there), None while queued.
        queued: the server could not be reached; the request is retried at every
            ``flush()`` until it succeeds (and nothing is captured meanwhile is kept).
    """

    samples: int
    events: int
    feedback: int
    server: dict[str, Any] | None
    queued: bool


class Device:
    """A device (one app install) of the pocketml device protocol.

    Args:
        server_url: the pocketml server, e.g. ``https://ml.example.com``.
        device_key: the app's device key (shipped inside the app).
        facts: platform, versions, formats, device class (sent at check-in).
        cache_dir: where models, state and the telemetry queue live.
        trusted_keys: the app's signing keys, shipped with its build: its ``Keyring``
            (``Keyring.from_json`` of ``pocketml app keys show --out``; best), or bare
            ``{key_id: raw Ed25519 public key}``. The device follows signed key changes
            from there (docs/packages.md). Default: trust the first keyring offered
            (trust on first use, weaker) and follow it.
        transport: an httpx transport (the simulator injects latency and faults here).
        async_transport: an httpx async transport for ``apredict``.
        state: network / charging / free-disk callbacks.
        clock: monotonic seconds for latency, backoff and the circuit breaker.
        sleep: waits between retries.
        async_sleep: async waits between cloud retries (default ``asyncio.sleep``).
        on_download: called with each DownloadEvent.
        seed: seed of the jitter RNG (reproducible simulations).
        download_retries: retries of a failing download within one sync.
        breaker_threshold: consecutive cloud failures that open the circuit breaker.
        breaker_cooldown_s: seconds before an open breaker lets one probe through.
        max_queued_events: bound of the telemetry queue (oldest dropped beyond it).
        threads: inference threads of the local runtime.
        schemas: model name -> ModelSchema, used to normalize inputs for the cloud only
            when neither a package on the device nor the manifest gives the schema.
        package_hosts: hosts other than the server's (a CDN: ``"cdn.example.com"`` or
            ``"host:port"``) that a check-in's absolute ``package.url`` may name; packages
            from them are fetched without the device key. Any other host is refused.
        redact: the PII hook of consented capture: ``fn(model_name, input) -> array |
            None`` runs on a copy of each input about to be captured (normalized, as the
            model saw it) before anything is held or written; None drops the sample.
        on_wifi: returns True when samples may be uploaded under a ``wifi_only`` capture
            policy (default: ``state.network_type() == "wifi"``; wire it to the OS).
    """

    def __init__(
        self,
        server_url: str,
        device_key: str,
        facts: DeviceFacts,
        cache_dir: Path | str,
        *,
        trusted_keys: Keyring | Mapping[str, bytes] | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        state: DeviceState | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] | None = None,
        on_download: Callable[[DownloadEvent], None] | None = None,
        seed: int | None = None,
        download_retries: int = 4,
        breaker_threshold: int = 5,
        breaker_cooldown_s: float = 30.0,
        max_queued_events: int = 10_000,
        threads: int = 1,
        schemas: Mapping[str, ModelSchema] | None = None,
        package_hosts: Collection[str] = (),
        redact: Redactor | None = None,
        on_wifi: Callable[[], bool] | None = None,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.facts = facts
        self.cache_dir = Path(cache_dir)
        self.trusted_keys: Anchor | None = (
            trusted_keys
            if trusted_keys is None or isinstance(trusted_keys, Keyring)
            else dict(trusted_keys)
        )
        self.state = state or DeviceState()
        self.on_download = on_download
        self.download_retries = download_retries
        self.threads = threads
        self.schemas = dict(schemas or {})
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._cache = CacheDir(self.cache_dir)
        self._http = DeviceHttp(
            self.server_url, device_key, transport, async_transport, package_hosts
        )
        self._breaker = CircuitBreaker(breaker_threshold, breaker_cooldown_s, clock)
        self._cloud = CloudClient(
            self._http, self._breaker, Backoff(0.05, 1.0), self._rng, sleep, async_sleep
        )
        self._telemetry = DeviceTelemetry(
            TelemetryQueue(self.cache_dir / "telemetry.db", max_queued_events),
            self._http,
            lambda: self.device_id,
            {
                "platform": facts.platform,
                "device_class": facts.device_class,
                "app_version": facts.app_version,
            },
        )
        self._resolver = ModelResolver(
            self._cache, self.schemas, threads, self._telemetry.emit_error
        )
        self._sketcher = Sketcher(
            self._telemetry.queue,
            self._telemetry.emit,
            self._telemetry.emit_error,
            rng=np.random.default_rng(seed),
        )
        self._telemetry.window_source = self._sketcher.changed_windows
        self._capture = SampleCapture(
            self.cache_dir / "samples.db",
            self._http,
            lambda: self.device_id,
            facts.device_class or "unknown",
            seed=seed,
            redact=redact,
            on_wifi=on_wifi or (lambda: self.state.network_type() == "wifi"),
        )
        self._models: dict[str, LocalModel] = {}
        self._device_id: str | None = facts.device_id
        self._lock = threading.Lock()
        self._federated = FederatedParticipant(
            FederatedStore(self.cache_dir / "federated.db"),
            self._http,
            self._cache,
            self._resolver,
            self.state,
            lambda: self.device_id,
            self._trusted,
        )

    # -- identity ---------------------------------------------------------------------------

    @property
    def device_id(self) -> str:
        """This install's id (from ``facts`` or generated once per cache dir)."""
        if self._device_id is None:
            self._device_id = self._cache.device_id()
        return self._device_id

    @property
    def breaker(self) -> CircuitBreaker:
        """The circuit breaker guarding cloud calls."""
        return self._breaker

    @property
    def queue(self) -> TelemetryQueue:
        """The persistent telemetry queue (``pending()``, ``counter("dropped")``)."""
        self._telemetry.persist()
        return self._telemetry.queue

    @property
    def pinned_keyring(self) -> Keyring | None:
        """The signing keyring this device trusts now (shipped, or followed since), if any.

        None before the first sync of an app that shipped no keyring, and while the device
        trusts bare keys (shipped ``{key_id: key}``, or a server older than keyrings).
        """
        return pinned_keyring(self._cache, self.trusted_keys)

    def manifest_entry(self, name: str) -> ModelEntry | None:
        """The entry of model ``name`` in the last check-in answer (None when absent).

        It is what the device works from offline: version, variant, package reference
        (``entry.package``), policies and schema.
        """
        return self._resolver.entry(name)

    # -- sync -------------------------------------------------------------------------------

    def sync(self) -> SyncReport:
        """Check in and bring every model of the manifest onto this device.

        Returns:
            A SyncReport with one ModelSync per model ("unchanged" for all after a 304).

        Raises:
            Unavailable: the check-in itself failed (network, 5xx); nothing changed.
            Unauthorized: the device key is wrong.
            ProtocolError: the manifest cannot be read.
        """
        etag, last = self._cache.last_checkin()
        headers = {}
        if etag and last is not None and self._fully_applied(last):
            headers["If-None-Match"] = etag
        body = self.facts.checkin_body(self.device_id, self._held_models())
        response = self._http.request("POST", "/v1/checkin", json=body, headers=headers)
        if response.status_code == 304 and last is not None:
            entries = parse_manifest_models(last)
            models = {e.name: ModelSync(e.name, "unchanged", e.version, e.variant) for e in entries}
            return SyncReport(not_modified=True, models=models)
        try:
            manifest = response.json()
        except ValueError as exc:
            raise ProtocolError(f"the check-in answer is not JSON: {exc}") from exc
        app_id = manifest.get("app_id") if isinstance(manifest, dict) else None
        if not isinstance(app_id, str) or not 0 < len(app_id) <= 128:
            raise ProtocolError("the server's manifest lacks 'app_id' (a string)")
        parsed = parse_manifest(manifest)
        context = self._sync_context(app_id, manifest)
        results = {}
        for refused in parsed.rejected:
            entry = _placeholder(refused.name or f"models[{refused.index}]")
            results[entry.name] = failed_sync(context, entry, "protocol", refused.error)
        for entry in parsed.entries:
            results[entry.name] = sync_model(context, entry)
        # A refused entry keeps the model's previous entry (policy and package). The ETag
        # is kept only when every model applied: after any failure the next check-in asks
        # for the whole manifest again instead of being told "304, nothing changed".
        applied = all(result.status != "failed" for result in results.values())
        etag = response.headers.get("etag") if applied else None
        self._cache.save_checkin(etag, keep_previous_entries(manifest, last, parsed.rejected))
        self._telemetry.persist()
        with self._lock:
            self._resolver.invalidate()
        return SyncReport(not_modified=False, models=results)

    def _fully_applied(self, manifest: dict[str, Any]) -> bool:
        try:
            entries = parse_manifest_models(manifest)
        except ProtocolError:
            return False
        active = self._cache.active()
        return all(
            e.package is None or active.get(e.name, {}).get("package_id") == e.package.sha256
            for e in entries
        )

    def _held_models(self) -> dict[str, Any]:
        return {
            name: {
                "version": record.get("version"),
                "variant": record.get("variant"),
                "package_id": record.get("package_id"),
            }
            for name, record in self._cache.active().items()
        }

    def _trusted(self, manifest: Mapping[str, Any]) -> dict[str, bytes]:
        """The keys this sync verifies packages with; a refused keyring never stops a sync."""
        app_id = str(manifest.get("app_id"))
        trusted, problem = follow_keyring(self._cache, self.trusted_keys, app_id, manifest)
        if problem is not None:
            logger.warning("%s", problem)
            models = manifest.get("models")
            for item in models if isinstance(models, list) else []:
                if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                    self._telemetry.emit_error(item["name"], None, "verify", problem)
        return trusted

    def _sync_context(self, app_id: str, manifest: Mapping[str, Any]) -> SyncContext:
        free = self.state.free_disk_bytes or (lambda: disk_free(self.cache_dir))
        return SyncContext(
            http=self._http,
            cache=self._cache,
            state=self.state,
            app_id=app_id,
            trusted_keys=self._trusted(manifest),
            free_disk=free,
            emit=self._telemetry.emit,
            on_download=self.on_download,
            retries=self.download_retries,
            backoff=Backoff(0.5, 30.0),
            rng=self._rng,
            sleep=self._sleep,
            clock=self._clock,
        )

    # -- models ---------------------------------------------------------------------------

    def model(self, name: str) -> LocalModel:
        """The model ``name`` on this device (local, cloud or cascade per its policy).

        Returns:
            A LocalModel; it follows later syncs (a new package is picked up automatically).
        """
        with self._lock:
            if name not in self._models:
                self._models[name] = LocalModel(
                    name,
                    resolver=self._resolver,
                    telemetry=self._telemetry,
                    cloud=self._cloud,
                    clock=self._clock,
                    device_id=lambda: self.device_id,
                    sketcher=self._sketcher,
                    capture=self._capture,
                )
            return self._models[name]

    # -- telemetry --------------------------------------------------------------------------

    @property
    def sketcher(self) -> Sketcher:
        """The open sketch windows (``skipped`` inputs, ``withheld`` private windows)."""
        return self._sketcher

    def flush(self) -> FlushReport:
        """Send queued telemetry (batches of at most 500 events) and feedback.

        Open sketch windows are closed first and sent as ``profile`` events (with local
        DP only the windows that are over: an early close would spend a share). Then a
        ``forget_me`` still owed to the server is retried, and consented samples are sent
        (``report.samples``: a ``CaptureFlush``; nothing without consent, wifi-only ones
        only when ``on_wifi()`` says so).

        Returns:
            A FlushReport; a network failure stops the flush (``error``), never raises.
        """
        self._sketcher.close_windows(early=True)
        report = self._telemetry.flush()
        samples = self._flush_samples()
        return replace(report, samples=samples)

    # -- consented samples ----------------------------------------------------------------

    @property
    def consent(self) -> bool:
        """Whether the user consented to sample capture (persisted; default False)."""
        return self._capture.consent

    def set_consent(self, samples: bool) -> None:
        """Record the user's choice about sample capture (persisted in the cache dir).

        With consent off nothing is captured or uploaded, and turning it off deletes the
        samples held and queued on the device.
        """
        self._capture.set_consent(samples)

    def set_redactor(self, fn: Redactor | None) -> None:
        """Set (or remove) the PII hook; see the ``redact`` argument of ``Device``."""
        self._capture.redact = fn

    @property
    def capture(self) -> SampleCapture:
        """The sample queue (``pending()``, ``held()``, ``counter("dropped_budget")``)."""
        return self._capture

    def _flush_samples(self) -> CaptureFlush:
        if self._capture.forget_pending():
            self._send_forget()
        return self._capture.flush()

    # -- federated training ----------------------------------------------------------------

    @property
    def federated_consent(self) -> bool:
        """Whether the user consented to federated training (persisted; default False)."""
        return self._federated.store.consent()

    def set_federated_consent(self, train: bool) -> None:
        """Record the user's choice about on-device federated training (persisted).

        Separate from sample capture's consent: with it the device trains on its own
        examples and sends only a clipped (optionally masked) model update; the examples
        never leave it. Turning it off deletes the stored training examples and stops
        any round in progress (its unsent update is deleted and the server told, as
        ``forget_me`` does); turning it on again resumes none of them.

        Raises:
            InvalidInput: ``train`` is not a bool.
        """
        if not isinstance(train, bool):
            raise InvalidInput(f"consent must be True or False; got {train!r}")
        self._federated.set_consent(train)

    def add_training_example(self, model: str, x: Any, label: str) -> None:
        """Keep one labelled input on the device for federated training of ``model``.

        ``x`` is the raw input as ``predict`` takes it; ``label`` a class name of the model
        (e.g. the user's correction). Ignored without federated consent; at most
        ``MAX_EXAMPLES_PER_MODEL`` are kept (oldest evicted).

        Raises:
            InvalidInput: a non-finite input or an empty label.
        """
        self._federated.add_example(model, x, label)

    def federated_step(self, *, max_wait_s: float = 0.0) -> FederatedReport:
        """Do the next piece of federated work (docs/federated-device.md).

        Call it from the app's background job when the OS grants one (charging, Wi-Fi,
        idle). It resumes an owed upload, else joins the first announced task this device
        is eligible for, trains, clips and uploads (or takes the next SecAgg+ step).

        Args:
            max_wait_s: keep stepping while a SecAgg round waits for the other devices,
                up to this many seconds (sleeping as the server says); 0 returns at once
                with ``status == "waiting"``.

        Returns:
            A FederatedReport; network failures and the server's refusals are reported,
            not raised.
        """
        report = self._federated.step()
        waited = 0.0
        while report.status == "waiting" and waited < max_wait_s:
            pause = max(report.poll_after_s, 0.01)
            self._sleep(pause)
            waited += pause
            report = self._federated.step()
        return report

    @property
    def federated(self) -> FederatedParticipant:
        """The federated participant (its ``store``: examples, rounds; ``wall_clock``)."""
        return self._federated

    def forget_me(self) -> ForgetReport:
        """Delete this device's data: here (samples, queued telemetry and feedback,
        federated training examples) and on the server (``DELETE /v1/device/data``: its
        samples, feedback and telemetry). A federated round in progress is stopped: its
        unsent update and SecAgg keys are dropped and the round is left.

        Returns:
            A ForgetReport; when the server is unreachable the server part is queued and
            retried at every ``flush()`` (``queued=True``).
        """
        samples = self._capture.forget()
        samples += self._federated.forget()
        events, feedback = self._telemetry.forget()
        self._capture.set_forget_pending(True)
        server = self._send_forget()
        return ForgetReport(samples, events, feedback, server, server is None)

    def _send_forget(self) -> dict[str, Any] | None:
        try:
            response = self._http.request(
                "DELETE", "/v1/device/data", params={"device_id": self.device_id}
            )
        except PocketMLError as exc:
            logger.warning("forget_me: the server was not reached (retried at flush): %s", exc)
            return None
        self._capture.set_forget_pending(False)
        try:
            answer = response.json()
        except ValueError:
            return {}
        return answer if isinstance(answer, dict) else {}

    def feedback(
        self,
        prediction_id: str,
        label: str | None = None,
        thumbs: Literal["up", "down"] | None = None,
        *,
        model: str | None = None,
        version: int | None = None,
    ) -> Literal["sent", "queued"]:
        """Report the true label or a thumbs up/down for a prediction.

        Args:
            prediction_id: ``Prediction.prediction_id``.
            label: the true label (exactly one of label / thumbs).
            thumbs: "up" or "down".
            model: the model name; default: looked up from the prediction id (predictions
                made by this Device object).
            version: the model version; default: looked up like ``model``.

        Returns:
            "sent", or "queued" when the server could not be reached (sent on ``flush``).

        Raises:
            InvalidInput: both or neither of label / thumbs, or an unknown prediction id
                without ``model``.
        """
        outcome = self._telemetry.feedback(prediction_id, label, thumbs, model, version)
        self._capture.on_feedback(prediction_id, label)
        return outcome

    def close(self) -> None:
        """Close sketch windows (as ``flush``), write buffered telemetry to the queue and
        close connections and files."""
        self._sketcher.close_windows(early=True)
        self._telemetry.close()
        self._capture.close()
        self._federated.store.close()
        self._http.close()

    async def aclose(self) -> None:
        """``close()`` plus the async HTTP client."""
        await self._http.aclose()
        self.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _placeholder(name: str) -> ModelEntry:
    """A stand-in entry for reporting a refused manifest entry (nothing is installed)."""
    return ModelEntry(name, None, None, None, None, None, None, DownloadPolicy(), HybridPolicy())
