"""Tests for leadscore.training.evaluation and leadscore.training.plots."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from leadscore.training import plots
from leadscore.training.evaluation import (
    METRIC_NAMES,
    capture_rate_at,
    classification_metrics,
    compare_models,
    conversion_by_group,
    expected_calibration_error,
    improvement_over,
    lift_at,
    pipeline_capture_at,
)
from leadscore.training.thresholds import recommend_thresholds, threshold_table


@pytest.fixture(scope="module")
def calibrated() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    probs = rng.beta(1.2, 12.0, size=60_000)
    labels = (rng.random(probs.size) < probs).astype(int)
    return labels, probs


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
def test_ece_near_zero_when_calibrated_and_large_when_not(calibrated, strategy) -> None:
    labels, probs = calibrated
    assert expected_calibration_error(y_true=labels, y_prob=probs, strategy=strategy) < 0.01
    overconfident = np.clip(probs * 3, 0, 1)
    assert expected_calibration_error(y_true=labels, y_prob=overconfident, strategy=strategy) > 0.1


def test_ece_hand_computed() -> None:
    # two uniform bins: [0, .5) holds p=.2,.2 with 1 positive; [.5, 1] holds p=.9,.9 with 2 positives
    ece = expected_calibration_error(
        y_true=[0, 1, 1, 1], y_prob=[0.2, 0.2, 0.9, 0.9], n_bins=2, strategy="uniform"
    )
    assert ece == pytest.approx(0.5 * abs(0.5 - 0.2) + 0.5 * abs(1.0 - 0.9))


def test_ece_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        expected_calibration_error(y_true=[0, 1], y_prob=[0.5, 1.5])
    with pytest.raises(ValueError, match="strategy"):
        expected_calibration_error(y_true=[0, 1], y_prob=[0.5, 0.5], strategy="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="0/1"):
        expected_calibration_error(y_true=[0, 2], y_prob=[0.5, 0.5])


def test_lift_and_capture_hand_made() -> None:
    # 10 leads, 2 conversions (base rate 0.2); the top lead converts, the other positive is 6th
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    labels = np.array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0])
    assert lift_at(y_true=labels, y_prob=scores, fraction=0.1) == pytest.approx(5.0)
    assert lift_at(y_true=labels, y_prob=scores, fraction=0.5) == pytest.approx((1 / 5) / 0.2)
    assert lift_at(y_true=labels, y_prob=scores, fraction=1.0) == pytest.approx(1.0)
    assert capture_rate_at(y_true=labels, y_prob=scores, fraction=0.1) == pytest.approx(0.5)
    assert capture_rate_at(y_true=labels, y_prob=scores, fraction=0.6) == pytest.approx(1.0)
    # shuffling the input order does not change anything (ranking is by score)
    order = np.random.default_rng(0).permutation(10)
    assert capture_rate_at(y_true=labels[order], y_prob=scores[order], fraction=0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="fraction"):
        lift_at(y_true=labels, y_prob=scores, fraction=0)
    assert math.isnan(lift_at(y_true=np.zeros(10), y_prob=scores, fraction=0.1))


def test_pipeline_capture_weighs_converters_by_their_opportunity_value() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    # two converters: a small deal at the top, a big one 6th; one converter with an unknown amount
    amounts = np.array([1_000.0, 0, 0, np.nan, 0, 9_000.0, 0, 0, 0, 0])
    assert pipeline_capture_at(amounts=amounts, y_prob=scores, fraction=0.1) == pytest.approx(0.1)
    assert pipeline_capture_at(amounts=amounts, y_prob=scores, fraction=0.6) == pytest.approx(1.0)
    order = np.random.default_rng(0).permutation(10)
    assert pipeline_capture_at(amounts=amounts[order], y_prob=scores[order], fraction=0.5) == pytest.approx(
        0.1
    )
    assert math.isnan(pipeline_capture_at(amounts=np.zeros(10), y_prob=scores, fraction=0.1))
    table = compare_models(y_true=(amounts != 0).astype(int), predictions={"m": scores}, amounts=amounts)
    assert table.loc["m", "pipeline_capture_top10"] == pytest.approx(0.1)
    assert "pipeline_capture_top10" not in compare_models(
        y_true=(amounts != 0).astype(int), predictions={"m": scores}
    )


def test_lift_accepts_unbounded_scores() -> None:
    assert lift_at(y_true=[1, 0, 0, 0], y_prob=[40.0, -3.0, 2.0, 0.0], fraction=0.25) == pytest.approx(4.0)


def test_classification_metrics_match_sklearn(calibrated) -> None:
    labels, probs = calibrated
    metrics = classification_metrics(y_true=labels, y_prob=probs, threshold=0.2)
    assert tuple(metrics) == METRIC_NAMES
    assert all(type(v) is float for v in metrics.values())
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", key) for key in metrics)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, probs))
    assert metrics["pr_auc"] == pytest.approx(average_precision_score(labels, probs))
    assert metrics["log_loss"] == pytest.approx(log_loss(labels, probs))
    assert metrics["brier"] == pytest.approx(brier_score_loss(labels, probs))
    selected = probs >= 0.2
    assert metrics["precision_at_threshold"] == pytest.approx(labels[selected].mean())
    assert metrics["recall_at_threshold"] == pytest.approx(labels[selected].sum() / labels.sum())
    assert metrics["positive_rate"] == pytest.approx(labels.mean())
    assert metrics["n"] == float(len(labels))
    assert metrics["lift_top10"] > metrics["lift_top20"] > 1
    assert metrics["capture_top10"] == pytest.approx(metrics["lift_top10"] * 0.1)


def test_classification_metrics_single_class_is_nan_not_error() -> None:
    metrics = classification_metrics(y_true=[0, 0, 0], y_prob=[0.1, 0.2, 0.3], threshold=0.5)
    assert math.isnan(metrics["roc_auc"])
    assert math.isnan(metrics["precision_at_threshold"])
    assert metrics["positive_rate"] == 0.0


def test_conversion_by_group_keeps_category_order() -> None:
    grades = pd.Series(pd.Categorical(["B", "A", "A", "C", "B", "A"], categories=["A", "B", "C", "D"]))
    table = conversion_by_group(y_true=[1, 1, 0, 0, 0, 1], groups=grades)
    assert list(table.columns) == ["group", "leads", "conversions", "conversion_rate"]
    assert list(table["group"]) == ["A", "B", "C", "D"]
    assert list(table["leads"]) == [3, 2, 1, 0]
    assert list(table["conversions"]) == [2, 1, 0, 0]
    assert table["conversion_rate"].iloc[0] == pytest.approx(2 / 3)
    assert math.isnan(table["conversion_rate"].iloc[3])


def test_conversion_by_group_plain_values() -> None:
    table = conversion_by_group(y_true=np.array([True, False, True]), groups=["hot", "cold", "hot"])
    assert table.set_index("group")["conversion_rate"].to_dict() == {"cold": 0.0, "hot": 1.0}


def test_compare_models_and_improvement(calibrated) -> None:
    labels, probs = calibrated
    noise = np.random.default_rng(3).random(len(probs))
    weak = np.clip(0.5 * probs + 0.5 * noise * probs.mean() * 2, 0, 1)
    table = compare_models(
        y_true=labels, predictions={"model": probs, "baseline": weak}, threshold_by_model={"model": 0.2}
    )
    assert list(table.index) == ["model", "baseline"]
    assert table.loc["model", "threshold"] == 0.2
    assert table.loc["baseline", "threshold"] == 0.5
    assert table.loc["model", "roc_auc"] == pytest.approx(roc_auc_score(labels, probs))
    gain = improvement_over(table=table, reference="baseline", candidate="model")
    assert gain["roc_auc_gain"] == pytest.approx(
        table.loc["model", "roc_auc"] - table.loc["baseline", "roc_auc"]
    )
    assert gain["roc_auc_gain"] > 0
    assert gain["lift_top10_relative_gain"] == pytest.approx(
        table.loc["model", "lift_top10"] / table.loc["baseline", "lift_top10"] - 1
    )
    assert gain["lift_top10_relative_gain"] > 0
    assert gain["log_loss_reduction"] > 0
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", key) for key in gain)
    with pytest.raises(KeyError, match="nope"):
        improvement_over(table=table, reference="nope", candidate="model")
    with pytest.raises(ValueError, match="without predictions"):
        compare_models(y_true=labels, predictions={"model": probs}, threshold_by_model={"other": 0.1})


# ---- plots -------------------------------------------------------------------------------------


def test_plots_return_figures_and_save_pngs(calibrated, tmp_path) -> None:
    labels, probs = calibrated
    labels, probs = labels[:5000], probs[:5000]
    other = np.clip(probs * 1.5, 0, 1)
    table = threshold_table(y_true=labels, y_prob=probs, weeks=10)
    choice = recommend_thresholds(y_true=labels, y_prob=probs, weeks=10)
    figures = {
        "calibration": plots.calibration_plot(y_true=labels, probabilities={"a": probs, "b": other}),
        "gains": plots.gains_chart(y_true=labels, scores={"a": probs, "b": other}),
        "lift": plots.lift_chart(y_true=labels, scores={"a": probs, "b": other}),
        "distribution": plots.score_distribution(y_true=labels, y_prob=probs),
        "thresholds": plots.threshold_tradeoff_plot(table=table, choice=choice),
        "thresholds_plain": plots.threshold_tradeoff_plot(table=table),
    }
    for name, fig in figures.items():
        assert isinstance(fig, Figure)
        path = plots.save_figure(fig, tmp_path / "figs" / f"{name}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_draw_on_given_axes(calibrated) -> None:
    import matplotlib.pyplot as plt

    labels, probs = calibrated
    fig, axes = plt.subplots(1, 2)
    try:
        assert plots.gains_chart(y_true=labels[:500], scores={"a": probs[:500]}, ax=axes[0]) is fig
        assert plots.score_distribution(y_true=labels[:500], y_prob=probs[:500], ax=axes[1]) is fig
        # the gains curve ends having captured every conversion
        curve = axes[0].get_lines()[0]
        assert curve.get_ydata()[-1] == pytest.approx(1.0)
    finally:
        plt.close(fig)


def test_lift_chart_bars_match_lift_at(calibrated) -> None:
    import matplotlib.pyplot as plt

    labels, probs = calibrated
    fig = plots.lift_chart(y_true=labels, scores={"a": probs})
    try:
        first_bar = fig.axes[0].patches[0].get_height()
        assert first_bar == pytest.approx(lift_at(y_true=labels, y_prob=probs, fraction=0.1))
    finally:
        plt.close(fig)


def test_importing_plots_selects_no_backend_and_plotting_selects_agg() -> None:
    code = (
        "import matplotlib\n"
        "from leadscore.training import plots\n"
        "print(matplotlib.get_backend(auto_select=False))\n"
        "plots.score_distribution(y_true=[0, 1], y_prob=[0.2, 0.7])\n"
        "print(matplotlib.get_backend(auto_select=False))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert [word.lower() for word in result.stdout.split()] == ["none", "agg"]


def test_pipeline_gains_curve_is_the_capture_of_opportunity_value(calibrated) -> None:
    import matplotlib.pyplot as plt

    labels, probs = calibrated
    labels, probs = labels[:2000], probs[:2000]
    rng = np.random.default_rng(3)
    amounts = np.where(labels == 1, rng.lognormal(9, 1, len(labels)), 0.0)
    amounts[rng.random(len(labels)) < 0.01] = np.nan  # unknown amounts add no value
    fig = plots.pipeline_gains_chart(amounts=amounts, scores={"model": probs})
    try:
        model, random, perfect = fig.axes[0].get_lines()[:3]
        x, y = model.get_xdata(), model.get_ydata()
        assert (x[0], y[0]) == (0.0, 0.0) and y[-1] == pytest.approx(1.0)
        # at 20% of leads the curve reads what pipeline_capture_at computes
        k = int(np.ceil(0.2 * len(labels)))
        assert y[k] == pytest.approx(pipeline_capture_at(amounts=amounts, y_prob=probs, fraction=0.2))
        assert np.all(perfect.get_ydata() >= y - 1e-12)  # nothing beats ranking by the value itself
        assert random.get_ydata().tolist() == [0, 1]
    finally:
        plt.close(fig)


def test_ranking_metrics_are_tie_aware_and_do_not_depend_on_row_order() -> None:
    from leadscore.training.evaluation import tie_averaged
    from leadscore.training.plots import _ranked_capture

    rng = np.random.default_rng(3)
    # a calibrator with few steps: 2,000 leads on 5 distinct scores, ties straddle every cut-off
    scores = rng.choice([0.05, 0.1, 0.2, 0.3, 0.6], size=2_000)
    labels = (rng.random(2_000) < scores).astype(int)
    amounts = labels * rng.uniform(1, 100, 2_000)
    first = {
        "lift": lift_at(y_true=labels, y_prob=scores, fraction=0.2),
        "capture": capture_rate_at(y_true=labels, y_prob=scores, fraction=0.1),
        "pipeline": pipeline_capture_at(amounts=amounts, y_prob=scores, fraction=0.1),
        "gains": _ranked_capture(labels.astype(float), scores)[1],
    }
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(2_000)
        again = {
            "lift": lift_at(y_true=labels[order], y_prob=scores[order], fraction=0.2),
            "capture": capture_rate_at(y_true=labels[order], y_prob=scores[order], fraction=0.1),
            "pipeline": pipeline_capture_at(amounts=amounts[order], y_prob=scores[order], fraction=0.1),
            "gains": _ranked_capture(labels[order].astype(float), scores[order])[1],
        }
        for key in ("lift", "capture", "pipeline"):
            assert again[key] == pytest.approx(first[key], rel=1e-12), key
        np.testing.assert_allclose(again["gains"], first["gains"], rtol=1e-12)
    # all-tied scores: the top 10% hold exactly 10% of the conversions (expected, not file order)
    flat = np.full(2_000, 0.5)
    assert capture_rate_at(y_true=labels, y_prob=flat, fraction=0.1) == pytest.approx(0.1)
    assert lift_at(y_true=labels, y_prob=flat, fraction=0.2) == pytest.approx(1.0)
    assert tie_averaged(values=np.array([1.0, 0.0, 1.0]), scores=np.array([1.0, 1.0, 2.0])).tolist() == [
        0.5,
        0.5,
        1.0,
    ]
