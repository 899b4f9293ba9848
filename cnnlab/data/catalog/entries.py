"""The catalog's entries: each downloadable dataset, where its files are and what it becomes."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_PER_CLASS = 500

KERAS_DATASETS = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
FASHION_CLASSES = (
    "t-shirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FLOWER_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


@dataclass(frozen=True)
class CatalogEntry:
    """One downloadable dataset: where its files are, how to check them, what it becomes.

    `urls`, `file_sizes` and `sha256` run in parallel, one item per file; a `None` checksum means
    none is published and the file is checked by its size instead. `num_images` counts the
    original dataset; `max_per_class` (None: all) is how many images per class the conversion
    keeps, so large sets stay quick to prepare and train on.
    """

    name: str
    title: str
    description: str
    license: str
    urls: tuple[str, ...]
    file_sizes: tuple[int, ...]
    sha256: tuple[str | None, ...]
    file_format: str
    class_names: tuple[str, ...]
    num_images: int
    max_per_class: int | None = None

    @property
    def size_bytes(self) -> int:
        """Total download size."""
        return sum(self.file_sizes)

    @property
    def num_classes(self) -> int:
        """How many class folders the conversion writes."""
        return len(self.class_names)

    @property
    def file_names(self) -> tuple[str, ...]:
        """The last path part of each URL, which is also the name asked of `base_url`."""
        return tuple(url.rsplit("/", 1)[-1] for url in self.urls)


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in (
        CatalogEntry(
            name="cats_vs_dogs",
            title="Cats vs dogs (filtered)",
            description=(
                "3,000 photos of cats and dogs (the filtered subset Keras and TensorFlow tutorials use), "
                "train and validation merged into cats/ and dogs/; JPEGs are kept as they are."
            ),
            license=(
                "Subset of the Kaggle Dogs vs. Cats data from Microsoft Research's Asirra project; no licence "
                "is stated, so use it for learning and research only. No SHA-256 is published for this file: "
                "it is checked by its exact size."
            ),
            urls=("https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip",),
            file_sizes=(68_606_236,),
            sha256=(None,),
            file_format="cats_dogs_zip",
            class_names=("cats", "dogs"),
            num_images=3_000,
        ),
        CatalogEntry(
            name="flowers",
            title="Flowers (5 classes)",
            description=(
                "3,670 flower photos in 5 classes (daisy, dandelion, roses, sunflowers, tulips), the set used "
                "by the TensorFlow image tutorials; JPEGs are kept as they are."
            ),
            license=(
                "Flickr photos under Creative Commons licences (CC BY 2.0); the archive's LICENSE.txt credits "
                "each photographer."
            ),
            urls=("https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz",),
            file_sizes=(228_813_984,),
            sha256=("4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c",),
            file_format="flowers_tgz",
            class_names=FLOWER_CLASSES,
            num_images=3_670,
        ),
        CatalogEntry(
            name="mnist",
            title="MNIST digits",
            description=(
                f"70,000 handwritten digits, 28x28 grayscale; the first {DEFAULT_MAX_PER_CLASS} of each digit "
                "(train and test merged) are written as PNGs into folders 0-9."
            ),
            license=(
                "Copyright Yann LeCun and Corinna Cortes; available under the Creative Commons "
                "Attribution-Share Alike 3.0 licence."
            ),
            urls=(KERAS_DATASETS + "mnist.npz",),
            file_sizes=(11_490_434,),
            sha256=("731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",),
            file_format="mnist_npz",
            class_names=tuple(str(d) for d in range(10)),
            num_images=70_000,
            max_per_class=DEFAULT_MAX_PER_CLASS,
        ),
        CatalogEntry(
            name="fashion_mnist",
            title="Fashion-MNIST",
            description=(
                f"70,000 28x28 grayscale photos of 10 kinds of clothing; the first {DEFAULT_MAX_PER_CLASS} "
                "of each class (train and test merged) are written as PNGs."
            ),
            license="Copyright Zalando SE; MIT licence.",
            urls=tuple(
                KERAS_DATASETS + name
                for name in (
                    "train-labels-idx1-ubyte.gz",
                    "train-images-idx3-ubyte.gz",
                    "t10k-labels-idx1-ubyte.gz",
                    "t10k-images-idx3-ubyte.gz",
                )
            ),
            file_sizes=(29_515, 26_421_880, 5_148, 4_422_102),
            sha256=(
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            ),
            file_format="fashion_idx",
            class_names=FASHION_CLASSES,
            num_images=70_000,
            max_per_class=DEFAULT_MAX_PER_CLASS,
        ),
        CatalogEntry(
            name="cifar10",
            title="CIFAR-10",
            description=(
                f"60,000 32x32 colour photos in 10 classes; the first {DEFAULT_MAX_PER_CLASS} of each class "
                "(train and test merged) are written as PNGs."
            ),
            license=(
                'No licence is stated by its authors; cite Alex Krizhevsky, "Learning Multiple Layers of '
                'Features from Tiny Images", 2009.'
            ),
            urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
            file_sizes=(170_498_071,),
            sha256=("6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",),
            file_format="cifar10_tar",
            class_names=CIFAR10_CLASSES,
            num_images=60_000,
            max_per_class=DEFAULT_MAX_PER_CLASS,
        ),
    )
}
