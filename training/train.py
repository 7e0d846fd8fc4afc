"""The training job: a checklist from the training table to a registered, explainable model."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow.data import pandas_dataset

from leadscore.features.build import file_sha256
from leadscore.features.catalogue import (
    CATEGORICAL_FEATURES,
    FEATURE_CATALOGUE,
    FEATURE_NAMES,
    Family,
    catalogue_frame,
    monotone_constraints,
)
from leadscore.features.mapping import ExportMapping, FlatFeatureTransform
from leadscore.settings import PROJECT_ROOT, default_artifact_root
from leadscore.training import evaluation, plots
from leadscore.training.baselines import EngagementPointsScorer, RuleBasedScorer, make_logistic_baseline
from leadscore.training.calibration import IsotonicCalibrator, PlattCalibrator, fit_calibrator
from leadscore.training.config import TrainConfig
from leadscore.training.encoding import CategoryCodeEncoder
from leadscore.training.model import GradeCutoffs, LeadScoringModel, TierThresholds
from leadscore.training.model_card import render_model_card
from leadscore.training.pyfunc import MODEL_ARTIFACT, LeadScoringPyfunc, input_signature, save_model_pickle
from leadscore.training.split import TimeSplit, stratified_split, time_ordered_split
from leadscore.training.thresholds import ThresholdChoice, recommend_thresholds, threshold_table
from leadscore.training.uncertainty import ScoreUncertainty

log = logging.getLogger(__name__)
TEST_FEATURES_ARTIFACT = "evaluation/test_features.parquet"
MAX_LOGGED_TEST_ROWS = 200_000


@dataclass(frozen=True)
class TrainingResult:
    model: LeadScoringModel
    run_id: str
    model_version: str | None
    metrics: dict[str, float]
    comparison: pd.DataFrame


@dataclass(frozen=True)
class RunRecord:
    """Everything one training run produced and logs to MLflow."""

    model: LeadScoringModel
    split: TimeSplit
    table: pd.DataFrame
    meta: dict[str, Any]
    metrics: dict[str, float]
    comparison: pd.DataFrame
    predictions: dict[str, np.ndarray]
    """Test-set probabilities per model (``lightgbm`` and the baselines)."""
    y_test: np.ndarray
    choice: Any
    """The recommended thresholds (``recommend_thresholds``)."""
    weeks: float
    """Weeks of leads the test set covers (for per-week workloads)."""


def read_table_metadata(table_path: Path) -> dict[str, Any]:
    """The sidecar written by build-features (snapshot policy, fingerprint, raw example)."""
    sidecar = table_path.with_suffix(".meta.json")
    if not sidecar.exists():
        raise FileNotFoundError(f"{sidecar} is missing: build the table with `leadscore build-features`")
    return json.loads(sidecar.read_text())


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class TrainJob:
    """Train, calibrate, compare with baselines, evaluate, log and register one model."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    @functools.cached_property
    def meta(self) -> dict[str, Any]:
        return read_table_metadata(self.config.training_table)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The table's features: the activity catalogue, or a flat export's mapped columns."""
        return tuple(self.meta.get("feature_names", FEATURE_NAMES))

    @property
    def categorical_features(self) -> tuple[str, ...]:
        return tuple(self.meta.get("categorical_features", CATEGORICAL_FEATURES))

    @property
    def flat_transform(self) -> FlatFeatureTransform | None:
        if self.meta.get("mode") != "flat":
            return None
        return FlatFeatureTransform(ExportMapping.model_validate(self.meta["mapping"]))

    @property
    def has_time(self) -> bool:
        return bool(self.meta.get("has_time", True))

    def split(self, table: pd.DataFrame) -> TimeSplit:
        """Time-ordered split, or a loudly reported stratified split when the export has no timestamps."""
        if self.has_time:
            horizon = int(self.meta["snapshot_policy"]["horizon_days"])
            return time_ordered_split(table, config=self.config.split, horizon_days=horizon)
        log.warning(
            "NO TIMESTAMPS in this export: falling back to a stratified random split. Test metrics do not "
            "show how the model does on future leads; add a created-at column to the mapping if you can."
        )
        return stratified_split(table, config=self.config.split, seed=self.config.seed)

    def run(self) -> TrainingResult:
        config = self.config
        table = pd.read_parquet(config.training_table)
        meta = self.meta
        split = self.split(table)
        log.info("split: %s", split.describe())

        model, choice = self.fit_model(split)
        y_test = split.test["label"].astype(int).to_numpy()
        p_test = model.predict_proba_features(split.test)
        n_ages = len(meta["snapshot_policy"]["ages_days"])
        weeks = self.weeks_covered(split.test, n_ages=n_ages) if self.has_time else 1.0

        baseline_predictions = self.fit_baselines(split)
        predictions = {"lightgbm": p_test, **baseline_predictions}
        amounts = (
            split.test["label_amount"].to_numpy(dtype=float) if "label_amount" in split.test.columns else None
        )
        by_model = evaluation.compare_models(
            y_true=y_test,
            predictions=predictions,
            threshold_by_model={name: choice.sql_threshold for name in predictions},
            amounts=amounts,
        )
        comparison = by_model.reset_index()
        metrics = evaluation.classification_metrics(
            y_true=y_test, y_prob=p_test, threshold=choice.sql_threshold
        )
        lightgbm_row = by_model.loc["lightgbm"].to_dict()
        for column in ("pipeline_capture_top10", "pipeline_capture_top20"):
            if column in lightgbm_row:
                metrics[column] = float(lightgbm_row[column])
        booster = model.booster
        metrics["best_iteration"] = float(booster.best_iteration or booster.current_iteration())
        for name in baseline_predictions:
            for key, value in evaluation.improvement_over(
                table=by_model, reference=name, candidate="lightgbm"
            ).items():
                metrics[f"vs_{name}_{key}"] = float(value)
        run_id, version = self.log_run(
            RunRecord(
                model=model,
                split=split,
                table=table,
                meta=meta,
                metrics=metrics,
                comparison=comparison,
                predictions=predictions,
                y_test=y_test,
                choice=choice,
                weeks=weeks,
            )
        )
        return TrainingResult(
            model=model, run_id=run_id, model_version=version, metrics=metrics, comparison=comparison
        )

    # --- steps ---------------------------------------------------------------------------------
    def fit_model(self, split: TimeSplit) -> tuple[LeadScoringModel, ThresholdChoice]:
        """The deployable model: booster, calibrator, grade cut-offs and MQL/SQL thresholds."""
        config = self.config
        meta = self.meta
        encoder, booster = self.fit_booster(split)
        calibrator = self.fit_calibrator(encoder, booster, split.validation)
        raw_calibration = booster.predict(
            encoder.transform(split.validation.loc[:, list(self.feature_names)]), raw_score=True
        )
        uncertainty = ScoreUncertainty.fit(  # per-lead intervals from the calibration set (issue 16)
            raw=np.asarray(raw_calibration), y=split.validation["label"].astype(int).to_numpy()
        )
        parts: dict[str, Any] = {
            "encoder": encoder,
            "booster": booster,
            "calibrator": calibrator,
            "feature_names": self.feature_names,
            "flat": self.flat_transform,
            "horizon_days": int(meta["snapshot_policy"]["horizon_days"]),
            "uncertainty": uncertainty,
        }
        draft = LeadScoringModel(
            **parts, thresholds=TierThresholds(0.0, 1.0), grade_cutoffs=GradeCutoffs((0, 0, 0), (0, 0, 0))
        )
        n_ages = len(meta["snapshot_policy"]["ages_days"])
        t = config.thresholds
        choice = recommend_thresholds(
            y_true=split.validation["label"].astype(int).to_numpy(),
            y_prob=draft.predict_proba_features(split.validation),
            weeks=self.weeks_covered(split.validation, n_ages=n_ages) if self.has_time else 1.0,
            sql_capacity_per_week=t.sql_capacity_per_week,
            sql_target_precision=t.sql_target_precision,
            mql_capacity_per_week=t.mql_capacity_per_week,
            mql_target_precision=t.mql_target_precision,
            sql_min_score=t.sql_min_score,
            mql_min_score=t.mql_min_score,
        )
        model = LeadScoringModel(
            **parts,
            thresholds=TierThresholds(choice.mql_threshold, choice.sql_threshold, choice.rule),
            grade_cutoffs=self.grade_cutoffs(draft, split.train),
            metadata={
                "model_name": config.tracking.model_name,
                "trained_on": str(config.training_table),
                "test_start": str(split.test_start),
            },
        )
        return model, choice

    def fit_booster(self, split: TimeSplit) -> tuple[CategoryCodeEncoder, lgb.Booster]:
        b = self.config.booster
        encoder = CategoryCodeEncoder(columns=list(self.categorical_features), min_frequency=20)
        x_train = encoder.fit_transform(split.train.loc[:, list(self.feature_names)])
        x_valid = encoder.transform(split.validation.loc[:, list(self.feature_names)])
        y_train = split.train["label"].astype(int).to_numpy()
        y_valid = split.validation["label"].astype(int).to_numpy()
        params: dict[str, Any] = {
            "objective": "binary",
            "metric": ["auc", "binary_logloss"],
            "learning_rate": b.learning_rate,
            "num_leaves": b.num_leaves,
            "max_depth": b.max_depth,
            "min_child_samples": b.min_child_samples,
            "feature_fraction": b.feature_fraction,
            "bagging_fraction": b.bagging_fraction,
            "bagging_freq": b.bagging_freq,
            "lambda_l2": b.lambda_l2,
            "seed": self.config.seed,
            "deterministic": True,
            "verbosity": -1,
            "num_threads": b.num_threads,
            "cat_smooth": 10,
            "max_cat_to_onehot": 8,
            # signals whose direction is known (catalogue ``monotone``) never move the score the wrong way
            "monotone_constraints": monotone_constraints(
                self.feature_names,
                self.flat_transform.catalogue if self.flat_transform is not None else FEATURE_CATALOGUE,
            ),
        }
        if b.balance_classes:
            params["scale_pos_weight"] = float((y_train == 0).sum() / max(1, (y_train == 1).sum()))
        categorical = [i for i, name in enumerate(self.feature_names) if name in self.categorical_features]
        train_set = lgb.Dataset(x_train, y_train, categorical_feature=categorical, free_raw_data=True)
        valid_set = lgb.Dataset(x_valid, y_valid, categorical_feature=categorical, reference=train_set)
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=b.max_rounds,
            valid_sets=[valid_set],
            valid_names=["validation"],
            callbacks=[lgb.early_stopping(b.early_stopping_rounds, first_metric_only=True, verbose=False)],
        )
        if booster.best_iteration and booster.best_iteration < booster.current_iteration():
            booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
        return encoder, booster

    def fit_calibrator(
        self, encoder: CategoryCodeEncoder, booster: lgb.Booster, validation: pd.DataFrame
    ) -> IsotonicCalibrator | PlattCalibrator:
        raw = booster.predict(encoder.transform(validation.loc[:, list(self.feature_names)]), raw_score=True)
        return fit_calibrator(
            method=self.config.calibration, raw=np.asarray(raw), y=validation["label"].astype(int).to_numpy()
        )

    def grade_cutoffs(self, model: LeadScoringModel, train: pd.DataFrame) -> GradeCutoffs:
        sample = train.sample(n=min(len(train), 20_000), random_state=self.config.seed)
        contributions = model.contributions(sample)
        grouped = contributions[:, :-1] @ model._grouping
        fit_part = grouped[:, model._fit_concepts].sum(axis=1)
        engagement_part = grouped[:, model._engagement_concepts].sum(axis=1)
        q = [0.25, 0.5, 0.75]
        fit_q, engagement_q = np.quantile(fit_part, q), np.quantile(engagement_part, q)
        return GradeCutoffs(
            (float(fit_q[0]), float(fit_q[1]), float(fit_q[2])),
            (float(engagement_q[0]), float(engagement_q[1]), float(engagement_q[2])),
        )

    def fit_baselines(self, split: TimeSplit) -> dict[str, np.ndarray]:
        y_train = split.train["label"].astype(int).to_numpy()
        x_train = split.train.loc[:, list(self.feature_names)]
        x_test = split.test.loc[:, list(self.feature_names)]
        flat = self.flat_transform
        if flat is None:
            rule: Any = RuleBasedScorer().fit(x_train, y_train)
        else:
            engagement = [
                f.name for f in flat.catalogue if f.family is not Family.FIT and f.kind.value == "numeric"
            ]
            rule = EngagementPointsScorer(columns=engagement).fit(x_train, y_train)
        sample = split.train.sample(n=min(len(split.train), 200_000), random_state=self.config.seed)
        numeric = [n for n in self.feature_names if n not in set(self.categorical_features)]
        logistic = make_logistic_baseline(
            seed=self.config.seed, categorical_features=self.categorical_features, numeric_features=numeric
        ).fit(sample.loc[:, list(self.feature_names)], sample["label"].astype(int).to_numpy())
        return {
            "rule_points": rule.predict_proba(x_test)[:, 1],
            "logistic": logistic.predict_proba(x_test)[:, 1],
        }

    @staticmethod
    def weeks_covered(part: pd.DataFrame, *, n_ages: int) -> float:
        """Weeks of lead flow a set of snapshots stands for (each lead appears once per snapshot age)."""
        span_days = (part["as_of"].max() - part["as_of"].min()) / pd.Timedelta(days=1)
        return max(1.0, span_days / 7.0) * max(1, n_ages)

    # --- tracking ------------------------------------------------------------------------------
    def log_run(self, record: RunRecord) -> tuple[str, str | None]:
        """Log ``record`` as one MLflow run (a child run under ``mlflow run``); return run id and version."""
        config = self.config
        # under `mlflow run` (MLproject) the project's run is active: train as its child run
        with contextlib.ExitStack() as stack:
            if os.environ.get("MLFLOW_RUN_ID"):
                stack.enter_context(mlflow.start_run())
            else:
                use_experiment(config.tracking.experiment)
            run = stack.enter_context(
                mlflow.start_run(run_name="train", nested=mlflow.active_run() is not None)
            )
            return self._log_into(
                run=run, out=Path(stack.enter_context(tempfile.TemporaryDirectory())), record=record
            )

    def _log_into(self, *, run: Any, out: Path, record: RunRecord) -> tuple[str, str | None]:
        config = self.config
        model, split, table, meta = record.model, record.split, record.table, record.meta
        metrics, comparison, predictions = record.metrics, record.comparison, record.predictions
        y_test, choice, weeks = record.y_test, record.choice, record.weeks
        mlflow.set_tags({"mlflow.source.git.commit": git_commit(), "leadscore.stage": "train"})
        mlflow.log_params(_flatten(config.model_dump(mode="json")))
        mlflow.log_params({f"split.{k}": v for k, v in split.describe().items()})
        mlflow.log_params({"snapshots." + k: str(v) for k, v in meta["snapshot_policy"].items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        for _, row in comparison.iterrows():
            mlflow.log_metrics(
                {
                    f"{row['model']}_{k}": float(row[k])
                    for k in (
                        "roc_auc",
                        "pr_auc",
                        "log_loss",
                        "brier",
                        "ece",
                        "lift_top10",
                        "pipeline_capture_top20",
                    )
                    if k in row and np.isfinite(row[k])
                }
            )
        fingerprint = {
            **meta.get("fingerprint", {}),
            "table_rows": len(table),
            "table_sha256": file_sha256(config.training_table),
        }
        dataset = pandas_dataset.from_pandas(
            table.loc[:, ["lead_id", "as_of", "label"]].head(100_000),
            source=str(config.training_table),
            name="training_table",
            targets="label",
        )
        mlflow.log_input(dataset, context="training")
        mlflow.log_dict(fingerprint, "data/fingerprint.json")
        catalogue = (
            catalogue_frame()
            if self.flat_transform is None
            else pd.DataFrame([f.as_dict() for f in self.flat_transform.catalogue])
        )
        catalogue.to_csv(out / "feature_catalogue.csv", index=False)
        if not self.has_time:
            mlflow.set_tag("leadscore.split", "STRATIFIED: export has no timestamps, not a time-ordered test")
        if self.meta.get("audit_flagged_features"):
            mlflow.set_tag("leadscore.audit_flagged", ", ".join(self.meta["audit_flagged_features"]))
        mlflow.log_artifact(str(out / "feature_catalogue.csv"), "data")
        comparison.to_csv(out / "model_comparison.csv", index=False)
        mlflow.log_artifact(str(out / "model_comparison.csv"), "evaluation")
        table_of_thresholds = threshold_table(y_true=y_test, y_prob=predictions["lightgbm"], weeks=weeks)
        table_of_thresholds.to_csv(out / "thresholds.csv", index=False)
        mlflow.log_artifact(str(out / "thresholds.csv"), "evaluation")
        self.log_plots(
            out=out,
            y_test=y_test,
            predictions=predictions,
            model=model,
            split=split,
            thresholds=table_of_thresholds,
            choice=choice,
        )
        test_rows = split.test.head(MAX_LOGGED_TEST_ROWS)
        test_rows.to_parquet(out / "test_features.parquet", index=False)
        mlflow.log_artifact(str(out / "test_features.parquet"), "evaluation")

        model.metadata["run_id"] = run.info.run_id
        pickle_path = save_model_pickle(model, out / "scoring_model.pkl")
        card = render_model_card(
            model=model,
            meta=meta,
            split=split,
            metrics=metrics,
            comparison=comparison,
            choice=choice,
            config=config,
        )
        mlflow.log_text(card, "model_card.md")
        example = pd.DataFrame(meta["raw_example"]) if meta.get("raw_example") else None
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=LeadScoringPyfunc(),
            artifacts={MODEL_ARTIFACT: str(pickle_path)},
            signature=input_signature(self.flat_transform),
            input_example=example,
            registered_model_name=config.tracking.model_name if config.tracking.register_model else None,
            pip_requirements=["leadscore"],
        )
        version = None
        if config.tracking.register_model and info.registered_model_version is not None:
            version = str(info.registered_model_version)
            client = mlflow.MlflowClient()
            client.update_model_version(config.tracking.model_name, version, description=card)
            client.set_model_version_tag(
                config.tracking.model_name, version, "roc_auc", f"{metrics['roc_auc']:.4f}"
            )
        return run.info.run_id, version

    def log_plots(
        self,
        *,
        out: Path,
        y_test: np.ndarray,
        predictions: dict[str, np.ndarray],
        model: LeadScoringModel,
        split: TimeSplit,
        thresholds: pd.DataFrame,
        choice: Any,
    ) -> None:
        figures = {
            "calibration.png": plots.calibration_plot(y_true=y_test, probabilities=predictions),
            "gains.png": plots.gains_chart(y_true=y_test, scores=predictions),
            "lift.png": plots.lift_chart(y_true=y_test, scores=predictions),
            "score_distribution.png": plots.score_distribution(y_true=y_test, y_prob=predictions["lightgbm"]),
            "thresholds.png": plots.threshold_tradeoff_plot(table=thresholds, choice=choice),
        }
        if "label_amount" in split.test.columns and np.nansum(split.test["label_amount"].to_numpy(float)) > 0:
            figures["pipeline_gains.png"] = plots.pipeline_gains_chart(
                amounts=split.test["label_amount"].to_numpy(dtype=float), scores=predictions
            )
        sample = split.test.sample(
            n=min(len(split.test), self.config.shap_sample), random_state=self.config.seed
        )
        figures.update(shap_figures(model=model, features=sample))
        for name, figure in figures.items():
            mlflow.log_artifact(str(plots.save_figure(figure, out / name)), "plots")


def use_experiment(name: str) -> None:
    """Select (or create) the experiment; with a local SQLite store its artifacts go under LEADSCORE_HOME."""
    if mlflow.get_experiment_by_name(name) is None and mlflow.get_tracking_uri().startswith("sqlite"):
        mlflow.create_experiment(name, artifact_location=(default_artifact_root() / name).as_uri())
    mlflow.set_experiment(name)


def shap_figures(*, model: LeadScoringModel, features: pd.DataFrame) -> dict[str, Any]:
    """SHAP beeswarm of the grouped concepts and their global importance (mean |contribution|)."""
    import matplotlib.pyplot as plt
    import shap

    plots._ensure_backend()

    contributions = model.contributions(features)
    grouped = contributions[:, :-1] @ model._grouping
    labels = [c.label for c in model.concepts]
    # colour each concept by its first feature (the 7-day count for activity signals)
    representative = model._grouping.argmax(axis=0)
    encoded = model.encode(features).to_numpy()[:, representative]
    explanation = shap.Explanation(
        values=grouped, base_values=contributions[:, -1], data=encoded, feature_names=labels
    )
    # shap draws on pyplot's current figure: give it its own, or it paints over the last plot made
    beeswarm = plt.figure()
    shap.plots.beeswarm(explanation, max_display=15, show=False)
    beeswarm.suptitle("Grouped SHAP contributions (log-odds)")
    importance = pd.Series(np.abs(grouped).mean(axis=0), index=labels).sort_values().tail(15)
    figure, ax = plt.subplots(figsize=(7, 5))
    importance.plot.barh(ax=ax, color="#2b6cb0")
    ax.set_xlabel("mean |SHAP| (log-odds)")
    ax.set_title("Global importance by concept")
    return {"shap_beeswarm.png": beeswarm, "shap_importance.png": figure}


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat
