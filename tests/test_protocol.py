"""The derived tables agree with ``pocketml.protocol``: errors, formats, file hashes.

Every copy of a protocol noun elsewhere (the server's status table, the OpenAPI error
responses, the pydantic ``Literal`` of formats, the package member extensions) is checked
here against its one home, so a protocol change that misses a copy fails a test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import pkgutil
from pathlib import Path
from typing import get_args

import httpx
import pytest
from pydantic import TypeAdapter

import pocketml
from pocketml import errors, protocol
from pocketml.errors import PocketMLError


def _all_error_classes() -> set[type[PocketMLError]]:
    for info in pkgutil.walk_packages(pocketml.__path__, "pocketml."):
        if info.name.endswith(("__main__", "migrations.env")):
            continue
        importlib.import_module(info.name)
    found: set[type[PocketMLError]] = set()
    pending = [PocketMLError]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.add(sub)
            pending.append(sub)
    return found


def test_every_class_of_the_error_tree_has_its_own_catalog_row() -> None:
    tree = {
        cls
        for cls in (getattr(errors, name) for name in errors.__all__)
        if isinstance(cls, type) and issubclass(cls, PocketMLError)
    }
    assert tree == {row.error for row in protocol.ERROR_CATALOG}


def test_every_catalog_row_comes_back_to_a_client_as_its_own_class() -> None:
    for row in protocol.ERROR_CATALOG:
        raised = protocol.error_class(row.status, row.code)
        if row.error is errors.MissingDependencyError:
            assert raised is errors.Unavailable  # nothing a client installs fixes it
        else:
            assert raised is row.error


def test_every_error_subclass_anywhere_comes_back_as_an_ancestor_or_its_status_class() -> None:
    classes = _all_error_classes()
    assert len(classes) > 30  # the walk found the package's subclasses, not only the tree
    for cls in classes - {errors.MissingDependencyError}:
        status = protocol.status_for(cls)
        raised = protocol.error_class(status, cls.code)
        assert issubclass(cls, raised) or raised is protocol.error_class(status), (cls, raised)


def test_one_status_and_class_per_status_and_code() -> None:
    keys = [(row.status, row.code) for row in protocol.ERROR_CATALOG]
    assert len(keys) == len(set(keys))
    for code, row in protocol.TRANSPORT_CODES.items():
        assert code not in {r.code for r in protocol.ERROR_CATALOG}
        assert protocol.http_code(row.status) == code or row.status >= 500


def test_the_server_status_table_is_the_catalog() -> None:
    from pocketml.server.errors import STATUS_BY_ERROR

    assert {row.error: row.status for row in protocol.ERROR_CATALOG} == STATUS_BY_ERROR


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (422, "invalid_input", errors.ValidationFailed),
        (400, "invalid_input", errors.InvalidInput),
        (400, "malformed_json", errors.MalformedJson),
        (405, "method_not_allowed", errors.InvalidInput),
        (409, "version_taken_or_other", errors.Conflict),
        (422, "package_signature_invalid", errors.ValidationFailed),
        (503, "missing_dependency", errors.Unavailable),
        (418, None, PocketMLError),
    ],
)
def test_a_client_raises_the_class_of_the_status_and_code(
    status: int, code: str | None, expected: type[PocketMLError]
) -> None:
    assert protocol.error_class(status, code) is expected


def test_the_device_sdk_and_the_admin_client_read_an_answer_the_same_way() -> None:
    from pocketml.device._net import ServerError
    from pocketml.device._net import error_from_response as device_error
    from pocketml.server.client import error_from_response as admin_error

    request = httpx.Request("POST", "http://server/v1/checkin")
    for row in protocol.ERROR_CATALOG:
        body = {"error": {"code": row.code, "message": "m", "request_id": "r"}}
        answer = httpx.Response(row.status, json=body, request=request)
        admin, device = admin_error(answer), device_error(answer)
        if row.status >= 500:
            assert isinstance(device, ServerError)
        else:
            assert type(device) is type(admin) is protocol.error_class(row.status, row.code)


def test_only_internal_failures_are_masked() -> None:
    assert protocol.is_masked(RuntimeError("boom"))
    assert protocol.is_masked(PocketMLError("internal"))
    assert not protocol.is_masked(errors.Unavailable("db down"))
    assert not protocol.is_masked(errors.MissingDependencyError("torch", "train"))
    assert not protocol.is_masked(errors.NotFound("nope"))


def test_the_openapi_error_responses_name_catalog_codes_of_their_status(
    tmp_path: Path,
) -> None:
    from pocketml.config import Settings
    from pocketml.server.app import create_app

    app = create_app(Settings(home=tmp_path))
    document = app.openapi()
    shared = document["components"]["responses"]
    documented = 0
    for operations in document["paths"].values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if int(status) < 400:
                    continue
                ref = response.get("$ref", "")
                assert ref.startswith("#/components/responses/"), (status, response)
                described = shared[ref.rsplit("/", 1)[1]]
                schema = described["content"]["application/json"]["schema"]
                assert schema["$ref"].endswith("/ErrorBody")
                codes = protocol.codes_for(int(status))
                assert codes, f"status {status} has no catalog row"
                assert described["description"].endswith(
                    "Codes: " + ", ".join(f"`{code}`" for code in codes) + "."
                ), described["description"]
                documented += 1
    assert documented > 50


def test_format_lists_and_extension_maps_derive_from_the_protocol() -> None:
    from pocketml.convert import TARGETS
    from pocketml.device._types import FORMATS as DEVICE_FORMATS
    from pocketml.optimize.config import Target as BuildTarget
    from pocketml.protect._manifest import MODEL_EXTENSIONS
    from pocketml.registry._types import FORMATS as REGISTRY_FORMATS
    from pocketml.registry._types import Format as RegistryFormat
    from pocketml.runtime import RUNNABLE_FORMATS
    from pocketml.server._build_dir import _BuildVariant
    from pocketml.server.schemas_device import Format as WireFormat

    names = protocol.FORMAT_NAMES
    assert names == ("onnx", "ort", "tflite", "coreml")
    assert TARGETS == DEVICE_FORMATS == REGISTRY_FORMATS == names
    assert get_args(WireFormat) == get_args(RegistryFormat) == get_args(BuildTarget) == names
    assert get_args(_BuildVariant.model_fields["format"].annotation) == names
    assert RUNNABLE_FORMATS == ("onnx", "ort", "tflite")
    assert {n: f.extensions for n, f in protocol.FORMATS.items()} == MODEL_EXTENSIONS


def test_file_sha256_streams_a_file_into_its_hex_digest(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # several chunks
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    assert protocol.file_sha256(path, chunk_size=4096) == hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- telemetry events


def _kinds() -> list[protocol.EventKind]:
    return list(protocol.EVENT_KINDS.values())


def test_the_bounds_of_the_declaration_are_the_bounds_of_pocketml_bounds() -> None:
    from pocketml import bounds

    assert (protocol.INT32_MAX, protocol.INT64_MAX) == (bounds.INT32_MAX, bounds.INT64_MAX)


@pytest.mark.parametrize("kind", _kinds(), ids=lambda k: k.name)
def test_the_pydantic_event_model_is_the_declared_kind(kind: protocol.EventKind) -> None:
    from pocketml.server.schemas_device import EVENT_MODELS

    model = EVENT_MODELS[kind.name]
    names = ["type", *(spec.name for spec in kind.all_fields)]
    required = {"type"} | {spec.name for spec in kind.all_fields if spec.required}
    assert list(model.__annotations__) == names
    assert model.__required_keys__ == required
    schema = TypeAdapter(model).json_schema()
    for spec in kind.all_fields:
        prop = schema["properties"][spec.name]
        assert prop["description"] == spec.description
        options = prop.get("anyOf", [prop])
        assert ({"type": "null"} in options) == spec.nullable, spec.name
        typed = next(o for o in options if o != {"type": "null"})
        if spec.choices:
            assert tuple(typed["enum"]) == spec.choices
        bounds = {
            "minimum": spec.minimum,
            "maximum": spec.maximum,
            "minLength": spec.min_length,
            "maxLength": spec.max_length,
            "pattern": spec.pattern,
        }
        assert {k: typed[k] for k in bounds if k in typed} == {
            k: v for k, v in bounds.items() if v is not None
        }, spec.name


@pytest.mark.parametrize("kind", _kinds(), ids=lambda k: k.name)
def test_the_msgspec_event_struct_is_the_declared_kind(kind: protocol.EventKind) -> None:
    import msgspec

    from pocketml.server.device_api._telemetry_check import EVENT_STRUCTS

    struct = EVENT_STRUCTS[kind.name]
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    assert (info.tag_field, info.tag, info.forbid_unknown_fields) == ("type", kind.name, True)
    assert [f.name for f in info.fields] == [spec.name for spec in kind.all_fields]
    for field, spec in zip(info.fields, kind.all_fields, strict=True):
        assert field.required == spec.required, spec.name
        types = field.type.types if isinstance(field.type, msgspec.inspect.UnionType) else ()
        assert any(isinstance(t, msgspec.inspect.NoneType) for t in types) == spec.nullable


def test_a_batch_of_every_kind_is_the_same_on_the_fast_and_the_strict_path() -> None:
    import json

    from pocketml.server.device_api._telemetry_check import decode_batch
    from pocketml.server.routes.telemetry import validate_batch

    samples = {"string": "x", "integer": 7, "number": 0.5, "boolean": True}
    events = []
    for kind in _kinds():
        event: dict[str, object] = {"type": kind.name}
        for spec in kind.all_fields:
            event[spec.name] = spec.choices[0] if spec.choices else samples[spec.type]
        events.append(event)
    body = {"batch_id": "b-0123456789", "device_id": "d-0123456789", "events": events}
    fast = decode_batch(json.dumps(body).encode())
    strict = validate_batch(body, 100)
    assert fast is not None
    for struct, plain in zip(fast.events, strict.events, strict=True):
        assert {name: getattr(struct, name) for name in plain} == plain


def test_the_stored_columns_derive_from_the_declaration() -> None:
    import pyarrow as pa

    from pocketml.telemetry import EVENT_COLUMNS
    from pocketml.telemetry._chunks import PAYLOAD_SCHEMA

    stored = [kind for kind in _kinds() if kind.stored]
    assert (
        {k.name for k in stored}
        == protocol.STORED_EVENT_KINDS
        == {
            "inference",
            "error",
            "download",
        }
    )  # a profile event is merged into the sketch store, not stored as a row
    declared = ["type", *dict.fromkeys(s.name for kind in stored for s in kind.all_fields)]
    assert list(EVENT_COLUMNS) == declared == list(protocol.EVENT_COLUMNS)
    arrow = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64()}
    expected = [(n, arrow[protocol.EVENT_COLUMN_TYPES[n]]) for n in declared if n != "model"]
    assert pa.schema(expected) == PAYLOAD_SCHEMA


def test_the_device_queue_columns_are_the_declared_inference_fields(tmp_path: Path) -> None:
    import sqlite3

    from pocketml.device._queue import INFERENCE_FIELDS, TelemetryQueue

    inference = protocol.EVENT_KINDS["inference"]
    assert INFERENCE_FIELDS == (
        "ts",
        "model",
        "version",
        "variant",
        "source",
        "latency_ms",
        "confidence",
        "label",
        "prediction_id",
    )  # the order LocalModel builds its tuples in (tests/device/test_protocol_queue.py)
    assert set(INFERENCE_FIELDS) <= {spec.name for spec in inference.all_fields}
    queue = TelemetryQueue(tmp_path / "t.db")
    assert queue.pending() == 0
    db = sqlite3.connect(tmp_path / "t.db")
    columns = {row[1]: row[2] for row in db.execute("PRAGMA table_info(events)")}
    sql = {"string": "TEXT", "integer": "INTEGER", "number": "REAL"}
    assert {n: columns[n] for n in INFERENCE_FIELDS} == {
        n: sql[protocol.EVENT_COLUMN_TYPES[n]] for n in INFERENCE_FIELDS
    }
    db.close()
    queue.close()


def test_a_queue_from_an_older_sdk_gains_the_missing_columns(tmp_path: Path) -> None:
    import sqlite3

    from pocketml.device._queue import INFERENCE_FIELDS, TelemetryQueue

    db = sqlite3.connect(tmp_path / "t.db")
    db.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT, batch_id TEXT, "
        "ts REAL, model TEXT)"
    )
    db.commit()
    db.close()
    queue = TelemetryQueue(tmp_path / "t.db")
    row = (1.0, "digits", 1, "v", "local", 2.0, 0.5, "7", "p-1")
    queue.append([], [row])
    batch = queue.claim_batch(10)
    assert batch is not None
    assert [batch.events[0][name] for name in INFERENCE_FIELDS] == list(row)
    queue.close()


def test_the_protocol_imports_the_standard_library_only() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import sys, pocketml.protocol\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)))"
    )
    source = str(Path(pocketml.__file__).parents[1])  # -S: no site, so no editable install
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": source},
    )
    assert out.stdout.strip() == "['__main__', 'pocketml']"


# ---------------------------------------------------------------- check-in and the manifest


def _conforms(spec: protocol.WireField, value: object) -> bool:
    import re

    if value is None:
        return spec.nullable
    kinds = {"string": str, "integer": int, "number": (int, float), "boolean": bool}
    kinds["object"] = dict
    if not isinstance(value, kinds[spec.type]) or (
        isinstance(value, bool) and spec.type != "boolean"
    ):
        return False
    if isinstance(value, str):
        return (
            (not spec.choices or value in spec.choices)
            and (spec.pattern is None or re.fullmatch(spec.pattern[1:-1], value) is not None)
            and (spec.max_length is None or len(value) <= spec.max_length)
            and len(value) >= (spec.min_length or 0)
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        low = -float("inf") if spec.minimum is None else spec.minimum
        high = float("inf") if spec.maximum is None else spec.maximum
        return low <= value <= high
    return True


def _built_entry(with_variant: bool = True) -> dict[str, object]:
    from datetime import UTC, datetime

    from pocketml.delivery import CatalogEntry, CheckinFacts, choose_variant, default_policy
    from pocketml.delivery.manifest import manifest_model
    from pocketml.registry import ModelInfo, VariantInfo, VersionInfo
    from pocketml.testing import DIGITS_SCHEMA

    now = datetime(2026, 1, 1, tzinfo=UTC)
    sha = "ab" * 32

    def variant(name: str, role: str, key: str | None) -> VariantInfo:
        return VariantInfo(
            "var-" + name,
            name,
            "onnx",
            "fp32",
            role,
            100,
            "cd" * 32,
            sha,
            200,
            "ed25519:0123456789abcdef",
            key,
            {},
            {},
            {},
            [],
            now,
        )

    version = VersionInfo(
        "ver-1",
        "digits",
        3,
        "production",
        None,
        None,
        None,
        {},
        {},
        {},
        "",
        now,
        (variant("small-onnx", "device", "aes:0123456789abcdef"), variant("big", "cloud", None)),
    )
    model = ModelInfo("mod-1", "app-1", "digits", "", DIGITS_SCHEMA, now, 3, 3)
    entry = CatalogEntry(model, version, default_policy("digits", version))
    formats = ("onnx",) if with_variant else ("tflite",)
    device = CheckinFacts(device_id="device-0001", platform="android", formats=formats)
    return manifest_model(entry, device, choose_variant)


@pytest.mark.parametrize("with_variant", [True, False])
def test_the_manifest_builder_writes_exactly_the_declared_entry(with_variant: bool) -> None:
    item = _built_entry(with_variant)
    nested = {
        "package": protocol.PACKAGE_FIELDS,
        "download_policy": protocol.DOWNLOAD_POLICY_FIELDS,
        "hybrid": protocol.HYBRID_POLICY_FIELDS,
    }
    assert list(item) == [spec.name for spec in protocol.MANIFEST_ENTRY_FIELDS]
    for spec in protocol.MANIFEST_ENTRY_FIELDS:
        assert _conforms(spec, item[spec.name]), (spec.name, item[spec.name])
        inner = item[spec.name]
        if spec.name in nested and isinstance(inner, dict):
            assert list(inner) == [f.name for f in nested[spec.name]]
            for field in nested[spec.name]:
                assert _conforms(field, inner[field.name]), (spec.name, field.name)
    assert (item["package"] is not None) == with_variant
    if with_variant:  # one value, three names: the aliases carry the canonical value
        package = item["package"]
        assert isinstance(package, dict) and package["id"] == package["sha256"]


def test_the_openapi_manifest_models_are_the_declared_entry() -> None:
    from pocketml.schema import ModelSchema
    from pocketml.server.schemas_device import (
        DownloadPolicyPublic,
        HybridPolicyPublic,
        ManifestModel,
        PackagePublic,
    )

    def names(model: type) -> list[str]:
        return [f.alias or n for n, f in model.model_fields.items()]  # type: ignore[attr-defined]

    assert names(ManifestModel) == [s.name for s in protocol.MANIFEST_ENTRY_FIELDS]
    assert names(PackagePublic) == [s.name for s in protocol.PACKAGE_FIELDS]
    assert names(DownloadPolicyPublic) == [s.name for s in protocol.DOWNLOAD_POLICY_FIELDS]
    assert names(HybridPolicyPublic) == [s.name for s in protocol.HYBRID_POLICY_FIELDS]
    parsed = ManifestModel.model_validate(_built_entry())
    assert isinstance(parsed.schema_, ModelSchema)  # typed, not a free-form dict
    for model, fields in (
        (ManifestModel, protocol.MANIFEST_ENTRY_FIELDS),
        (PackagePublic, protocol.PACKAGE_FIELDS),
    ):
        for spec in fields:
            field = model.model_fields["schema_" if spec.name == "schema" else spec.name]
            assert (type(None) in get_args(field.annotation)) == spec.nullable, spec.name


def test_the_device_parser_reads_back_every_declared_field() -> None:
    from pocketml.device._entry import parse_manifest

    for with_variant in (True, False):
        item = _built_entry(with_variant)
        parsed = parse_manifest({"models": [item]})
        assert not parsed.rejected
        assert parsed.entries[0].to_json() == item


# Declared rules the device parser leaves to the server: it only reads these as text.
_PARSER_LENIENT = {"precision", "package.id"}


def test_the_device_parser_refuses_a_value_outside_each_declared_rule() -> None:
    from pocketml.device._entry import parse_manifest

    item = _built_entry()
    bad = {"string": 12345, "integer": "1", "number": "x", "boolean": "yes", "object": []}
    checked = 0
    groups = [("", protocol.MANIFEST_ENTRY_FIELDS), ("package.", protocol.PACKAGE_FIELDS)]
    groups += [("download_policy.", protocol.DOWNLOAD_POLICY_FIELDS)]
    groups += [("hybrid.", protocol.HYBRID_POLICY_FIELDS)]
    for prefix, fields in groups:
        for spec in fields:
            path = prefix + spec.name
            if path in _PARSER_LENIENT or (spec.name == "schema" and not prefix):
                continue
            broken = {k: dict(v) if isinstance(v, dict) else v for k, v in item.items()}
            target = broken[prefix[:-1]] if prefix else broken
            assert isinstance(target, dict)
            target[spec.name] = bad[spec.type]
            parsed = parse_manifest({"models": [broken]})
            assert parsed.rejected, f"the device parser accepted {path} = {bad[spec.type]!r}"
            assert spec.name in str(parsed.rejected[0].error)
            checked += 1
    assert checked > 20


def test_device_classes_are_open_names_on_both_sides() -> None:
    from pocketml.bench.profiles import BUILTIN_PROFILES
    from pocketml.device import DEVICE_CLASSES, DeviceFacts
    from pocketml.errors import InvalidInput
    from pocketml.server.schemas_device import DeviceContext

    assert protocol.BUILTIN_DEVICE_CLASSES == DEVICE_CLASSES
    device_profiles = tuple(name for name in BUILTIN_PROFILES if name != "cloud")
    assert device_profiles == protocol.BUILTIN_DEVICE_CLASSES  # "cloud" profiles the server
    for name in (*protocol.BUILTIN_DEVICE_CLASSES, "kiosk-v2.arm64", "x", "a" * 32):
        assert protocol.check_device_class(name) == name
        assert DeviceFacts("android", "14", "1.0", device_class=name).device_class == name
        assert DeviceContext(device_class=name).device_class == name
    for bad in ("", "Kiosk", "-x", "a" * 33, "a b", "a\n"):
        with pytest.raises(ValueError, match="device class"):
            protocol.check_device_class(bad)
        with pytest.raises(InvalidInput, match="device_class"):
            DeviceFacts("android", "14", "1.0", device_class=bad)


def test_check_in_choices_are_one_enum_and_the_arm_codes() -> None:
    assert [c.value for c in protocol.CheckinChoice] == ["-", "c", "x"]
    assert protocol.arm_choice(12) == "v12"
    assert protocol.choice_version("v12") == 12
    assert protocol.choice_version(protocol.CheckinChoice.CANDIDATE) is None


def test_the_policies_are_one_class_on_the_server_and_in_the_device_sdk() -> None:
    from pocketml import delivery, device

    assert delivery.HybridPolicy is device.HybridPolicy is protocol.HybridPolicy
    assert delivery.DownloadPolicy is device.DownloadPolicy is protocol.DownloadPolicy
    assert device.PackageRef is protocol.PackageRef
    assert [f.name for f in dataclasses.fields(protocol.PackageRef)] == [
        s.name for s in protocol.PACKAGE_FIELDS
    ]
    assert [f.name for f in dataclasses.fields(protocol.HybridPolicy)] == [
        s.name for s in protocol.HYBRID_POLICY_FIELDS
    ]
    assert [f.name for f in dataclasses.fields(protocol.DownloadPolicy)] == [
        s.name for s in protocol.DOWNLOAD_POLICY_FIELDS
    ]


def test_names_that_meant_two_things_are_one_noun_each() -> None:
    import pocketml.device
    import pocketml.registry
    import pocketml.server.schemas_device as wire

    assert "PackageRef" not in pocketml.registry.__all__  # its storage ref is StoredPackage
    assert not hasattr(wire, "Prediction") and not hasattr(wire, "DownloadEvent")
    assert "DeviceFacts" not in pocketml.delivery.__all__  # the server's is CheckinFacts
    for name in ("DeviceFacts", "HybridPolicy", "DownloadPolicy", "PackageRef", "Prediction"):
        assert name in pocketml.device.__all__  # the SDK's public names stay importable
    assert "DownloadEvent" in pocketml.device.__all__


# ---------------------------------------------------------------- a field added in one place


def test_every_error_code_is_spelled_by_the_catalog_pattern() -> None:
    import re

    for cls in _all_error_classes() | {row.error for row in protocol.ERROR_CATALOG}:
        assert re.fullmatch(protocol.ERROR_CODE_PATTERN[1:-1], cls.code), cls
    for code in protocol.TRANSPORT_CODES:
        assert re.fullmatch(protocol.ERROR_CODE_PATTERN[1:-1], code)


def _error_batch(**extra: object) -> dict[str, object]:
    event = {"type": "error", "ts": 1.0, "model": "digits", "stage": "verify", "message": "m"}
    return {"batch_id": "b-0123456789", "device_id": "d-0123456789", "events": [event | extra]}


def test_an_error_event_carries_its_error_code_from_intake_to_parquet(tmp_path: Path) -> None:
    import json
    from datetime import UTC, datetime

    import pyarrow.parquet as pq

    from pocketml.server.device_api._telemetry_check import decode_batch
    from pocketml.server.routes.telemetry import BatchRejected, validate_batch
    from pocketml.telemetry._chunks import decode_payload, draft_chunks
    from pocketml.telemetry._parquet import ExportChunk, write_partition

    body = _error_batch(code="integrity_failed")
    fast = decode_batch(json.dumps(body).encode())
    strict = validate_batch(body, 10)
    assert fast is not None and fast.events[0].code == "integrity_failed"
    assert strict.events[0]["code"] == "integrity_failed"
    assert decode_batch(json.dumps(_error_batch(code="Bad Code")).encode()) is None
    with pytest.raises(BatchRejected, match=r"events\[0\]\.code"):
        validate_batch(_error_batch(code="Bad Code"), 10)

    for events in (fast.events, strict.events):  # typed Structs and plain dicts alike
        (chunk,) = draft_chunks(events)
        table = decode_payload(chunk.payload)
        assert table.column("code").to_pylist() == ["integrity_failed"]
    (older,) = draft_chunks(validate_batch(_error_batch(), 10).events)
    assert decode_payload(older.payload).column("code").to_pylist() == [None]

    received = datetime(2026, 1, 1, tzinfo=UTC)
    export = ExportChunk(1, "app", "b", "digits", "d", None, None, None, received, table)
    path = write_partition(tmp_path, [export])
    assert pq.read_table(path).column("code").to_pylist() == ["integrity_failed"]
