#!/usr/bin/env bash
# The command-line route for the files byom.py wrote (run byom.py first). No retraining.
set -euo pipefail
cd "$(dirname "$0")"
python -m pocketml import runs/sensor.pt --example data/sensor.npz --out runs/sensor --name sensor
python -m pocketml import runs/table.pkl --example data/table.npz --out runs/table --name table \
  --trust-pickle   # a pickle runs code when loaded: only for files you made or trust
python -m pocketml import runs/theirs.onnx --example data/sensor.npz --out runs/theirs --name theirs
python -m pocketml build sensor.toml --out out/build-sensor
python -m pocketml build table.toml --out out/build-table
