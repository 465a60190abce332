"""Generate the language-neutral conformance vectors every pocketml device client must pass.

Run from the repository root with pocketml installed (``python conformance/generate.py``);
``--check`` regenerates into a temporary folder and fails when a checked-in file differs,
which is how the test suite keeps the vectors current.

Everything is made by pocketml's own code (``pocketml.protect.build_package``, ``Keyring``,
``ModelSchema.normalize``, ONNX Runtime). The expected outcomes of the package, keyring,
canonical-JSON and prediction vectors are computed here by the Python reference code, so
they say what it really does; the server cases and the fault scripts state what the
protocol requires (docs/protocol.md), and the Python runner checks the SDK against them.
The output is deterministic: keys come from fixed seeds, and the two inputs of a package
build that are random or time-dependent in the library (the GCM nonce and ``created_at``)
are pinned for the duration of a build (``_packages._pinned_build``), so re-running gives
byte-identical files. The work is split in ``_world`` (keys, app, model), ``_packages``
(package and keyring vectors) and ``_scenarios`` (predictions, canonical JSON, the server
scenario, the fault scripts).

The format of every file is described in ``conformance/README.md``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

# The helpers are siblings of this script (conformance/ is not a package): run it as
# `python conformance/generate.py`, which puts this folder first on sys.path.
from _capture import capture_vectors
from _packages import keyring_vectors, package_vectors
from _scenarios import canonical_vectors, fault_scripts, prediction_vectors, server_scenario
from _sketches import sketch_vectors
from _world import (
    APP_ID,
    CONTENT_KEY,
    HERE,
    KEY_A,
    KEY_B,
    KEY_C,
    b64,
    keys_json,
    model_bytes,
    write_json,
)

# -- the files -----------------------------------------------------------------------------------


def generate(out: Path) -> None:
    """Write every vector file into ``out`` (which must be empty or absent)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "model").mkdir()
    model_file = out / "model" / "logreg.onnx"
    model_file.write_bytes(model_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        vectors = package_vectors(out, model_file, work)
        write_json(out / "packages.json", {"vectors": vectors})
    write_json(out / "faults.json", fault_scripts(out, vectors))
    write_json(out / "keyrings.json", {"vectors": keyring_vectors()})
    write_json(out / "predictions.json", prediction_vectors(model_file))
    write_json(out / "canonical.json", {"vectors": canonical_vectors()})
    write_json(out / "server.json", server_scenario(model_file))
    write_json(out / "capture.json", capture_vectors())
    write_json(out / "sketches.json", sketch_vectors())
    write_json(
        out / "keys.json",
        {
            "app_id": APP_ID,
            "signing_keys": keys_json(KEY_A, KEY_B, KEY_C),
            "content_key": {"key_id": CONTENT_KEY.key_id, "key": b64(CONTENT_KEY.secret)},
        },
    )


GENERATED = (
    "model",
    "packages",
    "packages.json",
    "canonical.json",
    "faults.json",
    "keyrings.json",
    "predictions.json",
    "server.json",
    "keys.json",
    "capture.json",
    "sketches.json",
)


def differences(target: Path) -> list[str]:
    """Files under ``target`` that differ from a fresh generation (empty when current)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "v"
        generate(fresh)
        names = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
        names |= (
            {
                p.relative_to(target)
                for g in GENERATED
                for p in (target / g).rglob("*")
                if p.is_file()
            }
            if target.exists()
            else set()
        )
        return sorted(
            str(n)
            for n in names
            if not (target / n).is_file()
            or not (fresh / n).is_file()
            or (target / n).read_bytes() != (fresh / n).read_bytes()
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the files are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = differences(HERE)
        for name in stale:
            print(f"stale: conformance/{name}")
        return 1 if stale else 0
    for name in GENERATED:
        path = HERE / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "v"
        generate(fresh)
        for item in fresh.iterdir():
            shutil.move(str(item), HERE / item.name)
    print("conformance vectors written to", HERE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
