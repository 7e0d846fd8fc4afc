"""Probability calibrators fitted on held-out raw scores (log-odds)."""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from leadscore.model.uncertainty import ScoreUncertainty


class CalibrationAnchor(StrEnum):
    """Whether calibration follows the newest matured period's conversion level."""

    AUTO = "auto"  # when shifting each block to the level of the block before it helped, out of time
    NEWEST = "newest"  # always shift to the newest matured block's level
    NONE = "none"  # the level pooled over every calibration block


class CalibrationMethod(StrEnum):
    ISOTONIC = "isotonic"  # flexible; needs a few thousand held-out rows
    SIGMOID = "sigmoid"  # Platt scaling; steadier on small exports


class PlattCalibrator(BaseEstimator):
    """Platt scaling: a logistic curve on the raw score; steadier than isotonic on small data."""

    def fit(self, raw: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> PlattCalibrator:
        self.model_ = LogisticRegression(C=1e6).fit(
            np.asarray(raw, dtype=float).reshape(-1, 1), y, sample_weight=sample_weight
        )
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(np.asarray(raw, dtype=float).reshape(-1, 1))[:, 1]


class PriorShiftedCalibrator(BaseEstimator):
    """A calibrator of raw scores measured from the fitted model's own prior log-odds.

    Boosters fitted on different periods start from different base rates (LightGBM boosts from the
    average), so their raw scores sit at different levels. Cross-fitted calibration pools the
    out-of-time scores of several such models: each is taken relative to ``prior_logit`` (the
    log-odds of the base rate its model was fitted on), and so is the deployed model's.
    ``anchor_logit`` then moves every calibrated log-odds by one amount: the shift that brings the
    newest matured period's predicted conversions to what it had (0: the pooled level).
    """

    def __init__(
        self, calibrator: IsotonicCalibrator | PlattCalibrator, prior_logit: float, anchor_logit: float = 0.0
    ) -> None:
        self.calibrator = calibrator
        self.prior_logit = prior_logit
        self.anchor_logit = anchor_logit

    def predict(self, raw: np.ndarray) -> np.ndarray:
        pooled = self.calibrator.predict(np.asarray(raw, dtype=float) - self.prior_logit)
        return shifted_probability(pooled, getattr(self, "anchor_logit", 0.0))  # saved before: 0

    @property
    def uncertainty_(self) -> ScoreUncertainty | None:
        """The wrapped calibrator's intervals, read in the same raw-score domain as ``predict`` (the
        deployed booster's own raw score; see ``ScoreUncertainty.shifted``) and at the same level."""
        inner: ScoreUncertainty | None = getattr(self.calibrator, "uncertainty_", None)
        if inner is None:
            return None
        return inner.shifted(self.prior_logit).anchored(getattr(self, "anchor_logit", 0.0))


def shifted_probability(probability: np.ndarray, shift: float) -> np.ndarray:
    """Probabilities moved by ``shift`` in log-odds (0 and 1 stay where they are)."""
    p = np.asarray(probability, dtype=np.float64)
    if shift == 0.0:
        return p
    with np.errstate(divide="ignore"):
        logit = np.log(p) - np.log1p(-p)
    return np.asarray(1.0 / (1.0 + np.exp(-(logit + shift))), dtype=np.float64)


def intercept_shift(probability: np.ndarray, y: np.ndarray, *, bound: float = 3.0) -> float:
    """The log-odds shift after which the mean of ``probability`` equals the rate of ``y``.

    Solved by Newton's method (the mean of shifted probabilities rises monotonically with the shift),
    bounded to +-``bound`` (a factor of about 20 in odds).
    """
    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-9, 1 - 1e-9)
    target = float(np.mean(np.asarray(y, dtype=np.float64)))
    logit = np.log(p) - np.log1p(-p)
    shift = 0.0
    for _ in range(50):
        q = 1.0 / (1.0 + np.exp(-(logit + shift)))
        gap, slope = float(q.mean()) - target, float((q * (1 - q)).mean())
        if abs(gap) < 1e-10 or slope <= 0:
            break
        shift = float(np.clip(shift - gap / slope, -bound, bound))
    return shift


