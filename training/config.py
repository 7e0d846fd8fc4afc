"""Typed job configuration: one strict pydantic model per job, loaded from YAML."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from leadscore.features.training_table import SnapshotPolicy
from leadscore.model.calibration import CalibrationAnchor, CalibrationMethod
from leadscore.settings import in_state_dir


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(Strict):
    """Time-ordered split: train on older snapshots, validate on newer, test on the newest."""

    validation_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    purge_horizon: bool = Field(
        default=True,
        description="Drop training/validation snapshots whose label horizon reaches into the next period.",
    )


class BoosterConfig(Strict):
    """LightGBM hyperparameters (depth and tree count also drive explanation cost)."""

    learning_rate: float = Field(default=0.05, gt=0, le=1)
    num_leaves: int = Field(default=15, ge=2)
    max_depth: int = Field(default=4, ge=-1)
    min_child_samples: int = Field(default=50, ge=1)
    feature_fraction: float = Field(default=0.8, gt=0, le=1)
    bagging_fraction: float = Field(default=0.8, gt=0, le=1)
    bagging_freq: int = Field(default=1, ge=0)
    lambda_l2: float = Field(default=1.0, ge=0)
    cat_smooth: float = Field(
        default=10.0, ge=0, description="Shrinks each category's rate towards the prior (rare categories)."
    )
    min_data_per_group: int = Field(
        default=100, ge=1, description="Fewest rows a category group needs to get its own split."
    )
    linear_tree: bool = Field(
        default=False, description="Linear models in the leaves: trends continue past the training range."
    )
    max_rounds: int = Field(default=400, ge=1)
    early_stopping_rounds: int = Field(default=40, ge=1)
    balance_classes: bool = Field(
        default=False,
        description="Weight positives up (scale_pos_weight); calibration restores probabilities either way.",
    )
    num_threads: int = Field(default=0, ge=0, description="0 = LightGBM's default (all cores).")


class ModelFamily(StrEnum):
    """Which learner scores leads: the one the validation period picks, or a fixed one."""

    AUTO = "auto"  # LightGBM unless the linear model ranks the validation period better beyond chance
    LIGHTGBM = "lightgbm"  # gradient-boosted trees: interactions, monotone signals
    LINEAR = "linear"  # L2 logistic regression: steadier under drift; market context extrapolates


class LearnerConfig(Strict):
    """The learner behind the calibrated model, and how it is chosen."""

    family: ModelFamily = Field(
        default=ModelFamily.AUTO,
        description=(
            "auto: both are fitted on the training period and scored on the validation period; the linear "
            "model is deployed when its ROC AUC is higher with a paired bootstrap 95% interval above 0, "
            "else LightGBM. lightgbm / linear: always that one."
        ),
    )
    linear_c: float = Field(default=0.1, gt=0, description="Inverse L2 strength of the linear model.")


class LevelRule(Strict):
    """How one level's threshold is chosen: at most one rule (none: a default share of leads)."""

    capacity_per_week: float | None = None  # at most this many leads a week reach it
    target_precision: float | None = None  # the lowest threshold whose precision reaches this
    min_score: float | None = None  # the score (0-100) marketing and sales agreed on

    @property
    def agreed_probability(self) -> float | None:
        """The agreed score as a probability (the model's one unit), or None."""
        return None if self.min_score is None else self.min_score / 100.0


class ThresholdConfig(Strict):
    """How MQL/SQL thresholds are chosen: per level at most one rule (capacity, precision or agreed score)."""

    sql_capacity_per_week: float | None = Field(default=None, gt=0)
    sql_target_precision: float | None = Field(default=None, gt=0, lt=1)
    sql_min_score: float | None = Field(
        default=None, gt=0, lt=100, description="The SQL score (0-100) marketing and sales agreed on."
    )
    mql_capacity_per_week: float | None = Field(default=None, gt=0)
    mql_target_precision: float | None = Field(default=None, gt=0, lt=1)
    mql_min_score: float | None = Field(
        default=None, gt=0, lt=100, description="The MQL score (0-100) marketing and sales agreed on."
    )

    @property
    def sql(self) -> LevelRule:
        """The SQL rule (sales-ready hand-off)."""
        return LevelRule(
            capacity_per_week=self.sql_capacity_per_week,
            target_precision=self.sql_target_precision,
            min_score=self.sql_min_score,
        )

    @property
    def mql(self) -> LevelRule:
        """The MQL rule (marketing-qualified)."""
        return LevelRule(
            capacity_per_week=self.mql_capacity_per_week,
            target_precision=self.mql_target_precision,
            min_score=self.mql_min_score,
        )

    @model_validator(mode="after")
    def _one_rule_each(self) -> ThresholdConfig:
        for name in ("sql", "mql"):
            rules = [
                f"{name}_{rule}"
                for rule in ("capacity_per_week", "target_precision", "min_score")
                if getattr(self, f"{name}_{rule}") is not None
            ]
            if len(rules) > 1:
                raise ValueError(f"give one rule for {name.upper()}, not {' and '.join(rules)}")
        agreed = (self.mql_min_score, self.sql_min_score)
        if agreed[0] is not None and agreed[1] is not None and agreed[0] > agreed[1]:
            raise ValueError("mql_min_score must not be above sql_min_score")
        return self


