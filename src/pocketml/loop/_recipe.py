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


BUILTIN_SOURCES = ("digits",)
"""Datasets a recipe may name without a data root (bundled with pocketml)."""


def check_recipe(config: Any, data_root: Path | None) -> Any:
    """Refuse what a stored recipe must not make the server do.

    A version's ``params.config`` is whatever its pusher sent: the server must not read
    files outside the operator's data root (another app's data, its own secrets) nor
    unpickle a model directory (``model.path``) on its behalf.

    Returns:
        The config with a relative data source resolved against ``data_root``.

    Raises:
        InvalidInput: a ``model.path`` recipe, a data source or profiles file outside
            ``data_root`` (or any file when no root is configured), naming what to do.
    """
    if config.model.path is not None:
        raise InvalidInput(
            "the recipe loads a trained model directory (model.path); the loop retrains only "
            "recipes that train (model.architecture), since loading a pushed directory would "
            "unpickle it inside the server."
        )
    if config.profiles_file is not None:
        _inside(str(config.profiles_file), data_root, "profiles file")
    source = str(config.data.source)
    if source in BUILTIN_SOURCES:
        return config
    path = _inside(source, data_root, "data")
    return config.model_copy(update={"data": config.data.model_copy(update={"source": str(path)})})


def _inside(source: str, data_root: Path | None, what: str) -> Path:
    if data_root is None:
        raise InvalidInput(
            f"the recipe reads the {what} file {source!r}; the loop reads files only under the "
            "operator's data root: set POCKETML_SERVER__LOOP__DATA_ROOT to the folder "
            "that holds the training data (docs/loop.md)."
        )
    root = Path(data_root).resolve()
    path = (root / source).resolve() if not Path(source).is_absolute() else Path(source).resolve()
    if not path.is_relative_to(root):
        raise InvalidInput(
            f"the recipe reads the {what} file {source!r}, outside the loop's data root "
            f"{str(root)!r}; move it under the root or push a recipe that names a path inside."
        )
    return path


def run_recipe(
    recipe: Mapping[str, Any],
    training: LabelledSamples,
    *,
    weight: int,
    out_dir: Path,
    on_step: Callable[[str], None],
    data_root: Path | None = None,
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
    config = check_recipe(config, data_root)
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
