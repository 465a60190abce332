"""The OpenAPI document declares the protocol's headers and its one error body.

Checked on the real ``create_app(...).openapi()``, completed by ``server/_openapi.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pocketml.protocol import ERROR_CATALOG, TRANSPORT_CODES
from pocketml.server._openapi import complete_openapi
from pocketml.server.app import create_app
from pocketml.testing import server_settings

PACKAGE = "/v1/packages/{package_id}"


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return create_app(server_settings(tmp_path_factory.mktemp("home"))).openapi()


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        _, *parts = node["$ref"].split("/")
        target: Any = document
        for part in parts:
            target = target[part]
        node = target
    return node


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if isinstance(op, dict) and "responses" in op
    ]


def parameter_names(document: dict[str, Any], op: dict[str, Any]) -> set[str]:
    return {resolve(document, p)["name"] for p in op.get("parameters", [])}


def header_names(document: dict[str, Any], response: dict[str, Any]) -> set[str]:
    return set(resolve(document, response).get("headers", {}))


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    from openapi_spec_validator import validate

    validate(document)


def test_no_operation_documents_fastapis_validation_error(document: dict[str, Any]) -> None:
    text = json.dumps(document)

    assert "HTTPValidationError" not in text
    assert "#/components/schemas/ValidationError" not in text


def test_every_error_answer_is_the_error_body_with_the_catalogs_codes(
    document: dict[str, Any],
) -> None:
    for path, method, op in operations(document):
        for status, response in op["responses"].items():
            if int(status) < 400:
                continue
            assert response == {"$ref": f"#/components/responses/Error{status}"}, (path, method)
    for name, response in document["components"]["responses"].items():
        status = int(name.removeprefix("Error"))
        codes = [row.code for row in ERROR_CATALOG if row.status == status]
        codes += [code for code, row in TRANSPORT_CODES.items() if row.status == status]
        content = response["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
        assert content["example"]["error"]["code"] == codes[0]
        assert response["description"].endswith(
            "Codes: " + ", ".join(f"`{c}`" for c in dict.fromkeys(codes)) + "."
        )


def test_no_error_description_is_copied_into_an_operation(document: dict[str, Any]) -> None:
    text = json.dumps(document["paths"])

    for response in document["components"]["responses"].values():
        assert response["description"] not in text


def test_guard_statuses_are_listed_where_the_guard_can_answer_them(
    document: dict[str, Any],
) -> None:
    for path, method, op in operations(document):
        statuses = set(op["responses"])
        assert {"431", "500"} <= statuses, (path, method)
        if op.get("security"):
            assert "401" in statuses, (path, method)
        if "requestBody" in op:
            assert {"413", "415"} <= statuses, (path, method)


def test_every_answer_carries_x_request_id_and_every_operation_accepts_it(
    document: dict[str, Any],
) -> None:
    for path, method, op in operations(document):
        assert "X-Request-ID" in parameter_names(document, op), (path, method)
        for status, response in op["responses"].items():
            assert "X-Request-ID" in header_names(document, response), (path, method, status)


@pytest.mark.parametrize("method", ["get", "head"])
def test_packages_declare_their_range_and_cache_headers(
    document: dict[str, Any], method: str
) -> None:
    op = document["paths"][PACKAGE][method]
    responses = op["responses"]

    assert {"Range", "If-Range"} <= parameter_names(document, op)
    for status in ("200", "206"):
        assert {"ETag", "Cache-Control", "Accept-Ranges", "Content-Length"} <= header_names(
            document, responses[status]
        )
    assert "Content-Range" in header_names(document, responses["206"])
    assert "Content-Range" in header_names(document, responses["416"])


def test_checkin_declares_etag_and_if_none_match(document: dict[str, Any]) -> None:
    op = document["paths"]["/v1/checkin"]["post"]

    assert "If-None-Match" in parameter_names(document, op)
    assert "ETag" in header_names(document, op["responses"]["200"])
    assert "ETag" in header_names(document, op["responses"]["304"])


def test_503_answers_declare_retry_after(document: dict[str, Any]) -> None:
    assert "Retry-After" in header_names(document, {"$ref": "#/components/responses/Error503"})


def test_completing_does_not_change_the_generated_document(tmp_path: Path) -> None:
    app = create_app(server_settings(tmp_path / "home"))
    generated = json.loads(json.dumps(app.openapi()))
    snapshot = json.dumps(generated, sort_keys=True)

    complete_openapi(generated)

    assert json.dumps(generated, sort_keys=True) == snapshot


@pytest.mark.parametrize("method", ["get", "head"])
def test_packages_say_a_credential_is_optional(document: dict[str, Any], method: str) -> None:
    security = document["paths"][PACKAGE][method]["security"]

    assert {} in security and any(scheme for scheme in security)
