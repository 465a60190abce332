"""Every JSON example of docs/protocol.md is what the server accepts and answers.

Each ```json block of the page is preceded by a marker
``<!-- example: request|response METHOD PATH STATUS -->``. A request example is sent,
as written, to a live server holding the documented model (its schema is the one of the
documented check-in answer; the cloud model takes that schema's shape), and must get the
documented status. A response example must have the same field names, at every depth, as
the real answer of that request. A block without a marker fails the test, so an example
cannot be added without being checked.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pocketml.testing import AppKeys, LiveServer, live_server, model_variant, server_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
_MARKED = re.compile(
    r"<!-- example: (request|response) ([A-Z]+) (\S+) (\d{3}) -->\n```json\n(.*?)\n```", re.S
)
_ANY_JSON = re.compile(r"```json\n")


def _examples() -> list[tuple[str, str, str, int, Any]]:
    text = DOC.read_text(encoding="utf-8")
    found = [(k, m, p, int(s), json.loads(body)) for k, m, p, s, body in _MARKED.findall(text)]
    assert len(found) == len(_ANY_JSON.findall(text)), "a ```json block has no example marker"
    return found


def _documented(kind: str) -> list[tuple[str, str, int, Any]]:
    return [(m, p, s, body) for k, m, p, s, body in _examples() if k == kind]


def _onnx_8x8(path: Path, seed: int) -> Path:
    """A runnable ONNX model for the documented schema: (N, 1, 8, 8) -> 10 probabilities."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(seed).normal(size=(64, 10)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "digits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _documented_schema() -> dict[str, Any]:
    checkin = next(b for m, p, s, b in _documented("response") if (p, s) == ("/v1/checkin", 200))
    return dict(checkin["models"][0]["schema"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, AppKeys]]:
    work = tmp_path_factory.mktemp("work")
    with live_server(server_settings(tmp_path_factory.mktemp("home"))) as live:
        app = live.create_app("doc-app")
        schema = _documented_schema()
        for version in (1, 2, 3):
            cloud = _onnx_8x8(work / f"cloud-{version}.onnx", version)
            entry = {
                "name": "cnn-large-onnx-fp32",
                "format": "onnx",
                "precision": "fp32",
                "role": "cloud",
                "sha256": hashlib.sha256(cloud.read_bytes()).hexdigest(),
            }
            variants = [
                model_variant(
                    work,
                    "cnn-small-tflite-fp32",
                    fmt="tflite",
                    seed=version,
                    filename=f"t{version}",
                ),
                (entry, cloud),
            ]
            stage = "production" if version == 3 else None
            live.push(app, "digits", variants, schema=schema, stage=stage)
        yield live, app


def _send(live: LiveServer, app: AppKeys, method: str, path: str, body: Any) -> Any:
    token = app.admin_token if path.startswith("/v1/admin") else app.device_key
    with live.http(token) as http:
        return http.request(method, path, json=body)


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    _documented("request"),
    ids=[f"{m} {p} {s}" for m, p, s, _ in _documented("request")],
)
def test_a_documented_request_gets_the_documented_status(
    server: tuple[LiveServer, AppKeys], method: str, path: str, status: int, body: Any
) -> None:
    live, app = server

    response = _send(live, app, method, path, body)

    assert response.status_code == status, response.text


def _names(value: Any) -> Any:
    """The field names of a JSON value at every depth (lists: of their first item).

    A map keyed by ids (every key has a ``:``, e.g. ``ed25519:1df1...``) is a map, not
    fields: its keys are replaced by ``<id>``.
    """
    if isinstance(value, dict) and value and all(":" in key for key in value):
        return {"<id>": _names(next(iter(value.values())))}
    if isinstance(value, dict):
        return {key: _names(item) for key, item in sorted(value.items())}
    if isinstance(value, list) and value and isinstance(value[0], dict | list):
        return [_names(value[0])]
    return None


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    _documented("response"),
    ids=[f"{m} {p} {s}" for m, p, s, _ in _documented("response")],
)
def test_a_documented_answer_has_the_fields_of_the_real_answer(
    server: tuple[LiveServer, AppKeys], method: str, path: str, status: int, body: Any
) -> None:
    live, app = server
    request = next(
        (b for m, p, s, b in _documented("request") if (m, p, s) == (method, path, status)),
        None,
    )
    if request is None:  # e.g. a path with an id only a real upload has: the OpenAPI model
        assert set(body) == _openapi_fields(live, method, path, status)
        return

    response = _send(live, app, method, path, request)

    assert response.status_code == status, response.text
    assert _names(body) == _names(response.json())


def _openapi_fields(live: LiveServer, method: str, path: str, status: int) -> set[str]:
    with live.http() as http:
        document = http.get("/openapi.json").json()
    response = document["paths"][path][method.lower()]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    name = schema["$ref"].rsplit("/", 1)[-1]
    return set(document["components"]["schemas"][name]["properties"])
