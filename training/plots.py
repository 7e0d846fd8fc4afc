"""Evaluation plots for reports and MLflow: calibration, gains, lift, score distributions, thresholds.

Every function draws on ``ax`` when given (returning its figure) or on a new figure, and returns a
:class:`matplotlib.figure.Figure`. Importing this module has no side effects; a new figure selects
the non-interactive Agg backend only when no backend has been chosen yet.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
import numpy.typing as npt
import pandas as pd

from leadscore.training.evaluation import as_labels, as_scores, expected_calibration_error, tie_averaged

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from leadscore.training.thresholds import ThresholdChoice

DPI = 110


def _ensure_backend() -> None:
    """Select Agg if, and only if, no backend has been chosen (explicitly or by pyplot) yet."""
    try:
        chosen = matplotlib.get_backend(auto_select=False)
    except TypeError:  # matplotlib < 3.10
        chosen = matplotlib.rcParams._get_backend_or_none()  # type: ignore[attr-defined]
    if chosen is None:
        matplotlib.use("Agg")
    # period labels ("2025-03") read as dates: matplotlib says so at INFO once per plotted line
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)


def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float] = (6.4, 4.8)) -> tuple[Figure, Axes]:
    if ax is not None:
        try:
            return ax.get_figure(root=True), ax  # type: ignore[call-arg,return-value]
        except TypeError:  # matplotlib < 3.10
            return ax.figure.figure, ax  # type: ignore[union-attr,return-value]
    _ensure_backend()
    import matplotlib.pyplot as plt

    fig, new_ax = plt.subplots(figsize=figsize)
    return fig, new_ax


def _ranked_capture(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share of leads contacted, share of conversions or value captured), best first, from (0, 0)."""
    order = np.argsort(-scores, kind="stable")
    shared = tie_averaged(values=labels, scores=scores)  # tied scores share their conversions
    captured = np.concatenate([[0.0], np.cumsum(shared[order])]) / max(labels.sum(), 1)
    contacted = np.arange(len(labels) + 1) / len(labels)
    return contacted, captured


def calibration_plot(
    *,
    y_true: npt.ArrayLike,
    probabilities: Mapping[str, npt.ArrayLike],
    n_bins: int = 10,
    ax: Axes | None = None,
) -> Figure:
    """Reliability diagram: observed conversion rate vs mean predicted probability per quantile bin.

    Each model's legend entry shows its expected calibration error; the dashed diagonal is perfect
    calibration. Axes zoom to the range the probabilities use (lead scores are usually small).
    """
    fig, ax = _figure_and_axes(ax)
    labels = as_labels(y_true)
    upper = 0.0
    for name, values in probabilities.items():
        probs = as_scores(values, n=len(labels), probabilities=True, name=f"probabilities[{name!r}]")
        edges = np.unique(np.quantile(probs, np.linspace(0, 1, n_bins + 1)))
        bins = np.searchsorted(edges[1:-1], probs, side="right")
        counts = np.bincount(bins, minlength=len(edges) - 1)
        used = counts > 0
        predicted = np.bincount(bins, weights=probs, minlength=len(counts))[used] / counts[used]
        observed = np.bincount(bins, weights=labels, minlength=len(counts))[used] / counts[used]
        ece = expected_calibration_error(y_true=labels, y_prob=probs, n_bins=n_bins)
        ax.plot(predicted, observed, marker="o", label=f"{name} (ECE {ece:.3f})")
        upper = max(upper, float(predicted.max()), float(observed.max()))
    limit = min(1.0, upper * 1.05) if upper > 0 else 1.0
    ax.plot([0, limit], [0, limit], linestyle="--", color="grey", label="perfectly calibrated")
    ax.set(
        xlim=(0, limit),
        ylim=(0, limit),
        xlabel="Mean predicted probability",
        ylabel="Observed conversion rate",
        title="Calibration",
    )
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def _gains(
    ax: Axes, *, weights: np.ndarray, scores: Mapping[str, npt.ArrayLike], ylabel: str, title: str
) -> None:
    """Share of ``weights`` (conversions or value) captured vs share of leads contacted, per model."""
    for name, values in scores.items():
        score = as_scores(values, n=len(weights), probabilities=False, name=f"scores[{name!r}]")
        contacted, captured = _ranked_capture(weights, score)
        ax.plot(contacted, captured, label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    if weights.sum() > 0:  # ranking by the outcome itself
        contacted, captured = _ranked_capture(weights, weights)
        ax.plot(contacted, captured, linestyle=":", color="black", label="perfect")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="Share of leads contacted", ylabel=ylabel, title=title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)


def gains_chart(
    *, y_true: npt.ArrayLike, scores: Mapping[str, npt.ArrayLike], ax: Axes | None = None
) -> Figure:
    """Cumulative gains: share of conversions captured vs share of leads contacted, best first."""
    fig, ax = _figure_and_axes(ax)
    labels = as_labels(y_true)
    _gains(
        ax, weights=labels, scores=scores, ylabel="Share of conversions captured", title="Cumulative gains"
    )
    return fig


