"""Admin commands against a running server: ``app create``, ``app keys``, ``push``, ``models``...

``models update`` corrects a model's description or schema and ``models delete`` removes a
model with its versions, rollouts and experiments (it asks first unless ``--yes``); both
are audited by the server.

Each command is a thin call into ``pocketml.server.client.AdminClient``. The server URL and
token come from ``--server``/``--token`` or ``POCKETML_SERVER_URL``/``POCKETML_TOKEN``.
Failures are raised as pocketml errors; ``pocketml.cli.main`` prints them as one paragraph
with exit code 2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from pocketml._tables import Column
from pocketml.cli._common import console, existing_path, print_table
from pocketml.errors import InvalidInput

if TYPE_CHECKING:  # the client pulls in httpx and pydantic: only commands that talk need it
    from pocketml.server.client import AdminClient
    from pocketml.server.schemas import DeviceKeyPublic, VersionPublic

__all__ = ["app_app", "device_keys_app", "keys_app", "models_app", "push", "versions_app"]

DEFAULT_SERVER = "http://127.0.0.1:8000"

app_app = typer.Typer(
    help="Create apps (operator token) and manage their signing keys.", no_args_is_help=True
)
models_app = typer.Typer(
    help="List, show, correct and delete the app's models.", no_args_is_help=True
)
versions_app = typer.Typer(help="List and promote a model's versions.", no_args_is_help=True)
keys_app = typer.Typer(
    help="Show, rotate and revoke the app's package-signing keys (docs/packages.md).",
    no_args_is_help=True,
)
app_app.add_typer(keys_app, name="keys")
device_keys_app = typer.Typer(
    help="List, rotate (with an overlap) and revoke the app's device keys "
    "(docs/operations.md, Rotating the device key).",
    no_args_is_help=True,
)
app_app.add_typer(device_keys_app, name="device-keys")

ServerOption = typer.Option(
    DEFAULT_SERVER, "--server", envvar="POCKETML_SERVER_URL", help="Server base URL."
)
TokenOption = typer.Option(
    None,
    "--token",
    envvar="POCKETML_TOKEN",
    help="Admin token of the app (the operator token for `app create`).",
    show_default=False,
)


def _client(server: str, token: str | None) -> AdminClient:
    from pocketml.server.client import AdminClient

    if not token:
        raise InvalidInput(
            "no token given; pass --token or set POCKETML_TOKEN (an app's admin token, or "
            "the operator token from <home>/operator.token for `pocketml app create`)."
        )
    return AdminClient(server, token)


@app_app.command("create")
def create_tenant_app(
    name: str = typer.Argument(..., help="App name, unique on the server."),
    env_file: Path | None = typer.Option(
        None,
        "--env-file",
        help="Also write `export POCKETML_TOKEN=...` and `export POCKETML_DEVICE_KEY=...` "
        "here (mode 0600) for a shell to source: `. ./FILE`.",
    ),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Create an app; prints its admin token and device key ONCE."""
    if env_file is not None and env_file.exists():
        raise InvalidInput(
            f"{env_file} already exists; it may hold another app's tokens. "
            "Pass a new --env-file path or remove the old file first."
        )
    # The file is created before the app, so a path that cannot be written fails first
    # instead of after the only copy of the secrets exists.
    handle = _open_env_file(env_file) if env_file is not None else None
    try:
        with _client(server, token) as client:
            created = client.create_app(name)
    except BaseException:
        if handle is not None and env_file is not None:
            handle.close()
            env_file.unlink(missing_ok=True)
        raise
    if handle is not None:
        with handle:
            handle.write(
                f"export POCKETML_SERVER_URL={server}\n"
                f"export POCKETML_TOKEN={created.admin_token}\n"
                f"export POCKETML_DEVICE_KEY={created.device_key}\n"
            )
    print_table(
        f"App {created.app.name} created — store these now, they are not shown again",
        ["field", "value"],
        [
            ("app id", created.app.id),
            ("admin token", created.admin_token),
            ("device key", created.device_key),
            ("signing key", created.app.signing_key_id),
            ("public key", created.app.public_keys.get(created.app.signing_key_id, "")),
        ],
    )


def _open_env_file(path: Path) -> TextIO:
    """A new file for the app's secrets as shell exports, readable by the owner only.

    Raises:
        InvalidInput: it cannot be created (a missing folder, no permission, it exists).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise InvalidInput(
            f"cannot create --env-file {path}: {exc.strerror}. Pass a path in a writable "
            "folder that does not exist yet; no app was created."
        ) from exc
    return os.fdopen(fd, "w", encoding="utf-8")


def push(
    build_dir: Path = typer.Argument(..., help="Directory with build.json (pocketml convert)."),
    model: str | None = typer.Option(None, "--model", help="Model name (default: build.json)."),
    encrypt: bool = typer.Option(False, "--encrypt", help="Encrypt each model in its package."),
    stage: str = typer.Option("candidate", "--stage", help="candidate, production or archived."),
    force: bool = typer.Option(
        False, "--force", help="Push even when a version has exactly these model files."
    ),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Push a BUILD_DIR as a new version of its model (created if new).

    Pushing the very same build twice is refused (exit code of a conflict), naming the
    version that already holds it; --force stores it again as a new version.
    """
    existing_path(build_dir / "build.json", "build manifest")
    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with _client(server, token) as client, Progress(*columns, console=console) as progress:
        task = progress.add_task("upload", total=None)

        def report(sent: int, total: int) -> None:
            progress.update(task, completed=sent, total=total)

        version = client.push_build(
            build_dir, model=model, encrypt=encrypt, stage=stage, force=force, progress=report
        )
    print_table(
        f"{version.model} v{version.version} ({version.stage})",
        [
            Column("variant", is_name=True),
            Column("format"),
            Column("precision", is_name=True),
            Column("size", "right"),
            Column("package", priority=2),
            Column("encrypted", priority=1),
        ],
        [
            (
                v.name,
                v.format,
                v.precision,
                v.size,
                v.package_id[:16],
                "yes" if v.content_key_id else "no",
            )
            for v in version.variants
        ],
    )


