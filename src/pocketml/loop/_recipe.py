"""The one place the loop calls the build and the sample store (their seams, kept together).

A job runs the champion's recipe: the ``pocketml build`` config stored with the production
version (``params["config"]``, written by ``run_build``). ``run_recipe`` is the default
``RecipeRunner``: it adds the trusted training samples to the TRAINING split only
(``run_build(..., extra_training=, extra_weight=)``; the test split, the golden holdout,
never sees them) and returns the build directory and that golden holdout
(``load_splits(config).test``, the exact split ``run_build`` used).

The server's sample store (``SampleStore``) is the ``SampleSource``; both are injected into
``LoopService``, so tests may give their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pocketml.data import Dataset
from pocketml.errors import InvalidInput
from pocketml.loop._types import LabelledSamples

__all__ = [
    "RecipeResult",
    "RecipeRunner",
    "SampleSource",
    "recipe_of",
    "run_recipe",
]


# A sample's rank gives its Dataset layout (images, sequences, tables).
_LAYOUT_BY_RANK = {4: "NCHW", 3: "NCL", 2: "NC"}


class SampleSource(Protocol):
    """Where a job reads a model's labelled samples (the sample store's two reads; times
    are unix seconds of the server's receipt)."""

    def labelled(
        self,
        app_id: str,
        model: str,
        *,
        since: float | None = None,
        until: float | None = None,
    ) -> LabelledSamples: ...

    def count_labelled(self, app_id: str, model: str, *, since: float | None = None) -> int: ...


@dataclass(frozen=True)
class RecipeResult:
    """What a recipe run produced: a BUILD_DIR to push and the golden holdout."""

    build_dir: Path
    golden: Dataset


class RecipeRunner(Protocol):
    """Runs a recipe on extra training samples into ``out_dir``."""

    def __call__(
        self,
        recipe: Mapping[str, Any],
        training: LabelledSamples,
        *,
        weight: int,
        out_dir: Path,
        on_step: Callable[[str], None],
    ) -> RecipeResult: ...


def recipe_of(params: Mapping[str, Any]) -> dict[str, Any]:
    """The build config stored with a version (``params["config"]``).

    Raises:
        InvalidInput: the version was not pushed from ``pocketml build`` (no recipe).
    """
    config = params.get("config")
    if not isinstance(config, dict) or "model" not in config:
        raise InvalidInput(
            "the production version has no recipe (params.config): it was not pushed from "
            "`pocketml build`; build and push it with `pocketml build` so the loop can re-run it."
        )
    return config


def run_recipe(
    recipe: Mapping[str, Any],
    training: LabelledSamples,
    *,
    weight: int,
    out_dir: Path,
    on_step: Callable[[str], None],
) -> RecipeResult:
    """Run ``pocketml build``'s pipeline on the recipe plus ``training`` samples.

    Raises:
        InvalidInput: the recipe is not a valid build config. PocketMLError subclasses
        from the build's stages (training, conversion with its parity checks, ...).
    """
    from pydantic import ValidationError

    from pocketml.optimize.config import BuildConfig
    from pocketml.optimize.pipeline import load_splits, run_build
    from pocketml.sketch import profile_model

    try:
        config = BuildConfig.model_validate(dict(recipe))
    except ValidationError as exc:
        raise InvalidInput(f"the stored recipe is not a valid build config: {exc}") from exc
    layout = _LAYOUT_BY_RANK.get(training.features.ndim, "NC")
    extra = training.to_dataset("loop-samples", layout=layout) if len(training) else None
    run_build(
        config,
        out_dir,
        on_step=on_step,
        show_progress=False,
        profiler=profile_model,
        extra_training=extra,
        extra_weight=weight,
    )
    return RecipeResult(Path(out_dir), load_splits(config).test)
