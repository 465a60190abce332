"""Loaders: the bundled digits set, CSV/Parquet tables, numpy arrays and files, image folders.

A Parquet file whose features are one list column (a tensor per row) is read by
``_parquet.load_parquet_tensors``; ``load_table`` and ``load_dataset`` route it there.

Every loader returns a ``Dataset``. Tables are read with pyarrow; a column that is not
numeric or has missing cells stops the load with a message naming the column and the
first rows, and pointing at ``pocketml data validate`` for the full report.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.data._dataset import LAYOUT_RANKS, Dataset
from pocketml.data._parquet import has_tensor_column, load_parquet_tensors
from pocketml.errors import DataValidationError, InvalidInput, MissingDependencyError, NotFound

__all__ = [
    "RawTable",
    "from_arrays",
    "load_arrays",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_table",
    "read_table",
    "table_to_dataset",
]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
_TABLE_SUFFIXES = {".csv", ".parquet", ".pq"}
_ARRAY_SUFFIXES = {".npz", ".npy"}
_LAYOUT_BY_RANK = {rank: layout for layout, rank in LAYOUT_RANKS.items()}


def load_digits() -> Dataset:
    """The bundled digits set: 1,797 grayscale 8×8 images of 0–9, pixel values 0–16.

    The file ships with scikit-learn; it is read without importing scikit-learn (and with
    it SciPy), which would cost `pocketml data info digits` about a CPU-second.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("scikit-learn", "build", "for the digits dataset")
    csv = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(csv, delimiter=",", dtype=np.float64)  # 64 pixels, then the label
    images = table[:, :64].astype(np.float32).reshape(-1, 1, 8, 8)
    return Dataset(
        name="digits",
        features=images,
        labels=table[:, 64].astype(np.int64),
        class_names=tuple(str(i) for i in range(10)),
        layout="NCHW",
        value_range=(0.0, 16.0),
    )


def from_arrays(
    features: Any,
    labels: Any,
    *,
    class_names: list[str] | tuple[str, ...] | None = None,
    name: str = "arrays",
    layout: str | None = None,
    value_range: tuple[float, float] | None = None,
) -> Dataset:
    """A Dataset from numpy arrays: (N, F) tables, (N, C, L) sequences or (N, C, H, W) images.

    The layout follows the rank ("NC", "NCL", "NCHW") unless given. Labels may be class
    indices or any hashable values (mapped to sorted class names).

    Raises:
        InvalidInput: non-numeric features, or a rank no layout fits.
    """
    x = np.asarray(features)
    if not np.issubdtype(x.dtype, np.number):
        raise InvalidInput(f"features must be numeric; got dtype {x.dtype}")
    if layout is None and x.ndim not in _LAYOUT_BY_RANK:
        raise InvalidInput(
            f"features need shape (N, F), (N, C, L) or (N, C, H, W); got {x.shape}. "
            "Reshape them to one of these (channels first)."
        )
    y_raw = np.asarray(labels)
    if class_names is None:
        values = np.unique(y_raw)
        class_names = tuple(str(v) for v in values)
        y = np.searchsorted(values, y_raw)
    else:
        y = y_raw.astype(np.int64)
    return Dataset(
        name=name,
        features=x,
        labels=y,
        class_names=tuple(class_names),
        layout=layout or _LAYOUT_BY_RANK[x.ndim],
        value_range=value_range,
    )


