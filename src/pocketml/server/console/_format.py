"""Numbers formatted for people, registered as Jinja2 filters of the console.

Every number on a console page goes through one of these: 3-4 significant digits,
thousands separators, a unit, and an em dash for "no value" (``None`` or NaN), so a page
never shows ``0.9612345678901234`` or ``nan``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import Undefined

__all__ = ["FILTERS", "ago", "at", "count", "duration", "num", "pct", "seconds", "size", "when"]

NO_VALUE = "—"


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool | Undefined):  # a missing key prints "—"
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def num(value: Any, digits: int = 3) -> str:
    """``digits`` significant digits (at least), thousands separators, no exponent.

    Integers print whole (``12,345``); a float at or above ``10**digits`` is rounded to a
    whole number (``12,346``); smaller ones keep ``digits`` significant digits
    (``0.962``, ``12.3``, ``0.00123``); below 1e-6 an exponent is clearer (``3.2e-09``).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    number = _finite(value)
    if number is None:
        return NO_VALUE
    if number == 0:
        return "0"
    magnitude = abs(number)
    if magnitude >= 10**digits:
        return f"{round(number):,}"
    if magnitude < 1e-6:
        return f"{number:.{digits - 1}e}"
    decimals = max(0, digits - 1 - math.floor(math.log10(magnitude)))
    text = f"{number:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def count(value: Any) -> str:
    """A whole count with thousands separators (``1,234,567``)."""
    number = _finite(value)
    return NO_VALUE if number is None else f"{round(number):,}"


def pct(value: Any, digits: int = 3) -> str:
    """A fraction as a percentage with ``digits`` significant digits (``0.1234`` → ``12.3 %``)."""
    number = _finite(value)
    return NO_VALUE if number is None else f"{num(number * 100, digits)} %"


def duration(value_ms: Any) -> str:
    """Milliseconds for people: ``0.42 ms``, ``12.3 ms``, ``1.23 s``, ``2.5 min``."""
    number = _finite(value_ms)
    if number is None:
        return NO_VALUE
    if abs(number) < 1000:
        return f"{num(number)} ms"
    if abs(number) < 120_000:
        return f"{num(number / 1000)} s"
    if abs(number) < 7_200_000:
        return f"{num(number / 60_000)} min"
    return f"{num(number / 3_600_000)} h"


_UNITS = ("B", "KB", "MB", "GB", "TB")


def size(value: Any) -> str:
    """Bytes in decimal units with 3 significant digits (``1.23 MB``)."""
    number = _finite(value)
    if number is None:
        return NO_VALUE
    unit = 0
    while abs(number) >= 1000 and unit < len(_UNITS) - 1:
        number /= 1000
        unit += 1
    return f"{round(number):,} B" if unit == 0 else f"{num(number)} {_UNITS[unit]}"


def when(value: datetime | None) -> str:
    """A timestamp in UTC to the minute (``2026-12-05 09:31 UTC``)."""
    if value is None:
        return NO_VALUE
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago, coarse (``just now``, ``5 min ago``, ``3 h ago``, ``12 days ago``)."""
    if value is None:
        return NO_VALUE
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = (now or datetime.now(UTC)) - value
    if delta < timedelta(minutes=1):
        return "just now"
    if delta < timedelta(hours=1):
        return f"{int(delta.total_seconds() // 60)} min ago"
    if delta < timedelta(days=2):
        return f"{int(delta.total_seconds() // 3600)} h ago"
    return f"{delta.days} days ago"


def seconds(value_s: Any) -> str:
    """Seconds for people, like ``duration``: ``45 s``, ``6 h``, ``3 days``."""
    number = _finite(value_s)
    if number is None:
        return NO_VALUE
    if abs(number) >= 172_800:
        return f"{num(number / 86_400)} days"
    return duration(number * 1000)


def at(value_s: Any) -> str:
    """Unix seconds as ``when`` prints a timestamp (``2026-12-05 09:31 UTC``)."""
    number = _finite(value_s)
    return NO_VALUE if number is None else when(datetime.fromtimestamp(number, UTC))


FILTERS = {
    "num": num,
    "count": count,
    "pct": pct,
    "duration": duration,
    "size": size,
    "when": when,
    "ago": ago,
    "seconds": seconds,
    "at": at,
}


# Filters the ship pages added: a rollout's share, differences, p-values.


def percent(value: Any, digits: int = 3) -> str:
    """A number that already is a percentage (a rollout's ``12.5``) as ``12.5 %``."""
    number = _finite(value)
    return NO_VALUE if number is None else f"{num(number, digits)} %"


def signed(value: Any, digits: int = 3) -> str:
    """A difference with its sign (``+0.012``, ``−3.4``, ``0``): which way it moved."""
    number = _finite(value)
    if number is None:
        return NO_VALUE
    if number == 0:
        return "0"
    text = num(abs(number), digits)
    return f"+{text}" if number > 0 else f"\u2212{text}"


def pvalue(value: Any) -> str:
    """A p-value to 2 significant digits, floored at ``< 0.001`` (more digits mean nothing)."""
    number = _finite(value)
    if number is None:
        return NO_VALUE
    if number < 0.001:
        return "< 0.001"
    return num(number, 2)


FILTERS.update({"percent": percent, "signed": signed, "pvalue": pvalue})