def prior_logit(y: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """Log-odds of the (weighted) base rate, as LightGBM's boost-from-average starts from."""
    rate = float(np.average(np.asarray(y, dtype=float), weights=sample_weight))
    rate = min(max(rate, 1e-6), 1 - 1e-6)
    return float(np.log(rate / (1 - rate)))


def fit_calibrator(
    *,
    method: CalibrationMethod,
    raw: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray | None = None,
    blocks: np.ndarray | None = None,
    block_weights: np.ndarray | None = None,
) -> IsotonicCalibrator | PlattCalibrator:
    """Fit the configured calibrator on held-out raw scores and labels (optionally weighted).

    The calibrator also carries ``uncertainty_``: per-lead intervals estimated from the same held-out
    scores and labels (:class:`ScoreUncertainty`), so probability and range always share one source;
    ``blocks`` (each row's time block, when the scores are out-of-time cross-fitted) lets the ranges
    carry the between-period spread; ``block_weights`` is each row's share of its lead's evidence.
    """
    calibrator: IsotonicCalibrator | PlattCalibrator
    if method is CalibrationMethod.SIGMOID:
        calibrator = PlattCalibrator().fit(raw, y, sample_weight=sample_weight)
    else:
        calibrator = IsotonicCalibrator().fit(raw, y, sample_weight=sample_weight)
    calibrator.uncertainty_ = ScoreUncertainty.fit(
        raw=np.asarray(raw), y=np.asarray(y).astype(int), blocks=blocks, weights=block_weights
    )
    return calibrator


class IsotonicCalibrator(BaseEstimator):
    """Isotonic calibration that keeps the raw model's ranking and never claims certainty.

    Plain isotonic regression maps every raw score of a block to one step (a few dozen distinct
    scores: the ranking collapses into ties) and gives its top block the raw rate of its leads
    (30 converters out of 30 becomes "100 %"). Here each block becomes one knot at its mean raw
    score with its conversion rate (the two end knots at the ends of the held-out range); the end
    blocks are lowered/raised to their Laplace estimate
    ``(k + 1) / (m + 2)`` (never past the neighbouring block). Between knots the log-odds are
    interpolated linearly; beyond the end knots they continue with the slope of a Platt fit, at
    most 1 (past the scores it has seen, one unit of raw log-odds moves the calibrated log-odds by
    at most one unit: a narrow held-out range cannot extrapolate to certainty). The map is strictly
    increasing, so calibrated scores rank leads exactly as the raw scores do.
    """

    def fit(
        self, raw: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> IsotonicCalibrator:
        raw = np.asarray(raw, dtype=float)
        y = np.asarray(y, dtype=float)
        w = np.ones_like(raw) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        plain = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y, sample_weight=w)
        fitted = plain.predict(raw)
        steps, block = np.unique(fitted, return_inverse=True)
        weight = np.bincount(block, weights=w, minlength=steps.size)
        positives = np.bincount(block, weights=w * y, minlength=steps.size)
        centres = np.bincount(block, weights=w * raw, minlength=steps.size) / np.maximum(weight, 1e-12)
        values = steps.copy()
        if steps.size >= 2:
            top = (positives[-1] + 1.0) / (weight[-1] + 2.0)
            bottom = (positives[0] + 1.0) / (weight[0] + 2.0)
            values[-1] = max(min(values[-1], top), values[-2])
            values[0] = min(max(values[0], bottom), values[1])
        else:
            values[0] = (positives[0] + 1.0) / (weight[0] + 2.0)
        # blocks are ordered by raw score; an end block bounded onto its neighbour merges with it
        keep_x, keep_v, keep_w = [centres[0]], [values[0]], [weight[0]]
        for x, v, m in zip(centres[1:], values[1:], weight[1:], strict=True):
            if v <= keep_v[-1] or x <= keep_x[-1]:
                total = keep_w[-1] + m
                keep_x[-1] = (keep_x[-1] * keep_w[-1] + x * m) / total
                keep_v[-1] = (keep_v[-1] * keep_w[-1] + v * m) / total
                keep_w[-1] = total
            else:
                keep_x.append(x)
                keep_v.append(v)
                keep_w.append(m)
        if len(keep_x) >= 2:  # end knots at the ends of the held-out range: the tails start past the data
            keep_x[0], keep_x[-1] = min(keep_x[0], float(raw.min())), max(keep_x[-1], float(raw.max()))
        self.x_knots_ = np.asarray(keep_x)
        self.logit_knots_ = _logit(np.asarray(keep_v))
        platt = LogisticRegression(C=1e6).fit(raw.reshape(-1, 1), y.astype(int), sample_weight=w)
        self.tail_slope_ = float(min(max(platt.coef_[0, 0], 1e-3), 1.0))
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, strictly increasing in the raw score."""
        raw = np.asarray(raw, dtype=float)
        if not hasattr(self, "logit_knots_"):  # a calibrator pickled before strict ranking: plain steps
            return np.asarray(np.interp(raw, self.x_knots_, self.y_knots_), dtype=float)
        x, z = self.x_knots_, self.logit_knots_
        inside = np.interp(raw, x, z)
        below = z[0] + self.tail_slope_ * (raw - x[0])
        above = z[-1] + self.tail_slope_ * (raw - x[-1])
        logit = np.where(raw < x[0], below, np.where(raw > x[-1], above, inside))
        return np.asarray(1.0 / (1.0 + np.exp(-logit)), dtype=float)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(p / (1 - p)), dtype=float)


def em_prior(
    probability: np.ndarray, *, trained_prior: float, max_iter: int = 200, tolerance: float = 1e-7
) -> float:
    """The base rate of unlabelled rows by EM prior-shift adjustment (Saerens, Latinne & Decaestecker 2002).

    ``probability`` are calibrated probabilities at the level ``trained_prior`` (the base rate the
    calibration reproduces). Each step re-weights every posterior by the odds of the current
    estimate against ``trained_prior`` and takes their mean as the next estimate, until it moves by
    less than ``tolerance``. It assumes label shift (what a converting lead looks like did not
    change, only how many there are); ``prior_shift_check`` measures whether that held.
    """
    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-9, 1 - 1e-9)
    base = min(max(float(trained_prior), 1e-6), 1 - 1e-6)
    estimate = base
    for _ in range(max_iter):
        up, down = estimate / base, (1 - estimate) / (1 - base)
        adjusted = up * p / (up * p + down * (1 - p))
        new = float(adjusted.mean())
        if abs(new - estimate) < tolerance:
            return new
        estimate = new
    return estimate


def expected_roc_auc(probability: np.ndarray) -> float:
    """The ROC AUC expected if ``probability`` is calibrated (each lead counts ``p`` positive and ``1 - p``
    negative; tied probabilities share their pairs half and half)."""
    p = np.asarray(probability, dtype=np.float64)
    if len(p) < 2:
        return float("nan")
    values, inverse = np.unique(p, return_inverse=True)
    positives = np.bincount(inverse, weights=p, minlength=len(values))
    negatives = np.bincount(inverse, weights=1.0 - p, minlength=len(values))
    own = np.bincount(inverse, weights=p * (1.0 - p), minlength=len(values))  # a lead with itself: no pair
    below = np.cumsum(negatives) - negatives  # negatives at strictly lower probabilities
    pairs = float(positives.sum() * negatives.sum() - own.sum())
    if pairs <= 0:
        return float("nan")
    ties = 0.5 * (positives * negatives - own)
    return float((np.sum(positives * below) + np.sum(ties)) / pairs)


#: below this expected ROC AUC the scores separate too little for EM to find a base rate: it drifts to a
#: bound (any prior explains scores that do not separate)
MIN_EM_ROC_AUC = 0.6


def em_prior_settled(probability: np.ndarray, *, trained_prior: float) -> float:
    """:func:`em_prior` where it can be trusted, else NaN: the scores must separate (expected ROC AUC of
    at least :data:`MIN_EM_ROC_AUC`) and EM must not have run to a bound (below a tenth of the mean
    probability, or to 1). What users read (monitor, the model card, ``/metrics``) goes through here."""
    p = np.asarray(probability, dtype=np.float64)
    if len(p) == 0 or not expected_roc_auc(p) >= MIN_EM_ROC_AUC:
        return float("nan")
    estimate = em_prior(p, trained_prior=trained_prior)
    return estimate if 0.1 * float(p.mean()) < estimate < 1 - 1e-3 else float("nan")


def prior_shift_logit(*, trained_prior: float, new_prior: float) -> float:
    """The log-odds shift that moves posteriors from ``trained_prior`` to ``new_prior`` (Bayes' rule)."""
    a = min(max(trained_prior, 1e-6), 1 - 1e-6)
    b = min(max(new_prior, 1e-6), 1 - 1e-6)
    return float(np.log(b / (1 - b)) - np.log(a / (1 - a)))


def em_prior_interval(
    probability: np.ndarray, *, trained_prior: float, seed: int = 0, n_boot: int = 100
) -> tuple[float, float]:
    """95% bootstrap interval of :func:`em_prior` over the unlabelled rows."""
    p = np.asarray(probability, dtype=np.float64)
    if len(p) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = [em_prior(p[rng.integers(0, len(p), len(p))], trained_prior=trained_prior) for _ in range(n_boot)]
    low, high = np.quantile(draws, [0.025, 0.975])
    return float(low), float(high)
