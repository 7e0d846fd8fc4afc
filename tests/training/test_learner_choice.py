"""The model the evidence picks (issue 30 part 2): ``train`` deploys the linear model when it ranks the
validation period better beyond chance (a linear truth with a market index leaving its range) and
LightGBM when it does (an interaction no linear model can draw); the card and MLflow say why."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from leadscore.features.build import FlatBuildJob
from leadscore.model.linear import LinearScorer
from leadscore.training.config import BoosterConfig, TrackingConfig, TrainConfig
from leadscore.training.train import TrainingResult, TrainJob

N_ROWS = 9000
FEATURES = [f"signal_{i}" for i in range(24)]


def linear_truth(frame: pd.DataFrame) -> np.ndarray:
    return -3.0 + frame[FEATURES].to_numpy() @ np.full(len(FEATURES), 0.3) + 0.5 * frame["market"]


def interaction_truth(frame: pd.DataFrame) -> np.ndarray:
    a, b = frame["signal_0"].to_numpy(), frame["signal_1"].to_numpy()
    return -1.5 + 2.5 * np.sign(a * b)


def train_on(
    home: Path, mlflow_store_template: Path, *, truth: Callable[[pd.DataFrame], np.ndarray], name: str
) -> TrainingResult:
    rng = np.random.default_rng(7)
    created = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.sort(rng.uniform(0, 400, N_ROWS)), unit="D")
    frame = pd.DataFrame({f: rng.normal(0, 1, N_ROWS) for f in FEATURES})
    frame["market"] = (created - created.min()).days.to_numpy() / 100.0 + rng.normal(
        0, 0.1, N_ROWS
    )  # a trend
    y = rng.random(N_ROWS) < 1 / (1 + np.exp(-truth(frame)))
    export = frame.assign(**{"Lead ID": [f"L{i}" for i in range(N_ROWS)], "Created": created, "Converted": y})
    export.to_csv(home / "export.csv", index=False)
    columns = {f: {"role": "numeric", "family": "engagement", "label": f} for f in FEATURES}
    columns["market"] = {"role": "numeric", "family": "context", "label": "Market index"}
    mapping = {
        "name": name,
        "source": {"path": "export.csv"},
        "id_column": "Lead ID",
        "created_at_column": "Created",
        "label": {"column": "Converted", "positive_values": ["True"]},
        "columns": columns,
    }
    (home / "mapping.yaml").write_text(yaml.safe_dump(mapping))
    shutil.copyfile(mlflow_store_template, home / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        patch.setenv("LEADSCORE_HOME", str(home))
        FlatBuildJob(mapping_path=home / "mapping.yaml", output=home / "table.parquet").run()
        config = TrainConfig(
            training_table=home / "table.parquet",
            booster=BoosterConfig(max_rounds=200),
            tracking=TrackingConfig(experiment=name, model_name=name, register_model=False),
        )
        result = TrainJob(config).run()
        result.metrics["_params"] = mlflow.get_run(result.run_id).data.params  # type: ignore[assignment]
        result.metrics["_card"] = mlflow.artifacts.load_text(f"runs:/{result.run_id}/model_card.md")  # type: ignore[assignment]
    return result


def test_a_linear_truth_deploys_the_linear_model(tmp_path: Path, mlflow_store_template: Path) -> None:
    result = train_on(tmp_path, mlflow_store_template, truth=linear_truth, name="linear-truth")
    model = result.model
    assert isinstance(model.booster, LinearScorer)
    assert model.metadata["learner"] == "linear"
    assert result.metrics["validation_roc_auc_linear"] > result.metrics["validation_roc_auc_lightgbm"]
    assert "the linear model ranks leads better" in str(model.metadata["learner_choice"])
    assert result.metrics["_params"]["learner"] == "linear"  # type: ignore[index]
    assert "L2-regularised logistic regression" in str(result.metrics["_card"])
    # the comparison names the deployed learner; reasons still come from exact contributions
    assert "linear" in set(result.comparison["model"])
    sample = pd.read_parquet(tmp_path / "table.parquet").tail(200)
    contributions = model.contributions(sample)
    np.testing.assert_allclose(contributions.sum(axis=1), model.raw_scores(sample), atol=1e-9)
    scored = model.score_features(sample.head(20), explain=True)
    assert all(0.0 < r["probability"] < 1.0 for r in scored)
    assert any(r["reasons_positive"] for r in scored)


def test_an_interaction_keeps_lightgbm(tmp_path: Path, mlflow_store_template: Path) -> None:
    result = train_on(tmp_path, mlflow_store_template, truth=interaction_truth, name="interaction-truth")
    assert result.model.metadata["learner"] == "lightgbm"
    assert "LightGBM ranks leads better" in str(result.model.metadata["learner_choice"])
    assert result.metrics["validation_roc_auc_lightgbm"] > result.metrics["validation_roc_auc_linear"] + 0.1
