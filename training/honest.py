"""Honest evaluation of a registered model: only rows it never learnt from, with bootstrap intervals.

The registered model is refit on every labelled row of its table, the test period included, so its
own scores of that table are in-sample. :func:`evaluate_registered` therefore scores, in order of
preference:

1. the table's labelled rows **newer than the model's data** (``trained_until``): a later export,
   where the registered model itself is out of sample;
2. otherwise the **held-out test-period scores logged at training**: the pre-test refit of the same
   recipe (same rounds per row, same calibration), scored on a test period it never saw. These are
   the evidence behind the registered model, not its own scores, and the result says so.

With neither, it refuses rather than report fitted rows as an evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leadscore.model.scoring_model import LeadScoringModel
from leadscore.training import evaluation

MIN_EVALUATION_ROWS = 100
"""Labelled rows (with both outcomes) below which no evaluation is reported."""


class NoHeldOutRows(ValueError):
    """The model has learnt from every labelled row it could be scored on."""


@dataclass(frozen=True)
class HonestEvaluation:
    """Metrics on rows the scored model never learnt from, each with a 95% bootstrap interval."""

    source: str
    """Which rows and which model's scores, in words."""
    rows: int
    positives: int
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Percentile bootstrap 95% interval per metric (resampled rows)."""
    probability: np.ndarray = field(default_factory=lambda: np.empty(0))
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The rows evaluated (labels, keys), for drift against the rows before them."""


