"""Stateful fuzzing of a live server: hostile writes in sequence, every read after each.

A hypothesis ``RuleBasedStateMachine`` creates models (hostile names, descriptions and
schemas), pushes versions (hostile metadata, files that are and are not models), promotes
them, sets policies and targeting, starts and moves rollouts and experiments, and sends
check-ins, telemetry, feedback, predictions and raw hostile bodies with the device key.
After every write the server accepted, it reads everything back — models, versions,
policies, targeting, metrics, rollouts, experiments, the audit log, check-in, a package,
the console pages — because the defects this guards against were accepted writes that
broke every later read. No request may answer 5xx.

Derandomized and bounded (``RUNS`` sequences of up to ``STEPS`` steps, the same on every
machine), on SQLite and PostgreSQL. ``pytest -s`` prints the counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from pocketml.server.schemas import AppCreatedPublic
from pocketml.testing import DIGITS_SCHEMA, LiveServer

from .fuzz_kit import (
    DEEP,
    Api,
    Counts,
    ModelFiles,
    Raw,
    dump,
    floats,
    ints,
    json_values,
    mostly,
    mutated,
    segment,
    texts,
)

# A fixed, derandomized budget: the same sequences on every machine (about a minute per
# database on 2 cores); no wall-clock cap, so a slow machine tests exactly as much.
RUNS = 40
STEPS = 40
NAMES = ["m0", "m1", "m2"]


models = mostly(st.sampled_from(NAMES), texts)
versions = mostly(st.integers(1, 4), ints)
notes = mostly(st.sampled_from(["", "a model", "ok"]), texts)
numbers = mostly(st.floats(0.01, 0.9), st.one_of(floats, ints))
DEVICE_ID = "fuzz-device-0001"
FACTS = {
    "device_id": DEVICE_ID,
    "platform": "android",
    "os_version": "14",
    "app_version": "2.0",
    "formats": ["onnx", "tflite"],
    "country": "DE",
}
SCHEMA_PATHS = [
    ("name",),
    ("inputs", 0, "name"),
    ("inputs", 0, "shape", 1),
    ("inputs", 0, "dtype"),
    ("inputs", 0, "value_range"),
    ("inputs", 0, "normalization"),
    ("outputs", 0, "labels", 0),
    ("outputs", 0, "labels"),
    ("preprocessing",),
    ("format_version",),
]


class Fuzz(RuleBasedStateMachine):
    """Hostile writes, and every read after each accepted one."""

    api: Api
    files: ModelFiles

    @initialize()
    def start(self) -> None:
        self.rollouts: list[str] = []
        self.experiments: list[str] = []

    # -- helpers ---------------------------------------------------------------------

    def _write(
        self, who: str, method: str, path: str, body: bytes | None = None, **kw: Any
    ) -> httpx.Response:
        response = self.api.send(who, method, path, body, **kw)
        if response.status_code < 300:
            self.api.counts.accepted_writes += 1
            self.read_everything()
        return response

    def read_everything(self) -> None:
        """Every read a write could break; the counting client records any 5xx."""
        send = self.api.send
        send("admin", "GET", "/v1/admin/app")
        listed = send("admin", "GET", "/v1/admin/models", params={"limit": 500})
        for model in listed.json().get("items", []) if listed.status_code == 200 else []:
            name = model["name"]
            send("admin", "GET", f"/v1/admin/models/{name}")
            send("admin", "GET", f"/v1/admin/models/{name}/targeting")
            send("admin", "GET", f"/v1/admin/models/{name}/metrics")
            send("ui", "GET", f"/ui/models/{name}")
            page = send("admin", "GET", f"/v1/admin/models/{name}/versions")
            for version in page.json().get("items", []) if page.status_code == 200 else []:
                number = version["version"]
                send("admin", "GET", f"/v1/admin/models/{name}/versions/{number}")
                send("admin", "GET", f"/v1/admin/models/{name}/versions/{number}/policy")
                send("ui", "GET", f"/ui/models/{name}/versions/{number}")
                for variant in version["variants"][:1]:
                    send("device", "GET", f"/v1/packages/{variant['package_id']}")
        send("ui", "GET", "/ui/models")
        rollouts = send("admin", "GET", "/v1/admin/rollouts")
        for item in rollouts.json().get("items", []) if rollouts.status_code == 200 else []:
            send("admin", "GET", f"/v1/admin/rollouts/{item['id']}")
        experiments = send("admin", "GET", "/v1/admin/experiments")
        for item in experiments.json().get("items", []) if experiments.status_code == 200 else []:
            send("admin", "GET", f"/v1/admin/experiments/{item['id']}")
        send("admin", "GET", "/v1/admin/audit")
        send("device", "POST", "/v1/checkin", dump(FACTS))

    # -- admin writes ----------------------------------------------------------------

    @rule(
        name=models,
        description=notes,
        path=st.sampled_from(SCHEMA_PATHS),
        value=st.one_of(json_values, st.just(None)),
        keep_valid=st.booleans(),
    )
    def create_model(
        self, name: Any, description: Any, path: tuple[Any, ...], value: Any, keep_valid: bool
    ) -> None:
        schema = DIGITS_SCHEMA if keep_valid else mutated(DIGITS_SCHEMA, path, value)
        body = {"name": name, "description": description, "schema": schema}
        self._write("admin", "POST", "/v1/admin/models", dump(body))

    @rule(
        model=models,
        version=st.one_of(st.none(), versions),
        params=mostly(st.integers(0, 9), json_values),
        card=notes,
        kind=st.sampled_from(["onnx", "onnx", "onnx", "tflite", "garbage", "mislabelled"]),
        seed=st.integers(0, 3),
    )
    def push_version(
        self, model: Any, version: Any, params: Any, card: Any, kind: str, seed: int
    ) -> None:
        path = {
            "tflite": self.files.tflite,
            "garbage": self.files.garbage,
            "mislabelled": self.files.tflite,
        }.get(kind, self.files.onnx[seed])
        fmt = "tflite" if kind == "tflite" else "onnx"
        meta = {
            "version": version,
            "params": {"p": params},
            "metrics": {"accuracy": params},
            "card": card,
            "variants": [{"name": "v", "format": fmt, "precision": "fp32", "profiles": ["x"]}],
        }
        files = {"metadata": (None, dump(meta), "application/json"), "v": ("m", path.read_bytes())}
        self._write("admin", "POST", f"/v1/admin/models/{segment(model)}/versions", files=files)

    @rule(model=models, version=versions, stage=st.sampled_from(["production", "archived", "x"]))
    def set_stage(self, model: Any, version: Any, stage: str) -> None:
        path = f"/v1/admin/models/{segment(model)}/versions/{segment(version)}/stage"
        self._write("admin", "POST", path, dump({"stage": stage}))

    @rule(
        model=st.sampled_from(NAMES),
        version=st.integers(1, 4),
        value=mostly(st.integers(0, 10**9), ints),
        ratio=numbers,
    )
    def set_policy(self, model: str, version: int, value: Any, ratio: Any) -> None:
        body = {"hybrid": {"threshold": ratio}, "download": {"max_cellular_bytes": value}}
        path = f"/v1/admin/models/{model}/versions/{version}/policy"
        self._write("admin", "PUT", path, dump(body))

    @rule(
        model=models,
        field=st.sampled_from(["country", "country", "app_version", "x"]),
        value=mostly(st.sampled_from(["FR", "1.0", "2"]), json_values),
    )
    def set_targeting(self, model: Any, field: str, value: Any) -> None:
        rule_body = (
            {"field": field, "in": [value, "DE"]}
            if field != "app_version"
            else {
                "field": field,
                "min": value,
            }
        )
        path = f"/v1/admin/models/{segment(model)}/targeting"
        self._write("admin", "PUT", path, dump({"rules": [rule_body]}))

    @rule(
        model=st.sampled_from(NAMES),
        version=versions,
        targeting=mostly(st.just("DE"), json_values),
        threshold=numbers,
        schedule=mostly(st.just([5, 100]), st.lists(st.one_of(floats, ints), max_size=4)),
    )
    def create_rollout(
        self, model: str, version: Any, targeting: Any, threshold: Any, schedule: Any
    ) -> None:
        body = {
            "model": model,
            "version": version,
            "schedule": schedule if schedule != [0.5] else [1, 100],
            "guardrails": {"thresholds": {"error_rate": threshold}},
            "targeting": [{"field": "country", "in": [targeting]}],
        }
        response = self._write("admin", "POST", "/v1/admin/rollouts", dump(body))
        if response.status_code == 201:
            self.rollouts.append(response.json()["id"])

    @rule(
        index=st.integers(0, 5),
        action=st.sampled_from(["advance", "pause", "resume", "rollback", "complete", "x"]),
        reason=notes,
    )
    def move_rollout(self, index: int, action: str, reason: Any) -> None:
        rollout = self.rollouts[index % len(self.rollouts)] if self.rollouts else "r%00"
        path = f"/v1/admin/rollouts/{rollout}/{action}"
        self._write("admin", "POST", path, dump({"reason": reason}))

    @rule(
        model=st.sampled_from(NAMES),
        arms=mostly(
            st.just([("control", 1, 1.0), ("candidate", 2, 1.0)]),
            st.lists(st.tuples(texts, versions, numbers), max_size=3),
        ),
    )
    def create_experiment(self, model: str, arms: list[tuple[Any, Any, Any]]) -> None:
        body = {
            "model": model,
            "arms": [{"name": n, "version": v, "weight": w} for n, v, w in arms],
        }
        response = self._write("admin", "POST", "/v1/admin/experiments", dump(body))
        if response.status_code == 201:
            self.experiments.append(response.json()["id"])

    @rule(index=st.integers(0, 5), promote=st.one_of(st.just("winner"), versions, st.none()))
    def stop_experiment(self, index: int, promote: Any) -> None:
        if not self.experiments:
            return
        experiment = self.experiments[index % len(self.experiments)]
        body = {"promote": promote, "reason": "fuzz"}
        self._write("admin", "POST", f"/v1/admin/experiments/{experiment}/stop", dump(body))

    # -- device writes ---------------------------------------------------------------

    @rule(
        key=st.sampled_from([*sorted(FACTS), "models", "runtimes"]),
        value=mostly(st.just("14"), json_values),
    )
    def checkin(self, key: str, value: Any) -> None:
        self._write("device", "POST", "/v1/checkin", dump({**FACTS, key: value}))

    @rule(
        model=models,
        label=notes,
        version=versions,
        number=numbers,
        kind=st.sampled_from(["inference", "error", "download"]),
    )
    def telemetry(self, model: Any, label: Any, version: Any, number: Any, kind: str) -> None:
        event: dict[str, Any] = {"type": kind, "ts": 1_700_000_000.0, "model": model}
        if kind == "inference":
            event |= {"variant": None, "source": "local", "latency_ms": number, "confidence": 0.5}
            event |= {"label": label, "prediction_id": label, "version": version}
        elif kind == "error":
            event |= {"stage": "load", "message": label, "version": version}
        else:
            event |= {"variant": label, "bytes": version, "duration_ms": number, "outcome": "done"}
        batch_id = f"batch-{self.api.counts.requests:08d}"
        body = {"batch_id": batch_id, "device_id": DEVICE_ID, "events": [event]}
        self._write("device", "POST", "/v1/telemetry", dump(body))

    @rule(
        prediction_id=mostly(st.just("p-1"), texts),
        label=notes,
        version=versions,
        ts=mostly(st.just(1_700_000_000.0), st.one_of(floats, ints)),
    )
    def feedback(self, prediction_id: Any, label: Any, version: Any, ts: Any) -> None:
        body = {
            "prediction_id": prediction_id,
            "device_id": DEVICE_ID,
            "model": "m0",
            "version": version,
            "label": label,
            "ts": ts,
        }
        self._write("device", "POST", "/v1/feedback", dump(body))

    @rule(
        model=models,
        value=mostly(st.floats(-1, 1), st.one_of(ints, floats, texts, st.booleans(), json_values)),
        batch=st.booleans(),
        prediction_id=notes,
    )
    def predict(self, model: Any, value: Any, batch: bool, prediction_id: Any) -> None:
        row = [0.25] * 63 + [value]
        body = {"inputs": [row] if batch else row, "prediction_id": prediction_id}
        self._write("device", "POST", f"/v1/models/{segment(model)}/predict", dump(body))

    @rule(
        route=st.sampled_from(
            [
                ("device", "/v1/checkin"),
                ("device", "/v1/telemetry"),
                ("device", "/v1/feedback"),
                ("device", "/v1/models/m0/predict"),
                ("admin", "/v1/admin/models"),
                ("admin", "/v1/admin/rollouts"),
                ("admin", "/v1/admin/experiments"),
                ("admin", "/v1/admin/app/rotate"),
            ]
        ),
        body=st.sampled_from(
            [
                DEEP,
                Raw('{"a": NaN}'),
                Raw('"\\ud800"'),
                Raw("1" * 5000),
                Raw('{"x": "' + "y" * 300_000 + '"}'),
                Raw("[" + "1," * 20_000 + "1]"),
                Raw("\x00\x01\x02"),
                Raw("{"),
            ]
        ),
    )
    def raw_body(self, route: tuple[str, str], body: Raw) -> None:
        who, path = route
        self._write(who, "POST", path, body.encode("utf-8", "surrogatepass"))

    @rule(value=texts, where=st.sampled_from(["models", "rollouts", "experiments", "ui"]))
    def hostile_path(self, value: Any, where: str) -> None:
        quoted = segment(value) or "%00"
        who = "ui" if where == "ui" else "admin"
        path = f"/ui/models/{quoted}" if where == "ui" else f"/v1/admin/{where}/{quoted}"
        self.api.send(who, "GET", path)
        self.api.send("admin", "GET", f"/v1/admin/models?prefix={quoted}")


def _fuzz(live_server: LiveServer, app: AppCreatedPublic, tmp_path: Path, label: str) -> Counts:
    counts = Counts()
    api = Api(live_server.url, app.admin_token, app.device_key, counts)
    Fuzz.api, Fuzz.files = api, ModelFiles(tmp_path)
    try:
        run_state_machine_as_test(
            Fuzz,
            settings=settings(
                max_examples=RUNS,
                stateful_step_count=STEPS,
                derandomize=True,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            ),
        )
    finally:
        api.close()
    print(counts.summary(label))
    return counts


def test_no_hostile_sequence_gets_a_server_error_on_any_read_or_write(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path, database_url: str
) -> None:
    counts = _fuzz(live_server, app_a, tmp_path, database_url.split(":", 1)[0])
    assert counts.server_errors == 0, "\n".join(counts.failures[:20])
    assert counts.accepted_writes >= 20, counts.summary("too few accepted writes")
    assert counts.client_errors >= 20, counts.summary("too few refused writes")
