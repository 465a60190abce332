"""Shared by the device-side server tests (delivery, serving, telemetry).

- ``serve_device_app``: a real uvicorn server in a thread on 127.0.0.1:<free port>, built
  with ``create_app(settings, device_options=...)`` (so tests pick batching and cache
  knobs) — waits for startup without sleeps, stops with ``should_exit``.
- ``DeviceServer``: its URL plus helpers to create an app and push versions.
- ``digits_build``: a logistic-regression digits model trained (~1 s) and converted to
  ONNX, with its schema and held-out inputs, for real inference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydantic import SecretStr

from pocketml.config import ServerSettings, Settings
from pocketml.server._state import DeviceOptions
from pocketml.server.background import serve_in_thread
from pocketml.server.client import AdminClient
from pocketml.serving import ServingOptions
from pocketml.testing import write_model_file

OPERATOR_TOKEN = "pml_op_device-tests-operator-token"

TINY_SCHEMA: dict[str, Any] = {
    "format_version": 1,
    "name": "digits",
    "inputs": [{"name": "pixels", "dtype": "float32", "shape": [None, 64], "layout": "NC"}],
    "outputs": [
        {"name": "probabilities", "kind": "probabilities", "labels": [str(i) for i in range(10)]}
    ],
}


@dataclass(frozen=True)
class AppKeys:
    """An app created for a test: id, admin token, device key, public keys."""

    app_id: str
    admin_token: str
    device_key: str
    public_keys: dict[str, str]


@dataclass(frozen=True)
class DeviceServer:
    """A running server and helpers."""

    url: str
    settings: Settings

    def http(self, token: str | None = None) -> httpx.Client:
        """An httpx client with a bearer token."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def admin(self, token: str) -> AdminClient:
        """An AdminClient for this server."""
        return AdminClient(self.url, token, timeout=60)

    def create_app(self, name: str) -> AppKeys:
        """Create an app through the operator API."""
        with self.admin(OPERATOR_TOKEN) as client:
            created = client.create_app(name)
        return AppKeys(
            created.app.id, created.admin_token, created.device_key, created.app.public_keys
        )

    def push(
        self,
        app: AppKeys,
        model: str,
        variants: list[tuple[dict[str, Any], Path]],
        *,
        schema: dict[str, Any] | None = None,
        stage: str | None = "production",
    ) -> Any:
        """Create the model if needed, push a version with these variants, set its stage."""
        with self.admin(app.admin_token) as client:
            if model not in {m.name for m in client.list_models().items}:
                client.create_model(model, schema=schema or {**TINY_SCHEMA, "name": model})
            meta = {"variants": [meta for meta, _ in variants]}
            files = {meta["name"]: path for meta, path in variants}
            version = client.push_files(model, meta, files)
            if stage is not None:
                version = client.set_stage(model, version.version, stage)
            return version


@contextmanager
def serve_device_app(
    home: Path, database_url: str, options: DeviceOptions | None = None, **server: Any
) -> Iterator[DeviceServer]:
    """Serve ``create_app`` with ``options`` on a free port; yield a ``DeviceServer``."""
    settings = Settings(
        home=home,
        database_url=database_url,
        operator_token=SecretStr(OPERATOR_TOKEN),
        server=ServerSettings(**server),
    )
    with serve_in_thread(settings, device_options=options or DeviceOptions(catalog_ttl_s=0)) as url:
        yield DeviceServer(url, settings)


def fake_variant(
    workdir: Path,
    name: str,
    *,
    fmt: str = "onnx",
    precision: str = "fp32",
    size: int = 2000,
    role: str = "device",
    **extra: Any,
) -> tuple[dict[str, Any], Path]:
    """A variant entry with a small valid file of its format (a push checks the format)."""
    path = write_model_file(workdir / f"{name}.bin", fmt, seed=name, size=size)
    meta = {
        "name": name,
        "format": fmt,
        "precision": precision,
        "role": role,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        **extra,
    }
    return meta, path


@dataclass(frozen=True)
class DigitsBuild:
    """A real digits model: the ONNX file, its schema, held-out inputs and labels."""

    onnx_path: Path
    schema: dict[str, Any]
    inputs: np.ndarray
    labels: np.ndarray


def build_digits(out_dir: Path) -> DigitsBuild:
    """Train logistic regression on digits (seed 0) and convert it to ONNX."""
    from pocketml.convert import convert_model
    from pocketml.data import load_digits
    from pocketml.train import model_inputs, train

    splits = load_digits().split(seed=0)
    result = train(splits, "logistic-regression", model_name="digits", out_dir=out_dir / "run")
    samples = model_inputs(result.model, splits.test)
    (conversion,) = convert_model(
        result.model, ["onnx"], out_dir / "onnx", samples=samples, labels=splits.test.labels
    )
    return DigitsBuild(
        onnx_path=Path(conversion.path),
        schema=result.model.schema.to_dict(),
        inputs=samples,
        labels=np.asarray(splits.test.labels),
    )


def onnx_variant(build: DigitsBuild, name: str, *, role: str = "cloud") -> tuple[dict, Path]:
    """The VersionCreate entry of the real ONNX file."""
    meta = {
        "name": name,
        "format": "onnx",
        "precision": "fp32",
        "role": role,
        "sha256": hashlib.sha256(build.onnx_path.read_bytes()).hexdigest(),
    }
    return meta, build.onnx_path


def batching_options(**serving: Any) -> DeviceOptions:
    """DeviceOptions (check-in cache off) with these ServingOptions fields."""
    return DeviceOptions(catalog_ttl_s=0, serving=ServingOptions(**serving))