def load_arrays(path: Path | str, *, labels: Path | str | None = None) -> Dataset:
    """Load a ``.npz`` (arrays ``x`` and ``y``) or a ``.npy`` of features with a label ``.npy``.

    A ``.npz`` may also hold ``class_names`` (strings, one per class) and ``layout``.
    A ``.npy`` holds the features only: its labels come from ``labels`` (a path, relative
    to the features file), by default ``<stem>.labels.npy`` beside it. Object arrays are
    refused (``allow_pickle=False``), so a hostile file cannot run code.

    Raises:
        NotFound: a file does not exist.
        InvalidInput: unreadable arrays, missing ``x``/``y``, or shapes that do not fit.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"data file {str(path)!r} does not exist")
    extra: dict[str, Any] = {}
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                missing = [k for k in ("x", "y") if k not in archive.files]
                if missing:
                    raise InvalidInput(
                        f"{path.name} needs arrays named 'x' (features) and 'y' (labels); "
                        f"it holds {', '.join(archive.files) or 'none'}. Save it with "
                        "np.savez(path, x=features, y=labels)."
                    )
                x, y = archive["x"], archive["y"]
                if "class_names" in archive.files:
                    extra["class_names"] = tuple(str(c) for c in archive["class_names"])
                if "layout" in archive.files:
                    extra["layout"] = str(archive["layout"])
        else:
            label_path = path.parent / labels if labels else path.with_suffix(".labels.npy")
            if not label_path.is_file():
                raise NotFound(
                    f"{path.name} holds features only and its labels file {label_path} does "
                    "not exist; save labels there, pass target = 'LABELS.npy', or use one "
                    ".npz with np.savez(path, x=features, y=labels)"
                )
            x, y = np.load(path, allow_pickle=False), np.load(label_path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"cannot read {path.name} as numpy arrays: {exc}") from exc
    if y.ndim != 1 or len(y) != len(x):
        raise InvalidInput(
            f"{path.name}: labels need shape ({len(x)},) to match the features {x.shape}; "
            f"got {y.shape}"
        )
    return from_arrays(x, y, name=path.stem, **extra)


@dataclass(frozen=True)
class RawTable:
    """A table as read from disk, before it is turned into numbers."""

    name: str
    columns: dict[str, list[Any]]

    @property
    def num_rows(self) -> int:
        """Number of data rows."""
        return len(next(iter(self.columns.values()))) if self.columns else 0


def read_table(path: Path | str) -> RawTable:
    """Read a CSV or Parquet file into a RawTable (values as read, nulls as None).

    Raises:
        NotFound: the file does not exist.
        InvalidInput: unknown suffix or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"data file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix not in _TABLE_SUFFIXES:
        raise InvalidInput(
            f"cannot read {path.name}: expected a .csv or .parquet file, or 'digits'"
        )
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError("pyarrow", "build", "to read CSV/Parquet") from exc
    try:
        table = pacsv.read_csv(path) if suffix == ".csv" else pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"cannot read {path.name}: {exc}") from exc
    return RawTable(
        name=path.stem, columns={n: table.column(n).to_pylist() for n in table.column_names}
    )


