"""Demo chapter "Ship": push the build to a running server, promote it, verify a package."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pocketml.protect import PROFILE_MEMBER, read_member, verify_package
from pocketml.server.client import AdminClient
from pocketml.server.schemas import AppCreatedPublic, VersionPublic
from pocketml.sketch import ReferenceProfile

__all__ = ["ship"]


def ship(
    console: Console, url: str, operator_token: str, build_dir: Path
) -> tuple[AppCreatedPublic, VersionPublic, dict[str, Any]]:
    """Create an app, push and promote ``build_dir``, download and verify one package."""
    created = AdminClient(url, operator_token).create_app(f"demo-{int(time.time())}")
    admin = AdminClient(url, created.admin_token)
    version = admin.push_build(build_dir, stage="production")
    console.print(
        f"   server {url}: app [bold]{created.app.name}[/bold], pushed digits "
        f"v{version.version} with {len(version.variants)} signed packages, "
        f"stage {version.stage}"
    )
    table = Table(title=f"digits v{version.version} in the registry", title_justify="left")
    for column in ("variant", "format", "role", "model size", "package sha256"):
        table.add_column(column, no_wrap=column == "variant")
    for variant in version.variants:
        table.add_row(
            variant.name,
            variant.format,
            variant.role,
            f"{variant.size / 1024:,.1f} KiB",
            variant.package_id[:12] + "…",
        )
    console.print(table)
    device_variant = next(v for v in version.variants if v.format == "tflite")
    package = admin.download_package(device_variant.package_id, build_dir / "downloaded.pkg")
    public_keys = {k: base64.b64decode(v) for k, v in created.app.public_keys.items()}
    verified = verify_package(package, trusted_keys=public_keys, app_id=created.app.id)
    console.print(
        f"   downloaded {device_variant.name} ({package.stat().st_size:,} B) and verified it "
        f"as a device would: Ed25519 signature by {verified.signing_key_id}, "
        "every member's sha256 ✓"
    )
    if verified.has_profile:
        profile = ReferenceProfile.from_dict(json.loads(read_member(verified, PROFILE_MEMBER)))
        console.print(
            f"   it carries the version's signed reference profile for drift monitoring: "
            f"{', '.join(profile.feature_names)} and {len(profile.projection_names)} "
            "projections, binned on the held-out validation split (docs/monitoring.md)"
        )
    shipped = {
        "app_id": created.app.id,
        "version": version.version,
        "stage": version.stage,
        "variants": [v.name for v in version.variants],
        "verified_package": device_variant.package_id,
    }
    return created, version, shipped
