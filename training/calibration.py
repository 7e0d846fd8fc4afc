"""Probability calibrators fitted on held-out raw scores (log-odds)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from leadscore.training.config import CalibrationMethod


class PlattCalibrator(BaseEstimator):
    """Platt scaling: a logistic curve on the raw score; steadier than isotonic on small data."""

    def fit(self, raw: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        self.model_ = LogisticRegression(C=1e6).fit(np.asarray(raw, dtype=float).reshape(-1, 1), y)
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(np.asarray(raw, dtype=float).reshape(-1, 1))[:, 1]


def fit_calibrator(
    *, method: CalibrationMethod, raw: np.ndarray, y: np.ndarray
) -> IsotonicCalibrator | PlattCalibrator:
    """Fit the configured calibrator on held-out raw scores and labels."""
    if method is CalibrationMethod.SIGMOID:
        return PlattCalibrator().fit(raw, y)
    return IsotonicCalibrator().fit(raw, y)


class IsotonicCalibrator(BaseEstimator):
    """Isotonic calibration whose end steps never claim certainty their data cannot back.

    Plain isotonic regression gives its highest step the raw rate of the top block of held-out
    leads: 30 converters out of 30 becomes "100 %", which no rep should read. Here the top step is
    lowered to its Laplace estimate ``(k + 1) / (m + 2)`` for ``k`` converters among the ``m`` leads
    of the block (30/30 -> 97 %) and the bottom step raised to its own (0/5,000 -> 0.02 %), but
    neither past its neighbouring step, so the ranking is kept; every other step is unchanged.
    """

    def fit(self, raw: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        raw = np.asarray(raw, dtype=float)
        y = np.asarray(y, dtype=float)
        plain = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
        fitted = plain.predict(raw)
        x_knots = np.asarray(plain.X_thresholds_, dtype=float)
        y_knots = np.asarray(plain.y_thresholds_, dtype=float).copy()
        steps = np.unique(y_knots)
        if steps.size >= 2:
            top, bottom = fitted == steps[-1], fitted == steps[0]
            top_bound = (y[top].sum() + 1.0) / (top.sum() + 2.0)
            bottom_bound = (y[bottom].sum() + 1.0) / (bottom.sum() + 2.0)
            y_knots[y_knots == steps[-1]] = max(min(steps[-1], top_bound), steps[-2])
            y_knots[y_knots == steps[0]] = min(max(steps[0], bottom_bound), steps[1])
        self.x_knots_ = x_knots
        self.y_knots_ = np.maximum.accumulate(y_knots)
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (linear between knots, clipped to the end steps outside them)."""
        return np.interp(np.asarray(raw, dtype=float), self.x_knots_, self.y_knots_)
