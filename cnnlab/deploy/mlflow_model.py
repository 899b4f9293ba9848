"""A run's model as an MLflow `pyfunc` model, served by MLflow and predicting exactly as `cnnlab predict` does.

The model folder holds the run's `model.keras` and a small `cnnlab_model.json` (class names, image
size, colour mode, resize mode, the run it came from). Its input is a DataFrame with one column
`image` of base64 strings of image file bytes (so JSON clients can send it); its output has one row
per image: `label`, `confidence`, one `P(<class>)` column per class, `unlike_training` and
`novelty_score` (the unfamiliar-image flag, `cnnlab.analysis.novelty`, when the run's dataset was
there to fit it as the model was saved; else empty) and `error`, the one-line reason an image could
not be read (its other columns then empty). Probabilities are calibrated by the run's temperature. Prediction goes through
`cnnlab.deploy.prediction.predict` with `errors="report"`: the same decoding, EXIF orientation,
resize and decompression-bomb guard as `cnnlab predict`, and one bad image never fails the batch.

The model is saved as MLflow's "model from code" (`pyfunc_model.py`, copied into the model folder;
nothing pickled), and that code imports `cnnlab`: whatever loads the model (`mlflow models serve
--env-manager local`, `mlflow.pyfunc.load_model`) must run in a Python where CNN Lab is installed,
as it is where the model was saved. MLflow is imported inside the functions only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.runs.store import MODEL_FILE, Run

if TYPE_CHECKING:
    import pandas as pd

    from cnnlab.analysis.novelty import NoveltyReference

SPEC_FILE = "cnnlab_model.json"
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
IMAGE_COLUMN = "image"
NOVELTY_ARTIFACT = "novelty.npz"
# What the served model's environment needs (recorded in its requirements; `--env-manager local`
# installs nothing), pinned to the versions installed where the model was saved.
REQUIREMENTS = ("mlflow", "keras", "pandas", "numpy", "pillow")


def _spec(run: Run) -> dict[str, Any]:
    config = run.model_config()
    return {
        "run_id": run.id,
        "class_names": list(run.class_names),
        "image_size": list(config.image_size),
        "color_mode": config.color_mode,
        "resize_mode": config.resize_mode,
        "temperature": run.temperature,
    }


def output_columns(class_names: Sequence[str]) -> list[str]:
    """The columns of the model's output, in order: `label`, `confidence`, `P(<class>)` per class, the
    unfamiliar-image flag's `unlike_training` and `novelty_score`, and `error`."""
    return ["label", "confidence", *(f"P({name})" for name in class_names), "unlike_training", "novelty_score", "error"]


def encode_images(files: Sequence[bytes]) -> pd.DataFrame:
    """The model's input for image files' bytes: one row per image, its bytes base64-encoded in `image`."""
    import pandas as pd

    return pd.DataFrame({IMAGE_COLUMN: [base64.b64encode(data).decode("ascii") for data in files]})


def _decode(value: Any, index: int) -> bytes | str:
    """An image's bytes, or the one-line reason they cannot be had."""
    if not isinstance(value, str):
        return f"image {index + 1} is not a base64 string of an image file. Received: type={type(value).__name__}"
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return f"image {index + 1} is not valid base64; send the image file's bytes base64-encoded. Received: length={len(value)}"


