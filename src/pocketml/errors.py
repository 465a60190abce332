"""The pocketml exception tree: every failure a user can cause or see is one of these.

    PocketMLError                  base; carries a stable ``code`` for the CLI and the API
    ├── InvalidInput (ValueError)  bad argument, file, config, request body
    │   ├── ValidationFailed       a well-formed request whose fields fail their contract (422)
    │   │   └── PrivacyBudgetExceeded  a noisy profile event over its device's daily epsilon
    │   ├── MalformedJson          a request body that is not JSON
    │   ├── MalformedGzip          a gzip request body that does not inflate
    │   ├── SchemaError            a malformed ModelSchema
    │   ├── DataValidationError    data that violates a schema (carries the report)
    │   ├── UnsupportedMediaType   a request body of a Content-Type the route does not take
    │   └── RangeNotSatisfiable    a ``Range`` header that selects no byte of a package
    ├── NotFound                   an object or file that does not exist
    ├── Conflict                   the object exists already / state forbids the change
    ├── PayloadTooLarge            an upload or batch over the configured limit
    ├── HeadersTooLarge            request headers over the configured limits
    ├── Unauthorized               no or wrong credentials
    ├── Forbidden                  credentials valid, but not for this object or route
    ├── ConversionError            a model could not be converted to a target format
    │   ├── UnsupportedError       an operator, layer or model type the target lacks
    │   └── ParityError            the converted file computes something else
    ├── IntegrityError             bytes that fail a hash, signature or format check
    ├── Unavailable                a dependency (server, network, store) cannot be reached
    └── MissingDependencyError (ImportError)
                                   an optional library is not installed; names the extra

Each class's code and HTTP status are one row of ``pocketml.protocol.ERROR_CATALOG``.
Foreign exceptions (onnx, torch, SQLAlchemy, httpx, ...) are translated at the seam with
``raise ... from exc`` so users never see a library's internals.
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "ConversionError",
    "DataValidationError",
    "Forbidden",
    "HeadersTooLarge",
    "IntegrityError",
    "InvalidInput",
    "MalformedGzip",
    "MalformedJson",
    "MissingDependencyError",
    "NotFound",
    "ParityError",
    "PayloadTooLarge",
    "PocketMLError",
    "PrivacyBudgetExceeded",
    "RangeNotSatisfiable",
    "SchemaError",
    "Unauthorized",
    "Unavailable",
    "UnsupportedError",
    "UnsupportedMediaType",
    "ValidationFailed",
]


class PocketMLError(Exception):
    """Base of every pocketml error. ``code`` is stable and machine-readable."""

    code = "pocketml_error"


class InvalidInput(PocketMLError, ValueError):
    """An argument, file, config or request that does not have the expected form."""

    code = "invalid_input"


class ValidationFailed(InvalidInput):
    """A well-formed request whose fields fail their contract; the message names each one.

    The same code as ``InvalidInput`` (clients see ``invalid_input``), another status:
    HTTP 422 (Unprocessable Content) rather than 400.
    """

    code = "invalid_input"

    @classmethod
    def of(cls, error: InvalidInput) -> ValidationFailed:
        """``error`` answered as a 422, keeping its message and code."""
        failure = cls(str(error))
        failure.code = error.code
        return failure


class PrivacyBudgetExceeded(ValidationFailed):
    """A noisy ``profile`` event would take its device's UTC day over the version policy's
    ``epsilon_per_day`` (HTTP 422 naming ``events[i].epsilon``; nothing of the batch is
    stored)."""

    code = "privacy_budget_exceeded"


class MalformedJson(InvalidInput):
    """A request body that is not JSON (HTTP 400, code ``malformed_json``)."""

    code = "malformed_json"


class MalformedGzip(InvalidInput):
    """A body sent as ``Content-Encoding: gzip`` that does not inflate (HTTP 400, code
    ``malformed_gzip``)."""

    code = "malformed_gzip"


class RangeNotSatisfiable(InvalidInput):
    """A ``Range`` header that selects no byte of a package (HTTP 416).

    ``size`` is the package's size when the server raises it (it answers
    ``Content-Range: bytes */<size>``); ``None`` when a client rebuilds the error.
    """

    code = "range_not_satisfiable"

    def __init__(self, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.size = size


class SchemaError(InvalidInput):
    """A ModelSchema (or its JSON) is malformed; the message names the field."""

    code = "invalid_schema"


class DataValidationError(InvalidInput):
    """Data violates a schema. ``report`` holds every violation with its row."""

    code = "invalid_data"

    def __init__(self, message: str, report: object | None = None) -> None:
        super().__init__(message)
        self.report = report


class UnsupportedMediaType(InvalidInput):
    """A request body whose Content-Type the route does not take."""

    code = "unsupported_media_type"


class NotFound(PocketMLError):
    """The object or file asked for does not exist."""

    code = "not_found"


class Conflict(PocketMLError):
    """The object exists already, or its state does not allow the change."""

    code = "conflict"


class PayloadTooLarge(PocketMLError):
    """An upload or batch is larger than the configured limit."""

    code = "payload_too_large"


class HeadersTooLarge(PocketMLError):
    """Too many request headers, one too long, or too many header bytes in total."""

    code = "headers_too_large"


class Unauthorized(PocketMLError):
    """No credentials, or credentials that match nothing."""

    code = "unauthorized"


class Forbidden(PocketMLError):
    """Valid credentials that do not grant this route or object."""

    code = "forbidden"


class ConversionError(PocketMLError):
    """A model could not be converted to the requested target."""

    code = "conversion_failed"


class UnsupportedError(ConversionError):
    """The target format has no support for an operator, layer or model type."""

    code = "unsupported"


class ParityError(ConversionError):
    """A converted model's outputs differ from the source model's beyond tolerance."""

    code = "parity_failed"


class IntegrityError(PocketMLError):
    """Bytes failed a hash, signature or format check."""

    code = "integrity_failed"


class Unavailable(PocketMLError):
    """A server, network or store needed for the operation cannot be reached."""

    code = "unavailable"


class MissingDependencyError(PocketMLError, ImportError):
    """An optional dependency is missing; the message gives the pip command to fix it."""

    code = "missing_dependency"

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        what = f" ({purpose})" if purpose else ""
        super().__init__(
            f"{package} is required{what} but is not installed. "
            f"Install it with: pip install 'pocketml[{extra}]'"
        )
        self.package = package
        self.extra = extra
