"""Runs inside the benchmark's own Evidently venv (never imported by pocketml).

Reads ``windows.npz`` (reference columns + every window's columns) and writes, per window,
Evidently's per-column drift flags and scores (``drift_score``: the normed Wasserstein or
Jensen-Shannon distance, compared with 0.1 for the flag) as chosen by its default preset logic
(``get_stattest(..., stattest_func=None)``: the method DataDriftPreset picks for each
column from the reference size and type) and the total seconds spent. With ``--preset N``
it also runs the full ``Report([DataDriftPreset()])`` on the first N windows and counts how
often its per-column decisions equal the direct calls (they should always).
"""

import json
import sys
import time

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.legacy.calculations.stattests.registry import get_stattest
from evidently.presets import DataDriftPreset

NUMERIC = ["x0", "x1", "x2", "x3"]
CATEGORICAL = ["c0"]


def frame(data, prefix):
    return pd.DataFrame({c: data[f"{prefix}{c}"] for c in NUMERIC + CATEGORICAL})


def main():
    source, target, preset = sys.argv[1], sys.argv[2], int(sys.argv[3])
    data = np.load(source, allow_pickle=False)
    reference = frame(data, "ref_")
    keys = sorted({k.split("/")[0] for k in data.files if "/" in k})
    types = {c: "num" for c in NUMERIC} | {c: "cat" for c in CATEGORICAL}
    out, scores, methods, seconds = {}, {}, {}, 0.0
    for key in keys:
        current = frame(data, f"{key}/")
        t0 = time.perf_counter()
        flags, values = [], []
        for column, kind in types.items():
            test = get_stattest(reference[column], current[column], kind, None)
            result = test(reference[column], current[column], kind, None)
            flags.append(bool(result.drifted))
            values.append(float(result.drift_score))
            methods[column] = f"{test.name}>={result.actual_threshold}"
        seconds += time.perf_counter() - t0
        out[key] = flags
        scores[key] = values
    agree = total = 0
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    for key in keys[:preset]:
        current = frame(data, f"{key}/")
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        for metric in snapshot.dict()["metrics"]:
            name = metric["metric_name"]
            if name.startswith("ValueDrift(column="):
                column = name.split("column=")[1].split(",")[0]
                threshold = float(name.split("threshold=")[1].rstrip(")"))
                flag = metric["value"] >= threshold
                agree += int(flag == out[key][list(types).index(column)])
                total += 1
    with open(target, "w") as handle:
        json.dump(
            {
                "flags": out,
                "scores": scores,
                "seconds": seconds,
                "methods": methods,
                "preset_agree": agree,
                "preset_total": total,
            },
            handle,
        )


if __name__ == "__main__":
    main()
