"""Hyperparameter search for the LightGBM booster (Optuna TPE), tracked as nested MLflow runs.

The objective is the validation ROC AUC on the same time-ordered split that :class:`TrainJob`
uses; every trial trains through ``TrainJob.fit_booster`` with a modified config, so tuning and
training cannot drift apart. The test period is never used for selection (its AUC for the best
trial is logged for reference only).

    leadscore tune --trials 40 --timeout 1800

Each trial is a nested run under a parent run named ``tune``; the parent holds the best
parameters, an optimisation-history plot and ``tune/best_train_config.yaml``, a full
``leadscore train --config`` file with the best booster.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import optuna
import pandas as pd
import yaml
from sklearn.metrics import roc_auc_score

from leadscore.model.encoding import CategoryCodeEncoder
from leadscore.training import plots
from leadscore.training.config import BoosterConfig, TrainConfig
from leadscore.training.split import TimeSplit
from leadscore.training.train import TrainJob, git_commit, use_experiment

log = logging.getLogger(__name__)
BEST_CONFIG_ARTIFACT = "tune/best_train_config.yaml"
HISTORY_ARTIFACT = "plots/optimization_history.png"


@dataclass(frozen=True)
class Dimension:
    """One searched LightGBM parameter (a field of :class:`BoosterConfig`)."""

    name: str
    low: float
    high: float
    integer: bool = False
    log: bool = False

    def suggest(self, trial: optuna.Trial) -> float | int:
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high and (not self.integer or float(value).is_integer())


SEARCH_SPACE: tuple[Dimension, ...] = (
    Dimension("learning_rate", 0.01, 0.3, log=True),
    Dimension("num_leaves", 8, 128, integer=True, log=True),
    Dimension("max_depth", 3, 12, integer=True),
    Dimension("min_child_samples", 10, 300, integer=True, log=True),
    Dimension("feature_fraction", 0.5, 1.0),
    Dimension("lambda_l2", 1e-3, 10.0, log=True),
)


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    run_id: str
    params: dict[str, float | int]
    validation_roc_auc: float
    best_iteration: int


class TuneJob:
    """Search LightGBM parameters that maximise validation ROC AUC; returns the best :class:`BoosterConfig`.

    Parameters outside :data:`SEARCH_SPACE` (max rounds, early stopping, bagging, class balance,
    threads) and the split, seed and table come from ``config``. The sampler is TPE seeded with
    ``config.seed``; with ``include_current`` the first trial is the current booster config (when
    it lies inside the search space), so the result is never worse on validation than what you had.
    After :meth:`run`, ``study``, ``run_id`` (the parent run) and ``trials`` describe the search.
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        trials: int,
        timeout_seconds: float | None,
        include_current: bool = True,
    ) -> None:
        if trials < 1:
            raise ValueError(f"trials must be at least 1, got {trials}")
        if timeout_seconds is not None and timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        self.config = config
        self.trials = trials
        self.timeout_seconds = timeout_seconds
        self.include_current = include_current
        self.study: optuna.Study | None = None
        self.run_id: str | None = None
        self.outcomes: list[TrialOutcome] = []
        self._best: tuple[int, float, CategoryCodeEncoder, lgb.Booster] | None = None
        self._feature_names: tuple[str, ...] = ()

    # --- public ----------------------------------------------------------------------------------
    def run(self) -> BoosterConfig:
        config = self.config
        job = TrainJob(config)
        # exactly TrainJob's split: time-ordered (time_ordered_split) with horizon purging
        split = job.split(pd.read_parquet(config.training_table))
        self._feature_names = job.feature_names
        log.info("tune split: %s", split.describe())

        previous_verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            sampler = optuna.samplers.TPESampler(seed=config.seed)
            study = optuna.create_study(direction="maximize", sampler=sampler, study_name="leadscore-tune")
            current = self._current_params()
            if self.include_current and all(d.contains(current[d.name]) for d in SEARCH_SPACE):
                study.enqueue_trial(current, user_attrs={"source": "current config"})
            self.study, self.outcomes, self._best = study, [], None
            use_experiment(config.tracking.experiment)
            with mlflow.start_run(run_name="tune") as parent:
                self.run_id = parent.info.run_id
                mlflow.set_tags({"mlflow.source.git.commit": git_commit(), "leadscore.stage": "tune"})
                mlflow.log_params(
                    {
                        "tune.trials": self.trials,
                        "tune.timeout_seconds": self.timeout_seconds,
                        "tune.sampler": "TPESampler",
                        "tune.seed": config.seed,
                        "tune.objective": "validation_roc_auc",
                        "training_table": str(config.training_table),
                        "split.kind": "time_ordered" if job.has_time else "stratified (no timestamps)",
                        **{f"split.{k}": v for k, v in split.describe().items()},
                    }
                )
                mlflow.log_dict(
                    {
                        d.name: {"low": d.low, "high": d.high, "integer": d.integer, "log": d.log}
                        for d in SEARCH_SPACE
                    },
                    "tune/search_space.json",
                )
                study.optimize(
                    lambda trial: self._objective(trial, split),
                    n_trials=self.trials,
                    timeout=self.timeout_seconds,
                    gc_after_trial=True,
                )
                best = self.best_booster()
                self._log_parent(split=split, best=best)
        finally:
            optuna.logging.set_verbosity(previous_verbosity)
        return best

    def best_booster(self) -> BoosterConfig:
        """The base booster config with the best trial's parameters."""
        if self.study is None:
            raise RuntimeError("run() first")
        return self._booster_with(self.study.best_trial.params)

    def best_train_config(self) -> TrainConfig:
        """The full training config with the best booster (what the YAML artifact holds)."""
        return self.config.model_copy(update={"booster": self.best_booster()})

    # --- steps -----------------------------------------------------------------------------------
    def _current_params(self) -> dict[str, Any]:
        booster = self.config.booster
        return {d.name: getattr(booster, d.name) for d in SEARCH_SPACE}

    def _booster_with(self, params: dict[str, Any]) -> BoosterConfig:
        return BoosterConfig.model_validate({**self.config.booster.model_dump(), **params})

    def _objective(self, trial: optuna.Trial, split: TimeSplit) -> float:
        params = {d.name: d.suggest(trial) for d in SEARCH_SPACE}
        trial_config = self.config.model_copy(update={"booster": self._booster_with(params)})
        with mlflow.start_run(run_name=f"trial-{trial.number:03d}", nested=True) as child:
            mlflow.set_tags(
                {
                    "leadscore.stage": "tune-trial",
                    "optuna.trial_number": str(trial.number),
                    "optuna.source": str(trial.user_attrs.get("source", "TPE")),
                }
            )
            mlflow.log_params(params)
            encoder, booster = TrainJob(trial_config).fit_booster(split)
            best_iteration = int(booster.best_iteration or booster.current_iteration())
            value = _roc_auc(encoder, booster, split.validation, self._feature_names)
            # tree count x leaves drive TreeSHAP (reason) cost per lead: see benchmarks/bench_explain.py
            leaves = sum(int(t["num_leaves"]) for t in booster.dump_model()["tree_info"])
            mlflow.log_metrics(
                {
                    "validation_roc_auc": value,
                    "best_iteration": float(best_iteration),
                    "num_trees": float(booster.num_trees()),
                    "total_leaves": float(leaves),
                }
            )
        trial.set_user_attr("run_id", child.info.run_id)
        trial.set_user_attr("best_iteration", best_iteration)
        self.outcomes.append(TrialOutcome(trial.number, child.info.run_id, params, value, best_iteration))
        if self._best is None or value > self._best[1]:
            self._best = (trial.number, value, encoder, booster)
        return value

    def _log_parent(self, *, split: TimeSplit, best: BoosterConfig) -> None:
        assert self.study is not None
        best_trial = self.study.best_trial
        best_value = float(best_trial.value)  # type: ignore[arg-type]
        mlflow.log_params({f"best.{k}": v for k, v in best_trial.params.items()})
        mlflow.set_tags({"best_trial_run_id": str(best_trial.user_attrs["run_id"])})
        metrics = {
            "best_validation_roc_auc": best_value,
            "best_iteration": float(best_trial.user_attrs["best_iteration"]),
            "completed_trials": float(len(self.outcomes)),
        }
        if self._best is not None and self._best[0] == best_trial.number:
            # reference only: the test period played no part in choosing the parameters
            metrics["best_test_roc_auc"] = _roc_auc(
                self._best[2], self._best[3], split.test, self._feature_names
            )
        current = [t for t in self.study.trials if t.user_attrs.get("source") == "current config"]
        if current and current[0].value is not None:
            metrics["current_validation_roc_auc"] = float(current[0].value)
        mlflow.log_metrics(metrics)
        mlflow.log_text(
            best_config_yaml(self.best_train_config(), best_value=best_value), BEST_CONFIG_ARTIFACT
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = plots.save_figure(
                optimization_history_figure(self.study), Path(tmp) / "optimization_history.png"
            )
            mlflow.log_artifact(str(path), "plots")


def _roc_auc(
    encoder: CategoryCodeEncoder, booster: lgb.Booster, part: pd.DataFrame, feature_names: tuple[str, ...]
) -> float:
    raw = booster.predict(encoder.transform(part.loc[:, list(feature_names)]), raw_score=True)
    return float(roc_auc_score(part["label"].astype(int).to_numpy(), raw))


def best_config_yaml(config: TrainConfig, *, best_value: float | None = None) -> str:
    """A complete ``leadscore train --config`` file."""
    header = "# `leadscore train --config` file written by `leadscore tune`"
    if best_value is not None:
        header += f" (best validation ROC AUC {best_value:.4f})"
    body = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    return f"{header}\n{body}"


def optimization_history_figure(study: optuna.Study) -> Any:
    """Each trial's validation AUC and the best so far."""
    plots._ensure_backend()
    import matplotlib.pyplot as plt

    done = [t for t in study.trials if t.value is not None]
    numbers = np.array([t.number for t in done])
    values = np.array([t.value for t in done], dtype=np.float64)
    figure, ax = plt.subplots(figsize=(7, 4.2))
    ax.scatter(numbers, values, color="#2b6cb0", s=24, label="trial", zorder=3)
    if len(values):
        ax.step(numbers, np.maximum.accumulate(values), where="post", color="#c05621", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation ROC AUC")
    ax.set_title("Optuna optimisation history (TPE)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return figure
