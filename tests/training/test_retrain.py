"""``leadscore retrain``: retrain, run the gate, name a passing model ``challenger`` (champion untouched)."""

from __future__ import annotations

import contextlib

import mlflow
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.model.store import CHALLENGER, champion_version

from ..conftest import Trained


def test_retrain_names_a_challenger_only_through_the_gate_and_never_moves_the_champion(
    trained: Trained,
) -> None:
    client = mlflow.MlflowClient()
    before = champion_version(model_name="leadscore-test")
    arguments = ["retrain", "--set", f"training_table={trained.table_path}"]
    arguments += ["--set", "tracking.model_name=leadscore-test", "--set", "tracking.experiment=test"]
    arguments += ["--set", "booster.max_rounds=200"]
    result = CliRunner().invoke(app, arguments, env={"COLUMNS": "200"})
    try:
        gate_passed = "is the challenger" in result.output
        assert "roc_auc  candidate" in result.output  # the gate's checks are printed
        assert result.exit_code == (0 if gate_passed else 1), result.output
        if not gate_passed:  # on these 12,000 leads LightGBM ties the logistic baseline: no challenger
            assert "not a challenger" in result.output
            with pytest.raises(mlflow.exceptions.MlflowException):
                client.get_model_version_by_alias("leadscore-test", CHALLENGER)
            result = CliRunner().invoke(app, [*arguments, "--force"], env={"COLUMNS": "200"})
            assert result.exit_code == 0, result.output
        challenger = client.get_model_version_by_alias("leadscore-test", CHALLENGER).version
        assert f"version {challenger} is the challenger" in result.output
        assert champion_version(model_name="leadscore-test") == before  # promotion stays a separate step
    finally:
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            client.delete_registered_model_alias("leadscore-test", CHALLENGER)
