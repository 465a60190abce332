"""Path and query parameters shared by the routes, bounded like the bodies.

A path or query value reaches the store as a lookup key: a NUL character makes
PostgreSQL refuse the query (a 5xx), and a 10,000-character name is never a name. Each
parameter here has a length bound and ``check_text`` (no NUL, no lone surrogate), so
such a request answers 422 naming the parameter before any query runs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator

from pocketml.bounds import check_text

__all__ = [
    "AuditSubject",
    "ExperimentId",
    "KeyId",
    "ModelName",
    "NamePrefix",
    "PackageId",
    "RolloutId",
]

_Checked = AfterValidator(check_text)

ModelName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        description="The model's name inside the caller's app.",
        examples=["digits"],
    ),
    _Checked,
]
NamePrefix = Annotated[
    str | None, Query(max_length=64, description="Only names starting so."), _Checked
]
RolloutId = Annotated[
    str, Path(min_length=1, max_length=40, description="The rollout's id."), _Checked
]
AuditSubject = Annotated[
    str | None, Query(max_length=40, description="Only this rollout."), _Checked
]
ExperimentId = Annotated[
    str, Path(min_length=1, max_length=40, description="The experiment's id."), _Checked
]
KeyId = Annotated[str, Path(max_length=80, examples=["aes:3f9c2d18e7b4f601"]), _Checked]
PackageId = Annotated[
    str,
    Path(
        max_length=64,
        description="The package id: sha256 hex of the package file.",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    ),
    _Checked,
]
