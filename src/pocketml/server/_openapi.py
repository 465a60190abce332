"""The OpenAPI document as the protocol really is: its headers and its one error body.

FastAPI derives the document from the routes, which knows nothing of what happens around
them: the request guard (431, 413, 415 and 401 before a route runs), the error handlers
(every error is ``{"error": {"code", "message", "request_id"}}``, a 422 included, never
FastAPI's ``HTTPValidationError``), the ``X-Request-ID`` echo, and the HTTP caching and
range headers of check-in and packages. A client written from the document alone had to
guess those, so ``complete_openapi`` post-processes the generated document once:

- each error status is ONE shared response in ``components/responses`` (``Error404``,
  ...), its description and example built from ``pocketml.protocol.ERROR_CATALOG`` (the
  codes a status can carry), and every operation refers to it: no description is copied;
- every operation lists the statuses the server can answer it with: its own, plus 431 and
  500 everywhere, 401 where it is secured, 413 and 415 where it takes a body;
- the package downloads say that a credential is optional (``security`` lists ``{}``);
- the headers are declared once in ``components/headers`` and ``components/parameters``
  and referred to where they apply (``X-Request-ID`` on every answer, ``ETag`` /
  ``If-None-Match`` on check-in, ``Range`` / ``If-Range`` / ``Content-Range`` /
  ``Accept-Ranges`` / ``ETag`` / ``Cache-Control`` on packages, ``Retry-After`` on 503).

``install_openapi(app)`` makes ``app.openapi()`` (and so ``/openapi.json`` and ``/docs``)
serve the completed document, built once on first use.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from pocketml.protocol import ERROR_CATALOG, TRANSPORT_CODES

__all__ = ["complete_openapi", "install_openapi"]

_ERROR_BODY = "#/components/schemas/ErrorBody"

# What a status means to a client; the codes it can carry come from the catalog.
_MEANING = {
    400: "The request is malformed (bad JSON, invalid gzip, not multipart, ...).",
    401: "No `Authorization: Bearer` token, or one that matches nothing (or has ended).",
    403: "A valid token that may not call this route.",
    404: "No such object in the caller's app (objects of other apps are never revealed).",
    405: "This path does not answer this method.",
    409: "The object exists already, or its state forbids the change.",
    413: "The body (or one upload) is larger than the server accepts.",
    415: "The body's `Content-Type` (or `Content-Encoding`) is not the one this route takes.",
    416: "The `Range` selects no byte of the package.",
    422: "A field has the wrong type or value; the message names it (`field.path`).",
    431: "Too many request headers, or too long.",
    500: "An unexpected failure; the details are in the server log under the request id.",
    503: "A store or service the server needs is unavailable; retry with backoff.",
}

_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id: your `X-Request-ID` echoed when it matches "
        "`^[A-Za-z0-9._:-]{1,128}$`, else one the server made. Quote it in bug reports.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
    },
    "ETag": {
        "description": "Strong validator: the manifest's sha256 (check-in) or the package "
        'id (packages), in double quotes, e.g. `"9f86d0..."`.',
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "Packages: `public, max-age=31536000, immutable` when the app's "
        "packages are public (a CDN may keep them), else `private, ...`. Check-in: "
        "`private, no-cache`.",
        "schema": {"type": "string"},
    },
    "Accept-Ranges": {
        "description": "`bytes`: a download can be resumed with `Range`.",
        "schema": {"type": "string", "enum": ["bytes"]},
    },
    "Content-Range": {
        "description": "206: `bytes <first>-<last>/<size>`. 416: `bytes */<size>`.",
        "schema": {"type": "string"},
    },
    "Content-Length": {
        "description": "Bytes of this answer's body (of the range, for 206).",
        "schema": {"type": "integer", "minimum": 0},
    },
    "Retry-After": {
        "description": "When present, seconds to wait before retrying; honour it over "
        "your own backoff. This server does not send it today.",
        "schema": {"type": "integer", "minimum": 0},
    },
}

_PARAMETERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "name": "X-Request-ID",
        "in": "header",
        "required": False,
        "description": "Your id for this request, echoed in the answer and the server log.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
    },
    "If-None-Match": {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "description": "The `ETag` of the manifest you hold: an unchanged one answers 304.",
        "schema": {"type": "string"},
    },
    "Range": {
        "name": "Range",
        "in": "header",
        "required": False,
        "description": "One byte range, `bytes=<first>-[<last>]` or `bytes=-<n>`, to resume "
        "a cut download (206). Other forms are ignored (the whole package, 200).",
        "schema": {"type": "string", "maxLength": 1024},
    },
    "If-Range": {
        "name": "If-Range",
        "in": "header",
        "required": False,
        "description": "The package id you resumed, in double quotes: when it is not this "
        "package's `ETag`, the whole package is sent (200) instead of the range.",
        "schema": {"type": "string"},
    },
}

# The operations whose answers carry caching and range headers.
_CHECKIN = "/v1/checkin"
_PACKAGE = "/v1/packages/{package_id}"
_PACKAGE_HEADERS = ("ETag", "Cache-Control", "Accept-Ranges", "Content-Length")


def _codes(status: int) -> list[str]:
    codes = [row.code for row in ERROR_CATALOG if row.status == status]
    codes += [code for code, row in TRANSPORT_CODES.items() if row.status == status]
    return list(dict.fromkeys(codes))


def _error_response(status: int) -> dict[str, Any]:
    codes = _codes(status)
    listed = ", ".join(f"`{code}`" for code in codes) or "none"
    example = {
        "error": {
            "code": codes[0] if codes else "error",
            "message": "What was expected, what was given, and what to do.",
            "request_id": "5f0c2b7e8a9d4c1e00000001",
        }
    }
    headers: dict[str, Any] = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
    if status == 503:
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    if status == 416:
        headers["Content-Range"] = {"$ref": "#/components/headers/Content-Range"}
    return {
        "description": f"{_MEANING.get(status, 'An error.')} Codes: {listed}.",
        "headers": headers,
        "content": {"application/json": {"schema": {"$ref": _ERROR_BODY}, "example": example}},
    }


def _statuses(path: str, operation: dict[str, Any]) -> set[int]:
    """Every error status the server may answer this operation with."""
    own = {int(s) for s in operation.get("responses", {}) if _is_error(s)}
    always = {431, 500}
    if operation.get("security") or path.startswith("/v1/admin"):
        always.add(401)
    if "requestBody" in operation:
        always |= {413, 415}
    return own | always


def _is_error(status: object) -> bool:
    return str(status).isdigit() and int(str(status)) >= 400


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _add_parameters(operation: dict[str, Any], names: tuple[str, ...]) -> None:
    params = operation.setdefault("parameters", [])
    present = {p.get("name") for p in params} | {p.get("$ref") for p in params}
    for name in names:
        ref = _ref("parameters", name)
        if name not in present and ref["$ref"] not in present:
            params.append(ref)


def _add_headers(response: dict[str, Any], names: tuple[str, ...]) -> None:
    headers = response.setdefault("headers", {})
    for name in names:
        headers.setdefault(name, _ref("headers", name))


def _complete_operation(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status in sorted(_statuses(path, operation)):
        responses[str(status)] = _ref("responses", f"Error{status}")
    for key, response in responses.items():
        if "$ref" not in response:
            _add_headers(response, ("X-Request-ID",))
            if path == _CHECKIN and key in ("200", "304"):
                _add_headers(response, ("ETag",))
            if path == _PACKAGE and key in ("200", "206"):
                _add_headers(response, _PACKAGE_HEADERS)
                if key == "206":
                    _add_headers(response, ("Content-Range",))
    _add_parameters(operation, ("X-Request-ID",))
    if path == _CHECKIN:
        _add_parameters(operation, ("If-None-Match",))
    if path == _PACKAGE:
        _add_parameters(operation, ("Range", "If-Range"))
        # A public app's package needs no credential: `{}` is OpenAPI's "or anonymous".
        security = operation.setdefault("security", [])
        if {} not in security:
            security.append({})
    operation["responses"] = dict(sorted(responses.items()))


def _drop_unreferenced(document: dict[str, Any], names: tuple[str, ...]) -> None:
    schemas = document.get("components", {}).get("schemas", {})
    for name in names:
        others = {k: v for k, v in schemas.items() if k != name}
        text = repr(document["paths"]) + repr(others)
        if f"#/components/schemas/{name}'" not in text:
            schemas.pop(name, None)


def complete_openapi(generated: dict[str, Any]) -> dict[str, Any]:
    """The generated OpenAPI document with the protocol's headers and error bodies.

    Args:
        generated: what FastAPI's ``app.openapi()`` built (not changed).

    Returns:
        A new document; see the module docstring for what it adds.
    """
    document = copy.deepcopy(generated)
    components = document.setdefault("components", {})
    statuses: set[int] = set()
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                _complete_operation(path, operation)
                statuses |= {int(s) for s in operation["responses"] if _is_error(s)}
    components["responses"] = {f"Error{s}": _error_response(s) for s in sorted(statuses)}
    components["headers"] = copy.deepcopy(_HEADERS)
    components["parameters"] = copy.deepcopy(_PARAMETERS)
    _drop_unreferenced(document, ("HTTPValidationError",))
    _drop_unreferenced(document, ("ValidationError",))
    return document


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` serve ``complete_openapi`` of the generated document.

    Call it once, after every router is included; the document is built on first use.
    """
    generate: Callable[[], dict[str, Any]] = app.openapi
    built: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        if not built:
            built.append(complete_openapi(generate()))
            app.openapi_schema = built[0]
        return built[0]

    app.openapi = openapi  # type: ignore[method-assign]
