"""The Train page's calls into `cnnlab`: the training's plan (shown as the `train` command prints
it), its start as a job, and the cached previews it shows first (augmentation, learning rates)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from cnnlab.data.versions import Dataset
from cnnlab.model import ModelConfig
from cnnlab.runs.store import Run
from cnnlab.runs.workspace import Workspace
from cnnlab.server import jobs, quota
from cnnlab.server.quota import DiskUsage
from cnnlab.training.engine import TrainConfig
from cnnlab.training.plan import TrainingPlan, training_plan
from cnnlab_ui.state import disk_usage, job_settings


def plan_training(
    path: str, model_config: ModelConfig, train_config: TrainConfig, dataset_version: int
) -> TrainingPlan:
    """This training's plan on version `dataset_version` of the dataset, on this server, for this person
    (see `cnnlab.training.plan`)."""
    workspace = job_settings().workspace
    return _plan(
        path,
        datasets=str(workspace.datasets),
        dataset_version=dataset_version,
        model_config=model_config,
        train_config=train_config,
        usage=disk_usage(),
        _workspace=workspace,
    )


@st.cache_data(show_spinner="Building the model...", max_entries=32)
def _plan(
    path: str,
    *,
    datasets: str,
    dataset_version: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    usage: DiskUsage | None,
    _workspace: Workspace,
) -> TrainingPlan:
    """The plan, kept while the dataset version (in this person's `datasets` folder: a saved version
    never changes), the configs and the person's disk use (`usage`, hosted: the disk estimate depends
    on what is decoded already) stay the same, since planning builds the model. The rest of the
    workspace is no part of the key: its cache and memory budget are the server's, and its owner only
    counts for a dataset in the owner's uploads, whose path names them."""
    return training_plan(path, model_config, train_config, workspace=_workspace, dataset_version=dataset_version)


def show_plan(plan: TrainingPlan) -> None:
    """The plan, as the `train` command prints it: the model (its layers in an expander), the class
    balance, copies across the split, the precision, the devices."""
    with st.expander(f"Model summary: {plan.summary}"):
        st.dataframe(pd.DataFrame(plan.layers), hide_index=True)
    if plan.imbalance:
        st.caption(plan.imbalance)
    if plan.leakage:
        st.warning(plan.leakage, icon=":material/content_copy:")
    st.caption(plan.precision.describe())
    if plan.devices is not None:
        st.caption(f"Devices: {plan.devices.describe()}")


def start_training(plan: TrainingPlan) -> jobs.Job:
    """Start the planned training as this person's job; refused (hosted mode) when it would take them
    over their disk budget."""
    if (usage := disk_usage()) is not None:
        quota.check_room(usage, plan.disk_bytes or 0, "This training")
    return jobs.training_job(plan, job_settings()).start()


def retrain(run: Run, dataset: Dataset, version: int) -> jobs.Job:
    """Start a training with `run`'s model and training settings on `version` of `dataset`, as this
    person's job (a one-line ValueError when the dataset or the server refuses it)."""
    with st.spinner("Building the model..."):
        plan = training_plan(
            str(dataset.source or dataset.name),
            run.model_config(),
            run.train_config(),
            workspace=job_settings().workspace,
            dataset_version=version,
        )
    plan.check()
    return start_training(plan)


@st.cache_data(show_spinner=False, max_entries=32)
def augmented_images(model_config: ModelConfig, path: str, seed: int) -> list[np.ndarray]:
    """The image as the model sees it, then eight outputs of the model's own augmentation layers."""
    from cnnlab.data.images import load_array
    from cnnlab.model.augment import augment_preview

    image = load_array(path, model_config.image_size, model_config.color_mode, model_config.resize_mode)
    return [image, *augment_preview(model_config, image, n=8, seed=seed)]


def learning_rate_curve(path: str, model_config: ModelConfig, train_config: TrainConfig, dataset_version: int) -> dict:
    """The learning-rate finder's curve and suggestion for these settings on version `dataset_version`
    of the dataset, on this server, for this person."""
    workspace = job_settings().workspace
    return _learning_rate_curve(path, str(workspace.datasets), dataset_version, model_config, train_config, workspace)


@st.cache_data(show_spinner="Trying learning rates on a fresh model (a short run, nothing saved)...", max_entries=4)
def _learning_rate_curve(
    path: str,
    datasets: str,
    dataset_version: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    _workspace: Workspace,
) -> dict:
    """Kept per dataset version and settings (a version never changes; `datasets` tells visitors' versions
    apart): what the finder uses of the rest of the workspace (cache, memory budget) is the server's."""
    from cnnlab.training.lr_find import find_learning_rate

    return find_learning_rate(
        path, model_config, train_config, workspace=_workspace, dataset_version=dataset_version
    ).to_dict()
