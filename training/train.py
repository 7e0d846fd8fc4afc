"""The training job: a checklist from the training table to a registered, explainable model."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow.data import pandas_dataset

from leadscore.features.build import TableMetadata, file_sha256, read_table_metadata_model
from leadscore.features.catalogue import (
    CATEGORICAL_FEATURES,
    FEATURE_CATALOGUE,
    FEATURE_NAMES,
    Family,
    FeatureKind,
    catalogue_frame,
    days_since_name,
    monotone_constraints,
)
from leadscore.features.contact_units import FOLLOW_UP_DAYS, HAND_RAISE_TYPES, contact_units_path
from leadscore.features.contract import PII_COLUMNS
from leadscore.features.events import EventFeatureTransform, EventMapping
from leadscore.features.mapping import ColumnRole, ExportMapping, FlatFeatureTransform
from leadscore.features.training_table import lead_ledger_path
from leadscore.model.cadence import RULE_OF_THUMB, TouchCadence
from leadscore.model.calibration import (
    CalibrationAnchor,
    IsotonicCalibrator,
    PlattCalibrator,
    PriorShiftedCalibrator,
    em_prior,
    em_prior_interval,
    em_prior_settled,
    fit_calibrator,
    intercept_shift,
    prior_logit,
    prior_shift_logit,
    shifted_probability,
)
from leadscore.model.encoding import CategoryCodeEncoder
from leadscore.model.linear import LinearScorer
from leadscore.model.pyfunc import LeadScoringPyfunc, event_input_signature, input_signature
from leadscore.model.scoring_model import GradeCutoffs, LeadScoringModel, TierThresholds
from leadscore.model.store import (
    MODEL_ARTIFACT,
    MODEL_PICKLE,
    TEST_FEATURES_ARTIFACT,
    TEST_PREDICTIONS_ARTIFACT,
    save_model_pickle,
)
from leadscore.model.transforms import ContractFeatureTransform, FeatureTransform
from leadscore.settings import PROJECT_ROOT, default_artifact_root
from leadscore.training import evaluation, plots
from leadscore.training.artifacts import log_parquet, scoring_code_dir, scoring_requirements
from leadscore.training.baselines import EngagementPointsScorer, RuleBasedScorer, make_logistic_baseline
from leadscore.training.config import ModelFamily, TrainConfig
from leadscore.training.contact import ContactLearning, learn_contact_effect
from leadscore.training.drift import DriftReport, drift_report
from leadscore.training.honest import comparison_sentences
from leadscore.training.model_card import render_model_card
from leadscore.training.split import TimeAxis, TimeSplit, stratified_split, time_blocks, time_ordered_split
from leadscore.training.thresholds import ThresholdChoice, recommend_thresholds, threshold_table
from leadscore.training.touches import learn_touch_cadence

log = logging.getLogger(__name__)
Scorer = lgb.Booster | LinearScorer
MAX_LOGGED_TEST_ROWS = 200_000
GRADE_SAMPLE_ROWS = 5_000  # rows whose SHAP values set the fit/engagement grade quartiles


@dataclass(frozen=True)
class TrainingResult:
    model: LeadScoringModel
    run_id: str
    model_version: str | None
    metrics: dict[str, float]
    comparison: pd.DataFrame
    evaluated: LeadScoringModel | None = None
    """The pre-test refit whose test-period scores gave ``metrics`` (``model`` is refit on every row)."""
    drift: DriftReport | None = None


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
    choice: ThresholdChoice
    """The evaluated model's thresholds (``recommend_thresholds`` on its newest pre-test rows)."""
    deployed_choice: ThresholdChoice
    """The registered model's thresholds (the same rules on its own newest labelled rows)."""
    weeks: float
    """Weeks of leads the test set covers (for per-week workloads)."""
    drift: DriftReport | None = None


def read_table_metadata(table_path: Path) -> TableMetadata:
    """The validated sidecar written by build-features (features.build's typed reader; sidecars from
    before ``time_axis`` are read too)."""
    sidecar = table_path.with_suffix(".meta.json")
    if not sidecar.exists():
        raise FileNotFoundError(f"{sidecar} is missing: build the table with `leadscore build-features`")
    try:
        return read_table_metadata_model(table_path)
    except ValueError as error:  # pydantic's ValidationError and bad JSON are ValueErrors
        raise ValueError(f"{sidecar} is not a valid table sidecar; rebuild the table: {error}") from None


def table_time_axis(meta: TableMetadata | dict[str, Any]) -> TimeAxis:
    """The sidecar's time axis (old or partial sidecars as dicts: timestamps when ``has_time``, else none)."""
    if isinstance(meta, TableMetadata):
        return TimeAxis(meta.time_axis)
    declared = meta.get("time_axis")
    if declared in {axis.value for axis in TimeAxis}:
        return TimeAxis(declared)
    return TimeAxis.TIMESTAMP if meta.get("has_time", True) else TimeAxis.NONE


def table_horizon_days(meta: TableMetadata | dict[str, Any]) -> int | None:
    """The declared label horizon; None when unknown (absent, null, or the 0 older flat sidecars wrote)."""
    if isinstance(meta, TableMetadata):
        return meta.snapshot_policy.horizon_days
    value = (meta.get("snapshot_policy") or {}).get("horizon_days")
    try:
        days = int(value) if value is not None else 0
    except (TypeError, ValueError):
        return None
    return days if days > 0 else None


def _time_text(frame: pd.DataFrame, axis: TimeAxis) -> str:
    """The newest time value of ``frame`` as text ('' without a time axis)."""
    if axis is TimeAxis.NONE or frame.empty:
        return ""
    return str(frame[axis.column].max())


def _block_text(frame: pd.DataFrame, axis: TimeAxis) -> str:
    """The newest calibration block in words: its rows and, on a time axis, its first and last time."""
    if axis is TimeAxis.NONE or frame.empty:
        return f"{len(frame):,} labelled rows (the last calibration block)"
    column = frame[axis.column]
    return f"{len(frame):,} newest labelled rows, {column.min()} to {column.max()}"


MAX_REGISTRY_DESCRIPTION = 4_800  # MLflow's SQL stores hold 5,000 characters (PostgreSQL refuses more)


