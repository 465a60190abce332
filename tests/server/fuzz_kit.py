"""Hostile values and a counting HTTP client for the stateful fuzzing suite.

``dump`` writes JSON text that may carry tokens no JSON library writes on purpose (``Raw``:
400-digit integers, NaN, lone surrogates as escapes, 3,000 levels of nesting), so requests
can be as hostile as a fuzzer's. ``Api`` sends every request with the right credential,
counts requests, 4xx and 5xx, and keeps a line for each 5xx.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from hypothesis import strategies as st

from pocketml.testing import write_model_file


class Raw(str):
    """A JSON token written verbatim (e.g. ``NaN`` or a 400-digit integer)."""


HOSTILE_INTS: list[Any] = [
    0,
    1,
    -1,
    64,
    2**31,
    2**63 - 1,
    2**63,
    2**64 - 1,
    -(2**63) - 1,
    Raw("1" * 25),
    Raw("1" * 400),
]
HOSTILE_FLOATS: list[Any] = [
    0.5,
    -0.0,
    1e308,
    1e39,
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("1e400"),
]
HOSTILE_TEXT: list[Any] = [
    "ok",
    "",
    "\ud800",
    "\udfff",
    "a\x00b",
    "\x1b[2J\x07",
    "x" * 5000,
    "'; DROP TABLE models;--",
    "<script>alert(1)</script>",
    "\U0001f600",
    "\u202e",
    "%00",
    "../../etc/passwd",
]
DEEP = Raw("[" * 3000 + "]" * 3000)


def mostly(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Any:
    """Two draws in three from ``valid``: writes must often succeed to be read back."""
    return st.one_of(valid, valid, hostile)


texts = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=12))
ints = st.one_of(st.sampled_from(HOSTILE_INTS), st.integers(-5, 300))
floats = st.one_of(st.sampled_from(HOSTILE_FLOATS), st.floats(-10, 10, allow_nan=False))
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=8,
) | st.just(DEEP)


def dump(value: Any) -> bytes:
    """JSON text of ``value``; ``Raw`` tokens verbatim, lone surrogates as escapes."""
    return _dump(value).encode("ascii")


def _dump(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("NaN" if value != value else "1e400")
    if isinstance(value, str):
        return json.dumps(value)  # ensure_ascii: a lone surrogate becomes "\ud800"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_dump(v)}" for k, v in value.items()) + "}"
    return "[" + ",".join(_dump(item) for item in value) + "]"


@dataclass
class Counts:
    """What the fuzzer sent and what came back."""

    requests: int = 0
    client_errors: int = 0
    server_errors: int = 0
    accepted_writes: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self, label: str) -> str:
        return (
            f"FUZZ [{label}] requests={self.requests} 4xx={self.client_errors} "
            f"5xx={self.server_errors} accepted_writes={self.accepted_writes}"
        )


class Api:
    """Counting clients of one server: admin token, device key, the console cookie."""

    def __init__(self, url: str, admin_token: str, device_key: str, counts: Counts) -> None:
        self.counts = counts
        self.admin = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=60
        )
        self.device = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {device_key}"}, timeout=60
        )
        self.ui = httpx.Client(
            base_url=url, headers={"Cookie": f"pocketml_admin={admin_token}"}, timeout=60
        )

    def close(self) -> None:
        for client in (self.admin, self.device, self.ui):
            client.close()

    def send(
        self, who: str, method: str, path: str, body: bytes | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send one request as ``who`` ("admin", "device", "ui"); count and record it."""
        client = {"admin": self.admin, "device": self.device, "ui": self.ui}[who]
        if body is not None:
            kwargs["content"] = body
            kwargs["headers"] = {"Content-Type": "application/json"}
        response = client.request(method, path, **kwargs)
        self.counts.requests += 1
        if 400 <= response.status_code < 500:
            self.counts.client_errors += 1
        elif response.status_code >= 500:
            self.counts.server_errors += 1
            sent = repr(body[:160]) if body is not None else ""
            self.counts.failures.append(
                f"{method} {path[:120]} {sent} -> {response.status_code}: {response.text[:300]}"
            )
        return response


def segment(value: Any) -> str:
    """``value`` percent-encoded as one URL path segment (lone surrogates included)."""
    if not isinstance(value, str):
        return dump(value).decode()
    return "".join(f"%{b:02X}" for b in value.encode("utf-8", "surrogatepass"))


def mutated(base: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    target: Any = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


class ModelFiles:
    """Model files pushed by the fuzzer: valid ONNX, a TFLite, and bytes of no format."""

    def __init__(self, root: Path) -> None:
        self.onnx = [write_model_file(root / f"m{i}.onnx", "onnx", seed=i) for i in range(4)]
        self.tflite = write_model_file(root / "m.tflite", "tflite", seed=9)
        self.garbage = root / "garbage.bin"
        self.garbage.write_bytes(b"\x08\x00 not a model " * 50)
