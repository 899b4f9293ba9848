"""Training precision: what `auto` picks, models built per policy, and runs trained in each precision."""

import threading

import numpy as np
import pytest

from cnnlab.model.precision import Hardware, choose_precision, detect_hardware, read_cpuinfo
from helpers import tiny_model_config, tiny_train_config, write_dataset

BF16_CPU = Hardware("AMD EPYC 9654", 2, frozenset({"avx512f", "avx512_bf16", "fma"}))
PLAIN_CPU = Hardware("Intel Core i5-8250U", 4, frozenset({"avx2", "fma"}))
GPU_BOX = Hardware("Intel Xeon", 16, frozenset({"avx2"}), gpus=("NVIDIA H100 80GB HBM3",))
ARM_CPUINFO = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd bf16 i8mm sve\nCPU implementer\t: 0x41\n"
X86_CPUINFO = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx512f amx_bf16 avx512_bf16\nprocessor\t: 1\n"


@pytest.mark.parametrize(
    ("hardware", "policy", "why"),
    [
        (BF16_CPU, "mixed_bfloat16", "native bfloat16 instructions (avx512_bf16)"),
        (PLAIN_CPU, "float32", "no native bfloat16"),
        (GPU_BOX, "float32", "float32 on a GPU"),
    ],
)
def test_auto_picks_by_hardware(hardware, policy, why):
    chosen = choose_precision("auto", hardware)
    assert chosen.policy == policy and chosen.requested == "auto"
    assert why in chosen.reason
    assert chosen.device == hardware.device


def test_devices_are_named_for_people():
    assert BF16_CPU.device == "CPU: AMD EPYC 9654, 2 cores"
    assert GPU_BOX.device == "GPU: NVIDIA H100 80GB HBM3"


def test_explicit_choices_are_kept_with_a_warning_where_emulated():
    assert choose_precision("float32", BF16_CPU).policy == "float32"
    emulated = choose_precision("mixed_bfloat16", PLAIN_CPU)
    assert emulated.policy == "mixed_bfloat16" and "slower than float32" in emulated.reason
    assert "without a GPU" in choose_precision("mixed_float16", BF16_CPU).reason
    assert choose_precision("mixed_float16", GPU_BOX).reason == "chosen"


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="Received: precision='bfloat16'"):
        choose_precision("bfloat16", PLAIN_CPU)


def test_cpuinfo_flags_of_x86_and_arm():
    assert read_cpuinfo(X86_CPUINFO) == ("AMD EPYC", frozenset({"fpu", "avx512f", "amx_bf16", "avx512_bf16"}))
    name, flags = read_cpuinfo(ARM_CPUINFO)
    assert "bf16" in flags and Hardware(name or "arm", 4, flags).bf16_flags == ["bf16"]
    assert read_cpuinfo("") == ("", frozenset())


def test_this_machine_is_detected():
    hardware = detect_hardware()
    assert hardware.cores >= 1 and hardware.cpu
    assert choose_precision("auto", hardware).policy in ("float32", "mixed_bfloat16", "mixed_float16")


def test_a_mixed_model_keeps_its_policy_to_itself():
    import keras

    from cnnlab.model import build_model

    built = {}
    # Built in another thread, as the app's trainings are; the global policy must stay float32 everywhere.
    thread = threading.Thread(target=lambda: built.update(model=build_model(tiny_model_config(), 3, "mixed_bfloat16")))
    thread.start()
    thread.join()
    model = built["model"]
    assert keras.config.dtype_policy().name == "float32"
    assert model.get_layer("conv_1").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("predictions").dtype_policy.name == "float32"
    output = model.predict(np.zeros((2, 32, 32, 3), dtype=np.uint8), verbose=0)
    assert output.dtype == np.float32
    assert build_model(tiny_model_config(), 3).get_layer("conv_1").dtype_policy.name == "float32"


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_each_precision_saves_loads_predicts_and_exports_in_float32(precision, tmp_path, run_store, cache_dir):
    import keras

    from cnnlab.analysis.evaluate import evaluate_run
    from cnnlab.deploy.export import export_run, read_export
    from cnnlab.deploy.prediction import predict
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.engine import train

    data_dir = write_dataset(tmp_path / "data", per_class=12)
    run = train(
        data_dir, tiny_model_config(), tiny_train_config(precision=precision), workspace=Workspace(run_store, cache_dir)
    )
    assert run.status == "completed"
    assert run.record.precision.policy == precision and run.train_config().precision == precision
    model = run.load_model()
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    files = sorted(data_dir.rglob("*.png"))[:5]
    results = predict(model, run.class_names, run.model_config(), files)
    assert all(r.label in run.class_names for r in results)
    # The saved evaluation was made with the float32 model that is saved, so it matches a fresh one.
    assert evaluate_run(run, cache=cache_dir, refresh=True).accuracy == pytest.approx(run.record.metrics.test_accuracy)
    for fmt in ("keras", "savedmodel", "tflite"):
        folder = export_run(run, fmt, tmp_path / f"export-{fmt}", cache=cache_dir)
        assert read_export(folder)["max_abs_diff"] <= 1e-4
    reloaded = keras.saving.load_model(tmp_path / "export-keras" / "model.keras", compile=False)
    assert reloaded.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0).dtype == np.float32
