"""``AdminClient``: the HTTP client of the admin API, used by the CLI and scripts.

It speaks JSON over httpx and gives back the server's ``XPublic`` pydantic models. Pushes
are streamed as ``multipart/form-data`` built by hand (known Content-Length, 1 MiB reads,
a progress callback), so a 200 MB model never sits in memory. Transport failures become
``Unavailable`` ("is the server running at URL? start it with `pocketml server`") and error
bodies ``{"error": {"code", "message"}}`` become the matching pocketml error class.
This module imports httpx and pydantic only (no FastAPI), so the CLI stays light.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from pocketml.errors import NotFound, PocketMLError, Unavailable
from pocketml.protocol import error_class
from pocketml.server._build_dir import prepare_build
from pocketml.server.schemas import (
    AppCreatedPublic,
    AppListPublic,
    AppPublic,
    DeviceKeyListPublic,
    DeviceKeyPublic,
    DeviceKeyRotatedPublic,
    HealthPublic,
    ModelPage,
    ModelPublic,
    PackageAccessPublic,
    VersionPage,
    VersionPublic,
)
from pocketml.server.schemas_alerts import (
    AlertList,
    AlertPublic,
    DeliveryList,
    DeliveryPublic,
    RuleList,
    RulePublic,
    WebhookCreatedPublic,
    WebhookList,
)
from pocketml.server.schemas_federated import TaskList, TaskPublic
from pocketml.server.schemas_keys import KeyRevokedPublic, KeyringPublic
from pocketml.server.schemas_loop import JobCreated, JobList, JobPublic
from pocketml.server.schemas_monitor import AccuracyReportPublic, DriftReportPublic
from pocketml.server.schemas_rollouts import (
    AuditPage,
    ExperimentList,
    ExperimentPublic,
    RolloutList,
    RolloutPublic,
    TargetingPublic,
)

__all__ = ["AdminClient", "ProgressCallback"]

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(bytes_sent, bytes_total)`` while a push uploads."""

M = TypeVar("M", bound=BaseModel)
CHUNK = 1 << 20


def error_from_response(response: httpx.Response) -> PocketMLError:
    """Turn an error response into the pocketml error it stands for.

    Args:
        response: an HTTP response with status >= 400.

    Returns:
        The error (not raised), message suffixed with the status and request id.
    """
    code, message = None, response.text[:300] or response.reason_phrase
    request_id = response.headers.get("x-request-id", "?")
    try:
        body = response.json()
        code, message = body["error"]["code"], body["error"]["message"]
    except (ValueError, KeyError, TypeError):
        pass
    cls = error_class(response.status_code, code if isinstance(code, str) else None)
    return cls(f"{message} (HTTP {response.status_code}, request {request_id})")


