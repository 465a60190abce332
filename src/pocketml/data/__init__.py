"""Datasets: loading, content fingerprints, validation against a schema, augmentation.

>>> from pocketml.data import load_digits
>>> digits = load_digits()
>>> splits = digits.split(seed=0)
>>> digits.fingerprint[:7]
'sha256:'
"""

from pocketml.data._dataset import Dataset, Splits
from pocketml.data._parquet import load_parquet_tensors, tensor_field_metadata
from pocketml.data.augment import (
    Augmentation,
    augment_dataset,
    check_augmentations,
    parse_augmentations,
)
from pocketml.data.loaders import (
    RawTable,
    from_arrays,
    load_arrays,
    load_dataset,
    load_digits,
    load_image_folder,
    load_table,
    read_table,
    table_to_dataset,
)
from pocketml.data.validate import ValidationReport, Violation, validate_dataset, validate_table

__all__ = [
    "Augmentation",
    "Dataset",
    "RawTable",
    "Splits",
    "ValidationReport",
    "Violation",
    "augment_dataset",
    "check_augmentations",
    "from_arrays",
    "load_arrays",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_parquet_tensors",
    "load_table",
    "parse_augmentations",
    "read_table",
    "table_to_dataset",
    "tensor_field_metadata",
    "validate_dataset",
    "validate_table",
]
