"""Downloadable datasets (the module moved here; it is split into entries, fetch and convert next)."""

from cnnlab.catalog.entries import (
    CATALOG,
    CATALOG_VERSION,
    CIFAR10_CLASSES,
    CONVERTERS,
    FASHION_CLASSES,
    FLOWER_CLASSES,
    CatalogEntry,
    dataset_folder,
    download,
)

__all__ = [
    "CATALOG",
    "CATALOG_VERSION",
    "CIFAR10_CLASSES",
    "CONVERTERS",
    "FASHION_CLASSES",
    "FLOWER_CLASSES",
    "CatalogEntry",
    "dataset_folder",
    "download",
]
