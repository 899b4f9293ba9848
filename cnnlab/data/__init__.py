"""Datasets: a folder of class sub-folders scanned, split and decoded once into a cache, fed to Keras;
plus single images, zip uploads (and zips of images read without extracting), the built-in sample, downloadable datasets, class imbalance, and
duplicates and train/test leakage."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
    from cnnlab.data import (
        archive,
        catalog,
        duplicates,
        edits,
        images,
        imbalance,
        prepcache,
        sample,
        versions,
        zip_reader,
    )
    from cnnlab.data.duplicates import DuplicateGroup, DuplicateReport, find_duplicates
    from cnnlab.data.pipeline import epoch_order, make_dataset
    from cnnlab.data.prepared import (
        PreparedData,
        forget_prepared,
        open_prepared,
        prepare,
        prepared_bytes,
        prepared_path,
    )
    from cnnlab.data.scanning import CACHE_VERSION, HEADER_BYTES, DatasetReport, SkippedFile, report_warnings, scan
    from cnnlab.data.splits import check_fractions, split

__all__ = [
    "CACHE_VERSION",
    "DatasetReport",
    "DuplicateGroup",
    "DuplicateReport",
    "HEADER_BYTES",
    "PreparedData",
    "SkippedFile",
    "archive",
    "catalog",
    "duplicates",
    "edits",
    "check_fractions",
    "epoch_order",
    "find_duplicates",
    "forget_prepared",
    "images",
    "imbalance",
    "make_dataset",
    "open_prepared",
    "prepare",
    "prepared_bytes",
    "prepared_path",
    "prepcache",
    "report_warnings",
    "sample",
    "scan",
    "split",
    "versions",
    "zip_reader",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DuplicateGroup": "duplicates",
        "DuplicateReport": "duplicates",
        "find_duplicates": "duplicates",
        "epoch_order": "pipeline",
        "make_dataset": "pipeline",
        "PreparedData": "prepared",
        "forget_prepared": "prepared",
        "open_prepared": "prepared",
        "prepare": "prepared",
        "prepared_bytes": "prepared",
        "prepared_path": "prepared",
        "CACHE_VERSION": "scanning",
        "HEADER_BYTES": "scanning",
        "DatasetReport": "scanning",
        "SkippedFile": "scanning",
        "report_warnings": "scanning",
        "scan": "scanning",
        "check_fractions": "splits",
        "split": "splits",
    },
)
