"""A training's plan: what it will build and need, and in what precision it runs, before it starts.

The Train page and the `train` command show the same plan, and the training then runs as planned
(`cnnlab.server.jobs.training_job(plan, ...)`, or `train(..., precision=plan.precision)`), so the
precision is resolved once per training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cnnlab import data
from cnnlab.data.imbalance import IMBALANCE_RATIO, imbalance_ratio
from cnnlab.model import ModelConfig, build_model, check_trainable, model_summary
from cnnlab.model.precision import Precision, choose_precision
from cnnlab.runs.workspace import Workspace
from cnnlab.training.devices import Devices, choose_devices
from cnnlab.training.engine import TrainConfig, planned_epochs
from cnnlab.training.source import TrainingData, training_data


@dataclass(frozen=True)
class TrainingPlan:
    """What a training of `model_config` with `train_config` on `data_dir` will be.

    `layers` are the model's layers (`model_summary` rows: layer, type, output_shape, params) and
    `num_params` its weights; `memory_mb` estimates a training step's memory, and `refusal` says
    why it does not fit the workspace's `max_training_mb` (None: it fits). `precision` is the
    Keras policy the training runs in and why; `epochs` the epochs it runs unless stopped early.
    `imbalance` says what training does about imbalanced classes (None when they are balanced);
    `disk_bytes` is what it adds at its peak to a hosted visitor's disk use (None unless hosted).
    `dataset_version` is the dataset version it trains on (None: the folder as it is), so that a
    training run from the plan trains on the version planned even when a newer one is saved meanwhile;
    `counts` the images per class it trains on (the version's labels and exclusions applied).
    `leakage` warns in one line when copies of training images are among the held-out ones (None: none are).
    `devices` are the devices it trains on and the images each computes of a batch (see `cnnlab.training.devices`).
    """

    data_dir: str | Path
    model_config: ModelConfig
    train_config: TrainConfig
    layers: tuple[dict[str, Any], ...]
    num_params: int
    memory_mb: float
    refusal: str | None
    precision: Precision
    epochs: int
    imbalance: str | None
    disk_bytes: int | None
    dataset_version: int | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    leakage: str | None = None
    devices: Devices | None = None

    @property
    def fits(self) -> bool:
        """Whether the training fits this server's memory budget."""
        return self.refusal is None

    @property
    def summary(self) -> str:
        """The model in one line: layers, weights and a training step's memory."""
        return (
            f"{len(self.layers)} layers, {self.num_params:,} parameters, about {self.memory_mb:,.0f} MB per "
            "training step"
        )

    def check(self) -> None:
        """Refuse a training that does not fit this server's memory budget (its one-line ValueError)."""
        if self.refusal is not None:
            raise ValueError(self.refusal)

    @property
    def version_line(self) -> str:
        """The dataset version trained on and its images per class, in one line."""
        counts = ", ".join(f"{name} {n}" for name, n in self.counts.items())
        return f"Dataset version {self.dataset_version}: {sum(self.counts.values())} images ({counts})"

    def describe(self) -> list[str]:
        """The plan in lines, as the `train` command prints it: the dataset version and its classes (when
        versioned), the model, the class balance, the precision, the devices."""
        return [
            *([self.version_line] if self.dataset_version is not None else []),
            f"Model summary: {self.summary}",
            *([self.imbalance] if self.imbalance else []),
            *([self.leakage] if self.leakage else []),
            self.precision.describe(),
            *([f"Devices: {self.devices.describe()}"] if self.devices else []),
        ]


def training_plan(
    data_dir: str | Path,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    *,
    workspace: Workspace,
    dataset_version: int | None = None,
) -> TrainingPlan:
    """Plan a training on a class-folder dataset: build its model (random weights, nothing downloaded)
    to list its layers, estimate its memory against the workspace's budget, resolve its precision
    on this machine, choose the devices it trains on (the workspace's `devices`, else every local GPU),
    and say what it does about imbalanced classes.

    A dataset that cannot be used, or a model with too many weights to build, raises a one-line
    ValueError; a training over the memory budget gets a plan with its `refusal`. With the
    workspace's owner (a hosted visitor), `disk_bytes` estimates what the training adds to their
    disk use (`cnnlab.server.quota.training_bytes`). With the workspace's `datasets` folder, it plans
    a training on a version (`dataset_version`, default: the latest), its counts and classes, as `train` does.
    """
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    source = training_data(data_dir, train_config, workspace, dataset_version)
    report = source.report
    devices = choose_devices(train_config.batch_size, workspace.devices)  # a batch that does not split is refused
    num_classes, batch_size, tuned = report.num_classes, train_config.batch_size, train_config.tuned_layers
    # Too many weights to build is raised here; over the memory budget, the plan says so and `check` refuses it.
    memory_mb = check_trainable(model_config, num_classes, batch_size, fine_tune_layers=tuned)
    refusal = None
    try:
        check_trainable(
            model_config, num_classes, batch_size, max_training_mb=workspace.max_training_mb, fine_tune_layers=tuned
        )
    except ValueError as exc:
        refusal = str(exc)
    layers = tuple(model_summary(build_model(replace(model_config, backbone_weights="none"), report.num_classes)))
    num_params = sum(row["params"] for row in layers)
    return TrainingPlan(
        data_dir=data_dir,
        model_config=model_config,
        train_config=train_config,
        layers=layers,
        num_params=num_params,
        memory_mb=memory_mb,
        refusal=refusal,
        precision=choose_precision(train_config.precision),
        epochs=planned_epochs(model_config, train_config),
        imbalance=_imbalance(report.counts, train_config.class_weight),
        disk_bytes=_disk_bytes(report, model_config, num_params, workspace),
        dataset_version=source.version_number,
        counts=report.counts,
        leakage=_leakage(source, workspace.cache),
        devices=devices,
    )


def _leakage(source: TrainingData, cache: Path) -> str | None:
    """One line when some held-out images of the version are copies of training images (None when none
    are, or when training on a folder as it is, which has no version to look in)."""
    if source.version is None:
        return None
    from cnnlab.data.duplicates import find_duplicates

    found = find_duplicates(source.version.dataset, source.version.manifest.version, cache=cache)
    if not found.leaks:
        return None
    return (
        f"Warning: {len(found.leaks)} groups of copies span the training and held-out images "
        f"({len(found.leaked_test_paths)} test images copy a training image), so the test accuracy will flatter "
        "the model; keep one of each on the Data page (Duplicates) or see `cnnlab dataset duplicates`."
    )


def _imbalance(counts: Mapping[str, int], class_weight: str) -> str | None:
    """What the training does about imbalanced classes, in one sentence; None when they are balanced."""
    ratio = imbalance_ratio(counts.values())
    if ratio <= IMBALANCE_RATIO:
        return None
    done = (
        "class weights are off, so the small classes count less in training."
        if class_weight == "none"
        else "classes are weighted inversely to their size in training."
    )
    return f"The largest class has {ratio:.1f}x the images of the smallest: {done}"


def _disk_bytes(
    report: data.DatasetReport, model_config: ModelConfig, num_params: int, workspace: Workspace
) -> int | None:
    """What the training adds to a hosted visitor's disk use at its peak; None when not hosted."""
    if not workspace.owner:
        return None
    from cnnlab.server import hosting, quota  # the server's own concepts, imported only for a hosted visitor

    uploads = hosting.uploads_dir(workspace.cache, workspace.owner)
    return quota.training_bytes(report, model_config, num_params, cache=workspace.cache, uploads=uploads)
