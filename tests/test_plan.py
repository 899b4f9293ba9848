"""A training's plan: the model it builds, its memory against the budget, its precision (resolved once), the
class balance and a hosted visitor's disk estimate."""

import dataclasses

import pytest

from cnnlab.data import scan
from cnnlab.model import ModelConfig, build_model
from cnnlab.runs.workspace import Workspace
from cnnlab.server import hosting, quota
from cnnlab.training.engine import TrainConfig, train
from cnnlab.training.plan import training_plan
from helpers import tiny_model_config, tiny_train_config, write_dataset


def test_a_plan_lists_the_built_model_its_memory_and_its_precision(make_dataset, run_store, cache_dir):
    model_config, train_config = tiny_model_config(conv_blocks=2), tiny_train_config(epochs=3)
    plan = training_plan(
        make_dataset(per_class=4), model_config, train_config, workspace=Workspace(run_store, cache_dir)
    )

    model = build_model(model_config, 3)
    assert plan.num_params == model.count_params() and plan.num_params > 0
    assert [row["layer"] for row in plan.layers] == [layer.name for layer in model.layers]
    assert plan.summary.startswith(f"{len(model.layers)} layers, {model.count_params():,} parameters, about ")
    assert plan.memory_mb > 0 and plan.fits and plan.refusal is None
    plan.check()
    assert plan.precision.requested == "float32" and plan.precision.policy == "float32" and plan.precision.reason
    assert plan.epochs == 3 and plan.imbalance is None and plan.disk_bytes is None
    assert plan.describe() == [
        f"Model summary: {plan.summary}",
        plan.precision.describe(),
        "Devices: 1 device (/CPU:0), no distribution strategy, 8 images per batch",
    ]
    assert plan.precision.describe().startswith(f"Training on {plan.precision.device} in float32 (")
    assert run_store.list() == []  # planning trains and saves nothing


def test_a_plan_over_the_memory_budget_says_why_and_refuses_to_start(make_dataset, run_store, cache_dir):
    workspace = Workspace(run_store, cache_dir, max_training_mb=64)
    big = ModelConfig(image_size=(128, 128))
    plan = training_plan(make_dataset(per_class=2), big, TrainConfig(batch_size=128), workspace=workspace)
    assert not plan.fits and plan.memory_mb > 64
    assert plan.refusal is not None and "MB per step at batch size 128, over the 64 MB" in plan.refusal
    with pytest.raises(ValueError, match=r"needs about [\d,]+ MB per step.*Received: image_size=128, batch_size=128"):
        plan.check()
    small = training_plan(make_dataset(per_class=2), tiny_model_config(), tiny_train_config(), workspace=workspace)
    assert small.fits and small.memory_mb < 64 and small.refusal is None


def test_a_plan_says_what_training_does_about_imbalanced_classes(tmp_path, run_store, cache_dir):
    root = write_dataset(tmp_path / "data", classes=("cats",), per_class=12)
    write_dataset(root, classes=("dogs",), per_class=4, seed=1)
    workspace = Workspace(run_store, cache_dir)

    weighted = training_plan(root, tiny_model_config(), tiny_train_config(), workspace=workspace)
    assert weighted.imbalance == (
        "The largest class has 3.0x the images of the smallest: classes are weighted inversely to their size in "
        "training."
    )
    assert weighted.imbalance in weighted.describe()
    unweighted = training_plan(root, tiny_model_config(), tiny_train_config(class_weight="none"), workspace=workspace)
    assert unweighted.imbalance is not None and "class weights are off" in unweighted.imbalance


def test_a_hosted_visitors_plan_estimates_what_the_training_adds_to_their_disk_use(tmp_path, run_store, cache_dir):
    visitor = "0123456789abcdef"
    uploads = hosting.uploads_dir(cache_dir, visitor)
    root = write_dataset(uploads / "mine", per_class=4)
    config = tiny_model_config()
    plan = training_plan(root, config, tiny_train_config(), workspace=Workspace(run_store, cache_dir, owner=visitor))

    local = training_plan(root, config, tiny_train_config(), workspace=Workspace(run_store, cache_dir))
    assert local.disk_bytes is None  # not hosted: no disk budget to plan against
    # The run folder at its peak, and the images decoded from the visitor's own upload.
    assert plan.disk_bytes is not None and plan.disk_bytes > quota.run_bytes(config, plan.num_params)
    report = scan(root, cache=cache_dir)
    assert plan.disk_bytes == quota.training_bytes(report, config, plan.num_params, cache=cache_dir, uploads=uploads)


def test_the_training_runs_in_the_planned_precision_without_resolving_it_again(make_dataset, run_store, cache_dir):
    data_dir, workspace = make_dataset(per_class=4), Workspace(run_store, cache_dir)
    model_config, train_config = tiny_model_config(), tiny_train_config(epochs=1)
    plan = training_plan(data_dir, model_config, train_config, workspace=workspace)
    # The plan's own precision, told apart from one resolved again by where it says it runs.
    planned = dataclasses.replace(plan.precision, device="CPU: the machine the plan was made on")
    run = train(data_dir, model_config, train_config, workspace=workspace, precision=planned)
    assert run.status == "completed" and run.record.precision == planned

    unplanned = train(data_dir, model_config, train_config, workspace=workspace)  # resolved by `train` itself
    assert unplanned.record.precision == plan.precision

    with pytest.raises(ValueError, match=r"resolved for precision='float32'.*plan the training again.*Received:"):
        train(
            data_dir,
            model_config,
            tiny_train_config(precision="mixed_bfloat16"),
            workspace=workspace,
            precision=planned,
        )
