"""Tests for the MQL/SQL threshold recommender."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.training.config import ThresholdConfig
from leadscore.training.thresholds import ThresholdChoice, recommend_thresholds, threshold_table

WEEKS = 12.0


@pytest.fixture(scope="module")
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    probs = rng.beta(1.0, 9.0, size=24_000)
    labels = (rng.random(probs.size) < probs).astype(int)
    return labels, probs


def _selected(probs: np.ndarray, threshold: float) -> np.ndarray:
    return probs >= threshold


def test_threshold_table_columns_and_values(scored) -> None:
    labels, probs = scored
    table = threshold_table(y_true=labels, y_prob=probs, weeks=WEEKS, grid=[0.05, 0.1, 0.3])
    assert list(table["threshold"]) == [0.05, 0.1, 0.3]
    assert {
        "leads_per_week",
        "expected_conversions_per_week",
        "observed_conversions_per_week",
        "precision",
        "recall",
    } <= set(table.columns)
    row = table.iloc[1]
    chosen = probs >= 0.1
    assert row["leads_per_week"] == pytest.approx(chosen.sum() / WEEKS)
    assert row["expected_conversions_per_week"] == pytest.approx(probs[chosen].sum() / WEEKS)
    assert row["observed_conversions_per_week"] == pytest.approx(labels[chosen].sum() / WEEKS)
    assert row["precision"] == pytest.approx(labels[chosen].mean())
    assert row["recall"] == pytest.approx(labels[chosen].sum() / labels.sum())
    # more leads at lower thresholds
    assert table["leads_per_week"].is_monotonic_decreasing


def test_default_grid_is_ascending_and_spans_all_leads(scored) -> None:
    labels, probs = scored
    table = threshold_table(y_true=labels, y_prob=probs, weeks=WEEKS)
    assert table["threshold"].is_monotonic_increasing
    assert table["leads"].iloc[0] == len(probs)
    assert table["recall"].iloc[0] == pytest.approx(1.0)
    assert table["expected_conversions_per_week"].iloc[0] == pytest.approx(probs.sum() / WEEKS)


def test_defaults_are_top_10_and_30_percent(scored) -> None:
    labels, probs = scored
    choice = recommend_thresholds(y_true=labels, y_prob=probs, weeks=WEEKS)
    assert isinstance(choice, ThresholdChoice)
    assert _selected(probs, choice.sql_threshold).mean() == pytest.approx(0.10, abs=0.001)
    assert _selected(probs, choice.mql_threshold).mean() == pytest.approx(0.30, abs=0.001)
    assert choice.mql_threshold <= choice.sql_threshold
    assert "default" in choice.rule


def test_sql_capacity_is_respected_and_tight(scored) -> None:
    labels, probs = scored
    choice = recommend_thresholds(
        y_true=labels,
        y_prob=probs,
        weeks=WEEKS,
        rules=ThresholdConfig(sql_capacity_per_week=120, mql_target_precision=0.2),
    )
    per_week = _selected(probs, choice.sql_threshold).sum() / WEEKS
    assert per_week <= 120
    assert per_week >= 120 - 1 / WEEKS  # as many leads as the capacity allows
    assert choice.sql_leads_per_week == pytest.approx(per_week)
    assert choice.sql_precision == pytest.approx(labels[_selected(probs, choice.sql_threshold)].mean())
    expected = probs[_selected(probs, choice.sql_threshold)].sum() / WEEKS
    assert choice.sql_expected_conversions_per_week == pytest.approx(expected)
    assert choice.rule == "SQL: top 120 leads/week (rep capacity); MQL: precision >= 0.2"


def test_precision_target_is_reached_with_the_largest_selection(scored) -> None:
    labels, probs = scored
    choice = recommend_thresholds(
        y_true=labels,
        y_prob=probs,
        weeks=WEEKS,
        rules=ThresholdConfig(sql_target_precision=0.4, mql_target_precision=0.25),
    )
    sql = _selected(probs, choice.sql_threshold)
    mql = _selected(probs, choice.mql_threshold)
    assert labels[sql].mean() >= 0.4
    assert labels[mql].mean() >= 0.25
    assert choice.mql_precision == pytest.approx(labels[mql].mean())
    assert choice.mql_recall == pytest.approx(labels[mql].sum() / labels.sum())
    # the next lower score would break the target: the threshold is the lowest that reaches it
    lower = probs[probs < choice.mql_threshold].max()
    assert labels[_selected(probs, lower)].mean() < 0.25
    assert choice.mql_threshold <= choice.sql_threshold
    assert choice.mql_leads_per_week >= choice.sql_leads_per_week


def test_mql_capacity(scored) -> None:
    labels, probs = scored
    choice = recommend_thresholds(
        y_true=labels,
        y_prob=probs,
        weeks=WEEKS,
        rules=ThresholdConfig(sql_capacity_per_week=50, mql_capacity_per_week=400),
    )
    assert choice.mql_leads_per_week <= 400
    assert "marketing capacity" in choice.rule


@pytest.mark.parametrize("level", ["sql", "mql"])
def test_both_capacity_and_precision_is_an_error(scored, level) -> None:
    labels, probs = scored
    kwargs = {f"{level}_capacity_per_week": 100.0, f"{level}_target_precision": 0.3}
    with pytest.raises(ValueError, match=rf"{level}_capacity_per_week.*{level}_target_precision"):
        recommend_thresholds(y_true=labels, y_prob=probs, weeks=WEEKS, rules=ThresholdConfig(**kwargs))


def test_mql_stricter_than_sql_is_an_error(scored) -> None:
    labels, probs = scored
    with pytest.raises(ValueError, match=r"MQL threshold .* above SQL threshold"):
        recommend_thresholds(
            y_true=labels,
            y_prob=probs,
            weeks=WEEKS,
            rules=ThresholdConfig(sql_capacity_per_week=500, mql_capacity_per_week=20),
        )


def test_unreachable_precision_and_bad_weeks(scored) -> None:
    labels, probs = scored
    with pytest.raises(ValueError, match=r"not reachable.*0\.500"):
        recommend_thresholds(
            y_true=[0, 1, 0], y_prob=[0.9, 0.8, 0.1], weeks=1, rules=ThresholdConfig(sql_target_precision=0.9)
        )
    with pytest.raises(ValueError, match="weeks"):
        recommend_thresholds(y_true=labels, y_prob=probs, weeks=0)


def test_ties_never_exceed_capacity() -> None:
    probs = np.array([0.9, 0.5, 0.5, 0.5, 0.1, 0.1])
    labels = np.array([1, 1, 0, 0, 0, 0])
    choice = recommend_thresholds(
        y_true=labels,
        y_prob=probs,
        weeks=1,
        rules=ThresholdConfig(sql_capacity_per_week=2, mql_capacity_per_week=4),
    )
    assert choice.sql_threshold == 0.9  # taking 0.5 would select 4 leads
    assert choice.sql_leads_per_week == 1
    assert choice.mql_threshold == 0.5
    assert choice.mql_leads_per_week == 4


@settings(max_examples=60, deadline=None)
@given(
    probs=st.lists(st.floats(0, 1), min_size=5, max_size=80),
    capacity=st.floats(0.5, 100),
    weeks=st.floats(0.5, 10),
    seed=st.integers(0, 2**16),
)
def test_capacity_property(probs, capacity, weeks, seed) -> None:
    probs = np.array(probs)
    labels = (np.random.default_rng(seed).random(len(probs)) < probs).astype(int)
    choice = recommend_thresholds(
        y_true=labels,
        y_prob=probs,
        weeks=weeks,
        rules=ThresholdConfig(sql_capacity_per_week=capacity, mql_capacity_per_week=capacity * 2),
    )
    assert (probs >= choice.sql_threshold).sum() / weeks <= capacity + 1e-9
    assert (probs >= choice.mql_threshold).sum() / weeks <= 2 * capacity + 1e-9
    assert choice.mql_threshold <= choice.sql_threshold
    assert math.isclose(choice.sql_leads_per_week, (probs >= choice.sql_threshold).sum() / weeks)


def test_agreed_scores_are_used_as_given_and_described(scored) -> None:
    labels, probs = scored
    choice = recommend_thresholds(
        y_true=labels, y_prob=probs, weeks=WEEKS, rules=ThresholdConfig(sql_min_score=30, mql_min_score=12.5)
    )
    assert choice.sql_threshold == pytest.approx(0.30) and choice.mql_threshold == pytest.approx(0.125)
    assert "SQL: agreed score >= 30" in choice.rule and "MQL: agreed score >= 12.5" in choice.rule
    # what the agreement means on the evaluation period: workload and hit rate at those scores
    sql = _selected(probs, 0.30)
    assert choice.sql_leads_per_week == pytest.approx(sql.sum() / WEEKS)
    assert choice.sql_precision == pytest.approx(labels[sql].mean())
    # one level agreed, the other recommended
    mixed = recommend_thresholds(
        y_true=labels, y_prob=probs, weeks=WEEKS, rules=ThresholdConfig(sql_min_score=40)
    )
    assert mixed.sql_threshold == pytest.approx(0.40) and "MQL: top 30% of leads" in mixed.rule


def test_agreed_score_rules_are_checked(scored) -> None:
    labels, probs = scored
    with pytest.raises(ValueError, match="one rule for SQL"):
        recommend_thresholds(
            y_true=labels,
            y_prob=probs,
            weeks=WEEKS,
            rules=ThresholdConfig(sql_capacity_per_week=50, sql_min_score=30),
        )
    with pytest.raises(ValueError, match="less than 100"):
        recommend_thresholds(
            y_true=labels, y_prob=probs, weeks=WEEKS, rules=ThresholdConfig(mql_min_score=100)
        )
    with pytest.raises(ValueError, match="mql_min_score must not be above sql_min_score"):
        recommend_thresholds(
            y_true=labels,
            y_prob=probs,
            weeks=WEEKS,
            rules=ThresholdConfig(sql_min_score=10, mql_min_score=20),
        )


def test_threshold_config_takes_one_rule_per_level() -> None:
    from pydantic import ValidationError

    from leadscore.training.config import ThresholdConfig

    assert ThresholdConfig(sql_min_score=30, mql_capacity_per_week=200).sql_min_score == 30
    with pytest.raises(ValidationError, match="sql_capacity_per_week and sql_min_score"):
        ThresholdConfig(sql_capacity_per_week=50, sql_min_score=30)
    with pytest.raises(ValidationError, match="mql_min_score must not be above sql_min_score"):
        ThresholdConfig(sql_min_score=20, mql_min_score=30)
    with pytest.raises(ValidationError, match="less than 100"):
        ThresholdConfig(sql_min_score=120)


def test_the_default_share_keeps_a_boundary_tie_whole_when_that_is_nearer() -> None:
    # coarse scores: 16 of 100 leads share the top score; "at most 10%" would select none of them
    probs = np.r_[np.full(16, 0.4), np.linspace(0.05, 0.3, 84)]
    labels = (probs > 0.35).astype(int)
    choice = recommend_thresholds(y_true=labels, y_prob=probs, weeks=1)
    assert choice.sql_threshold == 0.4 and choice.sql_leads_per_week == 16
    assert "nearest, ties kept together" in choice.rule
    # when leaving the tie out is nearer, it stays out
    probs = np.r_[np.full(3, 0.9), np.full(15, 0.4), np.linspace(0.05, 0.3, 82)]
    choice = recommend_thresholds(y_true=(probs > 0.35).astype(int), y_prob=probs, weeks=1)
    assert choice.sql_leads_per_week == 3  # 3 is 7 from the target of 10, 3 + 15 would be 8 from it


def test_a_capacity_a_tie_swallows_says_so() -> None:
    probs = np.r_[np.full(16, 0.4), np.linspace(0.05, 0.3, 84)]
    choice = recommend_thresholds(
        y_true=(probs > 0.35).astype(int),
        y_prob=probs,
        weeks=1,
        rules=ThresholdConfig(sql_capacity_per_week=10),
    )
    assert choice.sql_leads_per_week == 0  # capacity is never exceeded...
    assert "16 leads tied at the boundary score left out, so 0 reach it" in choice.rule  # ...and it says why


def test_a_kept_tie_never_puts_sql_below_an_mql_rule_that_leaves_it_out() -> None:
    probs = np.r_[np.full(16, 0.8), np.linspace(0.1, 0.5, 84)]
    labels = np.r_[np.ones(8), np.zeros(92)].astype(int)
    choice = recommend_thresholds(
        y_true=labels, y_prob=probs, weeks=1, rules=ThresholdConfig(mql_capacity_per_week=15)
    )
    assert choice.mql_threshold <= choice.sql_threshold
    assert choice.sql_leads_per_week <= choice.mql_leads_per_week <= 15
    assert "within the MQL rule" in choice.rule
    probs = np.r_[np.full(3, 0.9), np.full(12, 0.8), np.linspace(0.1, 0.5, 85)]
    labels = np.zeros(100, dtype=int)
    labels[:4] = 1
    choice = recommend_thresholds(
        y_true=labels, y_prob=probs, weeks=1, rules=ThresholdConfig(mql_target_precision=0.5)
    )
    assert choice.mql_threshold <= choice.sql_threshold and choice.mql_precision >= 0.5