class RefitConfig(Strict):
    """Refit for deployment: rounds chosen on validation, then every labelled row is used."""

    enabled: bool = Field(
        default=True,
        description=(
            "Refit on train + validation (scaled rounds) for the test evaluation, and on all labelled rows "
            "for the registered model; calibrate on time-blocked out-of-time scores. False: the model fitted "
            "on the training period and calibrated on the validation period is evaluated and registered."
        ),
    )
    calibration_blocks: int = Field(
        default=5,
        ge=2,
        le=20,
        description="Time blocks for cross-fitted calibration: block k is scored by a model of blocks < k.",
    )
    recency_half_life_days: float | None = Field(
        default=None,
        gt=0,
        description="Weight rows by 0.5 ** (age / half-life) when fitting and calibrating (timestamps only).",
    )
    calibration_anchor: CalibrationAnchor = Field(
        default=CalibrationAnchor.AUTO,
        description=(
            "Follow the newest matured block's conversion level: auto when shifting each calibration "
            "block to the level of the block before it lowered log loss (out of time), newest always, "
            "none never (the level pooled over all blocks). Timestamps only."
        ),
    )


class TrackingConfig(Strict):
    experiment: str = "leadscore"
    model_name: str = "leadscore"
    register_model: bool = True


class TrainConfig(Strict):
    """Everything `leadscore train` needs."""

    training_table: Annotated[Path, AfterValidator(in_state_dir)] = Field(
        default=Path(".leadscore/data/training_table.parquet"),
        validate_default=True,
        description="The training table; a path under .leadscore/ is read under $LEADSCORE_HOME when set.",
    )
    seed: int = 42
    split: SplitConfig = SplitConfig()
    booster: BoosterConfig = BoosterConfig()
    learner: LearnerConfig = LearnerConfig()
    calibration: CalibrationMethod = CalibrationMethod.ISOTONIC
    refit: RefitConfig = RefitConfig()
    thresholds: ThresholdConfig = ThresholdConfig()
    tracking: TrackingConfig = TrackingConfig()
    shap_sample: int = Field(default=2000, ge=100, description="Rows for the SHAP summary plot.")


class BuildFeaturesConfig(Strict):
    """Everything `leadscore build-features` needs."""

    # paths under .leadscore/ are read under $LEADSCORE_HOME when it is set (``in_state_dir``)
    leads: Annotated[Path, AfterValidator(in_state_dir)] = Field(
        default=Path(".leadscore/data/crm/leads.parquet"), validate_default=True
    )
    activities: Annotated[Path, AfterValidator(in_state_dir)] | None = Field(
        default=Path(".leadscore/data/crm/activities.parquet"), validate_default=True
    )
    outcomes: Annotated[Path, AfterValidator(in_state_dir)] | None = Field(
        default=Path(".leadscore/data/crm/outcomes.parquet"), validate_default=True
    )
    output: Annotated[Path, AfterValidator(in_state_dir)] = Field(
        default=Path(".leadscore/data/training_table.parquet"), validate_default=True
    )
    snapshots: SnapshotPolicy = SnapshotPolicy()


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def load_config(model: type[ConfigT], path: Path | None, overrides: dict[str, Any] | None = None) -> ConfigT:
    """Read a YAML job config (or defaults), apply dotted-key overrides, validate strictly."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        data = loaded
    for dotted, value in (overrides or {}).items():
        target = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return model.model_validate(data)
