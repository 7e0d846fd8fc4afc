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
) -> IsotonicRegression | PlattCalibrator:
    """Fit the configured calibrator on held-out raw scores and labels."""
    if method is CalibrationMethod.SIGMOID:
        return PlattCalibrator().fit(raw, y)
    return fit_isotonic(raw=raw, y=y)


def fit_isotonic(*, raw: np.ndarray, y: np.ndarray) -> IsotonicRegression:
    """Isotonic calibration whose extreme steps never claim certainty their data cannot back.

    Plain isotonic regression gives its highest step the raw rate of the top block of held-out
    leads: 30 converters out of 30 becomes "100 %", which no rep should read. The end steps are
    bounded by their Laplace estimates instead, ``(k + 1) / (m + 2)`` for ``k`` converters among the
    ``m`` leads of the block (30/30 -> 97 %, 0/5,000 -> 0.02 %); every step in between is unchanged.
    """
    raw = np.asarray(raw, dtype=float)
    y = np.asarray(y, dtype=float)
    first = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
    fitted = first.predict(raw)
    top, bottom = fitted == fitted.max(), fitted == fitted.min()
    y_max = (y[top].sum() + 1.0) / (top.sum() + 2.0)
    y_min = (y[bottom].sum() + 1.0) / (bottom.sum() + 2.0)
    if not y_min < y_max:  # a single block: no ranking information to keep
        return first
    return IsotonicRegression(out_of_bounds="clip", y_min=y_min, y_max=y_max).fit(raw, y)
