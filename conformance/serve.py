"""Serve the conformance world: a real pocketml server with the models of ``server.json``.

Two users:

- the Python runner (``tests/conformance/test_python_sdk.py``) calls :func:`prepare` on the
  ``live_server`` fixture's server;
- any other client's runner (the TypeScript tests, a Kotlin or Swift harness) runs this file
  as a program: ``python conformance/serve.py [--database-url URL | --postgres ADMIN_URL]``
  (``--postgres``: a fresh database on that server, dropped at exit). It starts the server
  on 127.0.0.1 and a free port in a temporary home, pushes the models, prints ONE line of
  JSON ``{"url", "app_id", "device_key", "admin_token", "models": {name: {package_id,
  package_size, content_key_id}}}`` and serves until its standard input closes (so the
  server dies with the runner that spawned it, whatever happens to that runner).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def scenario() -> dict[str, Any]:
    """The checked-in server scenario (``server.json``)."""
    data: dict[str, Any] = json.loads((HERE / "server.json").read_text(encoding="utf-8"))
    return data


def _variant(model: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """A scenario model as the (variant entry, file) pair a push takes."""
    path = HERE / model["file"]
    entry = {
        "name": model["variant"],
        "format": model["format"],
        "precision": model["precision"],
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "encrypt": model["encrypt"],
    }
    return entry, path


def prepare(live: Any) -> dict[str, Any]:
    """Create the conformance app on ``live`` (a ``pocketml.testing.LiveServer``), push.

    Returns:
        What a runner needs: the server URL, the app's keys, and per model the package the
        check-in announces (read back through a real check-in, as a device would see it).
    """
    app = live.create_app("conformance")
    for model in scenario()["models"]:
        version = live.push(app, model["name"], [_variant(model)], schema=model["schema"])
        if "policy" in model:
            route = f"/v1/admin/models/{model['name']}/versions/{version.version}/policy"
            with live.http(app.admin_token) as admin:
                admin.put(route, json=model["policy"]).raise_for_status()
    facts = scenario()["device"]
    with live.http(app.device_key) as http:
        answer = http.post("/v1/checkin", json={**facts, "models": {}})
        answer.raise_for_status()
        manifest = answer.json()
    packages = {
        m["name"]: {
            "package_id": m["package"]["sha256"],
            "package_size": m["package"]["size"],
            "package_url": m["package"]["url"],
            "content_key_id": m["package"]["content_key_id"],
        }
        for m in manifest["models"]
    }
    return {
        "url": live.url,
        "app_id": app.app_id,
        "device_key": app.device_key,
        "admin_token": app.admin_token,
        "models": packages,
    }


# -- profile sketches: the profile-sketch case's own app ------------------------------------


def prepare_sketch(live: Any) -> dict[str, Any]:
    """Create the app of the ``profile-sketch`` case; push its model with its profile.

    The program adds it to its line as ``"sketch"``; the Python runner calls it in that
    case's test only (the other cases' worlds do not pay for it).

    Returns:
        ``{"app_id", "device_key", "admin_token"}`` of that app.
    """
    from pocketml.testing import push_version

    world = scenario()["sketch"]
    model = world["model"]
    app = live.create_app(world["app"])
    with live.admin(app.admin_token) as client:
        push_version(
            client,
            model["name"],
            [_variant(model)],
            schema=model["schema"],
            stage="production",
            reference_profile=model["reference_profile"],
        )
    return {"app_id": app.app_id, "device_key": app.device_key, "admin_token": app.admin_token}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--database-url", default=None, help="default: SQLite in the home")
    where.add_argument(
        "--postgres",
        metavar="ADMIN_URL",
        default=None,
        help="run on a fresh database created on this PostgreSQL server, dropped at exit",
    )
    args = parser.parse_args(argv)
    from pocketml.testing import fresh_postgres, live_server, server_settings

    with contextlib.ExitStack() as stack:
        home = stack.enter_context(tempfile.TemporaryDirectory(prefix="pocketml-conformance-"))
        url = args.database_url
        if args.postgres is not None:
            url = stack.enter_context(fresh_postgres(args.postgres, migrated=True))
        settings = server_settings(Path(home) / "server", url)
        with live_server(settings) as live:
            print(json.dumps({**prepare(live), "sketch": prepare_sketch(live)}), flush=True)
            sys.stdin.read()  # serve until the runner closes our stdin (or dies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
