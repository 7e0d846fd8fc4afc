"""Where a scoring model lives: the names of the files a training run logs, and loading them back.

Training writes these artifacts and the service, batch scoring and the promotion gate read them;
the names are kept here once. Loading needs only this room (no training job is imported).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from leadscore.model.scoring_model import LeadScoringModel

MODEL_ARTIFACT = "scoring_model"
"""The pyfunc artifact key of the pickled :class:`LeadScoringModel`."""
MODEL_PICKLE = "scoring_model.pkl"
"""The file name of that pickle inside the logged MLflow model."""
TEST_FEATURES_ARTIFACT = "evaluation/test_features.parquet"
"""The candidate's test rows (features + label), read by the promotion gate to compare models."""
TEST_PREDICTIONS_ARTIFACT = "evaluation/test_predictions.parquet"
"""Held-out test-period scores of the evaluated model and its baselines: the promotion gate's evidence."""
CHAMPION = "champion"
"""The registry alias of the model the service scores with."""
PREVIOUS = "previous"
"""The alias kept on the champion a promotion replaced (``leadscore rollback`` restores it)."""
CHALLENGER = "challenger"
"""The alias of a retrained model that passed the gate: the service scores it in shadow, never returns it."""

#: Modules the model's parts were pickled from before they moved to this room: models logged by
#: earlier versions still load.
_MOVED_MODULES = {
    "leadscore.training.model": "leadscore.model.scoring_model",
    "leadscore.training.explain": "leadscore.model.explain",
    "leadscore.training.calibration": "leadscore.model.calibration",
    "leadscore.training.uncertainty": "leadscore.model.uncertainty",
    "leadscore.training.encoding": "leadscore.model.encoding",
    "leadscore.training.cadence": "leadscore.model.cadence",
}


class _ModelUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(_MOVED_MODULES.get(module, module), name)


def save_model_pickle(model: LeadScoringModel, path: Path) -> Path:
    """Pickle ``model`` to ``path`` (the file logged as :data:`MODEL_ARTIFACT`)."""
    with open(path, "wb") as handle:
        pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def read_model_pickle(path: Path | str) -> LeadScoringModel:
    """The :class:`LeadScoringModel` pickled at ``path`` (also by earlier leadscore versions)."""
    with open(path, "rb") as handle:
        model = _ModelUnpickler(handle).load()
    if not isinstance(model, LeadScoringModel):
        raise TypeError(f"{path} holds a {type(model).__name__}, not a LeadScoringModel")
    return model


def scoring_model_file(*, model_name: str, version: str) -> Path:
    """The local copy of a registered pyfunc version's pickled LeadScoringModel (downloaded once)."""
    client = mlflow.MlflowClient()
    model_version = client.get_model_version(model_name, version)
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version}")
    candidates = list(Path(local).rglob(MODEL_PICKLE))
    if not candidates:
        raise FileNotFoundError(f"{model_name} v{version} ({model_version.source}) has no {MODEL_PICKLE}")
    return candidates[0]


def read_registered_model(path: Path | str, *, version: str) -> LeadScoringModel:
    """The LeadScoringModel at ``path`` (from :func:`scoring_model_file`), labelled with its ``version``."""
    model = read_model_pickle(path)
    model.metadata["version"] = version
    return model


def load_scoring_model(*, model_name: str, version: str) -> LeadScoringModel:
    """The LeadScoringModel inside a registered pyfunc version (no pyfunc wrapper)."""
    path = scoring_model_file(model_name=model_name, version=version)
    return read_registered_model(path, version=version)


def champion_version(*, model_name: str) -> str | None:
    """The version the ``champion`` alias points at; None before the first promotion."""
    return resolve_version(model_name=model_name, alias_or_version=CHAMPION)


def resolve_version(*, model_name: str, alias_or_version: str) -> str | None:
    """The version that a number or an alias (``champion``, ``previous``...) names; None if unset."""
    if alias_or_version.isdigit():
        return alias_or_version
    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(model_name, alias_or_version).version)
    except MlflowException:
        return None