def pipeline_gains_chart(
    *, amounts: npt.ArrayLike, scores: Mapping[str, npt.ArrayLike], ax: Axes | None = None
) -> Figure:
    """Cumulative share of opportunity value captured vs share of leads contacted, best first.

    ``amounts``: each lead's opportunity amount if it converted, 0 if not, NaN if unknown (counted
    as 0). The revenue view of the gains chart: a model can find many small deals and miss the big ones.
    """
    fig, ax = _figure_and_axes(ax)
    value = np.nan_to_num(np.asarray(amounts, dtype=np.float64), nan=0.0)
    _gains(
        ax,
        weights=value,
        scores=scores,
        ylabel="Share of opportunity value captured",
        title="Pipeline-value gains",
    )
    return fig


def lift_chart(
    *,
    y_true: npt.ArrayLike,
    scores: Mapping[str, npt.ArrayLike],
    n_bins: int = 10,
    ax: Axes | None = None,
) -> Figure:
    """Lift per score decile (conversion rate in the decile / overall rate), best decile first."""
    fig, ax = _figure_and_axes(ax)
    labels = as_labels(y_true)
    n = len(labels)
    base_rate = labels.mean() if n else 0.0
    width = 0.8 / max(len(scores), 1)
    positions = np.arange(1, n_bins + 1)
    for index, (name, values) in enumerate(scores.items()):
        score = as_scores(values, n=n, probabilities=False, name=f"scores[{name!r}]")
        order = np.argsort(-score, kind="stable")
        decile = np.empty(n, dtype=np.int64)
        decile[order] = np.arange(n) * n_bins // max(n, 1)
        counts = np.bincount(decile, minlength=n_bins)
        shared = tie_averaged(values=labels, scores=score)  # ties share conversions: order-free
        conversions = np.bincount(decile, weights=shared, minlength=n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            lift = np.where(counts > 0, conversions / np.maximum(counts, 1), np.nan) / base_rate
        offset = (index - (len(scores) - 1) / 2) * width
        ax.bar(positions + offset, lift, width=width, label=name)
    ax.axhline(1.0, linestyle="--", color="grey", label="random")
    ax.set(
        xticks=positions,
        xlabel=f"Score bin (1 = top {100 // n_bins}% of leads)",
        ylabel="Lift",
        title="Lift by score bin",
    )
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3, axis="y")
    return fig


def score_distribution(
    *, y_true: npt.ArrayLike, y_prob: npt.ArrayLike, bins: int = 40, ax: Axes | None = None
) -> Figure:
    """Overlapping density histograms of the scores of converted and not-converted leads."""
    fig, ax = _figure_and_axes(ax)
    labels = as_labels(y_true)
    probs = as_scores(y_prob, n=len(labels), probabilities=False)
    edges = np.histogram_bin_edges(probs, bins=bins)
    for value, name, color in ((0, "not converted", "tab:blue"), (1, "converted", "tab:orange")):
        selected = probs[labels == value]
        if len(selected):
            ax.hist(
                selected,
                bins=edges.tolist(),
                density=True,
                alpha=0.55,
                color=color,
                label=f"{name} (n={len(selected):,})",
            )
    ax.set(xlabel="Score", ylabel="Density", title="Score distribution by outcome")
    ax.legend(loc="upper right")
    return fig


def threshold_tradeoff_plot(
    *, table: pd.DataFrame, choice: ThresholdChoice | None = None, ax: Axes | None = None
) -> Figure:
    """Workload (leads/week, left axis) and conversions/week (right axis) against the threshold.

    ``table`` comes from :func:`leadscore.training.thresholds.threshold_table`; the MQL and SQL
    thresholds of ``choice`` are marked with vertical lines.
    """
    fig, ax = _figure_and_axes(ax, figsize=(7.5, 4.8))
    data = table.sort_values("threshold")
    workload = ax.plot(data["threshold"], data["leads_per_week"], color="tab:blue", label="leads / week")
    ax.set(xlabel="Probability threshold", ylabel="Leads per week (workload)", title="Threshold trade-off")
    ax.grid(alpha=0.3)
    right = ax.twinx()
    lines = workload + right.plot(
        data["threshold"],
        data["expected_conversions_per_week"],
        color="tab:green",
        label="expected conversions / week",
    )
    if "observed_conversions_per_week" in data:
        lines += right.plot(
            data["threshold"],
            data["observed_conversions_per_week"],
            color="tab:green",
            linestyle=":",
            label="observed conversions / week",
        )
    right.set_ylabel("Conversions per week")
    right.set_ylim(bottom=0)
    ax.set_ylim(bottom=0)
    if choice is not None:
        for value, name, color in (
            (choice.mql_threshold, "MQL", "tab:orange"),
            (choice.sql_threshold, "SQL", "tab:red"),
        ):
            lines.append(
                ax.axvline(value, color=color, linestyle="--", label=f"{name} threshold {value:.3f}")
            )
    ax.legend(handles=lines, loc="upper right")
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Save ``fig`` as a PNG (dpi 110, tight bounding box), close it and return the path."""
    _ensure_backend()
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path
