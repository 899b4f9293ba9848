"""Datasets: a folder of class sub-folders scanned, split and decoded once into a cache, fed to Keras;
plus single images, zip uploads, the built-in sample, downloadable datasets and class imbalance."""

from cnnlab.data import archive, catalog, images, imbalance, prepcache, sample
from cnnlab.data.pipeline import epoch_order, make_dataset
from cnnlab.data.prepared import PreparedData, forget_prepared, open_prepared, prepare, prepared_bytes, prepared_path
from cnnlab.data.scanning import CACHE_VERSION, HEADER_BYTES, DatasetReport, SkippedFile, report_warnings, scan
from cnnlab.data.splits import check_fractions, split

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
