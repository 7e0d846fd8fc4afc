"""Evaluation metrics for calibrated lead scores: ranking, calibration and sales-team lift.

Pure functions with keyword-only arguments. Every scalar is a plain ``float`` and every metric
key is made of letters, digits and underscores, so results can be logged to MLflow as they are.
Metrics that are undefined for the data (e.g. ROC AUC with one class) are ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

ArrayLike = npt.ArrayLike
METRIC_NAMES: tuple[str, ...] = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "lift_top10",
    "lift_top20",
    "capture_top10",
    "capture_top20",
    "precision_at_threshold",
    "recall_at_threshold",
    "positive_rate",
    "n",
)


def as_labels(y_true: ArrayLike) -> np.ndarray:
    """Binary labels as an ``int`` array (accepts bools, 0/1 numbers, pandas series)."""
    labels = np.asarray(y_true)
    if labels.ndim != 1:
        raise ValueError(f"y_true must be one-dimensional, got shape {labels.shape}")
    if labels.dtype == bool:
        return labels.astype(np.int64)
    numeric = labels.astype(np.float64)
    if not np.isin(numeric, (0.0, 1.0)).all():
        raise ValueError("y_true must contain only 0/1 (or boolean) labels")
    return numeric.astype(np.int64)


def as_scores(y_score: ArrayLike, *, n: int, probabilities: bool = True, name: str = "y_prob") -> np.ndarray:
    """Scores as a finite ``float64`` array of length ``n`` (in [0, 1] when ``probabilities``)."""
    scores = np.asarray(y_score, dtype=np.float64)
    if scores.ndim == 2 and scores.shape[1] == 2:
        scores = scores[:, 1]  # predict_proba output
    if scores.ndim != 1 or len(scores) != n:
        raise ValueError(f"{name} must be one-dimensional with {n} values, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if probabilities and ((scores < 0).any() or (scores > 1).any()):
        raise ValueError(f"{name} must be probabilities in [0, 1]")
    return scores


def _validated(y_true: ArrayLike, y_prob: ArrayLike, *, probabilities: bool) -> tuple[np.ndarray, np.ndarray]:
    labels = as_labels(y_true)
    return labels, as_scores(y_prob, n=len(labels), probabilities=probabilities)


def _top_count(n: int, fraction: float) -> int:
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return max(1, math.ceil(fraction * n - 1e-9))


def top_share(*, values: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Sum of ``values`` over the ``k`` highest scores, tie-aware.

    Rows tied at the cut-off share it: each gets the fraction of the remaining slots over the tied
    group (the expected value when ties are broken at random), so the result never depends on row
    order.
    """
    if k <= 0:
        return 0.0
    if k >= len(scores):
        return float(values.sum())
    cut = np.partition(scores, len(scores) - k)[len(scores) - k]
    above = scores > cut
    tied = scores == cut
    remaining = k - int(above.sum())
    return float(values[above].sum() + values[tied].sum() * remaining / int(tied.sum()))