def _numeric_column(name: str, values: list[Any]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Convert a column to float32; return it and the (row, problem) pairs found."""
    out = np.empty(len(values), dtype=np.float32)
    problems: list[tuple[int, str]] = []
    for row, value in enumerate(values):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            problems.append((row, "missing value"))
            out[row] = np.nan
            continue
        try:
            out[row] = float(value)
        except (TypeError, ValueError):
            problems.append((row, f"non-numeric value {value!r}"))
            out[row] = np.nan
    return out, problems


def table_to_dataset(raw: RawTable, target: str) -> Dataset:
    """Turn a RawTable into a Dataset with ``target`` as the label column.

    Raises:
        InvalidInput: the target column is missing or there are no feature columns.
        DataValidationError: a feature column is non-numeric or has missing values.
    """
    if target not in raw.columns:
        raise InvalidInput(
            f"target column {target!r} is not in {raw.name}; columns are "
            f"{', '.join(raw.columns)}. Pass --target with one of them."
        )
    feature_names = [c for c in raw.columns if c != target]
    if not feature_names:
        raise InvalidInput(f"{raw.name} has no feature columns besides the target {target!r}")
    matrix = np.empty((raw.num_rows, len(feature_names)), dtype=np.float32)
    issues = []
    for j, column in enumerate(feature_names):
        matrix[:, j], problems = _numeric_column(column, raw.columns[column])
        if problems:
            rows = ", ".join(str(r + 1) for r, _ in problems[:5])
            more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
            issues.append(f"column {column!r}: {problems[0][1]} (data rows {rows}{more})")
    if issues:
        raise DataValidationError(
            f"{raw.name} cannot be used as numeric features: {'; '.join(issues)}. "
            "Run `pocketml data validate` for every violation."
        )
    target_values = raw.columns[target]
    missing = [i + 1 for i, v in enumerate(target_values) if v is None]
    if missing:
        raise DataValidationError(
            f"target column {target!r} has missing labels in data rows {missing[:5]}"
        )
    names = sorted({str(v) for v in target_values})
    index = {n: i for i, n in enumerate(names)}
    labels = np.array([index[str(v)] for v in target_values], dtype=np.int64)
    return Dataset(
        name=raw.name,
        features=matrix,
        labels=labels,
        class_names=tuple(names),
        layout="NC",
        feature_names=tuple(feature_names),
    )


def load_table(path: Path | str, target: str, *, shape: tuple[int, ...] | None = None) -> Dataset:
    """Load a CSV or Parquet file with ``target`` as the label column.

    A Parquet file with a tensor column (a list of numbers per row) loads as tensors of
    ``shape`` (see ``load_parquet_tensors``); ``shape`` applies to nothing else.

    Raises:
        InvalidInput: ``shape`` for a file without a tensor column, or see the loaders.
    """
    path = Path(path)
    is_parquet = path.suffix.lower() in {".parquet", ".pq"} and path.is_file()
    if is_parquet and has_tensor_column(path):
        return load_parquet_tensors(path, target, shape=shape)
    if shape is not None:
        raise InvalidInput(
            f"a sample shape applies to a Parquet tensor column (a list of numbers per row); "
            f"{path.name} has none. Drop the shape, or reshape (N, C, L) data in a .npz."
        )
    return table_to_dataset(read_table(path), target)


def load_image_folder(
    root: Path | str, *, size: tuple[int, int] = (32, 32), grayscale: bool = False
) -> Dataset:
    """Load ``root/<class>/<image>.png|jpg`` into an NCHW Dataset, resized to ``size``.

    Pixel values stay in [0, 255]; the schema's normalization scales them for the model.

    Raises:
        NotFound: the folder does not exist.
        InvalidInput: fewer than two class folders, no images, or an unreadable image.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotFound(f"image folder {str(root)!r} does not exist")
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise MissingDependencyError("Pillow", "build", "to read images") from exc
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise InvalidInput(
            f"{root} needs one sub-folder per class (at least two); found {classes or 'none'}"
        )
    images: list[np.ndarray] = []
    labels: list[int] = []
    mode = "L" if grayscale else "RGB"
    for label, cls in enumerate(classes):
        files = [f for f in sorted((root / cls).iterdir()) if f.suffix.lower() in _IMAGE_SUFFIXES]
        if not files:
            raise InvalidInput(f"class folder {cls!r} has no .png/.jpg images (under {root})")
        for file in files:
            try:
                with Image.open(file) as img:
                    pixels = np.asarray(img.convert(mode).resize(size[::-1]), dtype=np.float32)
            except (UnidentifiedImageError, OSError) as exc:
                raise InvalidInput(f"cannot read image {file}: {exc}") from exc
            images.append(pixels[np.newaxis] if grayscale else pixels.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise InvalidInput(f"no .png/.jpg images found under {root}")
    return Dataset(
        name=root.name,
        features=np.stack(images),
        labels=np.array(labels, dtype=np.int64),
        class_names=tuple(classes),
        layout="NCHW",
        value_range=(0.0, 255.0),
    )


def load_dataset(
    source: str | Path, *, target: str | None = None, shape: tuple[int, ...] | None = None
) -> Dataset:
    """Load ``"digits"``, a CSV/Parquet file (needs ``target``), a ``.npz``/``.npy`` file
    (``target`` names the label ``.npy`` of a ``.npy``), or an image folder.

    ``shape`` is the sample shape of a Parquet tensor column, e.g. ``(3, 128)``."""
    if shape is not None and not str(source).lower().endswith((".parquet", ".pq")):
        raise InvalidInput(
            f"a sample shape applies to a Parquet tensor column; {str(source)!r} is not a "
            ".parquet file. Drop the shape (a .npz or .npy keeps its own shape)."
        )
    if str(source) == "digits":
        return load_digits()
    path = Path(source)
    if path.is_dir():
        return load_image_folder(path)
    if path.suffix.lower() in _ARRAY_SUFFIXES:
        return load_arrays(path, labels=target)
    if path.suffix.lower() in _TABLE_SUFFIXES or not path.exists():
        if target is None and path.exists():
            raise InvalidInput(f"{path.name} is a table: pass --target with the label column")
        return load_table(path, target or "", shape=shape)
    raise InvalidInput(
        f"cannot load {str(source)!r}: expected 'digits', a .csv/.parquet/.npz/.npy file or "
        "an image folder"
    )
