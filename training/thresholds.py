"""MQL/SQL threshold recommender: turn calibrated probabilities into two hand-off rules.

A lead is *marketing-qualified* (MQL) when its probability is at least the MQL threshold and
*sales-qualified* (SQL) when it is at least the SQL threshold (MQL ≤ SQL, so every SQL is also
an MQL and MQL counts include SQLs). Each threshold is chosen either by capacity (at most so many
leads a week) or by a precision target (at least this share of the selected leads convert),
measured on an evaluation set whose snapshots span ``weeks`` weeks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from leadscore.model.scoring_model import TierThresholds
from leadscore.training.config import LevelRule, ThresholdConfig
from leadscore.training.evaluation import as_labels, as_scores

DEFAULT_SQL_FRACTION = 0.10
DEFAULT_MQL_FRACTION = 0.30
_DEFAULT_GRID_SIZE = 401


@dataclass(frozen=True)
class ThresholdChoice:
    """Chosen MQL/SQL thresholds (probabilities) and what they mean per week on the evaluation set."""

    mql_threshold: float
    sql_threshold: float
    sql_leads_per_week: float
    sql_expected_conversions_per_week: float
    sql_precision: float
    sql_recall: float
    mql_leads_per_week: float
    mql_expected_conversions_per_week: float
    mql_precision: float
    mql_recall: float
    rule: str  # how it was chosen: "SQL: top 120 leads/week (rep capacity); MQL: precision >= 0.25"

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)

    def tier_thresholds(self) -> TierThresholds:
        """The thresholds the model carries into every score (probabilities, with the rule)."""
        return TierThresholds(mql=self.mql_threshold, sql=self.sql_threshold, rule=self.rule)


def _selection_stats(
    labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray, weeks: float
) -> pd.DataFrame:
    """Per threshold: leads with ``p >= threshold``, their expected and observed conversions."""
    order = np.argsort(-probs, kind="stable")
    cum_prob = np.concatenate([[0.0], np.cumsum(probs[order])])
    cum_conv = np.concatenate([[0.0], np.cumsum(labels[order])])
    ascending = probs[order][::-1]
    selected = len(probs) - np.searchsorted(ascending, thresholds, side="left")
    positives = float(labels.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(selected > 0, cum_conv[selected] / selected, np.nan)
        expected_precision = np.where(selected > 0, cum_prob[selected] / selected, np.nan)
    return pd.DataFrame(
        {
            "threshold": thresholds.astype(np.float64),
            "leads": selected.astype(np.int64),
            "share_of_leads": selected / len(probs) if len(probs) else np.nan,
            "leads_per_week": selected / weeks,
            "expected_conversions_per_week": cum_prob[selected] / weeks,
            "observed_conversions_per_week": cum_conv[selected] / weeks,
            "precision": precision,
            "expected_precision": expected_precision,
            "recall": cum_conv[selected] / positives if positives else np.nan,
        }
    )


def _check_inputs(
    y_true: npt.ArrayLike, y_prob: npt.ArrayLike, weeks: float
) -> tuple[np.ndarray, np.ndarray]:
    if not (math.isfinite(weeks) and weeks > 0):
        raise ValueError(f"weeks must be a positive number, got {weeks}")
    labels = as_labels(y_true)
    if len(labels) == 0:
        raise ValueError("y_true is empty")
    return labels, as_scores(y_prob, n=len(labels), probabilities=True)


def threshold_table(
    *, y_true: npt.ArrayLike, y_prob: npt.ArrayLike, weeks: float, grid: npt.ArrayLike | None = None
) -> pd.DataFrame:
    """Workload and conversions per week for each candidate threshold (ascending).

    Columns: ``threshold``, ``leads``, ``share_of_leads``, ``leads_per_week``,
    ``expected_conversions_per_week`` (sum of calibrated probabilities / weeks),
    ``observed_conversions_per_week``, ``precision``, ``expected_precision``, ``recall``.
    The default grid is up to 401 quantiles of the scores themselves (so every row is a real cut).
    """
    labels, probs = _check_inputs(y_true, y_prob, weeks)
    if grid is None:
        thresholds = np.unique(np.quantile(probs, np.linspace(0, 1, _DEFAULT_GRID_SIZE), method="lower"))
    else:
        thresholds = np.unique(np.asarray(grid, dtype=np.float64))
    return _selection_stats(labels, probs, thresholds, weeks)


def _threshold_for_count(probs: np.ndarray, max_leads: int) -> float:
    """Lowest threshold selecting at most ``max_leads`` leads (ties at the boundary are left out)."""
    if max_leads >= len(probs):
        return float(probs.min())
    descending = np.sort(probs)[::-1]
    first_excluded = descending[max_leads]
    higher = descending[descending > first_excluded]
    return float(higher.min()) if len(higher) else float(np.nextafter(descending[0], np.inf))


def _threshold_nearest_count(probs: np.ndarray, target_leads: int) -> float:
    """The threshold whose selection is nearest ``target_leads``: a tie at the boundary is taken
    whole when that is nearer than leaving it out (coarse scores: a new landing page can give 16% of
    leads one score, and "at most 10%" would then select none)."""
    at_most = _threshold_for_count(probs, target_leads)
    below = np.sort(probs[probs < at_most])
    if not len(below):
        return at_most
    with_tie = float(below[-1])
    fewer, more = int(np.sum(probs >= at_most)), int(np.sum(probs >= with_tie))
    return with_tie if more - target_leads < target_leads - fewer else at_most


def _threshold_for_precision(labels: np.ndarray, probs: np.ndarray, target: float, name: str) -> float:
    """Lowest threshold (largest selection) whose observed precision reaches ``target``."""
    if not 0 < target <= 1:
        raise ValueError(f"{name} must be in (0, 1], got {target}")
    candidates = np.unique(probs)
    stats = _selection_stats(labels, probs, candidates, weeks=1.0)
    reaching = stats["precision"].to_numpy() >= target
    if not reaching.any():
        best = float(np.nanmax(stats["precision"].to_numpy()))
        raise ValueError(
            f"{name}={target:g} is not reachable: the best precision at any threshold is {best:.3f}"
        )
    return float(candidates[np.flatnonzero(reaching)[0]])


def _choose(
    *,
    level: str,
    labels: np.ndarray,
    probs: np.ndarray,
    weeks: float,
    rule: LevelRule,
    default_fraction: float,
) -> tuple[float, str]:
    """One level's threshold (a probability) and its rule in words; the rule was validated by its config."""
    if rule.min_score is not None and rule.agreed_probability is not None:
        return rule.agreed_probability, f"{level}: agreed score >= {rule.min_score:g}"
    if rule.capacity_per_week is not None:
        max_leads = math.floor(rule.capacity_per_week * weeks + 1e-9)
        who = "rep capacity" if level == "SQL" else "marketing capacity"
        threshold = _threshold_for_count(probs, max_leads)
        selected = int(np.sum(probs >= threshold))
        boundary = probs[probs < threshold]
        tie = int(np.sum(probs == boundary.max())) if len(boundary) else 0
        left_out = (
            f"; {tie} leads tied at the boundary score left out, so {selected} reach it"
            if max_leads and selected < max_leads / 2 and tie > 1
            else ""
        )
        return threshold, f"{level}: top {rule.capacity_per_week:g} leads/week ({who}{left_out})"
    if rule.target_precision is not None:
        name = f"{level.lower()}_target_precision"
        threshold = _threshold_for_precision(labels, probs, rule.target_precision, name)
        return threshold, f"{level}: precision >= {rule.target_precision:g}"
    target = max(1, math.floor(default_fraction * len(probs) + 1e-9))
    threshold = _threshold_nearest_count(probs, target)
    return threshold, f"{level}: top {default_fraction:.0%} of leads (default; nearest, ties kept together)"


