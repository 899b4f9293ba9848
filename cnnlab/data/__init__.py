"""Datasets: a folder of class sub-folders scanned, split and decoded once into a cache, fed to Keras;
plus single images, zip uploads, the built-in sample, downloadable datasets and class imbalance."""

from typing import TYPE_CHECKING

from cnnlab.common.exports import lazy_exports

if TYPE_CHECKING:  # what type checkers and readers see; at run time each name is imported on first use
    from cnnlab.data import archive, catalog, images, imbalance, prepcache, sample
    from cnnlab.data.folder import (
        CACHE_VERSION,
        HEADER_BYTES,
        DatasetReport,
        PreparedData,
        SkippedFile,
        check_fractions,
        epoch_order,
        forget_prepared,
        make_dataset,
        open_prepared,
        prepare,
        prepared_bytes,
        prepared_path,
        report_warnings,
        scan,
        split,
    )

__all__ = [
    "CACHE_VERSION",
    "DatasetReport",
    "HEADER_BYTES",
    "PreparedData",
    "SkippedFile",
    "archive",
    "catalog",
    "check_fractions",
    "epoch_order",
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
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CACHE_VERSION": "folder",
        "HEADER_BYTES": "folder",
        "DatasetReport": "folder",
        "PreparedData": "folder",
        "SkippedFile": "folder",
        "check_fractions": "folder",
        "epoch_order": "folder",
        "forget_prepared": "folder",
        "make_dataset": "folder",
        "open_prepared": "folder",
        "prepare": "folder",
        "prepared_bytes": "folder",
        "prepared_path": "folder",
        "report_warnings": "folder",
        "scan": "folder",
        "split": "folder",
    },
)