def metrics_with_intervals(
    *,
    y: np.ndarray,
    probability: np.ndarray,
    threshold: float,
    amounts: np.ndarray | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Classification metrics (and pipeline capture with ``amounts``) and their bootstrap intervals."""

    def measure(rows: np.ndarray | None) -> dict[str, float]:
        yy = y if rows is None else y[rows]
        pp = probability if rows is None else probability[rows]
        values = evaluation.classification_metrics(y_true=yy, y_prob=pp, threshold=threshold)
        if amounts is not None and np.nansum(amounts) > 0:
            aa = amounts if rows is None else amounts[rows]
            values |= evaluation.pipeline_capture(amounts=aa, y_prob=pp)
        return values

    point = measure(None)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in point}
    for _ in range(n_boot):
        rows = rng.integers(0, len(y), len(y))
        if y[rows].min() == y[rows].max():
            continue
        for name, value in measure(rows).items():
            draws[name].append(value)
    intervals = {
        name: (float(np.nanquantile(values, 0.025)), float(np.nanquantile(values, 0.975)))
        for name, values in draws.items()
        if values and np.isfinite(values).any()
    }
    return point, intervals


def evaluate_registered(
    *,
    model: LeadScoringModel,
    table: pd.DataFrame,
    logged_scores: pd.DataFrame | None,
    n_boot: int = 200,
) -> HonestEvaluation:
    """Evaluate ``model`` on rows it never learnt from (see the module docstring).

    ``table``: labelled rows of a training table; ``logged_scores``: the model's run's logged
    test-period scores (``label`` and ``p_lightgbm``), or None when the run has none.
    Raises :class:`NoHeldOutRows` when neither source has enough rows.
    """
    from leadscore.training.registry import held_out_column, rows_never_learnt_from

    until = str(model.metadata.get("trained_until", "") or "?")
    newer = table[rows_never_learnt_from(model, table)]
    y_newer = newer["label"].astype(int).to_numpy()
    if len(newer) >= MIN_EVALUATION_ROWS and 0 < y_newer.sum() < len(y_newer):
        probability = model.predict_proba_features(newer)
        return _evaluation(
            source=(
                f"{len(newer):,} labelled rows newer than the model's data (fitted until {until}): the "
                "registered model never saw them"
            ),
            frame=newer,
            probability=probability,
            threshold=model.thresholds.sql,
            n_boot=n_boot,
        )
    column = held_out_column(model)
    if logged_scores is not None and {"label", column} <= set(logged_scores.columns):
        scored = logged_scores[logged_scores["label"].notna()].reset_index(drop=True)
        y = scored["label"].astype(int).to_numpy()
        if len(scored) >= MIN_EVALUATION_ROWS and 0 < y.sum() < len(y):
            start = str(model.metadata.get("test_start", "") or "?")
            return _evaluation(
                source=(
                    f"the held-out test period logged at training ({len(scored):,} rows from {start}), "
                    "scored by the pre-test refit of the same recipe: the registered model was refit on "
                    f"every labelled row up to {until}, test period included, so its own scores of this "
                    "table are in-sample and are not shown"
                ),
                frame=scored,
                probability=scored[column].to_numpy(dtype=float),
                threshold=model.thresholds.sql,
                n_boot=n_boot,
            )
    raise NoHeldOutRows(
        f"no rows this model did not learn from: it was fitted on every labelled row up to {until} and its "
        "run logged no held-out scores; pass --table with a newer export's training table (rows after "
        f"{until}) to evaluate it"
    )


def _evaluation(
    *, source: str, frame: pd.DataFrame, probability: np.ndarray, threshold: float, n_boot: int
) -> HonestEvaluation:
    y = frame["label"].astype(int).to_numpy()
    amounts = frame["label_amount"].to_numpy(dtype=float) if "label_amount" in frame.columns else None
    metrics, intervals = metrics_with_intervals(
        y=y, probability=probability, threshold=threshold, amounts=amounts, n_boot=n_boot
    )
    return HonestEvaluation(
        source=source,
        rows=len(frame),
        positives=int(y.sum()),
        metrics=metrics,
        intervals=intervals,
        probability=np.asarray(probability, dtype=float),
        frame=frame,
    )


_MODEL_WORDS = {
    "lightgbm": "LightGBM",
    "linear": "the linear model",
    "logistic": "the logistic baseline",
    "rule_points": "the rule-points baseline",
}


def comparison_sentences(
    *,
    y: np.ndarray,
    predictions: dict[str, np.ndarray],
    amounts: np.ndarray | None = None,
    candidate: str = "lightgbm",
    n_boot: int = 200,
) -> list[str]:
    """The test-period comparison in words: which model ranks better and which is better calibrated,
    by how much, with paired bootstrap 95% intervals of the difference (the promotion gate's)."""
    from leadscore.training.registry import bootstrap_checks

    ours = _MODEL_WORDS.get(candidate, candidate)
    sentences = []
    for name, reference in predictions.items():
        if name == candidate:
            continue
        theirs = _MODEL_WORDS.get(name, name)
        checks = {
            c.metric: c
            for c in bootstrap_checks(
                y=y,
                candidate=predictions[candidate],
                reference=reference,
                reference_name=name,
                amounts=amounts,
                must_beat=True,
                n_boot=n_boot,
            )
        }
        auc, ece = checks.get("roc_auc"), checks.get("ece")
        if auc is not None:
            interval = _difference(auc.candidate - auc.reference_value, auc.low, auc.high, digits=3)
            if auc.low > 0:
                verdict = f"{ours} ranks leads better than {theirs}"
            elif auc.high < 0:
                verdict = f"{theirs} ranks leads better than {ours}"
            else:
                verdict = f"{ours} and {theirs} rank leads about equally (the interval holds 0)"
            sentences.append(
                f"{verdict}: ROC AUC {auc.candidate:.3f} vs {auc.reference_value:.3f} ({interval})."
            )
        if ece is not None:
            interval = _difference(ece.candidate - ece.reference_value, ece.low, ece.high, digits=4)
            if ece.low > 0:
                sentences.append(
                    f"{theirs} is better calibrated than {ours} on this period: ECE "
                    f"{ece.reference_value:.4f} vs {ece.candidate:.4f} ({interval}); read {ours}'s "
                    "probabilities with that in mind."
                )
            elif ece.high < 0:
                sentences.append(
                    f"{ours} is better calibrated than {theirs}: ECE {ece.candidate:.4f} vs "
                    f"{ece.reference_value:.4f} ({interval})."
                )
    return sentences


def _difference(value: float, low: float, high: float, *, digits: int) -> str:
    return f"difference {value:+.{digits}f}, 95% CI {low:+.{digits}f} to {high:+.{digits}f}"