def recommend_thresholds(
    *,
    y_true: npt.ArrayLike,
    y_prob: npt.ArrayLike,
    weeks: float,
    rules: ThresholdConfig | None = None,
) -> ThresholdChoice:
    """Choose MQL and SQL probability thresholds on an evaluation set spanning ``weeks`` weeks.

    ``rules`` (validated once, as the job's config) gives per level at most one rule: a capacity (at
    most that many leads/week reach it), a target precision (the lowest threshold whose observed
    precision reaches it) or the score (0-100) marketing and sales agreed on. With none, SQL is the
    top 10 % of leads and MQL the top 30 %.
    Either way the choice reports what it means on the evaluation set: leads per week, expected
    conversions, precision and recall. Raises ``ValueError`` if the rules put MQL above SQL.
    """
    labels, probs = _check_inputs(y_true, y_prob, weeks)
    rules = rules if rules is not None else ThresholdConfig()
    sql_threshold, sql_rule = _choose(
        level="SQL",
        labels=labels,
        probs=probs,
        weeks=weeks,
        rule=rules.sql,
        default_fraction=DEFAULT_SQL_FRACTION,
    )
    mql_threshold, mql_rule = _choose(
        level="MQL",
        labels=labels,
        probs=probs,
        weeks=weeks,
        rule=rules.mql,
        default_fraction=DEFAULT_MQL_FRACTION,
    )
    sql_is_default = rules.sql.capacity_per_week is None and rules.sql.target_precision is None
    if mql_threshold > sql_threshold and sql_is_default and rules.sql.min_score is None:
        # the nearest default share kept a boundary tie that the MQL rule leaves out: SQL stays within
        # MQL by leaving the tie out too (at most the default share)
        target = max(1, math.floor(DEFAULT_SQL_FRACTION * len(probs) + 1e-9))
        sql_threshold = max(_threshold_for_count(probs, target), mql_threshold)
        sql_rule = f"SQL: top {DEFAULT_SQL_FRACTION:.0%} of leads (default; at most, within the MQL rule)"
    if mql_threshold > sql_threshold:
        raise ValueError(
            f"MQL threshold {mql_threshold:.6g} is above SQL threshold {sql_threshold:.6g} "
            f"({mql_rule}; {sql_rule}): the MQL rule must be looser than the SQL rule, so raise the MQL "
            "capacity / lower its precision target, or tighten the SQL rule"
        )
    stats = _selection_stats(labels, probs, np.array([sql_threshold, mql_threshold]), weeks)
    sql, mql = stats.iloc[0], stats.iloc[1]
    return ThresholdChoice(
        mql_threshold=mql_threshold,
        sql_threshold=sql_threshold,
        sql_leads_per_week=float(sql["leads_per_week"]),
        sql_expected_conversions_per_week=float(sql["expected_conversions_per_week"]),
        sql_precision=float(sql["precision"]),
        sql_recall=float(sql["recall"]),
        mql_leads_per_week=float(mql["leads_per_week"]),
        mql_expected_conversions_per_week=float(mql["expected_conversions_per_week"]),
        mql_precision=float(mql["precision"]),
        mql_recall=float(mql["recall"]),
        rule=f"{sql_rule}; {mql_rule}",
    )
