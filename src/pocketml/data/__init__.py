"""Datasets: loading, content fingerprints, validation against a schema, augmentation.

>>> from pocketml.data import load_digits
>>> digits = load_digits()
>>> splits = digits.split(seed=0)
>>> digits.fingerprint[:7]
'sha256:'
"""

from pocketml.data._dataset import Dataset, Splits
from pocketml.data.augment import Augmentation, augment_dataset, parse_augmentations
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
    "from_arrays",
    "load_arrays",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_table",
    "parse_augmentations",
    "read_table",
    "table_to_dataset",
    "validate_dataset",
    "validate_table",
]
