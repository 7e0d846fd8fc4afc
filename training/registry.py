"""Model registry: champion alias with a not-worse gate, and rollback."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from sklearn.metrics import roc_auc_score

from leadscore.training.artifacts import TEST_FEATURES_ARTIFACT
from leadscore.training.model import LeadScoringModel
from leadscore.training.pyfunc import MODEL_ARTIFACT

CHAMPION = "champion"
PREVIOUS = "previous"


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    candidate_version: str
    champion_version: str | None
    candidate_auc: float
    champion_auc: float | None
    reason: str


def load_scoring_model(*, model_name: str, version: str) -> LeadScoringModel:
    """The LeadScoringModel inside a registered pyfunc version (no pyfunc wrapper)."""
    client = mlflow.MlflowClient()
    model_version = client.get_model_version(model_name, version)
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{model_name}/{version}")
    candidates = list(Path(local).rglob("scoring_model.pkl"))
    if not candidates:
        raise FileNotFoundError(f"{model_name} v{version} ({model_version.source}) has no {MODEL_ARTIFACT}")
    with open(candidates[0], "rb") as handle:
        model: LeadScoringModel = pickle.load(handle)
    model.metadata["version"] = version
    return model


def comparability_problem(*, candidate: LeadScoringModel, champion: LeadScoringModel) -> str | None:
    """Why two models cannot be compared on the candidate's test rows, or None when they can."""
    if candidate.horizon_days != champion.horizon_days:
        return f"horizon {candidate.horizon_days} vs {champion.horizon_days} days"
    if (candidate.flat is None) != (champion.flat is None):
        return "one scores flat export rows, the other leads with activities"
    missing = sorted(set(champion.feature_names) - set(candidate.feature_names))
    if missing:
        return f"the champion needs features the candidate's test rows lack: {missing[:5]}"
    if str(champion.metadata.get("test_start", "")) > str(candidate.metadata.get("test_start", "")):
        return "the champion was trained on data from the candidate's test period"
    return None


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


def promote(
    *, model_name: str, version: str | None = None, force: bool = False, tolerance: float = 0.0
) -> PromotionDecision:
    """Move the champion alias to ``version`` (default: latest) if it is not worse on the same test data.

    Both models are scored on the candidate's logged test period; the candidate is promoted when
    its ROC AUC is at least the champion's minus ``tolerance``, or when ``force`` is set. The old
    champion keeps the ``previous`` alias for rollback.
    """
    client = mlflow.MlflowClient()
    if version is None:
        versions = client.search_model_versions(f"name='{model_name}'")
        if not versions:
            raise ValueError(f"no registered versions of model '{model_name}'")
        version = str(max(int(v.version) for v in versions))
    candidate_run = client.get_model_version(model_name, version).run_id
    test_path = mlflow.artifacts.download_artifacts(
        run_id=candidate_run, artifact_path=TEST_FEATURES_ARTIFACT
    )
    test = pd.read_parquet(test_path)
    y = test["label"].astype(int).to_numpy()
    candidate_auc = float(
        roc_auc_score(
            y, load_scoring_model(model_name=model_name, version=version).predict_proba_features(test)
        )
    )
    current = champion_version(model_name=model_name)
    champion_auc = None
    if current is not None and current != version:
        champion = load_scoring_model(model_name=model_name, version=current)
        candidate_model = load_scoring_model(model_name=model_name, version=version)
        mismatch = comparability_problem(candidate=candidate_model, champion=champion)
        if mismatch and not force:
            return PromotionDecision(
                False,
                version,
                current,
                candidate_auc,
                None,
                f"not comparable with champion v{current}: {mismatch} (use --force)",
            )
        champion_auc = (
            float(roc_auc_score(y, champion.predict_proba_features(test))) if not mismatch else None
        )
    if current == version:
        return PromotionDecision(
            False, version, current, candidate_auc, candidate_auc, "already the champion"
        )
    not_worse = (champion_auc is not None and candidate_auc >= champion_auc - tolerance) or current is None
    if not (not_worse or force):
        return PromotionDecision(
            False,
            version,
            current,
            candidate_auc,
            champion_auc,
            f"candidate AUC {candidate_auc:.4f} < champion {champion_auc:.4f} - {tolerance}",
        )
    if current is not None:
        client.set_registered_model_alias(model_name, PREVIOUS, current)
    client.set_registered_model_alias(model_name, CHAMPION, version)
    if current is None:
        reason = "no champion yet"
    elif champion_auc is None:
        reason = f"forced over a champion it cannot be compared with (v{current})"
    else:
        reason = f"candidate AUC {candidate_auc:.4f} vs champion {champion_auc:.4f}" + (
            " (forced)" if not not_worse else ""
        )
    return PromotionDecision(True, version, current, candidate_auc, champion_auc, reason)


def rollback(*, model_name: str) -> str:
    """Point champion back at the previous champion; returns the version now serving."""
    client = mlflow.MlflowClient()
    try:
        previous = str(client.get_model_version_by_alias(model_name, PREVIOUS).version)
    except MlflowException as error:
        raise ValueError(f"model '{model_name}' has no '{PREVIOUS}' alias to roll back to") from error
    current = champion_version(model_name=model_name)
    client.set_registered_model_alias(model_name, CHAMPION, previous)
    if current is not None:
        client.set_registered_model_alias(model_name, PREVIOUS, current)
    return previous


def auc_or_nan(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
