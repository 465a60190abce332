"""Charts drawn on the server as small, accessible inline SVG (no JavaScript, no assets).

Four shapes cover the learn pages: ``time_series`` (several lines over a time axis, gaps
where a bucket has no value), ``histogram_pair`` (reference vs current shares per bin),
``bars`` (horizontal bars with their values written beside them) and ``sparkline`` (a
table cell's trend). Each answers ``Markup``: an ``<svg role="img">`` whose ``<title>``
and ``<desc>`` say what it shows and summarise the numbers for screen readers (the pages
print the same numbers in tables too), or a ``<p class="empty">`` when there is nothing to
draw (no points, or only NaN / None), never an empty frame.

Size: a series is downsampled to ``max_points`` buckets (the mean of each, None when a
bucket holds no value, so gaps stay gaps) and coordinates are written with one decimal,
so 90 days of minutes in 10 lines stays under ~25 KB. Every label is XML-escaped.
docs/development.md ("Console charts: server-side SVG") says why SVG on the server.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup

from pocketml.server.console._format import num, pct

__all__ = [
    "Series",
    "bars",
    "downsample",
    "histogram_pair",
    "no_data",
    "sparkline",
    "time_series",
]

# Colour-blind-safe (Okabe-Ito, darkened for contrast on white); dashes tell lines apart
# in grey-scale print too.
_COLOURS = ("#0b5fa5", "#c75a00", "#1b7f4c", "#a2387e", "#6b5b00", "#4a4a9c", "#8c2d2d", "#2f6f73")
_DASHES = ("", "6 3", "2 3", "8 3 2 3")
_REFERENCE = "#9aa5b4"
_CURRENT = "#0b5fa5"

Formatter = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    """One line of a time series.

    Attributes:
        label: its name in the legend.
        points: (unix seconds, value) pairs in time order; a None or NaN value is a gap.
    """

    label: str
    points: Sequence[tuple[float, float | None]]


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def no_data(what: str) -> Markup:
    """The "nothing to draw" paragraph that replaces a chart."""
    return Markup('<p class="empty">No data for {} yet.</p>').format(what)


def _chart_id(*parts: str) -> str:
    digest = hashlib.sha1("\x1f".join(parts).encode(), usedforsecurity=False).hexdigest()
    return f"c{digest[:10]}"


def _open(width: int, height: int, title: str, desc: str, extra: str = "") -> Markup:
    ident = _chart_id(title, desc)
    return Markup(
        '<svg class="chart{extra}" viewBox="0 0 {w} {h}" role="img" '
        'aria-labelledby="{i}-t {i}-d" xmlns="http://www.w3.org/2000/svg">'
        '<title id="{i}-t">{title}</title><desc id="{i}-d">{desc}</desc>'
    ).format(extra=extra, w=width, h=height, i=ident, title=title, desc=desc)


def downsample(
    points: Sequence[tuple[float, float | None]], max_points: int
) -> list[tuple[float, float | None]]:
    """At most ``max_points`` points: the mean time and value of equal-width time buckets.

    A bucket whose points are all gaps (None / NaN) stays a gap; empty buckets vanish.

    Args:
        points: (unix seconds, value) in time order.
        max_points: the most points to keep (>= 2).
    """
    clean = [(float(t), _finite(v)) for t, v in points if math.isfinite(float(t))]
    if len(clean) <= max_points:
        return clean
    start, end = clean[0][0], clean[-1][0]
    width = (end - start) / max_points or 1.0
    sums: dict[int, list[float]] = {}
    for t, v in clean:
        index = min(int((t - start) / width), max_points - 1)
        bucket = sums.setdefault(index, [0.0, 0.0, 0.0, 0.0])  # t sum, n, v sum, v n
        bucket[0] += t
        bucket[1] += 1
        if v is not None:
            bucket[2] += v
            bucket[3] += 1
    return [(b[0] / b[1], b[2] / b[3] if b[3] else None) for _, b in sorted(sums.items())]


def _nice_step(span: float, ticks: int) -> float:
    raw = span / max(ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _y_ticks(low: float, high: float) -> tuple[float, float, list[float]]:
    if low == high:  # a flat line: an axis from 0 (a share of 0 % reads 0 % to 100 %)
        low, high = (0.0, 1.0) if low == 0 else (low - abs(low) * 0.1, high + abs(high) * 0.1)
    step = _nice_step(high - low, 4)
    first = math.floor(low / step) * step
    last = math.ceil(high / step) * step
    count = round((last - first) / step)
    return first, last, [first + i * step for i in range(count + 1)]


_TIME_STEPS = (
    60,
    300,
    900,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86_400,
    2 * 86_400,
    7 * 86_400,
    14 * 86_400,
    30 * 86_400,
)


def _time_ticks(start: float, end: float, most: int = 6) -> list[tuple[float, str]]:
    span = max(end - start, 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= most), _TIME_STEPS[-1])
    ticks: list[tuple[float, str]] = []
    t = float(math.ceil(start / step) * step)
    while t <= end:
        moment = datetime.fromtimestamp(t, UTC)
        if step >= 86_400 or (moment.hour == 0 and moment.minute == 0):
            text = moment.strftime("%b %-d")
        else:
            text = moment.strftime("%H:%M")
        ticks.append((t, text))
        t += step
    return ticks


def _path(coords: Sequence[tuple[float, float] | None]) -> str:
    """An SVG path: a new sub-path (``M``) after every gap."""
    parts: list[str] = []
    pen_down = False
    for xy in coords:
        if xy is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{xy[0]:.1f} {xy[1]:.1f}")
        pen_down = True
    return "".join(parts)


def _summary(series: Sequence[Series], fmt: Formatter) -> str:
    lines = []
    for line in series:
        values = [v for _, v in line.points if v is not None]
        if not values:
            lines.append(f"{line.label}: no values")
            continue
        lines.append(
            f"{line.label}: latest {fmt(values[-1])}, min {fmt(min(values))}, "
            f"max {fmt(max(values))}"
        )
    return "; ".join(lines) + "."


def time_series(
    title: str,
    series: Sequence[Series],
    *,
    y_format: Formatter = num,
    y_min: float | None = None,
    width: int = 720,
    height: int = 220,
    max_points: int = 150,
) -> Markup:
    """Lines over a UTC time axis, with the y axis formatted by ``y_format``.

    Args:
        title: what it shows (the SVG's title, and the "no data" sentence).
        series: the lines; each is downsampled to ``max_points``.
        y_format: formats tick labels and the summary (``_format.num``, ``pct``, ...).
        y_min: pin the axis' low end (0 for counts and shares); None = fit the data.
        width, height: the viewBox (the chart scales to its container).
        max_points: the most points per line.

    Returns:
        The SVG, or a "no data" paragraph when no line has a finite value.
    """
    lines = [Series(s.label, downsample(s.points, max_points)) for s in series]
    values = [v for s in lines for _, v in s.points if v is not None]
    times = [t for s in lines for t, _ in s.points]
    if not values:
        return no_data(title)
    low = min(values) if y_min is None else min(y_min, *values)
    y0, y1, yticks = _y_ticks(low, max(values))
    t0, t1 = min(times), max(times)
    if t0 == t1:
        t0, t1 = t0 - 1800, t1 + 1800
    legend_rows = math.ceil(len(lines) / 3)
    left, right, top, bottom = 56, 12, 10 + 16 * legend_rows, 26
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return top + (1 - (v - y0) / (y1 - y0)) * plot_h

    out = [_open(width, height, title, _summary(lines, y_format))]
    for value in yticks:
        out.append(
            Markup(
                '<line x1="{l}" x2="{r}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e8ee"/>'
                '<text x="{tx}" y="{ty:.1f}" text-anchor="end">{label}</text>'
            ).format(
                l=left,
                r=width - right,
                y=y(value),
                tx=left - 4,
                ty=y(value) + 4,
                label=y_format(value),
            )
        )
    for t, label in _time_ticks(t0, t1):
        out.append(
            Markup(
                '<line x1="{x:.1f}" x2="{x:.1f}" y1="{t}" y2="{b}" stroke="#eef1f4"/>'
                '<text x="{x:.1f}" y="{ty}" text-anchor="middle">{label}</text>'
            ).format(x=x(t), t=top, b=top + plot_h, ty=height - 8, label=label)
        )
    for i, line in enumerate(lines):
        colour, dash = _COLOURS[i % len(_COLOURS)], _DASHES[(i // len(_COLOURS)) % len(_DASHES)]
        coords = [None if v is None else (x(t), y(v)) for t, v in line.points]
        dots = [xy for n, xy in enumerate(coords) if xy is not None and _isolated(coords, n)]
        out.append(
            Markup('<path d="{d}" fill="none" stroke="{c}" stroke-width="1.8"{dash}/>').format(
                d=_path(coords),
                c=colour,
                dash=Markup(f' stroke-dasharray="{dash}"') if dash else "",
            )
        )
        for px, py in dots:  # a point between two gaps has no line: draw it
            out.append(
                Markup('<circle cx="{:.1f}" cy="{:.1f}" r="2" fill="{}"/>').format(px, py, colour)
            )
        lx, ly = left + (i % 3) * (plot_w / 3), 12 + 16 * (i // 3)
        out.append(
            Markup(
                '<rect x="{x:.1f}" y="{y}" width="12" height="4" fill="{c}"/>'
                '<text x="{tx:.1f}" y="{ty}">{label}</text>'
            ).format(x=lx, y=ly - 4, c=colour, tx=lx + 16, ty=ly + 1, label=_short(line.label, 40))
        )
    out.append(Markup("</svg>"))
    return Markup("").join(out)


def _isolated(coords: Sequence[tuple[float, float] | None], n: int) -> bool:
    before = n == 0 or coords[n - 1] is None
    after = n == len(coords) - 1 or coords[n + 1] is None
    return before and after


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shares(counts: Sequence[float]) -> list[float] | None:
    clean = [c if math.isfinite(c) and c > 0 else 0.0 for c in map(float, counts)]
    total = sum(clean)
    return [c / total for c in clean] if total > 0 else None


def histogram_pair(
    title: str,
    labels: Sequence[str],
    reference: Sequence[float],
    current: Sequence[float],
    *,
    width: int = 720,
    height: int = 200,
) -> Markup:
    """Reference and current shares per bin, side by side (counts are normalised).

    Returns:
        The SVG, or a "no data" paragraph when neither side has a count.
    """
    ref, cur = _shares(reference), _shares(current)
    if (
        not labels
        or (ref is None and cur is None)
        or not len(labels) == len(reference) == len(current)
    ):
        return no_data(title)
    ref = ref or [0.0] * len(labels)
    cur = cur or [0.0] * len(labels)
    y0, y1, yticks = _y_ticks(0.0, max(*ref, *cur))
    left, right, top, bottom = 48, 8, 24, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / len(labels)
    desc = "; ".join(
        f"{label}: reference {pct(r)}, current {pct(c)}"
        for label, r, c in zip(labels[:12], ref, cur, strict=False)
    ) + ("; …" if len(labels) > 12 else ".")
    out = [_open(width, height, title, desc)]
    for value in yticks:
        py = top + (1 - (value - y0) / (y1 - y0)) * plot_h
        out.append(
            Markup(
                '<line x1="{l}" x2="{r}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e8ee"/>'
                '<text x="{tx}" y="{ty:.1f}" text-anchor="end">{label}</text>'
            ).format(l=left, r=width - right, y=py, tx=left - 4, ty=py + 4, label=pct(value, 2))
        )
    every = max(1, math.ceil(len(labels) / 6))
    bar_w = max(slot * 0.4, 0.5)
    for i, (label, r, c) in enumerate(zip(labels, ref, cur, strict=True)):
        bx = left + i * slot + slot * 0.1
        for offset, share, colour in ((0.0, r, _REFERENCE), (bar_w, c, _CURRENT)):
            bar_h = share / (y1 - y0) * plot_h
            out.append(
                Markup(
                    '<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}"/>'
                ).format(bx + offset, top + plot_h - bar_h, bar_w, bar_h, colour)
            )
        if i % every == 0:
            out.append(
                Markup('<text x="{:.1f}" y="{}" text-anchor="middle">{}</text>').format(
                    left + (i + 0.5) * slot, height - 18, _short(label, 12)
                )
            )
    for n, (name, colour) in enumerate((("reference", _REFERENCE), ("current", _CURRENT))):
        lx = left + n * 110
        out.append(
            Markup(
                '<rect x="{x}" y="6" width="12" height="10" fill="{c}"/>'
                '<text x="{tx}" y="15">{name}</text>'
            ).format(x=lx, c=colour, tx=lx + 16, name=name)
        )
    out.append(Markup("</svg>"))
    return Markup("").join(out)


def bars(
    title: str,
    items: Sequence[tuple[str, float]],
    *,
    value_format: Formatter = num,
    width: int = 480,
    row: int = 20,
    most: int = 20,
) -> Markup:
    """Horizontal bars, largest first, each with its label and formatted value.

    Args:
        title: what they show.
        items: (label, value) pairs; NaN and None values are left out.
        value_format: formats the value written beside each bar.
        width: the viewBox width; the height follows the number of bars.
        row: pixels per bar.
        most: the most bars drawn (the rest are summed into "others").

    Returns:
        The SVG, or a "no data" paragraph when no value is finite.
    """
    clean = [(label, v) for label, value in items if (v := _finite(value)) is not None]
    if not clean:
        return no_data(title)
    clean.sort(key=lambda item: -item[1])
    if len(clean) > most:
        rest = sum(v for _, v in clean[most - 1 :])
        clean = [*clean[: most - 1], (f"{len(clean) - most + 1} others", rest)]
    top = max(max(v for _, v in clean), 0.0) or 1.0
    label_w, value_w = 150, 70
    plot_w = width - label_w - value_w
    height = row * len(clean) + 4
    desc = "; ".join(f"{label}: {value_format(v)}" for label, v in clean) + "."
    out = [_open(width, height, title, desc)]
    for i, (label, value) in enumerate(clean):
        y = 2 + i * row
        bar_w = max(value, 0.0) / top * plot_w
        out.append(
            Markup(
                '<text x="{lx}" y="{ty}" text-anchor="end">{label}</text>'
                '<rect x="{x}" y="{y}" width="{w:.1f}" height="{h}" fill="{c}"/>'
                '<text x="{vx:.1f}" y="{ty}">{value}</text>'
            ).format(
                lx=label_w - 6,
                ty=y + row * 0.7,
                label=_short(label, 22),
                x=label_w,
                y=y + 3,
                w=bar_w,
                h=row - 6,
                c=_CURRENT,
                vx=label_w + bar_w + 4,
                value=value_format(value),
            )
        )
    out.append(Markup("</svg>"))
    return Markup("").join(out)


def sparkline(
    title: str,
    values: Sequence[float | None],
    *,
    reference: Sequence[float | None] = (),
    y_format: Formatter = num,
    width: int = 120,
    height: int = 28,
) -> Markup:
    """A table cell's trend: one line, no axes; ``reference`` (same length) is drawn
    behind it in grey, on the same scale.

    Returns:
        The SVG, or an em dash (a cell has no room for a sentence) with the title as
        its accessible name when no value is finite.
    """
    points = downsample([(float(i), v) for i, v in enumerate(values)], 60)
    behind = downsample([(float(i), v) for i, v in enumerate(reference)], 60)
    finite = [v for _, v in points if v is not None]
    if not finite:
        return Markup('<span aria-label="{}: no data">—</span>').format(title)
    scale = finite + [v for _, v in behind if v is not None]
    low, high = min(scale), max(scale)
    span = (high - low) or 1.0
    last = max(points[-1][0], behind[-1][0] if behind else 0.0, 1.0)

    def xy(t: float, v: float) -> tuple[float, float]:
        return 1 + t / last * (width - 2), 1 + (1 - (v - low) / span) * (height - 2)

    desc = f"from {y_format(finite[0])} to {y_format(finite[-1])}, max {y_format(max(finite))}"
    out = [_open(width, height, title, desc, extra=" spark")]
    for line, colour in ((behind, _REFERENCE), (points, _CURRENT)):
        if line:
            coords = [None if v is None else xy(t, v) for t, v in line]
            out.append(
                Markup('<path d="{}" fill="none" stroke="{}" stroke-width="1.5"/>').format(
                    _path(coords), colour
                )
            )
    out.append(Markup("</svg>"))
    return Markup("").join(out)