def predict_frame(
    model,
    class_names: Sequence[str],
    config,
    model_input: pd.DataFrame,
    temperature: float | None = None,
    reference: NoveltyReference | None = None,
) -> pd.DataFrame:
    """The served model's prediction: one output row per input row (see the module's docstring), its
    probabilities calibrated by the run's `temperature` and each image flagged against `reference`,
    as `cnnlab predict` does."""
    import pandas as pd

    from cnnlab.analysis.novelty import flag_images
    from cnnlab.deploy.prediction import predict

    if IMAGE_COLUMN not in model_input.columns:
        raise ValueError(
            f"The input needs a column {IMAGE_COLUMN!r} of base64-encoded image files. "
            f"Received: columns={list(model_input.columns)}"
        )
    decoded = [_decode(value, i) for i, value in enumerate(model_input[IMAGE_COLUMN])]
    files = [d for d in decoded if isinstance(d, bytes)]
    names = [f"image {i + 1}" for i, d in enumerate(decoded) if isinstance(d, bytes)]
    sources = [io.BytesIO(f) for f in files]
    predicted = predict(model, class_names, config, sources, names, errors="report", temperature=temperature)
    good = [r.image for r in predicted if r.image is not None]
    flags = iter(flag_images(model, reference, good) if reference is not None else [])
    results = iter(predicted)
    columns = output_columns(class_names)
    rows = []
    for item in decoded:
        row: dict[str, Any] = dict.fromkeys(columns)
        result = next(results) if isinstance(item, bytes) else None
        if result is None or result.error:
            row["error"] = item if result is None else result.error
        else:
            row.update(label=result.label, confidence=result.confidence)
            row.update({f"P({name})": p for name, p in result.ranked})
            flag = next(flags, None)
            if flag is not None:
                row.update(unlike_training=flag.novel, novelty_score=flag.score)
        rows.append(row)
    # Object columns keep a missing value None, which JSON writes as null (a float NaN is not JSON).
    return pd.DataFrame(rows, columns=columns, dtype=object)


def example_png() -> bytes:
    """A tiny PNG (8x8 grey), the input example saved with the model."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


def signature(class_names: Sequence[str]):
    """The model's MLflow signature: a string column `image` in; label, confidence, P(class)..., the
    unfamiliar-image flag and error out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    outputs: list[ColSpec | TensorSpec] = [ColSpec("string", "label"), ColSpec("double", "confidence")]
    outputs += [ColSpec("double", f"P({name})") for name in class_names]
    outputs += [ColSpec("boolean", "unlike_training"), ColSpec("double", "novelty_score"), ColSpec("string", "error")]
    return ModelSignature(inputs=Schema([ColSpec("string", IMAGE_COLUMN)]), outputs=Schema(outputs))


def _requirements() -> list[str]:
    found = []
    for name in ("tensorflow-cpu", "tensorflow", *REQUIREMENTS):
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return found


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow's progress bars, INFO lines and advice warnings kept off standard error for the block
    (standard error carries a command's progress and its one error line)."""
    from mlflow import environment_variables as mlflow_env

    if not mlflow_env.MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.is_set():
        mlflow_env.MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.set(False)
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(level)


def save_pyfunc(run: Run, path: Path, *, cache: Path) -> Path:
    """Write the run's model as an MLflow pyfunc model folder at `path` (which must not exist yet or be empty).

    The unfamiliar-image flag's reference goes with it when the run's dataset is here to fit it
    (`run_reference`, kept under `cache` for a read-only run); without it the model serves without the flag.
    """
    import mlflow.pyfunc

    from cnnlab.analysis.novelty import save_reference
    from cnnlab.common.files import write_json

    if not run.model_path.is_file():
        raise ValueError(f"Run '{run.name}' has no saved model yet; choose a completed run. Received: run={run.id!r}")
    reference = _reference(run, cache)
    spec = {**_spec(run), "novelty": reference is not None}
    with tempfile.TemporaryDirectory(prefix="cnnlab-pyfunc-") as staging, quiet_mlflow():
        write_json(Path(staging) / SPEC_FILE, spec)
        artifacts = {"model": str(run.path / MODEL_FILE), "spec": str(Path(staging) / SPEC_FILE)}
        if reference is not None:
            save_reference(Path(staging) / NOVELTY_ARTIFACT, reference)
            artifacts["novelty"] = str(Path(staging) / NOVELTY_ARTIFACT)
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=str(MODEL_CODE),
            artifacts=artifacts,
            signature=signature(spec["class_names"]),
            input_example=encode_images([example_png()]),
            pip_requirements=_requirements(),
            metadata={"cnnlab_run_id": run.id},
        )
    return path


def _reference(run: Run, cache: Path) -> NoveltyReference | None:
    """The run's unfamiliar-image reference, or None where it cannot be fitted (its dataset is not here)."""
    from cnnlab.analysis.novelty import run_reference

    try:
        return run_reference(run, cache=cache)
    except ValueError:
        return None
