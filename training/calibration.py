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
    return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