def tie_averaged(*, values: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``values`` with each group of tied scores replaced by its mean (random tie-breaking, expected).

    Cumulative sums over a score ranking of these values do not depend on row order.
    """
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=np.asarray(values, dtype=np.float64), minlength=len(counts))
    return np.asarray((sums / counts)[inverse], dtype=np.float64)


def _top_positives(labels: np.ndarray, scores: np.ndarray, fraction: float) -> tuple[float, int]:
    """(expected positives among the top ``fraction`` by score, size of that top); ties shared."""
    k = _top_count(len(labels), fraction)
    return top_share(values=labels.astype(np.float64), scores=scores, k=k), k


def expected_calibration_error(
    *,
    y_true: ArrayLike,
    y_prob: ArrayLike,
    n_bins: int = 10,
    strategy: Literal["uniform", "quantile"] = "quantile",
) -> float:
    """Expected calibration error: mean |observed rate − mean probability| over bins, weighted by size.

    ``quantile`` bins hold about equally many leads (better for the skewed scores of lead
    scoring); ``uniform`` bins split [0, 1] evenly. Ties never straddle a quantile edge.
    """
    labels, probs = _validated(y_true, y_prob, probabilities=True)
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    if len(labels) == 0:
        return float("nan")
    if strategy == "quantile":
        edges = np.unique(np.quantile(probs, np.linspace(0, 1, n_bins + 1)))
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    bins = np.searchsorted(edges[1:-1], probs, side="right")
    counts = np.bincount(bins, minlength=len(edges) - 1).astype(np.float64)
    observed = np.bincount(bins, weights=labels, minlength=len(counts))
    predicted = np.bincount(bins, weights=probs, minlength=len(counts))
    used = counts > 0
    gaps = np.abs(observed[used] - predicted[used]) / counts[used]
    return float(np.sum(gaps * counts[used]) / len(labels))


def lift_at(*, y_true: ArrayLike, y_prob: ArrayLike, fraction: float) -> float:
    """Conversion rate in the top ``fraction`` of leads by score divided by the overall rate."""
    labels, scores = _validated(y_true, y_prob, probabilities=False)
    base_rate = labels.mean() if len(labels) else 0.0
    if base_rate == 0:
        return float("nan")
    positives, k = _top_positives(labels, scores, fraction)
    return float(positives / k / base_rate)


def capture_rate_at(*, y_true: ArrayLike, y_prob: ArrayLike, fraction: float) -> float:
    """Share of all converting leads found in the top ``fraction`` of leads by score."""
    labels, scores = _validated(y_true, y_prob, probabilities=False)
    total = labels.sum()
    if total == 0:
        return float("nan")
    positives, _ = _top_positives(labels, scores, fraction)
    return float(positives / total)


def pipeline_capture_at(*, amounts: ArrayLike, y_prob: ArrayLike, fraction: float) -> float:
    """Share of the opportunity value found in the top ``fraction`` of leads by score.

    ``amounts`` holds each lead's opportunity amount if it converted and 0 if not; a lead whose
    amount is unknown (NaN) still takes its place in the ranking but adds no value. NaN when no
    value is known at all. Tells sales leaders how much pipeline, not just how many opportunities,
    the top of the list holds.
    """
    values = np.asarray(amounts, dtype=np.float64)
    scores = as_scores(y_prob, n=len(values), probabilities=False)
    known = np.nan_to_num(values, nan=0.0)
    total = known.sum()
    if not total > 0:
        return float("nan")
    k = _top_count(len(values), fraction)
    return top_share(values=known, scores=scores, k=k) / float(total)


def pipeline_capture(*, amounts: ArrayLike, y_prob: ArrayLike) -> dict[str, float]:
    """``pipeline_capture_top10`` and ``pipeline_capture_top20`` (:func:`pipeline_capture_at`)."""
    return {
        f"pipeline_capture_top{round(100 * fraction)}": pipeline_capture_at(
            amounts=amounts, y_prob=y_prob, fraction=fraction
        )
        for fraction in (0.1, 0.2)
    }


def classification_metrics(*, y_true: ArrayLike, y_prob: ArrayLike, threshold: float) -> dict[str, float]:
    """Ranking, calibration, lift and thresholded metrics of calibrated probabilities.

    Keys: ``roc_auc``, ``pr_auc`` (average precision), ``log_loss``, ``brier``, ``ece``,
    ``lift_top10``/``lift_top20``, ``capture_top10``/``capture_top20``,
    ``precision_at_threshold``/``recall_at_threshold`` (lead selected when ``p >= threshold``),
    ``positive_rate`` (observed conversion rate) and ``n``.
    """
    labels, probs = _validated(y_true, y_prob, probabilities=True)
    n = len(labels)
    if n == 0:
        raise ValueError("y_true is empty")
    both_classes = 0 < labels.sum() < n
    selected = probs >= threshold
    n_selected = int(selected.sum())
    true_positives = int(labels[selected].sum())
    n_positive = int(labels.sum())
    metrics = {
        "roc_auc": float(roc_auc_score(labels, probs)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(labels, probs)) if n_positive else float("nan"),
        "log_loss": float(log_loss(labels, probs, labels=[0, 1])),
        "brier": float(brier_score_loss(labels, probs)),
        "ece": expected_calibration_error(y_true=labels, y_prob=probs),
        "lift_top10": lift_at(y_true=labels, y_prob=probs, fraction=0.1),
        "lift_top20": lift_at(y_true=labels, y_prob=probs, fraction=0.2),
        "capture_top10": capture_rate_at(y_true=labels, y_prob=probs, fraction=0.1),
        "capture_top20": capture_rate_at(y_true=labels, y_prob=probs, fraction=0.2),
        "precision_at_threshold": true_positives / n_selected if n_selected else float("nan"),
        "recall_at_threshold": true_positives / n_positive if n_positive else float("nan"),
        "positive_rate": n_positive / n,
        "n": float(n),
    }
    return {key: float(value) for key, value in metrics.items()}


def conversion_by_group(*, y_true: ArrayLike, groups: ArrayLike) -> pd.DataFrame:
    """Leads, conversions and conversion rate per group (e.g. score grade or tier).

    Groups keep their categorical order when ``groups`` is categorical (A, B, C, ...), otherwise
    they are sorted; missing groups form their own row. Empty categories get 0 leads.
    """
    labels = as_labels(y_true)
    group_values = groups if isinstance(groups, pd.Series) else pd.Series(np.asarray(groups))
    if len(group_values) != len(labels):
        raise ValueError(f"groups has {len(group_values)} values, y_true has {len(labels)}")
    frame = pd.DataFrame({"group": group_values.to_numpy(), "converted": labels})
    if isinstance(group_values.dtype, pd.CategoricalDtype):
        frame["group"] = pd.Categorical(group_values.to_numpy(), dtype=group_values.dtype)
    table = (
        frame.groupby("group", sort=True, dropna=False, observed=False)["converted"]
        .agg(leads="size", conversions="sum")
        .reset_index()
    )
    table["leads"] = table["leads"].astype(np.int64)
    table["conversions"] = table["conversions"].astype(np.int64)
    table["conversion_rate"] = np.where(
        table["leads"] > 0, table["conversions"] / table["leads"].clip(lower=1), np.nan
    )
    return table[["group", "leads", "conversions", "conversion_rate"]]


def compare_models(
    *,
    y_true: ArrayLike,
    predictions: Mapping[str, ArrayLike],
    threshold_by_model: Mapping[str, float] | None = None,
    default_threshold: float = 0.5,
    amounts: ArrayLike | None = None,
) -> pd.DataFrame:
    """One row per model (index ``model``): :func:`classification_metrics` plus the ``threshold`` used.

    A model missing from ``threshold_by_model`` is thresholded at ``default_threshold``. With
    ``amounts`` (opportunity value per row, 0 for non-converters) each row also has
    ``pipeline_capture_top10``/``pipeline_capture_top20`` (:func:`pipeline_capture_at`).
    """
    if not predictions:
        raise ValueError("predictions is empty")
    thresholds = dict(threshold_by_model or {})
    unknown = sorted(set(thresholds) - set(predictions))
    if unknown:
        raise ValueError(f"threshold_by_model names models without predictions: {unknown}")
    rows = {
        name: classification_metrics(
            y_true=y_true, y_prob=probs, threshold=thresholds.get(name, default_threshold)
        )
        | {"threshold": float(thresholds.get(name, default_threshold))}
        | ({} if amounts is None else pipeline_capture(amounts=amounts, y_prob=probs))
        for name, probs in predictions.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table


def improvement_over(*, table: pd.DataFrame, reference: str, candidate: str) -> dict[str, float]:
    """How much ``candidate`` improves on ``reference`` in a :func:`compare_models` table.

    Every value is positive when the candidate is better: ``*_gain`` are differences
    (candidate − reference), ``*_reduction`` are reference − candidate for losses and errors,
    ``*_relative_gain`` are ratios minus one (0.25 = 25 % more lift).
    """
    for name in (reference, candidate):
        if name not in table.index:
            raise KeyError(f"model {name!r} is not in the table (models: {list(table.index)})")
    columns = [str(column) for column in table.columns]
    ref = dict(zip(columns, table.loc[reference].to_numpy(dtype=np.float64).tolist(), strict=True))
    cand = dict(zip(columns, table.loc[candidate].to_numpy(dtype=np.float64).tolist(), strict=True))

    def relative(column: str) -> float:
        base = ref[column]
        return cand[column] / base - 1 if base and math.isfinite(base) else float("nan")

    return {
        "roc_auc_gain": cand["roc_auc"] - ref["roc_auc"],
        "pr_auc_gain": cand["pr_auc"] - ref["pr_auc"],
        "pr_auc_relative_gain": relative("pr_auc"),
        "log_loss_reduction": ref["log_loss"] - cand["log_loss"],
        "brier_reduction": ref["brier"] - cand["brier"],
        "ece_reduction": ref["ece"] - cand["ece"],
        "lift_top10_relative_gain": relative("lift_top10"),
        "lift_top20_relative_gain": relative("lift_top20"),
        "capture_top10_gain": cand["capture_top10"] - ref["capture_top10"],
        "capture_top20_gain": cand["capture_top20"] - ref["capture_top20"],
    } | (
        {"pipeline_capture_top20_gain": cand["pipeline_capture_top20"] - ref["pipeline_capture_top20"]}
        if "pipeline_capture_top20" in cand
        else {}
    )
