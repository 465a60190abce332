"""The error catalog: one row per error class (class <-> code <-> HTTP status).

Before it the admin client and the device SDK each had their own status -> error table
(with different rows) and 422 was written by hand in five routes. The server's status
table, the OpenAPI error responses and both clients derive from ``ERROR_CATALOG``.

- ``ERROR_CATALOG``: one row per error class of ``pocketml.errors``: the class, its code
  (the class's ``code``) and its HTTP status. A subclass elsewhere inherits the row of its
  nearest ancestor in the catalog (``status_for``); a client turns an answer back into the
  class with ``error_class``. ``TRANSPORT_CODES`` are the codes sent without a class.
- ``ERROR_CODE_PATTERN``: how every code is spelled (lower-case snake case, at most 64
  characters), so a code can be stored and grouped on (telemetry error events carry one).
"""

from __future__ import annotations

from dataclasses import dataclass

from pocketml import errors as e

__all__ = [
    "ERROR_CATALOG",
    "ERROR_CODE_PATTERN",
    "TRANSPORT_CODES",
    "ErrorRow",
    "codes_for",
    "error_class",
    "http_code",
    "is_masked",
    "status_for",
]

ERROR_CODE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


@dataclass(frozen=True)
class ErrorRow:
    """One error of the protocol: the class, its stable code and its HTTP status."""

    error: type[e.PocketMLError]
    status: int

    @property
    def code(self) -> str:
        """The machine-readable code sent in ``{"error": {"code": ...}}``."""
        return self.error.code


# The one table. The first row of a status is the class a client raises for an answer of
# that status whose code it does not know.
ERROR_CATALOG: tuple[ErrorRow, ...] = (
    ErrorRow(e.InvalidInput, 400),
    ErrorRow(e.MalformedJson, 400),
    ErrorRow(e.MalformedGzip, 400),
    ErrorRow(e.DataValidationError, 400),
    ErrorRow(e.Unauthorized, 401),
    ErrorRow(e.Forbidden, 403),
    ErrorRow(e.NotFound, 404),
    ErrorRow(e.Conflict, 409),
    ErrorRow(e.PayloadTooLarge, 413),
    ErrorRow(e.UnsupportedMediaType, 415),
    ErrorRow(e.RangeNotSatisfiable, 416),
    ErrorRow(e.ValidationFailed, 422),
    ErrorRow(e.PrivacyBudgetExceeded, 422),
    ErrorRow(e.SchemaError, 422),
    ErrorRow(e.IntegrityError, 422),
    ErrorRow(e.ConversionError, 422),
    ErrorRow(e.UnsupportedError, 422),
    ErrorRow(e.ParityError, 422),
    ErrorRow(e.HeadersTooLarge, 431),
    ErrorRow(e.PocketMLError, 500),
    ErrorRow(e.Unavailable, 503),
    ErrorRow(e.MissingDependencyError, 503),
)

# Codes the server sends for failures that are no pocketml error (a framework's 400, an
# unknown method, an unhandled exception), with the class a client raises for them.
TRANSPORT_CODES: dict[str, ErrorRow] = {
    "bad_request": ErrorRow(e.InvalidInput, 400),
    "method_not_allowed": ErrorRow(e.InvalidInput, 405),
    "not_acceptable": ErrorRow(e.InvalidInput, 406),
    "internal_error": ErrorRow(e.PocketMLError, 500),
}
_TRANSPORT_BY_STATUS = {row.status: code for code, row in TRANSPORT_CODES.items()}

_STATUS_BY_CLASS = {row.error: row.status for row in ERROR_CATALOG}
_CLASS_BY_KEY = {(row.status, row.code): row.error for row in reversed(ERROR_CATALOG)}
_CLASS_BY_CODE = {row.code: row.error for row in reversed(ERROR_CATALOG)}
_CLASS_BY_STATUS = {row.status: row.error for row in reversed(ERROR_CATALOG)}
_CLASS_BY_CODE.update({code: row.error for code, row in TRANSPORT_CODES.items()})
# Errors whose message a 5xx answer shows: they say what is down, not how the server works.
_SHOWN_5XX = (e.Unavailable, e.MissingDependencyError)


def status_for(error: e.PocketMLError | type[e.PocketMLError]) -> int:
    """The HTTP status of a pocketml error (or error class).

    Args:
        error: any ``PocketMLError`` or subclass.

    Returns:
        The status of the nearest class in ``ERROR_CATALOG`` along the MRO.
    """
    cls = error if isinstance(error, type) else type(error)
    for base in cls.__mro__:
        if base in _STATUS_BY_CLASS:
            return _STATUS_BY_CLASS[base]
    return 500


def codes_for(status: int) -> tuple[str, ...]:
    """Every code an error answer of ``status`` may carry (catalog rows, then transport).

    Args:
        status: an HTTP status.

    Returns:
        The codes in catalog order, without repeats; empty for a status no error has.
    """
    codes = [row.code for row in ERROR_CATALOG if row.status == status]
    codes += [code for code, row in TRANSPORT_CODES.items() if row.status == status]
    return tuple(dict.fromkeys(codes))


def is_masked(error: BaseException) -> bool:
    """True when an answer must hide ``error``'s message (an internal failure, a 5xx).

    Args:
        error: the exception a request failed with.

    Returns:
        False for 4xx errors and for ``Unavailable`` / ``MissingDependencyError``.
    """
    if not isinstance(error, e.PocketMLError):
        return True
    return status_for(error) >= 500 and not isinstance(error, _SHOWN_5XX)


def http_code(status: int) -> str:
    """The code of an error answer that a framework (not a pocketml error) produced.

    Args:
        status: the HTTP status (an unknown route's 404, a wrong method's 405, ...).

    Returns:
        The transport code of the status, else the code of its first catalog row (4xx),
        else ``"http_error"``.
    """
    if status in _TRANSPORT_BY_STATUS:
        return _TRANSPORT_BY_STATUS[status]
    if status < 500 and status in _CLASS_BY_STATUS:
        return _CLASS_BY_STATUS[status].code
    return "http_error"


def error_class(status: int, code: str | None = None) -> type[e.PocketMLError]:
    """The class a client raises for an error answer ``(status, code)``.

    The exact row of (status, code) first, then the code alone, then the status's first
    row, else ``PocketMLError``. A server's missing dependency is ``Unavailable`` to a
    client (nothing the client installs fixes it).

    Args:
        status: the HTTP status of the answer.
        code: its ``error.code``, if the body had the error shape.

    Returns:
        A ``PocketMLError`` subclass whose constructor takes one message.
    """
    key = code or ""
    cls = (
        _CLASS_BY_KEY.get((status, key))
        or _CLASS_BY_CODE.get(key)
        or _CLASS_BY_STATUS.get(status, e.PocketMLError)
    )
    return e.Unavailable if cls is e.MissingDependencyError else cls