@keys_app.command("show")
def show_keys(
    out: Path | None = typer.Option(
        None, "--out", help="Also write the signed keyring JSON here, to ship with the app."
    ),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show the app's keyring: active, retired and revoked signing keys."""
    with _client(server, token) as client:
        keyring = client.keyring()
    if out is not None:
        out.write_text(keyring.model_dump_json(), encoding="utf-8")
    rows = [(k, "active" if k == keyring.active else "retired") for k in sorted(keyring.keys)]
    rows += [(k, "revoked") for k in keyring.revoked]
    print_table(f"Keyring {keyring.sequence} of {keyring.app_id}", ["key id", "status"], rows)


@keys_app.command("rotate")
def rotate_keys(
    lost_master_key: bool = typer.Option(
        False,
        "--lost-master-key",
        help="The master key is lost: rotate anyway; devices need an app update with the "
        "new keyring (docs/operations.md).",
    ),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Sign new packages with a new key; the previous key stays verify-only."""
    with _client(server, token) as client:
        app = client.rotate_signing_key(lost_master_key=lost_master_key)
    console.print(f"active signing key: {app.signing_key_id}")


@keys_app.command("revoke")
def revoke_key(
    key_id: str = typer.Argument(..., help="A retired signing key id (ed25519:...)."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit log)."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Revoke a retired key: its packages are re-signed, devices stop trusting it."""
    with _client(server, token) as client:
        revoked = client.revoke_signing_key(key_id, reason)
    print_table(
        f"Revoked {key_id}; keyring {revoked.keyring.sequence}; re-signed packages",
        ["model", "version", "variant", "new package"],
        [(r.model, r.version, r.variant, r.new_package_id[:16]) for r in revoked.resigned],
    )


def _print_device_keys(title: str, keys: Sequence[DeviceKeyPublic]) -> None:
    print_table(
        title,
        [
            Column("key id", is_name=True),
            Column("status"),
            Column("created", priority=3),
            Column("expires", priority=1),
            Column("revoked", priority=2),
        ],
        [
            (
                k.key_id,
                k.status,
                k.created_at.isoformat(timespec="seconds"),
                k.expires_at.isoformat(timespec="seconds") if k.expires_at else "",
                k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "",
            )
            for k in keys
        ],
    )


@device_keys_app.command("list")
def list_device_keys(server: str = ServerOption, token: str | None = TokenOption) -> None:
    """List the app's device keys and their state (never the keys themselves)."""
    with _client(server, token) as client:
        keys = client.list_device_keys().items
    _print_device_keys("Device keys", keys)


@device_keys_app.command("rotate")
def rotate_device_key(
    overlap_days: float = typer.Option(
        30.0,
        "--overlap-days",
        min=0,
        max=365,
        help="Days the previous key keeps working so installed builds can update; 0 "
        "revokes it now.",
    ),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit log)."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Issue a new device key (printed ONCE); ship it in the next app build."""
    with _client(server, token) as client:
        rotated = client.rotate_device_key(overlap_days=overlap_days, reason=reason)
    console.print(f"new device key (shown once, store it now): {rotated.device_key}")
    _print_device_keys("Device keys", rotated.keys)


@device_keys_app.command("revoke")
def revoke_device_key(
    key_id: str = typer.Argument(..., help="A previous device key id (dk_...)."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit log)."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """End a previous device key's overlap now (e.g. it leaked)."""
    with _client(server, token) as client:
        revoked = client.revoke_device_key(key_id, reason)
    _print_device_keys(f"Revoked {key_id}", [revoked])


@app_app.command("package-access")
def package_access(
    access: str | None = typer.Argument(
        None, help="public or private; omit to show the current setting."
    ),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit log)."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show or set who may fetch the app's packages (public: a CDN may cache them)."""
    if access not in (None, "public", "private"):
        raise InvalidInput(
            f"package access must be 'public' or 'private'; got {access!r}. "
            "Run `pocketml app package-access private`."
        )
    with _client(server, token) as client:
        if access is None:
            result = client.package_access()
        else:
            result = client.set_package_access(public=access == "public", reason=reason)
    console.print(f"packages: {'public' if result.public else 'private'}")


@models_app.command("list")
def list_models(
    prefix: str | None = typer.Option(None, "--prefix", help="Only names starting so."),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    offset: int = typer.Option(0, "--offset", min=0),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List the app's models."""
    with _client(server, token) as client:
        page = client.list_models(limit=limit, offset=offset, prefix=prefix)
    print_table(
        f"Models ({page.total})",
        ["name", "latest", "production", "description"],
        [(m.name, m.latest_version, m.production_version, m.description) for m in page.items],
    )


@models_app.command("show")
def show_model(
    name: str = typer.Argument(..., help="Model name."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show a model and its latest versions."""
    with _client(server, token) as client:
        model = client.show_model(name)
        versions = client.list_versions(name, limit=10)
    print_table(
        f"Model {model.name}",
        ["field", "value"],
        [
            ("description", model.description),
            ("latest version", model.latest_version),
            ("production version", model.production_version),
            ("created", model.created_at.isoformat()),
        ],
    )
    _print_versions(f"Latest versions of {name} ({versions.total})", versions.items)


@models_app.command("update")
def update_model(
    name: str = typer.Argument(..., help="Model name."),
    description: str | None = typer.Option(None, "--description", help="The new description."),
    schema: Path | None = typer.Option(
        None,
        "--schema",
        help="A JSON file with the new ModelSchema (inputs/outputs fixed once versions exist).",
    ),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Correct a model's description and/or schema (audited)."""
    if description is None and schema is None:
        raise InvalidInput("nothing to change; pass --description TEXT and/or --schema FILE.")
    new_schema = _read_schema(schema) if schema is not None else None
    with _client(server, token) as client:
        model = client.update_model(name, description=description, schema=new_schema)
    console.print(f"Model {model.name} updated.")


@models_app.command("delete")
def delete_model(
    name: str = typer.Argument(..., help="Model name."),
    force: bool = typer.Option(
        False, "--force", help="Delete even while a rollout or experiment is in progress."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Delete a model with its versions, rollouts and experiments (audited; cannot be undone)."""
    if not yes and not typer.confirm(
        f"Delete model {name!r} with all its versions, rollouts and experiments?"
    ):
        console.print("Nothing deleted.")
        raise typer.Exit(1)
    with _client(server, token) as client:
        client.delete_model(name, force=force)
    console.print(f"Model {name} deleted.")


def _read_schema(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(existing_path(path, "schema file").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"the schema file {path} is not JSON ({exc}); fix it.") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"the schema file {path} must hold a JSON object; got {data!r:.60}.")
    return data


@versions_app.command("list")
def list_versions(
    model: str = typer.Argument(..., help="Model name."),
    stage: str | None = typer.Option(None, "--stage", help="Only this stage."),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    offset: int = typer.Option(0, "--offset", min=0),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List a model's versions, newest first."""
    with _client(server, token) as client:
        page = client.list_versions(model, stage=stage, limit=limit, offset=offset)
    _print_versions(f"Versions of {model} ({page.total})", page.items)


@versions_app.command("promote")
def promote(
    model: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., min=1, help="Version number."),
    stage: str = typer.Option("production", "--stage", help="candidate, production, archived."),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Move a version to a stage (production archives the previous production version)."""
    with _client(server, token) as client:
        info = client.set_stage(model, version, stage)
    console.print(f"{model} v{info.version} is now [bold]{info.stage}[/bold].")


def _print_versions(title: str, versions: Sequence[VersionPublic]) -> None:
    print_table(
        title,
        [
            Column("version", "right"),
            Column("stage"),
            Column("variants", is_name=True),
            Column("metrics", is_name=True),
            Column("created", priority=1),
        ],
        [
            (
                v.version,
                v.stage,
                ", ".join(variant.name for variant in v.variants),
                ", ".join(f"{k}={val}" for k, val in v.metrics.items()),
                v.created_at.strftime("%Y-%m-%d %H:%M"),
            )
            for v in versions
        ],
    )