def registry_description(card: str) -> str:
    """The model card as a registry description: whole if it fits, else cut at a line with a pointer."""
    if len(card) <= MAX_REGISTRY_DESCRIPTION:
        return card
    pointer = "\n\n... (cut to fit the registry; the whole card is the run's model_card.md artifact)"
    head = card[: MAX_REGISTRY_DESCRIPTION - len(pointer)]
    line_end = head.rfind("\n")
    return (head[:line_end] if line_end > len(head) // 2 else head) + pointer


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


MIN_ANCHOR_POSITIVES = 20
"""Conversions (and non-conversions) each calibration block needs before its level is trusted."""


MIN_PRIOR_ROWS = 50
"""Fewest unlabelled rows an EM base-rate estimate is made from."""
_ESTIMATE_METRICS = {"": "estimate", "_low": "low", "_high": "high", "_mean_predicted": "mean_predicted"}
MIN_CHOICE_OUTCOMES = 20
"""Fewest validation conversions (and non-conversions) on which the learners are compared."""
CHOICE_BOOTSTRAP = 200


@dataclass(frozen=True)
class LearnerChoice:
    """The learner the validation period picked (or the configured one), with its evidence in words."""

    family: ModelFamily
    reason: str
    validation_auc: dict[str, float] = dataclasses.field(default_factory=dict)
    difference_interval: tuple[float, float] | None = None
    """Paired bootstrap 95% interval of ROC AUC linear - LightGBM on the validation lead flow."""


def paired_auc_interval(
    *, y: np.ndarray, first: np.ndarray, second: np.ndarray, seed: int, n_boot: int = CHOICE_BOOTSTRAP
) -> tuple[float, float]:
    """95% paired bootstrap interval of ROC AUC(first) - ROC AUC(second) on the same rows."""
    from scipy.stats import rankdata

    def auc(labels: np.ndarray, scores: np.ndarray) -> float:  # Mann-Whitney: ties count one half
        positives = labels == 1
        n1 = int(positives.sum())
        n0 = len(labels) - n1
        return float((rankdata(scores)[positives].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))

    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        rows = rng.integers(0, len(y), len(y))
        if y[rows].min() == y[rows].max():
            continue
        diffs.append(auc(y[rows], first[rows]) - auc(y[rows], second[rows]))
    if not diffs:
        return float("nan"), float("nan")
    low, high = np.quantile(diffs, [0.025, 0.975])
    return float(low), float(high)


@dataclass(frozen=True)
class AnchorChoice:
    """The calibration's shift to the newest matured block's level, and why (see ``calibration_anchor``)."""

    shift: float
    """Applied: added to every calibrated log-odds (0: the pooled level)."""
    reason: str
    candidate: float | None = None
    """The newest block's shift, applied or not (None: too little data to estimate one)."""


ANCHOR_EVIDENCE_Z = 1.645
"""How sure the test period must be that the anchored level raised log loss to veto it (one-sided 95%)."""
ANCHOR_LEVEL_Z = 1.96
"""How far (binomial z) the newest block's conversions must sit from the pooled level to anchor on it."""


@dataclass(frozen=True)
class LogLossGain:
    """Per-row log loss at the pooled and at the anchored level on the same rows, paired."""

    pooled: float
    anchored: float
    z: float
    """Mean paired difference (anchored - pooled) over its standard error: negative favours the anchor."""

    @property
    def anchored_wins(self) -> bool:
        return self.z < -ANCHOR_EVIDENCE_Z

    def __str__(self) -> str:
        return f"log loss {self.anchored:.4f} anchored vs {self.pooled:.4f} pooled (paired z {self.z:+.1f})"


def paired_log_loss(*, y: np.ndarray, pooled: np.ndarray, anchored: np.ndarray) -> LogLossGain:
    """Compare two probability vectors for the same rows by their per-row log loss."""
    y = np.asarray(y, dtype=np.float64)

    def per_row(p: np.ndarray) -> np.ndarray:
        q = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
        return -(y * np.log(q) + (1 - y) * np.log1p(-q))

    a, b = per_row(anchored), per_row(pooled)
    diff = a - b
    error = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    z = float(diff.mean() / error) if error > 0 else 0.0
    return LogLossGain(pooled=float(b.mean()), anchored=float(a.mean()), z=z)


@dataclass(frozen=True)
class TestVerdict:
    """The pre-test model on its test period's lead flow at the pooled and at the anchored level."""

    gain: LogLossGain
    ece_pooled: float
    ece_anchored: float
    rows: int

    @property
    def anchored_wins(self) -> bool:
        return self.gain.anchored_wins

    def __str__(self) -> str:
        return (
            f"checked on the test period of the pre-test model, {self.rows:,} lead-flow rows: {self.gain}, "
            f"ECE {self.ece_anchored:.4f} vs {self.ece_pooled:.4f}"
        )


def _anchor_reason(calibrator: Any) -> str:
    """The calibration level in words (validation-calibrated models: their validation period's)."""
    return str(getattr(calibrator, "anchor_reason_", "the validation period's"))


def lead_flow_mask(rows: pd.DataFrame, *, ages_days: tuple[int, ...] | list[int] | None) -> np.ndarray:
    """Which ``rows`` are snapshots at the configured ages (not the older-age extras); all rows when
    the table has no snapshot ages or no row is at one (see ``TrainJob.lead_flow_rows``)."""
    if "snapshot_age_days" not in rows.columns or not ages_days:
        return np.ones(len(rows), dtype=bool)
    flow = rows["snapshot_age_days"].to_numpy() <= max(ages_days)
    return flow if flow.any() else np.ones(len(rows), dtype=bool)


def snapshot_weights(rows: pd.DataFrame) -> np.ndarray | None:
    """1 / the number of a lead's snapshots among ``rows``: its snapshots share one outcome."""
    if "lead_id" not in rows.columns:
        return None
    counts = rows.groupby("lead_id", sort=False)["lead_id"].transform("size").to_numpy(dtype=np.float64)
    return 1.0 / counts


class TrainJob:
    """Train, calibrate, compare with baselines, evaluate, log and register one model."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self._learner: LearnerChoice | None = None
        self._validation_fit: tuple[TimeSplit, CategoryCodeEncoder, lgb.Booster] | None = None

    @functools.cached_property
    def table_metadata(self) -> TableMetadata:
        """The table's sidecar, read once through the typed reader."""
        return read_table_metadata(self.config.training_table)

    @functools.cached_property
    def meta(self) -> dict[str, Any]:
        """The sidecar as plain JSON data (other keys kept), for the card, logging and mappings."""
        return self.table_metadata.model_dump(mode="json")

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

    @functools.cached_property
    def event_transform(self) -> EventFeatureTransform | None:
        """An event mapping's transform (own column and activity names), carried by the model."""
        if self.meta.get("mode") != "events":
            return None
        return EventFeatureTransform(EventMapping.model_validate(self.meta["mapping"]))

    @property
    def feature_transform(self) -> FeatureTransform:
        """What the model will read: the table's export mapping, or leadscore's own contract."""
        return self.flat_transform or self.event_transform or ContractFeatureTransform()

    @property
    def time_axis(self) -> TimeAxis:
        return table_time_axis(self.table_metadata)

    @property
    def has_time(self) -> bool:
        """Whether the rows have a time order (timestamps or row order)."""
        return self.time_axis is not TimeAxis.NONE

    @property
    def horizon_days(self) -> int | None:
        """The label horizon in days; None when the export did not declare it."""
        return table_horizon_days(self.table_metadata)

    def split(self, table: pd.DataFrame) -> TimeSplit:
        """Time-ordered split, or a loudly reported stratified split when the export has no time order."""
        if self.has_time:
            if self.time_axis is TimeAxis.TIMESTAMP and self.horizon_days is None:
                log.warning(
                    "label horizon unknown: training rows whose outcome may not have been known at the test "
                    "start cannot be purged; declare the horizon in the mapping"
                )
            split = time_ordered_split(
                table, config=self.config.split, horizon_days=self.horizon_days, time_axis=self.time_axis
            )
            if abs(split.test_share - self.config.split.test_fraction) > 0.05:
                log.warning(
                    "coarse time axis: the test period starts at a period boundary (%s) and holds %.0f%% of "
                    "the labelled rows (%.0f%% requested)",
                    split.test_start,
                    100 * split.test_share,
                    100 * self.config.split.test_fraction,
                )
            return split
        log.warning(
            "NO TIME ORDER in this export: falling back to a stratified random split. Test metrics do not "
            "show how the model does on future leads; add a created-at column to the mapping, or declare "
            "that the rows are in time order, if you can."
        )
        return stratified_split(table, config=self.config.split, seed=self.config.seed)

    def run(self) -> TrainingResult:
        config = self.config
        if config.booster.linear_tree:
            raise ValueError(
                "booster.linear_tree: LightGBM cannot explain linear-leaf trees (no SHAP contributions), so "
                "such a model cannot be registered; compare it with `leadscore backtest`"
            )
        table = pd.read_parquet(config.training_table)
        meta = self.meta
        split = self.split(table)
        # the test period is read on the lead flow at the configured ages, as reps meet it: older-age
        # snapshots (silent old leads, nearly all non-converting) teach the model old leads but would
        # make any ranking look better; their AUC is logged apart (roc_auc_all_ages)
        all_ages_test = split.test
        flow = self.lead_flow_rows(all_ages_test)
        if not flow.all():
            split = dataclasses.replace(split, test=all_ages_test[flow], labelled=split.deployable)
        log.info("split: %s", split.describe())

        model, choice = self.fit_model(split)
        y_test = split.test["label"].astype(int).to_numpy()
        p_test = model.predict_proba_features(split.test)
        n_ages = len(meta["snapshot_policy"].get("ages_days") or [0])
        weeks = self.weeks_covered(split.test, n_ages=n_ages) if self.time_axis is TimeAxis.TIMESTAMP else 1.0
        # the lead flow at the configured ages: older-age snapshots fill the newest periods (their as-of
        # is late) and would read as a falling base rate and a lead-age shift that no lead made
        drift = self.drift(reference=split.earlier[self.lead_flow_rows(split.earlier)], current=split.test)

        baseline_predictions = self.fit_baselines(split)
        model_key = self.model_key
        predictions = {model_key: p_test, **baseline_predictions}
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
        metrics["sql_share"] = float(np.mean(p_test >= choice.sql_threshold))  # did the SQL rule hold?
        if len(all_ages_test) > len(split.test):
            everyone = all_ages_test["label"].astype(int).to_numpy()
            metrics["test_rows_all_ages"] = float(len(all_ages_test))
            metrics["roc_auc_all_ages"] = evaluation.classification_metrics(
                y_true=everyone,
                y_prob=model.predict_proba_features(all_ages_test),
                threshold=choice.sql_threshold,
            )["roc_auc"]
        model_row = by_model.loc[model_key].to_dict()
        for column in ("pipeline_capture_top10", "pipeline_capture_top20"):
            if column in model_row:
                metrics[column] = float(model_row[column])
        if self._learner is not None:
            for name, value in self._learner.validation_auc.items():
                metrics[f"validation_roc_auc_{name}"] = value
        metrics["best_iteration"] = float(str(model.metadata.get("boosting_rounds", 0)))
        metrics["test_share_realised"] = float(split.test_share)
        metrics |= drift.metrics()
        for name in baseline_predictions:
            for key, value in evaluation.improvement_over(
                table=by_model, reference=name, candidate=model_key
            ).items():
                metrics[f"vs_{name}_{key}"] = float(value)
        metrics |= self.prior_check(evaluated=model, split=split, p_test=p_test, y_test=y_test)
        verdict = self.anchor_verdict(evaluated=model, test=split.test)
        if verdict is not None:
            metrics |= {
                "lead_flow_ece_pooled_level": verdict.ece_pooled,
                "lead_flow_ece_anchored_level": verdict.ece_anchored,
            }
        deployed, deployed_choice = self.fit_deployment_model(
            split, evaluated=model, evaluated_choice=choice, anchor_verdict=verdict
        )
        current = self.current_base_rate(deployed, table=table, split=split)
        if current is not None:
            deployed.metadata["base_rate_estimate"] = current
            metrics |= {f"base_rate_estimate{k}": float(current[v]) for k, v in _ESTIMATE_METRICS.items()}
        run_id, version = self.log_run(
            RunRecord(
                model=deployed,
                split=split,
                table=table,
                meta=meta,
                metrics=metrics,
                comparison=comparison,
                predictions=predictions,
                y_test=y_test,
                choice=choice,
                deployed_choice=deployed_choice,
                weeks=weeks,
                drift=drift,
            )
        )
        return TrainingResult(
            model=deployed,
            run_id=run_id,
            model_version=version,
            metrics=metrics,
            comparison=comparison,
            evaluated=model,
            drift=drift,
        )

    def drift(self, *, reference: pd.DataFrame, current: pd.DataFrame) -> DriftReport:
        """Drift of ``current`` against ``reference``; each warning is logged for the CLI."""
        categorical = set(self.categorical_features)
        report = drift_report(
            reference=reference,
            current=current,
            numeric_features=[n for n in self.feature_names if n not in categorical],
            categorical_features=[n for n in self.feature_names if n in categorical],
            time_axis=self.time_axis,
        )
        for warning in report.warnings:
            log.warning("drift: %s", warning)
        return report

    # --- steps ---------------------------------------------------------------------------------
    def fit_model(
        self, split: TimeSplit, *, learner: LearnerChoice | None = None
    ) -> tuple[LeadScoringModel, ThresholdChoice]:
        """The model evaluated on test: the learner (unless given) and its rounds chosen on validation,
        refit on all pre-test rows."""
        self._learner = learner if learner is not None else self.choose_learner(split)
        if not self.config.refit.enabled:
            encoder, booster = (
                self.fit_booster(split)
                if self.family is ModelFamily.LIGHTGBM
                else self.train_booster(split.train, rounds=1)
            )
            self._rounds_per_row = booster.current_iteration() / max(1, len(split.train))
            calibrator = self.fit_calibrator(encoder, booster, split.validation)
            newest, newest_p = split.validation, None
        else:
            rounds = self.choose_rounds(split)
            encoder, booster, calibrator, newest, newest_p = self.fit_refit(
                split.earlier, rounds=rounds, reference_rows=len(split.train)
            )
        return self.assemble(
            encoder=encoder,
            booster=booster,
            calibrator=calibrator,
            newest=newest,
            newest_probability=newest_p,
            grade_rows=split.train,
            fitted_on=split.earlier if self.config.refit.enabled else split.train,
            scope="train + validation (pre-test refit)" if self.config.refit.enabled else "train",
            test_start=split.test_start,
        )

    def model_parts(
        self, *, encoder: CategoryCodeEncoder, booster: Scorer, calibrator: Any
    ) -> dict[str, Any]:
        """What every model of this table carries besides its thresholds, grades and metadata."""
        return {
            "encoder": encoder,
            "booster": booster,
            "calibrator": calibrator,
            "feature_names": self.feature_names,
            "transform": self.feature_transform,
            "horizon_days": self.horizon_days,  # None: the export declared no horizon
            # per-lead intervals from the same held-out scores the calibrator was fitted on (issue 16)
            "uncertainty": getattr(calibrator, "uncertainty_", None),
            "touch_cadence": self.touch_cadence[0],
            "trained_lead_age_days": self.trained_lead_age_days,
            "contact_effect": self.contact_learning.effect,
        }

    @functools.cached_property
    def contact_learning(self) -> ContactLearning:
        """Whether following up a hand-raise helps, from the export's hand-raises
        (``<table>.contact.parquet``).

        Learned from every hand-raise whose horizon ended, test period included: it feeds the follow-up
        advice only, never the score. None when the export has no sales activity or hand-raises.
        """
        if "sales_touches_total" not in self.feature_names:
            return ContactLearning(None, "the export has no sales activity: no follow-up effect to learn")
        path = contact_units_path(self.config.training_table)
        if not path.exists():
            return ContactLearning(
                None, "no hand-raise units beside the table (rebuild it, or the export has no hand-raises)"
            )
        units = pd.read_parquet(path)
        missing = [name for name in self.feature_names if name not in units.columns]
        if missing:
            return ContactLearning(
                None, f"the hand-raise units lack features {missing[:3]}: rebuild the table"
            )
        hand_raise = tuple(
            days_since_name(t.value)
            for t in HAND_RAISE_TYPES
            if days_since_name(t.value) in self.feature_names
        )
        return learn_contact_effect(
            units,
            feature_names=tuple(self.feature_names),
            categorical_features=tuple(self.categorical_features),
            hand_raise_columns=hand_raise,
            follow_up_days=FOLLOW_UP_DAYS,
            seed=self.config.seed,
        )

    @functools.cached_property
    def touch_cadence(self) -> tuple[TouchCadence | None, str]:
        """The sales touches the export's opportunities had (from the lead ledger), and where it comes from.

        Learned from every lead with a known outcome, test period included: it feeds the follow-up
        advice only, never the score, so no test metric reads it. None (the 5-10 rule of thumb) when the
        table has no ledger with sales touches, or too few touched opportunities.
        """
        if "sales_touches_total" not in self.feature_names:
            return None, "the export has no sales activity, so scores carry no follow-up advice"
        path = lead_ledger_path(self.config.training_table)
        if not path.exists():
            return None, "no lead ledger beside the table: the 5-10 rule of thumb"
        import pyarrow.parquet as pq

        names = set(pq.read_schema(path).names)
        if not {"label", "sales_touches"} <= names:
            return None, (
                "the lead ledger was written before sales touches were counted (rebuild the table to learn "
                "them): the 5-10 rule of thumb"
            )
        ledger = pd.read_parquet(
            path, columns=[c for c in ("label", "sales_touches", "horizon_complete") if c in names]
        )
        try:
            cadence, why_not = learn_touch_cadence(ledger)
        except ValueError as error:
            return None, f"{error}: the 5-10 rule of thumb"
        if cadence is None:
            return None, f"{why_not}: the 5-10 rule of thumb"
        return cadence, (
            f"{cadence.span} sales touches: at least 80% of the {cadence.opportunities:,} opportunities "
            f"touched before converting had {cadence.fewest} or more; at least 90%, {cadence.most} or fewer"
        )

    def fit_deployment_model(
        self,
        split: TimeSplit,
        *,
        evaluated: LeadScoringModel,
        evaluated_choice: ThresholdChoice,
        anchor_verdict: TestVerdict | None = None,
    ) -> tuple[LeadScoringModel, ThresholdChoice]:
        """The registered model: the same recipe refit on every labelled row, test period included.

        Its thresholds are chosen by the same rules on its newest calibration block
        (:meth:`choose_thresholds`: a share or capacity rule from its own, in-sample, scores of those
        rows; a precision target from held-out scores), not copied from the evaluated model.
        """
        if not self.config.refit.enabled:
            return evaluated, evaluated_choice
        # every labelled row with a complete horizon, oldest first: the rows purged for the evaluation
        # have known labels by now (for a 90-day horizon, the three months before the test period)
        everything = split.deployable
        rounds = int(str(evaluated.metadata.get("rounds_per_train_row_x1e6", 0))) / 1e6 * len(split.train)
        encoder, booster, calibrator, newest, newest_probability = self.fit_refit(
            everything,
            rounds=max(1, round(rounds)),
            reference_rows=len(split.train),
            anchor_verdict=anchor_verdict,
        )
        chosen_on = _block_text(newest, split.time_axis)
        parts = self.model_parts(encoder=encoder, booster=booster, calibrator=calibrator)
        unthresholded = LeadScoringModel(
            **parts, thresholds=TierThresholds(0.0, 1.0), grade_cutoffs=GradeCutoffs((0, 0, 0), (0, 0, 0))
        )
        try:
            choice = self.choose_thresholds(
                newest=newest,
                held_out_probability=newest_probability,
                own_probability=unthresholded.predict_proba_features(newest),
            )
        except ValueError as error:  # e.g. a precision target the newest block cannot reach
            log.warning(
                "the registered model keeps the evaluated model's thresholds: on its newest labelled block "
                "the rules give none (%s)",
                error,
            )
            choice = dataclasses.replace(evaluated_choice)  # a copy: the card tells the two apart
            chosen_on = (
                "the evaluated model's newest pre-test rows, with the evaluated model's scores: on its own "
                f"newest block the rules gave none ({error})"
            )
        draft = LeadScoringModel(
            **parts,
            thresholds=choice.tier_thresholds(),
            grade_cutoffs=GradeCutoffs((0, 0, 0), (0, 0, 0)),
        )
        metadata = dict(evaluated.metadata)
        metadata |= {
            "fitted_on": (
                "all labelled rows (train + validation + test, and the rows purged for the evaluation); "
                "test metrics come from the pre-test refit"
            ),
            "fitted_rows": len(everything),
            "trained_until": _time_text(everything, split.time_axis),
            "boosting_rounds": booster.current_iteration(),
            "thresholds_chosen_on": chosen_on,
            "thresholds_read_from": self.threshold_scores_text(),
            "calibration_level": _anchor_reason(calibrator),
        }
        model = LeadScoringModel(
            **parts,
            thresholds=choice.tier_thresholds(),
            grade_cutoffs=self.grade_cutoffs(draft, everything),
            reason_baseline=draft.reason_baseline,
            metadata=metadata,
        )
        return model, choice

    def assemble(
        self,
        *,
        encoder: CategoryCodeEncoder,
        booster: Scorer,
        calibrator: Any,
        newest: pd.DataFrame,
        newest_probability: np.ndarray | None,
        grade_rows: pd.DataFrame,
        fitted_on: pd.DataFrame,
        scope: str,
        test_start: Any,
    ) -> tuple[LeadScoringModel, ThresholdChoice]:
        """Thresholds (from held-out probabilities of the newest pre-test rows) and grade cut-offs."""
        config = self.config
        parts = self.model_parts(encoder=encoder, booster=booster, calibrator=calibrator)
        draft = LeadScoringModel(
            **parts, thresholds=TierThresholds(0.0, 1.0), grade_cutoffs=GradeCutoffs((0, 0, 0), (0, 0, 0))
        )
        own = draft.predict_proba_features(newest)
        choice = self.choose_thresholds(
            newest=newest,
            held_out_probability=own if newest_probability is None else newest_probability,
            own_probability=own,
        )
        rounds = booster.current_iteration()
        model = LeadScoringModel(
            **parts,
            thresholds=choice.tier_thresholds(),
            grade_cutoffs=(
                self.grade_cutoffs(draft, grade_rows)
                if not config.booster.linear_tree
                else GradeCutoffs((0, 0, 0), (0, 0, 0))
            ),
            reason_baseline=draft.reason_baseline,  # set by grade_cutoffs, evaluated just before
            metadata={
                "model_name": config.tracking.model_name,
                "trained_on": str(config.training_table),
                "test_start": str(test_start),
                "time_axis": self.time_axis.value,
                "fitted_on": scope,
                "trained_until": _time_text(fitted_on, self.time_axis),
                "boosting_rounds": rounds,
                "rounds_per_train_row_x1e6": round(1e6 * self._rounds_per_row) if self._rounds_per_row else 0,
                "touch_cadence": self.touch_cadence[1],
                "contact_effect": self.contact_learning.summary,
                "calibration_level": _anchor_reason(calibrator),
                "learner": self.family.value,
                "learner_choice": self._learner.reason if self._learner is not None else "configured",
            },
        )
        return model, choice

    def threshold_scores_text(self) -> str:
        """Which scores :meth:`choose_thresholds` reads for this job's rules, in words."""
        rules = self.config.thresholds
        if rules.sql.agreed_probability is not None and rules.mql.agreed_probability is not None:
            return "the agreed scores (no scores read)"
        if rules.sql.target_precision is not None or rules.mql.target_precision is not None:
            return "held-out scores of those rows (a precision target needs labels the model did not see)"
        return "the model's own scores of those rows (in-sample: on new leads the share can differ)"

    def choose_thresholds(
        self, *, newest: pd.DataFrame, held_out_probability: np.ndarray, own_probability: np.ndarray
    ) -> ThresholdChoice:
        """MQL/SQL thresholds by the job's rules on the newest rows.

        A share or capacity rule ("top 10%", "120 leads a week") is a quantile of the scores the model
        will give, so it is read from the model's own scores of the newest rows: under drift the
        held-out scores of boosters fitted on older blocks can sit far from them (on Olist a new landing
        page put 32% of the newest leads above a held-out "top 10%" threshold). A precision target needs
        labels the model did not see, so with one the held-out probabilities decide.
        """
        rules = self.config.thresholds
        needs_held_out = rules.sql.target_precision is not None or rules.mql.target_precision is not None
        n_ages = len(self.meta["snapshot_policy"].get("ages_days") or [0])
        flow = self.lead_flow_rows(newest)
        newest, held_out_probability, own_probability = (
            newest[flow],
            np.asarray(held_out_probability)[flow],
            np.asarray(own_probability)[flow],
        )
        return recommend_thresholds(
            y_true=newest["label"].astype(int).to_numpy(),
            y_prob=held_out_probability if needs_held_out else own_probability,
            weeks=self.weeks_covered(newest, n_ages=n_ages) if self.time_axis is TimeAxis.TIMESTAMP else 1.0,
            rules=self.config.thresholds,
        )

    def lead_flow_rows(self, rows: pd.DataFrame) -> np.ndarray:
        """Which of ``rows`` are snapshots at the table's configured ages (``ages_days``).

        Share and capacity rules ("top 10%", "120 leads a week") and grade quartiles count the flow of
        leads as it comes, once per configured age; the extra older-age snapshots
        (``SnapshotPolicy.older_ages_per_lead``) teach the model old leads and are left out of them.
        All rows when the table has no snapshot ages or no row is at a configured age.
        """
        return lead_flow_mask(rows, ages_days=self.table_metadata.snapshot_policy.ages_days)

    @functools.cached_property
    def trained_lead_age_days(self) -> float | None:
        """The oldest lead age among the table's labelled rows: older leads are outside what the model
        learnt from (None when the table has no lead age)."""
        import pyarrow.parquet as pq

        if "lead_age_days" not in pq.read_schema(self.config.training_table).names:
            return None
        rows = pd.read_parquet(self.config.training_table, columns=["lead_age_days", "label"])
        ages = rows.loc[rows["label"].notna(), "lead_age_days"]
        return float(ages.max()) if len(ages) else None

    _rounds_per_row: float = 0.0

    def booster_params(self, *, y: np.ndarray) -> dict[str, Any]:
        b = self.config.booster
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
            "cat_smooth": b.cat_smooth,
            "min_data_per_group": b.min_data_per_group,
            "max_cat_to_onehot": 8,
            "linear_tree": b.linear_tree,
            # signals whose direction is known (catalogue ``monotone``) never move the score the wrong way
            "monotone_constraints": monotone_constraints(self.feature_names, self.feature_catalogue),
        }
        if b.linear_tree:
            params["linear_lambda"] = 1.0
        if b.balance_classes:
            params["scale_pos_weight"] = float((y == 0).sum() / max(1, (y == 1).sum()))
        return params

    @property
    def _categorical_positions(self) -> list[int]:
        return [i for i, name in enumerate(self.feature_names) if name in self.categorical_features]

    def recency_weights(self, frame: pd.DataFrame) -> np.ndarray | None:
        """0.5 ** (age / half-life) relative to the newest row, when configured and timestamps exist."""
        half_life = self.config.refit.recency_half_life_days
        if half_life is None or self.time_axis is not TimeAxis.TIMESTAMP:
            return None
        age = (frame["as_of"].max() - frame["as_of"]) / pd.Timedelta(days=1)
        return np.asarray(0.5 ** (age.to_numpy(dtype=float) / half_life))

    @property
    def family(self) -> ModelFamily:
        """The learner this job fits: the chosen one once :meth:`choose_learner` ran, else the configured
        one (LightGBM while the choice is still to be made)."""
        if self._learner is not None:
            return self._learner.family
        configured = self.config.learner.family
        return ModelFamily.LIGHTGBM if configured is ModelFamily.AUTO else configured

    @property
    def model_key(self) -> str:
        """The evaluated model's name in comparisons and logged scores: its learner (``lightgbm``,
        ``linear``)."""
        return self.family.value

    def choose_learner(self, split: TimeSplit) -> LearnerChoice:
        """LightGBM or the linear model, by which ranks the validation period's lead flow better.

        Both are fitted on the training period (LightGBM early-stopped on validation, which favours it
        slightly); the linear model is picked only when the paired bootstrap 95% interval of its ROC
        AUC gain lies above 0. A configured family is taken as it is.
        """
        configured = self.config.learner.family
        if configured is not ModelFamily.AUTO:
            return LearnerChoice(family=configured, reason=f"configured (learner.family={configured.value})")
        encoder, booster = self.fit_booster(split)
        self._validation_fit = (split, encoder, booster)
        rows = split.validation[self.lead_flow_rows(split.validation)]
        y = rows["label"].astype(int).to_numpy()
        positives = int(y.sum())
        if min(positives, len(y) - positives) < MIN_CHOICE_OUTCOMES:
            return LearnerChoice(
                family=ModelFamily.LIGHTGBM,
                reason=(
                    f"LightGBM (the default): the validation period has {positives} conversion(s) in "
                    f"{len(y):,} lead-flow rows, too few to compare learners ({MIN_CHOICE_OUTCOMES}+ of each "
                    "outcome)"
                ),
            )
        from sklearn.metrics import roc_auc_score

        linear_encoder, linear = self.train_linear(split.train)
        x = rows.loc[:, list(self.feature_names)]
        boosted = np.asarray(booster.predict(encoder.transform(x), raw_score=True), dtype=float)
        straight = linear.predict(linear_encoder.transform(x), raw_score=True)
        aucs = {
            "lightgbm": float(roc_auc_score(y, boosted)),
            "linear": float(roc_auc_score(y, straight)),
        }
        low, high = paired_auc_interval(y=y, first=straight, second=boosted, seed=self.config.seed)
        gain = aucs["linear"] - aucs["lightgbm"]
        evidence = (
            f"validation ROC AUC linear {aucs['linear']:.3f} vs LightGBM {aucs['lightgbm']:.3f} on "
            f"{len(y):,} lead-flow rows (difference {gain:+.3f}, paired bootstrap 95% CI {low:+.3f} to "
            f"{high:+.3f})"
        )
        if low > 0:
            family, reason = ModelFamily.LINEAR, f"the linear model ranks leads better: {evidence}"
        elif high < 0:
            family, reason = ModelFamily.LIGHTGBM, f"LightGBM ranks leads better: {evidence}"
        else:
            family, reason = (
                ModelFamily.LIGHTGBM,
                f"LightGBM (the default; the linear model is not better beyond chance): {evidence}",
            )
        log.info("learner: %s", reason)
        return LearnerChoice(
            family=family, reason=reason, validation_auc=aucs, difference_interval=(low, high)
        )

    def train_linear(self, frame: pd.DataFrame) -> tuple[CategoryCodeEncoder, LinearScorer]:
        """Encoder + linear model fitted on ``frame`` (market context enters linearly, unclipped)."""
        encoder = CategoryCodeEncoder(columns=list(self.categorical_features), min_frequency=20)
        x = encoder.fit_transform(frame.loc[:, list(self.feature_names)])
        context = {f.name for f in self.feature_catalogue if f.family is Family.CONTEXT}
        scorer = LinearScorer(
            feature_names=self.feature_names,
            categorical=self.categorical_features,
            extrapolate=[n for n in self.feature_names if n in context],
            C=self.config.learner.linear_c,
        )
        scorer.fit(x, frame["label"].astype(int).to_numpy(), sample_weight=self.recency_weights(frame))
        return encoder, scorer

    def train_booster(self, frame: pd.DataFrame, *, rounds: int) -> tuple[CategoryCodeEncoder, Scorer]:
        """Encoder + scorer fitted on ``frame``: a booster for exactly ``rounds`` rounds (no early
        stopping), or the linear model when that is the learner."""
        if self.family is ModelFamily.LINEAR:
            return self.train_linear(frame)
        encoder = CategoryCodeEncoder(columns=list(self.categorical_features), min_frequency=20)
        x = encoder.fit_transform(frame.loc[:, list(self.feature_names)])
        y = frame["label"].astype(int).to_numpy()
        data = lgb.Dataset(
            x, y, weight=self.recency_weights(frame), categorical_feature=self._categorical_positions
        )
        return encoder, lgb.train(self.booster_params(y=y), data, num_boost_round=max(1, rounds))

    def choose_rounds(self, split: TimeSplit) -> int:
        """Boosting rounds by early stopping on validation (remembered per training row for refits)."""
        if self.family is ModelFamily.LINEAR:
            self._rounds_per_row = 0.0
            return 1
        cached = self._validation_fit
        _, booster = cached[1:] if cached is not None and cached[0] is split else self.fit_booster(split)
        rounds = int(booster.current_iteration())
        self._rounds_per_row = rounds / max(1, len(split.train))
        return rounds

    def fit_refit(
        self,
        frame: pd.DataFrame,
        *,
        rounds: int,
        reference_rows: int,
        anchor_verdict: TestVerdict | None = None,
    ) -> tuple[CategoryCodeEncoder, Scorer, Any, pd.DataFrame, np.ndarray]:
        """Booster on all of ``frame`` and a calibrator on its time-blocked out-of-time scores.

        Rounds scale with the rows each fit sees (``rounds`` were right for ``reference_rows``).
        Returns encoder, booster, calibrator and the newest scored block with its held-out
        calibrated probabilities (for thresholds).
        """
        per_row = rounds / max(1, reference_rows)
        encoder, booster = self.train_booster(frame, rounds=max(1, round(per_row * len(frame))))
        folds = list(
            time_blocks(
                frame,
                n_blocks=self.config.refit.calibration_blocks,
                horizon_days=self.horizon_days,
                time_axis=self.time_axis,
            )
        )
        if not folds and self.horizon_days:
            log.warning(
                "out-of-time calibration: the %d-day horizon leaves no earlier block with known labels; "
                "calibration folds are not purged (earlier blocks may include outcomes after a block starts)",
                self.horizon_days,
            )
            folds = list(
                time_blocks(
                    frame,
                    n_blocks=self.config.refit.calibration_blocks,
                    horizon_days=None,
                    time_axis=self.time_axis,
                )
            )
        raw_parts, index_parts = [], []
        for fit_rows, score_rows in folds:
            part = frame.iloc[fit_rows]
            block_encoder, block_booster = self.train_booster(part, rounds=max(1, round(per_row * len(part))))
            scored = frame.iloc[score_rows]
            offset = self.flow_prior_logit(part)
            block_raw = block_booster.predict(
                block_encoder.transform(scored.loc[:, list(self.feature_names)]), raw_score=True
            )
            raw_parts.append(np.asarray(block_raw, dtype=np.float64) - offset)
            index_parts.append(score_rows)
        if not raw_parts:
            raise ValueError(
                "too little data for out-of-time calibration: every time block before the newest one has "
                "fewer than 50 rows or one class; lower refit.calibration_blocks or add data"
            )
        raw = np.concatenate(raw_parts)
        held_out = frame.iloc[np.concatenate(index_parts)]
        fitted = fit_calibrator(
            method=self.config.calibration,
            raw=raw,
            y=held_out["label"].astype(int).to_numpy(),
            sample_weight=self.recency_weights(held_out),
            blocks=np.concatenate([np.full(len(part), b) for b, part in enumerate(index_parts)]),
            block_weights=snapshot_weights(held_out),
        )
        anchor = self.calibration_anchor(
            [np.asarray(fitted.predict(part)) for part in raw_parts],
            [frame.iloc[i] for i in index_parts],
            verdict=anchor_verdict,
        )
        calibrator = PriorShiftedCalibrator(
            fitted,
            self.flow_prior_logit(frame),
            anchor_logit=anchor.shift,
        )
        # plain values, never a training class: the model is unpickled where training is not imported
        calibrator.anchor_reason_ = anchor.reason
        calibrator.anchor_candidate_ = anchor.candidate
        last = index_parts[-1]
        newest = frame.iloc[last]
        newest_p = shifted_probability(np.asarray(fitted.predict(raw_parts[-1])), anchor.shift)
        return encoder, booster, calibrator, newest, newest_p

    def flow_prior_logit(self, rows: pd.DataFrame) -> float:
        """The base-rate log-odds a booster's raw scores are measured from (``PriorShiftedCalibrator``).

        Of the lead flow at the configured ages only: the share of older-age snapshots grows with
        time (only old leads have them), so the base rate over all rows falls with the mix, not with
        the funnel, and measuring from it would put each period's young leads at a different level.
        """
        flow = self.lead_flow_rows(rows)
        weights = self.recency_weights(rows)
        return prior_logit(
            rows["label"].astype(int).to_numpy()[flow], None if weights is None else weights[flow]
        )

    def calibration_anchor(
        self,
        probabilities: list[np.ndarray],
        blocks: list[pd.DataFrame],
        *,
        verdict: TestVerdict | None = None,
    ) -> AnchorChoice:
        """Whether (and by how much) calibration follows the newest matured block's conversion level.

        The shift is the log-odds move that makes the newest block's lead-flow rows' mean pooled
        probability equal their conversion rate. ``auto`` applies it when that block's conversions
        differ from what the pooled level expects beyond chance (|z| > 1.96, binomial), so the
        pre-test model and the registered one follow the same rule and the test period checks it;
        for the registered model a test ``verdict`` in which the anchor significantly raised the
        pre-test model's log loss vetoes it (an adjustment the evidence says does harm is not made).
        """
        mode = self.config.refit.calibration_anchor
        if mode is CalibrationAnchor.NONE or self.time_axis is TimeAxis.NONE:
            return AnchorChoice(shift=0.0, reason="the level pooled over the calibration blocks (anchor off)")
        flow = self.lead_flow_rows(blocks[-1])
        y = blocks[-1]["label"].astype(int).to_numpy()[flow]
        p = probabilities[-1][flow]
        positives = int(y.sum())
        if min(positives, len(y) - positives) < MIN_ANCHOR_POSITIVES:
            return AnchorChoice(
                shift=0.0,
                reason=(
                    f"the pooled level: the newest calibration block has {positives} conversion(s) in "
                    f"{len(y):,} lead-flow rows (an anchor needs {MIN_ANCHOR_POSITIVES}+ of each outcome)"
                ),
            )
        shift = intercept_shift(p, y)
        expected = float(p.sum())
        z = (positives - expected) / max(float(np.sqrt((p * (1 - p)).sum())), 1e-9)
        newest = (
            f"the newest matured block ({_block_text(blocks[-1], self.time_axis)}): {positives:,} "
            f"conversions where the pooled level expects {expected:,.0f} (z {z:+.1f}); log-odds "
            f"{shift:+.2f}, odds x{np.exp(shift):.2f}"
        )
        checked = f"; {verdict}" if verdict is not None else ""
        if mode is CalibrationAnchor.AUTO:
            if abs(z) <= ANCHOR_LEVEL_Z:
                return AnchorChoice(
                    shift=0.0, candidate=shift, reason=f"the pooled level ({newest}: within chance{checked})"
                )
            if verdict is not None and verdict.gain.z > ANCHOR_EVIDENCE_Z:
                return AnchorChoice(
                    shift=0.0,
                    candidate=shift,
                    reason=f"the pooled level (not {newest}: it did harm{checked})",
                )
        return AnchorChoice(shift=shift, candidate=shift, reason=f"anchored on {newest}{checked}")

    def prior_check(
        self, *, evaluated: LeadScoringModel, split: TimeSplit, p_test: np.ndarray, y_test: np.ndarray
    ) -> dict[str, float]:
        """The EM base-rate estimate checked where the answer is known: the pre-test model's scores of
        the test period, labels hidden, against the period's conversion rate (and what moving the
        probabilities to the estimate does to their calibration)."""
        reference = split.validation[self.lead_flow_rows(split.validation)]
        if len(p_test) < MIN_PRIOR_ROWS or len(reference) < MIN_PRIOR_ROWS:
            return {}
        level = float(np.mean(evaluated.predict_proba_features(reference)))
        estimate = em_prior(p_test, trained_prior=level)
        moved = shifted_probability(p_test, prior_shift_logit(trained_prior=level, new_prior=estimate))
        return {
            "base_rate_test_actual": float(np.mean(y_test)),
            "base_rate_test_mean_predicted": float(np.mean(p_test)),
            "base_rate_test_em_estimate": estimate,
            "ece_at_em_estimate": evaluation.expected_calibration_error(y_true=y_test, y_prob=moved),
        }

    def current_base_rate(
        self, model: LeadScoringModel, *, table: pd.DataFrame, split: TimeSplit
    ) -> dict[str, float | int | str] | None:
        """The base rate of the newest snapshots whose outcome is not known yet, estimated from the
        registered model's scores alone (EM prior shift), with a bootstrap 95% interval; None when
        fewer than ``MIN_PRIOR_ROWS`` such rows exist."""
        complete = table.get("horizon_complete", pd.Series(True, index=table.index)).astype(bool)
        open_rows = table[~(table["label"].notna() & complete)]
        open_rows = open_rows[self.lead_flow_rows(open_rows)]
        deployable = split.deployable
        if self.time_axis is not TimeAxis.NONE:
            deployable = deployable.sort_values(self.time_axis.column, kind="stable")
        reference = deployable[self.lead_flow_rows(deployable)].tail(
            max(MIN_PRIOR_ROWS, len(deployable) // self.config.refit.calibration_blocks)
        )
        if len(open_rows) < MIN_PRIOR_ROWS or len(reference) < MIN_PRIOR_ROWS:
            return None
        level = float(np.mean(model.predict_proba_features(reference)))
        p_open = model.predict_proba_features(open_rows)
        estimate = em_prior_settled(p_open, trained_prior=level)
        if not np.isfinite(estimate):  # the scores separate too little: no label-free base rate
            return None
        low, high = em_prior_interval(p_open, trained_prior=level, seed=self.config.seed)
        return {
            "estimate": estimate,
            "low": low,
            "high": high,
            "rows": len(open_rows),
            "mean_predicted": float(np.mean(p_open)),
            "model_level": level,
            "newest_matured_rate": float(reference["label"].astype(float).mean()),
            "newest_snapshot": _time_text(open_rows, self.time_axis),
        }

    def anchor_verdict(self, *, evaluated: LeadScoringModel, test: pd.DataFrame) -> TestVerdict | None:
        """The pre-test model's test period scored at its pooled and at its anchored level (lead flow)."""
        candidate = getattr(evaluated.calibrator, "anchor_candidate_", None)
        applied_shift = float(getattr(evaluated.calibrator, "anchor_logit", 0.0))
        if candidate is None or len(test) == 0:
            return None
        flow = self.lead_flow_rows(test)
        rows = test[flow]
        y = rows["label"].astype(int).to_numpy()
        if y.sum() < MIN_ANCHOR_POSITIVES:
            return None
        applied = evaluated.predict_proba_features(rows)
        pooled = shifted_probability(applied, -applied_shift)
        anchored = shifted_probability(pooled, candidate)
        return TestVerdict(
            gain=paired_log_loss(y=y, pooled=pooled, anchored=anchored),
            ece_pooled=evaluation.expected_calibration_error(y_true=y, y_prob=pooled),
            ece_anchored=evaluation.expected_calibration_error(y_true=y, y_prob=anchored),
            rows=len(y),
        )

    @property
    def feature_catalogue(self) -> tuple[Any, ...]:
        """The catalogue of this table's features: a flat or event mapping's own, else the built-in one."""
        if self.flat_transform is not None:
            return tuple(self.flat_transform.catalogue)
        if self.event_transform is not None:
            return tuple(self.event_transform.catalogue)
        return tuple(FEATURE_CATALOGUE)

    def fit_booster(self, split: TimeSplit) -> tuple[CategoryCodeEncoder, lgb.Booster]:
        """Booster fitted on the training period, early-stopped on the validation period."""
        b = self.config.booster
        encoder = CategoryCodeEncoder(columns=list(self.categorical_features), min_frequency=20)
        x_train = encoder.fit_transform(split.train.loc[:, list(self.feature_names)])
        x_valid = encoder.transform(split.validation.loc[:, list(self.feature_names)])
        y_train = split.train["label"].astype(int).to_numpy()
        y_valid = split.validation["label"].astype(int).to_numpy()
        categorical = self._categorical_positions
        train_set = lgb.Dataset(
            x_train,
            y_train,
            weight=self.recency_weights(split.train),
            categorical_feature=categorical,
            free_raw_data=True,
        )
        valid_set = lgb.Dataset(x_valid, y_valid, categorical_feature=categorical, reference=train_set)
        booster = lgb.train(
            self.booster_params(y=y_train),
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
        self, encoder: CategoryCodeEncoder, booster: Scorer, validation: pd.DataFrame
    ) -> IsotonicCalibrator | PlattCalibrator:
        raw = booster.predict(encoder.transform(validation.loc[:, list(self.feature_names)]), raw_score=True)
        return fit_calibrator(
            method=self.config.calibration, raw=np.asarray(raw), y=validation["label"].astype(int).to_numpy()
        )

    def grade_cutoffs(self, model: LeadScoringModel, train: pd.DataFrame) -> GradeCutoffs:
        """Quartiles of the fit and engagement parts of the score, on a sample of ``train``'s lead flow.

        The same sample sets ``model.reason_baseline`` (the lead flow's mean contribution per concept),
        which the quartiles are read against, as scoring reads them. A quartile from 5,000 rows is within
        about 0.02 of the population's in quantile terms; TreeSHAP costs ~0.5 ms a row for deep
        boosters, so a larger sample only slows training.
        """
        train = train[self.lead_flow_rows(train)]
        sample = train.sample(n=min(len(train), GRADE_SAMPLE_ROWS), random_state=self.config.seed)
        model.reason_baseline = model.lead_flow_baseline(sample)
        grouped, _ = model.grouped_contributions(model.contributions(sample))
        fit_part = grouped[:, model._fit_concepts].sum(axis=1)
        engagement_part = grouped[:, model._engagement_concepts].sum(axis=1)
        q = [0.25, 0.5, 0.75]
        fit_q, engagement_q = np.quantile(fit_part, q), np.quantile(engagement_part, q)
        return GradeCutoffs(
            (float(fit_q[0]), float(fit_q[1]), float(fit_q[2])),
            (float(engagement_q[0]), float(engagement_q[1]), float(engagement_q[2])),
        )

    def fit_baselines(self, split: TimeSplit) -> dict[str, np.ndarray]:
        """Baselines fitted on the same rows as the evaluated model, scored on the test period."""
        return {name: score(split.test) for name, score in self.fit_baseline_models(split).items()}

    def fit_baseline_models(
        self, split: TimeSplit, *, names: tuple[str, ...] = ("rule_points", "logistic")
    ) -> dict[str, Callable[[pd.DataFrame], np.ndarray]]:
        """``rule_points`` and ``logistic`` (or those of ``names``) fitted on the evaluated model's rows
        (rows -> probability)."""
        fit_rows = split.earlier if self.config.refit.enabled else split.train
        y_train = fit_rows["label"].astype(int).to_numpy()
        x_train = fit_rows.loc[:, list(self.feature_names)]
        flat = self.flat_transform or self.event_transform
        if flat is None:
            rule: Any = RuleBasedScorer().fit(x_train, y_train)
        else:
            # engagement volume (counts, minutes: more earns more points); never recency, fit or context
            volume = {FeatureKind.NUMERIC, FeatureKind.WINDOW_COUNT, FeatureKind.TOTAL_COUNT}
            engagement = [
                f.name
                for f in flat.catalogue
                if f.family not in (Family.FIT, Family.CONTEXT) and f.kind in volume
            ]
            fallback = [f.name for f in flat.catalogue if f.kind.value == "categorical"]
            rule = EngagementPointsScorer(columns=engagement, fallback_columns=fallback).fit(x_train, y_train)
            if not engagement:
                log.warning("points baseline: %s", rule.basis_)
        fitted: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {}
        names_in = list(self.feature_names)
        if "rule_points" in names:
            fitted["rule_points"] = lambda rows: np.asarray(rule.predict_proba(rows.loc[:, names_in])[:, 1])
        if "logistic" not in names:
            return fitted
        sample = fit_rows.sample(n=min(len(fit_rows), 200_000), random_state=self.config.seed)
        numeric = [n for n in self.feature_names if n not in set(self.categorical_features)]
        logistic = make_logistic_baseline(
            seed=self.config.seed, categorical_features=self.categorical_features, numeric_features=numeric
        ).fit(sample.loc[:, list(self.feature_names)], sample["label"].astype(int).to_numpy())
        fitted["logistic"] = lambda rows: np.asarray(logistic.predict_proba(rows.loc[:, names_in])[:, 1])
        return fitted

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
        mlflow.log_params(
            {
                "chosen_thresholds.evaluated": f"MQL {choice.mql_threshold:.4f}, "
                f"SQL {choice.sql_threshold:.4f}",
                "chosen_thresholds.registered": f"MQL {record.deployed_choice.mql_threshold:.4f}, "
                f"SQL {record.deployed_choice.sql_threshold:.4f}",
                "chosen_thresholds.rule": choice.rule,
                "touch_cadence": (
                    "none (no sales activity)"
                    if "sales_touches_total" not in model.feature_names
                    else (model.touch_cadence or RULE_OF_THUMB).span
                    + ("" if model.touch_cadence else " (rule of thumb)")
                ),
            }
        )
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
        own = self.flat_transform or self.event_transform
        catalogue = catalogue_frame() if own is None else pd.DataFrame([f.as_dict() for f in own.catalogue])
        catalogue.to_csv(out / "feature_catalogue.csv", index=False)
        if not self.has_time:
            mlflow.set_tag("leadscore.split", "STRATIFIED: export has no time order, not a time-ordered test")
        if self.meta.get("audit_flagged_features"):
            mlflow.set_tag("leadscore.audit_flagged", ", ".join(self.meta["audit_flagged_features"]))
        mlflow.log_artifact(str(out / "feature_catalogue.csv"), "data")
        comparison.to_csv(out / "model_comparison.csv", index=False)
        mlflow.log_artifact(str(out / "model_comparison.csv"), "evaluation")
        table_of_thresholds = threshold_table(y_true=y_test, y_prob=predictions[self.model_key], weeks=weeks)
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
        log_parquet(test_rows, artifact=TEST_FEATURES_ARTIFACT, out=out)
        # held-out test-period scores of the evaluated model and the baselines: the promotion gate's evidence
        scored = test_rows.loc[
            :, [c for c in ("lead_id", "as_of", "row_order", "label", "label_amount") if c in test_rows]
        ]
        for name, values in predictions.items():
            scored[f"p_{name}"] = values[: len(scored)]
        log_parquet(scored, artifact=TEST_PREDICTIONS_ARTIFACT, out=out)
        drift = record.drift
        if drift is not None:
            mlflow.set_tag("leadscore.drift_warnings", str(len(drift.warnings)))
            if drift.warnings:
                mlflow.set_tag("leadscore.drift", " | ".join(drift.warnings)[:4900])
            drift.features.to_csv(out / "drift_features.csv", index=False)
            drift.base_rate.to_csv(out / "base_rate_by_period.csv", index=False)
            mlflow.log_artifact(str(out / "drift_features.csv"), "drift")
            mlflow.log_artifact(str(out / "base_rate_by_period.csv"), "drift")
        mlflow.log_params(
            {
                "learner": self.family.value,
                "learner_choice": str(model.metadata.get("learner_choice", ""))[:5000],
            }
        )
        mlflow.set_tags(
            {
                "leadscore.learner": self.family.value,
                "leadscore.time_axis": split.time_axis.value,
                "leadscore.registered_model_fitted_on": str(model.metadata.get("fitted_on", "")),
                "leadscore.calibration_level": str(model.metadata.get("calibration_level", ""))[:4900],
            }
        )
        if hasattr(model.calibrator, "anchor_reason_"):
            mlflow.log_metric(
                "calibration_anchor_logit", float(getattr(model.calibrator, "anchor_logit", 0.0))
            )

        model.metadata["run_id"] = run.info.run_id
        pickle_path = save_model_pickle(model, out / MODEL_PICKLE)
        card = render_model_card(
            model=model,
            meta=meta,
            split=split,
            metrics=metrics,
            comparison=comparison,
            choice=choice,
            config=config,
            drift=record.drift,
            deployed_choice=record.deployed_choice,
            comparison_words=comparison_sentences(
                y=y_test,
                predictions=predictions,
                candidate=self.model_key,
                amounts=split.test["label_amount"].to_numpy(dtype=float)
                if "label_amount" in split.test.columns
                else None,
            ),
        )
        mlflow.log_text(card, "model_card.md")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=LeadScoringPyfunc(),
            artifacts={MODEL_ARTIFACT: str(pickle_path)},
            signature=(
                input_signature(self.flat_transform)
                if self.event_transform is None
                else event_input_signature(self.input_example_without_pii())
            ),
            input_example=self.input_example_without_pii(),
            registered_model_name=config.tracking.model_name if config.tracking.register_model else None,
            # the model carries its own code and pins what it imports: it rebuilds anywhere
            code_paths=[str(scoring_code_dir(out / "code"))],
            pip_requirements=scoring_requirements(),
        )
        version = None
        if config.tracking.register_model and info.registered_model_version is not None:
            version = str(info.registered_model_version)
            client = mlflow.MlflowClient()
            client.update_model_version(
                config.tracking.model_name, version, description=registry_description(card)
            )
            client.set_model_version_tag(
                config.tracking.model_name, version, "roc_auc", f"{metrics['roc_auc']:.4f}"
            )
        return run.info.run_id, version

    def input_example_without_pii(self) -> pd.DataFrame | None:
        """The table's raw example leads for the MLflow model, without any personal data."""
        if not self.meta.get("raw_example"):
            return None
        example = pd.DataFrame(self.meta["raw_example"])
        pii = set(PII_COLUMNS)
        if self.flat_transform is not None:
            pii |= set(self.flat_transform.mapping.columns_with(ColumnRole.PII))
        return example.drop(columns=[c for c in example.columns if c in pii])

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
            "score_distribution.png": plots.score_distribution(
                y_true=y_test, y_prob=predictions[self.model_key]
            ),
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