class AdminClient:
    """Client of a pocketml server's admin API.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8000``.
        token: the operator token (for ``create_app``) or an app's admin token.
        timeout: seconds to wait to connect and for each read.
    """

    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._http: httpx.Client | None = None

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            self._http.close()
            self._http = None

    @property
    def http(self) -> httpx.Client:
        """The underlying httpx client (created on first use)."""
        if self._http is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._http = httpx.Client(
                base_url=self.base_url,
                headers=headers,
                timeout=httpx.Timeout(self.timeout, write=None),
            )
        return self._http

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; raise the pocketml error of any failure.

        Args:
            method: HTTP method.
            path: path below the base URL.
            **kwargs: passed to ``httpx.Client.request``.

        Returns:
            The successful response.

        Raises:
            Unavailable: the server cannot be reached or the connection broke.
            PocketMLError: the server answered with an error (its class from the code).
        """
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise Unavailable(
                f"the pocketml server at {self.base_url} did not answer within "
                f"{self.timeout:g} s ({type(exc).__name__}). Is the server running at "
                f"{self.base_url}? Start it with `pocketml server`, or raise the timeout."
            ) from exc
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"cannot reach the pocketml server at {self.base_url} ({exc}). Is the "
                f"server running at {self.base_url}? Start it with `pocketml server`."
            ) from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def _get(self, path: str, model: type[M], **params: Any) -> M:
        query = {k: v for k, v in params.items() if v is not None}
        return model.model_validate(self.request("GET", path, params=query).json())

    def _post(self, path: str, model: type[M], body: Mapping[str, Any]) -> M:
        return model.model_validate(self.request("POST", path, json=dict(body)).json())

    def health(self) -> HealthPublic:
        """``GET /healthz``."""
        return self._get("/healthz", HealthPublic)

    def create_app(self, name: str) -> AppCreatedPublic:
        """Create an app (operator token); its credentials are in the result, once."""
        return self._post("/v1/admin/apps", AppCreatedPublic, {"name": name})

    def list_apps(self) -> AppListPublic:
        """Every app (operator token)."""
        return self._get("/v1/admin/apps", AppListPublic)

    def show_app(self) -> AppPublic:
        """The admin token's app with its public signing keys."""
        return self._get("/v1/admin/app", AppPublic)

    def keyring(self) -> KeyringPublic:
        """``GET /v1/admin/app/keyring``: the app's signed keyring (ship it with the app)."""
        return self._get("/v1/admin/app/keyring", KeyringPublic)

    def rotate_signing_key(self, *, lost_master_key: bool = False) -> AppPublic:
        """Make a new signing key active; the previous one stays verify-only."""
        body = {"credential": "signing_key", "lost_master_key": lost_master_key}
        return AppPublic.model_validate(self._post_json("/v1/admin/app/rotate", body)["app"])

    def revoke_signing_key(self, key_id: str, reason: str = "") -> KeyRevokedPublic:
        """Revoke a retired signing key; its packages are re-signed by the active key."""
        body = {"key_id": key_id, "reason": reason}
        return self._post("/v1/admin/app/keys/revoke", KeyRevokedPublic, body)

    def list_device_keys(self) -> DeviceKeyListPublic:
        """``GET /v1/admin/app/device-keys``: every device key of the app with its state."""
        return self._get("/v1/admin/app/device-keys", DeviceKeyListPublic)

    def rotate_device_key(
        self, *, overlap_days: float = 30.0, reason: str = ""
    ) -> DeviceKeyRotatedPublic:
        """Issue a new device key; the previous ones keep working for ``overlap_days``."""
        body = {"overlap_days": overlap_days, "reason": reason}
        return self._post("/v1/admin/app/device-keys/rotate", DeviceKeyRotatedPublic, body)

    def revoke_device_key(self, key_id: str, reason: str = "") -> DeviceKeyPublic:
        """End a previous device key's overlap now."""
        body = {"key_id": key_id, "reason": reason}
        return self._post("/v1/admin/app/device-keys/revoke", DeviceKeyPublic, body)

    def package_access(self) -> PackageAccessPublic:
        """``GET /v1/admin/app/package-access``: are the app's packages public?"""
        return self._get("/v1/admin/app/package-access", PackageAccessPublic)

    def set_package_access(self, *, public: bool, reason: str = "") -> PackageAccessPublic:
        """Make the app's packages public (CDN-cacheable) or private (device key only)."""
        body = {"public": public, "reason": reason}
        return self._post("/v1/admin/app/package-access", PackageAccessPublic, body)

    def _post_json(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("POST", path, json=dict(body)).json()

    def list_models(
        self, *, limit: int = 50, offset: int = 0, prefix: str | None = None
    ) -> ModelPage:
        """One page of the app's models."""
        return self._get("/v1/admin/models", ModelPage, limit=limit, offset=offset, prefix=prefix)

    def show_model(self, name: str) -> ModelPublic:
        """One model (NotFound when absent)."""
        return self._get(f"/v1/admin/models/{name}", ModelPublic)

    def create_model(
        self, name: str, schema: Mapping[str, Any], *, description: str = ""
    ) -> ModelPublic:
        """Create a model with its ModelSchema JSON."""
        body = {"name": name, "description": description, "schema": dict(schema)}
        return self._post("/v1/admin/models", ModelPublic, body)

    def update_model(
        self,
        name: str,
        *,
        description: str | None = None,
        schema: Mapping[str, Any] | None = None,
    ) -> ModelPublic:
        """Correct a model's description and/or schema (audited; see the route's rules)."""
        body: dict[str, Any] = {}
        if description is not None:
            body["description"] = description
        if schema is not None:
            body["schema"] = dict(schema)
        response = self.request("PATCH", f"/v1/admin/models/{name}", json=body)
        return ModelPublic.model_validate(response.json())

    def delete_model(self, name: str, *, force: bool = False) -> None:
        """Delete a model with its versions, rollouts and experiments (audited).

        Raises:
            Conflict: a rollout or experiment is in progress and ``force`` is False.
        """
        self.request("DELETE", f"/v1/admin/models/{name}", params={"force": str(force).lower()})

    def list_versions(
        self, model: str, *, stage: str | None = None, limit: int = 50, offset: int = 0
    ) -> VersionPage:
        """One page of a model's versions, newest first."""
        path = f"/v1/admin/models/{model}/versions"
        return self._get(path, VersionPage, stage=stage, limit=limit, offset=offset)

    def show_version(self, model: str, version: int) -> VersionPublic:
        """One version with its variants."""
        return self._get(f"/v1/admin/models/{model}/versions/{version}", VersionPublic)

    def set_stage(self, model: str, version: int, stage: str) -> VersionPublic:
        """Move a version to candidate, production or archived."""
        path = f"/v1/admin/models/{model}/versions/{version}/stage"
        return self._post(path, VersionPublic, {"stage": stage})

    def push_files(
        self,
        model: str,
        metadata: Mapping[str, Any],
        files: Mapping[str, Path],
        *,
        force: bool = False,
        progress: ProgressCallback | None = None,
    ) -> VersionPublic:
        """Stream a version push: metadata JSON plus one file per variant.

        Args:
            model: the model's name.
            metadata: the VersionCreate JSON.
            files: variant name -> model file.
            force: store it even when a version has exactly these files (else 409).
            progress: called with (bytes sent, bytes total) as the upload advances.

        Returns:
            The stored version.

        Raises:
            Conflict: a version with exactly these model files exists (without ``force``).
        """
        payload = {**metadata, "force": True} if force else dict(metadata)
        body = _MultipartBody(json.dumps(payload).encode(), files)
        response = self.request(
            "POST",
            f"/v1/admin/models/{model}/versions",
            content=body.iter(progress),
            headers={"Content-Type": body.content_type, "Content-Length": str(body.length)},
        )
        return VersionPublic.model_validate(response.json())

    def push_build(
        self,
        build_dir: Path,
        *,
        model: str | None = None,
        encrypt: bool = False,
        stage: str = "candidate",
        force: bool = False,
        progress: ProgressCallback | None = None,
    ) -> VersionPublic:
        """Push a BUILD_DIR as a new version (creating the model from its schema if new).

        Args:
            build_dir: directory with ``build.json`` (see ``_build_dir``).
            model: model name; default build.json's ``model``.
            encrypt: encrypt each variant inside its package.
            stage: stage to put the new version in (candidate, production, archived).
            force: push even when a version has exactly these model files (a double push,
                otherwise refused with Conflict naming that version).
            progress: upload progress callback.

        Returns:
            The stored version (after the stage change, if any).

        Raises:
            NotFound / InvalidInput / IntegrityError: a bad BUILD_DIR (checked locally).
            Conflict: the same build is already a version (without ``force``).
            PocketMLError: the server refused the push.
        """
        build = prepare_build(build_dir, model=model, encrypt=encrypt)
        try:
            try:
                self.show_model(build.model)
            except NotFound:
                self.create_model(build.model, build.schema)
            files = {variant.name: variant.path for variant in build.variants}
            version = self.push_files(
                build.model, build.metadata, files, force=force, progress=progress
            )
        finally:
            build.cleanup()
        if stage != version.stage:
            version = self.set_stage(build.model, version.version, stage)
        return version

    def set_policy(
        self,
        model: str,
        version: int,
        *,
        hybrid: Mapping[str, Any] | None = None,
        download: Mapping[str, Any] | None = None,
        monitor: Mapping[str, Any] | None = None,
        capture: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Override a version's hybrid, download, monitor and/or capture policy; returns
        the effective policy.

        Example: ``set_policy("digits", 3, hybrid={"mode": "cascade", "threshold": 0.82})``.
        """
        body = {
            key: dict(value)
            for key, value in (
                ("hybrid", hybrid),
                ("download", download),
                ("monitor", monitor),
                ("capture", capture),
            )
            if value is not None
        }
        path = f"/v1/admin/models/{model}/versions/{version}/policy"
        result: dict[str, Any] = self.request("PUT", path, json=body).json()
        return result

    def model_metrics(
        self, model: str, *, since: float | None = None, until: float | None = None
    ) -> dict[str, Any]:
        """Telemetry aggregates per (version, device class) of a model."""
        query = {k: v for k, v in (("since", since), ("until", until)) if v is not None}
        path = f"/v1/admin/models/{model}/metrics"
        result: dict[str, Any] = self.request("GET", path, params=query).json()
        return result

    def drift(
        self,
        model: str,
        *,
        version: int | None = None,
        window: str | None = None,
        until: float | None = None,
        device_class: str | None = None,
        app_version: str | None = None,
        group_by: str | None = None,
        baseline: str | None = None,
    ) -> DriftReportPublic:
        """``GET /v1/admin/models/{model}/drift`` (None leaves a parameter at its default;
        ``group_by`` is a comma list, "" for the fleet only)."""
        return self._get(
            f"/v1/admin/models/{model}/drift",
            DriftReportPublic,
            version=version,
            window=window,
            until=until,
            device_class=device_class,
            app_version=app_version,
            group_by=group_by,
            baseline=baseline,
        )

    def accuracy(
        self,
        model: str,
        *,
        version: int | None = None,
        window: str | None = None,
        until: float | None = None,
        device_class: str | None = None,
        app_version: str | None = None,
        group_by: str | None = None,
    ) -> AccuracyReportPublic:
        """``GET /v1/admin/models/{model}/accuracy`` (parameters as in ``drift``)."""
        return self._get(
            f"/v1/admin/models/{model}/accuracy",
            AccuracyReportPublic,
            version=version,
            window=window,
            until=until,
            device_class=device_class,
            app_version=app_version,
            group_by=group_by,
        )

    def download_package(self, package_id: str, out_path: Path) -> Path:
        """Stream a package to ``out_path`` (admin token or device key).

        Returns:
            ``out_path``.
        """
        try:
            with self.http.stream("GET", f"/v1/packages/{package_id}") as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                with out_path.open("wb") as handle:
                    for chunk in response.iter_bytes(CHUNK):
                        handle.write(chunk)
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"downloading package {package_id} from {self.base_url} failed ({exc}). Is "
                f"the server running at {self.base_url}? Start it with `pocketml server`."
            ) from exc
        return out_path

    # -- rollouts (docs/rollouts.md) ---------------------------------------------------

    def create_rollout(self, model: str, version: int, **options: Any) -> RolloutPublic:
        """``POST /v1/admin/rollouts``: start a staged rollout (options: schedule,
        min_dwell_s, min_samples, on_breach, guardrails, targeting)."""
        return self._post(
            "/v1/admin/rollouts", RolloutPublic, {"model": model, "version": version, **options}
        )

    def list_rollouts(self, *, active: bool = False) -> RolloutList:
        """``GET /v1/admin/rollouts``: the app's rollouts, newest first."""
        return self._get("/v1/admin/rollouts", RolloutList, active=active or None)

    def show_rollout(self, rollout_id: str) -> RolloutPublic:
        """``GET /v1/admin/rollouts/{id}`` with the latest guardrail numbers."""
        return self._get(f"/v1/admin/rollouts/{rollout_id}", RolloutPublic)

    def move_rollout(self, rollout_id: str, action: str, reason: str = "") -> RolloutPublic:
        """``POST /v1/admin/rollouts/{id}/{action}`` (advance, pause, resume, rollback,
        complete)."""
        path = f"/v1/admin/rollouts/{rollout_id}/{action}"
        return self._post(path, RolloutPublic, {"reason": reason})

    def set_targeting(self, model: str, rules: list[dict[str, Any]]) -> TargetingPublic:
        """``PUT /v1/admin/models/{name}/targeting``."""
        response = self.request("PUT", f"/v1/admin/models/{model}/targeting", json={"rules": rules})
        return TargetingPublic.model_validate(response.json())

    def audit(self, *, subject: str | None = None, limit: int = 100) -> AuditPage:
        """``GET /v1/admin/audit``: newest rollout transitions first."""
        return self._get("/v1/admin/audit", AuditPage, subject=subject, limit=limit)

    def start_experiment(
        self, model: str, arms: list[dict[str, Any]], *, metric: str = "accuracy"
    ) -> ExperimentPublic:
        """``POST /v1/admin/experiments``: arms are ``{name, version, weight}``, control first."""
        body = {"model": model, "arms": arms, "metric": metric}
        return self._post("/v1/admin/experiments", ExperimentPublic, body)

    def list_experiments(self) -> ExperimentList:
        """``GET /v1/admin/experiments`` with results."""
        return self._get("/v1/admin/experiments", ExperimentList)

    def show_experiment(self, experiment_id: str) -> ExperimentPublic:
        """``GET /v1/admin/experiments/{id}``: per-arm results with 95 % CIs."""
        return self._get(f"/v1/admin/experiments/{experiment_id}", ExperimentPublic)

    def stop_experiment(
        self, experiment_id: str, *, promote: int | str | None = None, reason: str = ""
    ) -> ExperimentPublic:
        """``POST /v1/admin/experiments/{id}/stop`` (``promote``: "winner" or a version)."""
        path = f"/v1/admin/experiments/{experiment_id}/stop"
        return self._post(path, ExperimentPublic, {"promote": promote, "reason": reason})

    # -- alerts (docs/alerts.md) -------------------------------------------------------

    def list_alerts(
        self, *, states: list[str] | None = None, model: str | None = None, limit: int = 100
    ) -> AlertList:
        """``GET /v1/admin/alerts``: alert episodes, newest first (``states`` filter)."""
        query: dict[str, Any] = {"limit": limit}
        if states:
            query["state"] = states
        if model is not None:
            query["model"] = model
        response = self.request("GET", "/v1/admin/alerts", params=query)
        return AlertList.model_validate(response.json())

    def show_alert(self, alert_id: str) -> AlertPublic:
        """``GET /v1/admin/alerts/{id}``."""
        return self._get(f"/v1/admin/alerts/{alert_id}", AlertPublic)

    def ack_alert(self, alert_id: str) -> AlertPublic:
        """``POST /v1/admin/alerts/{id}/ack``: silence the episode's notifications."""
        return self._post(f"/v1/admin/alerts/{alert_id}/ack", AlertPublic, {})

    def list_alert_rules(self, *, model: str | None = None) -> RuleList:
        """``GET /v1/admin/alerts/rules``."""
        query = {"model": model} if model is not None else {}
        response = self.request("GET", "/v1/admin/alerts/rules", params=query)
        return RuleList.model_validate(response.json())

    def create_alert_rule(self, model: str, **fields: Any) -> RulePublic:
        """``POST /v1/admin/alerts/rules`` (fields: name, metric, comparison, threshold,
        window_s, min_n, severity, for_s, cooldown_s, scope)."""
        return self._post("/v1/admin/alerts/rules", RulePublic, {"model": model, **fields})

    def create_default_alert_rules(self, model: str) -> RuleList:
        """``POST /v1/admin/alerts/rules/defaults``: the defaults ``model`` lacks."""
        return self._post("/v1/admin/alerts/rules/defaults", RuleList, {"model": model})

    def delete_alert_rule(self, rule_id: str) -> None:
        """``DELETE /v1/admin/alerts/rules/{id}`` (its alerts go with it)."""
        self.request("DELETE", f"/v1/admin/alerts/rules/{rule_id}")

    def add_webhook(self, url: str, *, fmt: str = "pocketml") -> WebhookCreatedPublic:
        """``POST /v1/admin/alerts/webhooks``; the result holds the secret, this once."""
        body = {"url": url, "format": fmt}
        return self._post("/v1/admin/alerts/webhooks", WebhookCreatedPublic, body)

    def list_webhooks(self) -> WebhookList:
        """``GET /v1/admin/alerts/webhooks`` (no secrets)."""
        return self._get("/v1/admin/alerts/webhooks", WebhookList)

    def delete_webhook(self, endpoint_id: str) -> None:
        """``DELETE /v1/admin/alerts/webhooks/{id}``."""
        self.request("DELETE", f"/v1/admin/alerts/webhooks/{endpoint_id}")

    def test_webhook(self, endpoint_id: str) -> DeliveryPublic:
        """``POST /v1/admin/alerts/webhooks/{id}/test``: one signed test event, now."""
        return self._post(f"/v1/admin/alerts/webhooks/{endpoint_id}/test", DeliveryPublic, {})

    def list_deliveries(self, *, status: str | None = None, limit: int = 100) -> DeliveryList:
        """``GET /v1/admin/alerts/deliveries``: the webhook delivery log, newest first."""
        return self._get("/v1/admin/alerts/deliveries", DeliveryList, status=status, limit=limit)

    # -- samples (docs/loop.md) ---------------------------------------------------------

    def list_samples(
        self,
        model: str,
        *,
        device_id: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        """A page of a model's consented samples and labelled/unlabelled counts per class."""
        query: dict[str, Any] = {"limit": limit}
        if device_id is not None:
            query["device_id"] = device_id
        if after is not None:
            query["after"] = after
        result: dict[str, Any] = self.request(
            "GET", f"/v1/admin/models/{model}/samples", params=query
        ).json()
        return result

    def export_samples(self, model: str, *, since: float | None = None) -> bytes:
        """The model's labelled samples as NPZ bytes (``pocketml.data.load_dataset`` reads
        the file they are saved to)."""
        query = {} if since is None else {"since": since}
        path = f"/v1/admin/models/{model}/samples/export"
        return self.request("GET", path, params=query).content

    def forget_device(self, device_id: str) -> dict[str, Any]:
        """Delete one device's samples, feedback and telemetry on the server (audited)."""
        path = f"/v1/admin/devices/{device_id}/data"
        result: dict[str, Any] = self.request("DELETE", path).json()
        return result

    # -- the loop (retraining jobs and the loop policy) ----------------------------------

    def run_loop_job(self, model: str, *, note: str | None = None) -> JobCreated:
        """``POST /v1/admin/models/{name}/loop/jobs``: a new job, or the model's active one."""
        body = {"note": note} if note else {}
        return self._post(f"/v1/admin/models/{model}/loop/jobs", JobCreated, body)

    def list_loop_jobs(self, model: str | None = None, *, limit: int = 20) -> JobList:
        """The model's (or every model's) retraining jobs, newest first."""
        path = f"/v1/admin/models/{model}/loop/jobs" if model else "/v1/admin/loop/jobs"
        return self._get(path, JobList, limit=limit)

    def show_loop_job(self, job_id: str) -> JobPublic:
        """``GET /v1/admin/loop/jobs/{id}``."""
        return self._get(f"/v1/admin/loop/jobs/{job_id}", JobPublic)

    def get_loop_policy(self, model: str) -> dict[str, Any]:
        """``GET /v1/admin/models/{name}/loop``: the policy with its defaults filled in."""
        data: dict[str, Any] = self.request("GET", f"/v1/admin/models/{model}/loop").json()
        return data

    def set_loop_policy(self, model: str, policy: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT /v1/admin/models/{name}/loop`` (missing keys: defaults)."""
        response = self.request("PUT", f"/v1/admin/models/{model}/loop", json=dict(policy))
        data: dict[str, Any] = response.json()
        return data

    def start_federated_task(self, model: str, spec: Mapping[str, Any]) -> TaskPublic:
        """``POST /v1/admin/federated/tasks``: start a task on ``model`` (round 1 opens)."""
        return self._post("/v1/admin/federated/tasks", TaskPublic, {"model": model, **spec})

    def list_federated_tasks(self, model: str | None = None, *, limit: int = 20) -> TaskList:
        """The app's (or a model's) federated tasks, newest first."""
        query = {"limit": limit} if model is None else {"model": model, "limit": limit}
        response = self.request("GET", "/v1/admin/federated/tasks", params=query)
        return TaskList.model_validate(response.json())

    def show_federated_task(self, task_id: str) -> TaskPublic:
        """``GET /v1/admin/federated/tasks/{id}``: the task with its rounds."""
        return self._get(f"/v1/admin/federated/tasks/{task_id}", TaskPublic)

    def cancel_federated_task(self, task_id: str) -> TaskPublic:
        """``POST /v1/admin/federated/tasks/{id}/cancel``."""
        return self._post(f"/v1/admin/federated/tasks/{task_id}/cancel", TaskPublic, {})


class _MultipartBody:
    """A multipart/form-data body streamed from files, with its exact length."""

    def __init__(self, metadata: bytes, files: Mapping[str, Path]) -> None:
        self.boundary = secrets.token_hex(16)
        self.metadata = metadata
        self.files = dict(files)
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self.length = len(self._head("metadata", None, "application/json")) + len(metadata) + 2
        for name, path in self.files.items():
            head = self._head(name, path.name, "application/octet-stream")
            self.length += len(head) + path.stat().st_size + 2
        self.length += len(self._tail())

    def _head(self, name: str, filename: str | None, content_type: str) -> bytes:
        quoted = name.replace('"', "%22")
        disposition = f'form-data; name="{quoted}"'
        if filename is not None:
            disposition += f'; filename="{filename.replace(chr(34), "%22")}"'
        return (
            f"--{self.boundary}\r\nContent-Disposition: {disposition}\r\n"
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()

    def _tail(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()

    def iter(self, progress: ProgressCallback | None) -> Iterator[bytes]:
        sent = 0

        def report(chunk: bytes) -> bytes:
            nonlocal sent
            sent += len(chunk)
            if progress is not None:
                progress(sent, self.length)
            return chunk

        yield report(self._head("metadata", None, "application/json") + self.metadata + b"\r\n")
        for name, path in self.files.items():
            yield report(self._head(name, path.name, "application/octet-stream"))
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield report(chunk)
            yield report(b"\r\n")
        yield report(self._tail())
