"""The MLflow `PythonModel` of a CNN Lab run, saved as MLflow's "model from code": this file is copied
into every saved model and run by MLflow when it loads one (no pickled object is ever loaded).

Never imported by `cnnlab` (it imports MLflow and sets MLflow's current model); `mlflow_model.save_pyfunc`
passes its path.
"""

import json
from pathlib import Path

import mlflow.models
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from cnnlab.analysis.novelty import load_reference
from cnnlab.deploy.mlflow_model import predict_frame


class ImageClassifier(PythonModel):
    """A CNN Lab run's classifier: base64 image files in, labels and class probabilities out
    (`cnnlab.deploy.mlflow_model` describes both)."""

    def load_context(self, context) -> None:
        """Load the Keras model and the preprocessing settings saved beside it."""
        import keras

        from cnnlab.model import ModelConfig

        spec = json.loads(Path(context.artifacts["spec"]).read_text())
        self.class_names = list(spec["class_names"])
        self.config = ModelConfig(
            image_size=tuple(spec["image_size"]), color_mode=spec["color_mode"], resize_mode=spec["resize_mode"]
        )
        self.temperature = spec.get("temperature")  # absent in models saved before calibration
        novelty = context.artifacts.get("novelty")
        self.reference = load_reference(Path(novelty)) if novelty else None
        self.model = keras.saving.load_model(context.artifacts["model"], compile=False)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """One output row per input image (an unreadable image gets its error, the others their labels).

        The DataFrame type hint tells MLflow to check the input against the saved signature only."""
        return predict_frame(self.model, self.class_names, self.config, model_input, self.temperature, self.reference)


mlflow.models.set_model(ImageClassifier())
