"""Datasets: a folder of class sub-folders scanned, split and decoded once into a cache, fed to Keras;
plus single images, zip uploads, the built-in sample, downloadable datasets and class imbalance."""

from cnnlab.data import archive, catalog, images, imbalance, prepcache, sample
from cnnlab.data.scanning import (
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
    "HEADER_BYTES",
    "DatasetReport",
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
