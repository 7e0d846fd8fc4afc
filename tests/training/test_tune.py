"""Hyperparameter tuning: nested MLflow runs, best = max of trials, a usable YAML config, determinism."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from sklearn.metrics import roc_auc_score

from leadscore.cli_tune import tune_command
from leadscore.training.config import BoosterConfig, SplitConfig, TrackingConfig, TrainConfig, load_config
from leadscore.training.split import time_ordered_split
from leadscore.training.train import TrainJob
from leadscore.training.tune import BEST_CONFIG_ARTIFACT, SEARCH_SPACE, TuneJob

from ..conftest import Trained

TRIALS = 3


def _config(trained: Trained, experiment: str) -> TrainConfig:
    # the session store of `trained` is already private to this test session; own experiment names
    return trained.config.model_copy(
        update={
            "booster": BoosterConfig(max_rounds=40, early_stopping_rounds=10),
            "tracking": TrackingConfig(experiment=experiment, model_name="leadscore-tune-test"),
        }
    )


@pytest.fixture(scope="module")
def tuned(trained: Trained) -> tuple[TuneJob, BoosterConfig]:
    job = TuneJob(_config(trained, "test-tune"), trials=TRIALS, timeout_seconds=None)
    return job, job.run()


def _children(parent_id: str) -> list[mlflow.entities.Run]:
    parent = mlflow.get_run(parent_id)
    return mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
        output_format="list",
    )


def test_each_trial_is_a_nested_run_under_the_tune_parent(tuned: tuple[TuneJob, BoosterConfig]) -> None:
    job, _ = tuned
    assert job.run_id is not None
    parent = mlflow.get_run(job.run_id)
    assert parent.info.run_name == "tune" and parent.data.tags["leadscore.stage"] == "tune"
    assert mlflow.get_experiment(parent.info.experiment_id).name == "test-tune"
    children = _children(job.run_id)
    assert len(children) == TRIALS
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == job.run_id
        assert {d.name for d in SEARCH_SPACE} <= set(child.data.params)
        assert 0.5 < child.data.metrics["validation_roc_auc"] <= 1.0
        assert 1 <= child.data.metrics["best_iteration"] <= 40
        assert child.data.metrics["num_trees"] == child.data.metrics["best_iteration"]
        assert child.data.metrics["total_leaves"] >= 2 * child.data.metrics["num_trees"]
    assert {c.info.run_id for c in children} == {o.run_id for o in job.outcomes}


def test_best_value_is_the_max_of_the_trials(tuned: tuple[TuneJob, BoosterConfig]) -> None:
    job, best = tuned
    assert job.run_id is not None and job.study is not None
    children = _children(job.run_id)
    values = [c.data.metrics["validation_roc_auc"] for c in children]
    parent = mlflow.get_run(job.run_id)
    assert parent.data.metrics["best_validation_roc_auc"] == pytest.approx(max(values), abs=1e-12)
    assert job.study.best_value == pytest.approx(max(values), abs=1e-12)
    winner = max(children, key=lambda c: c.data.metrics["validation_roc_auc"])
    assert parent.data.tags["best_trial_run_id"] == winner.info.run_id
    for dimension in SEARCH_SPACE:  # the returned config carries the winning trial's parameters
        assert str(getattr(best, dimension.name)) == winner.data.params[dimension.name]
        assert parent.data.params[f"best.{dimension.name}"] == winner.data.params[dimension.name]
    # everything outside the search space is kept from the base config
    assert best.max_rounds == 40 and best.early_stopping_rounds == 10
    assert 0.5 < parent.data.metrics["best_test_roc_auc"] <= 1.0


def test_objective_is_validation_auc_on_trainjobs_time_ordered_split(
    tuned: tuple[TuneJob, BoosterConfig], trained: Trained
) -> None:
    job, best = tuned
    split = time_ordered_split(trained.table, config=SplitConfig(), horizon_days=90)
    refit = TrainJob(job.config.model_copy(update={"booster": best}))
    encoder, booster = refit.fit_booster(split)
    raw = booster.predict(
        encoder.transform(split.validation.loc[:, list(refit.feature_names)]), raw_score=True
    )
    auc = roc_auc_score(split.validation["label"].astype(int), raw)
    assert auc == pytest.approx(mlflow.get_run(job.run_id).data.metrics["best_validation_roc_auc"], abs=1e-12)


def test_first_trial_is_the_current_config(tuned: tuple[TuneJob, BoosterConfig]) -> None:
    job, _ = tuned
    assert job.study is not None
    first = job.study.trials[0]
    assert first.user_attrs["source"] == "current config"
    defaults = BoosterConfig()
    assert first.params == {d.name: getattr(defaults, d.name) for d in SEARCH_SPACE}
    assert mlflow.get_run(job.run_id).data.metrics["current_validation_roc_auc"] == first.value  # type: ignore[arg-type]


def test_parent_logs_history_plot_and_a_train_config(
    tuned: tuple[TuneJob, BoosterConfig], trained: Trained, tmp_path: Path
) -> None:
    job, best = tuned
    client = mlflow.MlflowClient()
    assert "plots/optimization_history.png" in {a.path for a in client.list_artifacts(job.run_id, "plots")}
    local = mlflow.artifacts.download_artifacts(
        run_id=job.run_id, artifact_path=BEST_CONFIG_ARTIFACT, dst_path=str(tmp_path)
    )
    config = load_config(TrainConfig, Path(local))  # exactly what `leadscore train --config` does
    assert config.booster == best
    assert config.training_table == trained.config.training_table
    assert config.seed == trained.config.seed


def test_same_seed_same_search(tuned: tuple[TuneJob, BoosterConfig], trained: Trained) -> None:
    job, best = tuned
    again = TuneJob(_config(trained, "test-tune-repeat"), trials=TRIALS, timeout_seconds=None)
    assert again.run() == best
    assert [(o.params, o.validation_roc_auc, o.best_iteration) for o in again.outcomes] == [
        (o.params, o.validation_roc_auc, o.best_iteration) for o in job.outcomes
    ]


def test_rejects_bad_arguments(trained: Trained) -> None:
    with pytest.raises(ValueError, match="trials"):
        TuneJob(trained.config, trials=0, timeout_seconds=None)
    with pytest.raises(ValueError, match="timeout"):
        TuneJob(trained.config, trials=1, timeout_seconds=0)


def test_tune_command_prints_the_best_params_and_writes_the_config(
    trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = tmp_path / "train.yaml"
    config_path.write_text(
        f"training_table: {trained.config.training_table}\n"
        "booster: {max_rounds: 20, early_stopping_rounds: 5}\n"
        "tracking: {experiment: test-tune-cli, register_model: false}\n"
    )
    out = tmp_path / "best.yaml"
    tune_command(config=config_path, trials=1, timeout=None, out=out)
    printed = capsys.readouterr().out
    assert "best of 1 trials" in printed
    for dimension in SEARCH_SPACE:
        assert dimension.name in printed
    written = load_config(TrainConfig, out)
    assert written.booster.max_rounds == 20 and written.tracking.experiment == "test-tune-cli"
