"""The derived tables agree with ``pocketml.protocol``: errors, formats, file hashes.

Every copy of a protocol noun elsewhere (the server's status table, the OpenAPI error
responses, the pydantic ``Literal`` of formats, the package member extensions) is checked
here against its one home, so a protocol change that misses a copy fails a test.
"""

from __future__ import annotations

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
    documented = 0
    for operations in app.openapi()["paths"].values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if not str((schema or {}).get("$ref", "")).endswith("/ErrorBody"):
                    continue  # FastAPI's own "Validation Error" entries (another issue item)
                codes = protocol.codes_for(int(status))
                assert codes, f"status {status} has no catalog row"
                assert response["description"].endswith(
                    "Codes: " + ", ".join(f"`{code}`" for code in codes) + "."
                )
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

    from pocketml.server.routes._telemetry_check import EVENT_STRUCTS

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

    from pocketml.server.routes._telemetry_check import decode_batch
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

    declared = ["type", *dict.fromkeys(s.name for kind in _kinds() for s in kind.all_fields)]
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
    import subprocess
    import sys

    code = (
        "import sys, pocketml.protocol\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['pocketml']"
