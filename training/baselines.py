"""Baselines the model must beat: a marketing-automation points score and a logistic regression.

Both consume the feature frame of :func:`leadscore.features.pipeline.compute_features` (the
catalogue columns; extra columns such as ``lead_id`` and ``as_of`` are ignored).

* :class:`RuleBasedScorer` is the classic lead score of marketing-automation tools: fit points
  (seniority, company size, e-mail domain, source channel) plus engagement points per event that
  decay with age. Its only learned part maps points to a probability (isotonic regression), so
  it can be compared on calibration as well as ranking.
* :func:`make_logistic_baseline` is a regularised logistic regression on the same features.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, RobustScaler
from sklearn.utils.validation import check_is_fitted

from leadscore.features.catalogue import (
    CATEGORICAL_FEATURES,
    FEATURE_NAMES,
    SIGNAL_BY_NAME,
    WINDOWS_DAYS,
    total_count_name,
    window_count_name,
)
from leadscore.model.linear import TrainingRangeClipper, signed_log1p
from leadscore.training.evaluation import as_labels

CATEGORICAL_SECTIONS: tuple[str, ...] = ("seniority", "email_domain_type", "channel")
DEFAULT_POINTS: dict[str, Any] = {
    # fit: points per value of a categorical column (values not listed score 0)
    "seniority": {
        "c_level": 15.0,
        "vp": 12.0,
        "director": 10.0,
        "manager": 5.0,
        "individual_contributor": 0.0,
        "other": 0.0,
        "student": -10.0,
    },
    "email_domain_type": {"corporate": 5.0, "free": -5.0, "education": -3.0, "missing": -2.0},
    "channel": {
        "referral": 5.0,
        "partner": 4.0,
        "trade_show": 3.0,
        "webinar": 3.0,
        "web_form": 2.0,
        "purchased_list": -10.0,
    },
    # fit: company size bands as (lowest employee count, points), ascending; missing size scores 0
    "employee_count_bands": [(0, 0.0), (10, 2.0), (50, 5.0), (200, 8.0), (1000, 12.0)],
    # engagement and sales: points per event, before recency decay
    "signals": {
        "demo_request": 30.0,
        "page_pricing": 8.0,
        "webinar_attended": 8.0,
        "form_fill": 6.0,
        "content_download": 4.0,
        "webinar_registered": 3.0,
        "email_click": 3.0,
        "page_product": 2.0,
        "page_docs": 2.0,
        "email_open": 1.0,
        "page_blog": 0.5,
        "page_other": 0.2,
        "page_careers": -5.0,
        "unsubscribe": -20.0,
        "bounce": -10.0,
        "sales_meeting": 10.0,
        "sales_call": 3.0,
        "sales_email": 1.0,
    },
    # weight of an event by age: last 7 days, 8-30 days, 31-90 days, older
    "recency_weights": {"7d": 1.0, "30d": 0.6, "90d": 0.3, "older": 0.1},
    # a single signal adds at most this many points (a lead opening 200 e-mails is not a buyer)
    "max_points_per_signal": 40.0,
}
_RECENCY_KEYS: tuple[str, ...] = (*(f"{days}d" for days in WINDOWS_DAYS), "older")
_PROBABILITY_FLOOR = 1e-4


def resolve_points(points: Mapping[str, Any] | None) -> dict[str, Any]:
    """The full points table: ``points`` sections replace the matching sections of the default."""
    resolved = copy.deepcopy(DEFAULT_POINTS)
    if points is None:
        return resolved
    unknown = sorted(set(points) - set(DEFAULT_POINTS))
    if unknown:
        raise ValueError(f"unknown points sections {unknown}; known: {sorted(DEFAULT_POINTS)}")
    resolved.update(copy.deepcopy(dict(points)))
    unknown_signals = sorted(set(resolved["signals"]) - set(SIGNAL_BY_NAME))
    if unknown_signals:
        raise ValueError(f"unknown signals in points['signals']: {unknown_signals}")
    if set(resolved["recency_weights"]) != set(_RECENCY_KEYS):
        raise ValueError(f"points['recency_weights'] needs exactly the keys {list(_RECENCY_KEYS)}")
    bounds = [float(bound) for bound, _ in resolved["employee_count_bands"]]
    if bounds != sorted(bounds):
        raise ValueError("points['employee_count_bands'] must be sorted by lowest employee count")
    return resolved


def required_columns(points: Mapping[str, Any]) -> list[str]:
    """Feature columns a points table reads."""
    columns = [*CATEGORICAL_SECTIONS]
    if points["employee_count_bands"]:
        columns.append("employee_count")
    for signal in points["signals"]:
        columns += [window_count_name(signal, days) for days in WINDOWS_DAYS]
        columns.append(total_count_name(signal))
    return columns


def _counts(X: pd.DataFrame, name: str) -> np.ndarray:
    return np.nan_to_num(X[name].to_numpy(dtype=np.float64, na_value=np.nan), nan=0.0)


def _categorical_points(values: pd.Series, table: Mapping[str, float]) -> np.ndarray:
    raw = pd.Series(values.to_numpy(dtype=object), index=values.index)
    return raw.map(lambda v: table.get(v, 0.0) if isinstance(v, str) else 0.0).to_numpy(dtype=np.float64)


class RuleBasedScorer(ClassifierMixin, BaseEstimator):
    """Marketing-automation points score with an isotonic mapping of points to probability.

    ``points`` is a table like :data:`DEFAULT_POINTS`; given sections replace the default ones.
    Engagement points are ``points per event x recency-weighted event count``, where the count
    weights events in the last 7 days, 8-30 days, 31-90 days and older by ``recency_weights``,
    and each signal's contribution is capped at ``max_points_per_signal`` in absolute value.
    ``fit`` learns only the monotone points → probability map on the training data.
    """

    def __init__(self, points: Mapping[str, Any] | None = None) -> None:
        self.points = points

    def _table(self) -> dict[str, Any]:
        return self.points_ if hasattr(self, "points_") else resolve_points(self.points)

    def _check_frame(self, X: Any, table: Mapping[str, Any]) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise TypeError("RuleBasedScorer needs the pipeline's feature frame (a pandas DataFrame)")
        missing = [c for c in required_columns(table) if c not in X.columns]
        if missing:
            raise ValueError(f"feature frame lacks columns the points table uses: {missing[:10]}")
        return X

    def _components(self, X: pd.DataFrame, table: Mapping[str, Any]) -> dict[str, np.ndarray]:
        components = {
            f"fit_{section}": _categorical_points(X[section], table[section])
            for section in CATEGORICAL_SECTIONS
        }
        bands = table["employee_count_bands"]
        if bands:
            size = X["employee_count"].to_numpy(dtype=np.float64, na_value=np.nan)
            lows = np.array([float(low) for low, _ in bands])
            band_points = np.array([float(p) for _, p in bands])
            band = np.searchsorted(lows, np.nan_to_num(size, nan=-np.inf), side="right") - 1
            components["fit_company_size"] = np.where(
                np.isnan(size) | (band < 0), 0.0, band_points[np.clip(band, 0, None)]
            )
        weights = table["recency_weights"]
        cap = float(table["max_points_per_signal"])
        for signal, per_event in table["signals"].items():
            windows = [_counts(X, window_count_name(signal, days)) for days in WINDOWS_DAYS]
            total = _counts(X, total_count_name(signal))
            bounds = [np.zeros(len(X)), *windows, np.maximum(total, windows[-1])]
            weighted = sum(
                float(weights[key]) * np.clip(bounds[i + 1] - bounds[i], 0, None)
                for i, key in enumerate(_RECENCY_KEYS)
            )
            components[f"signal_{signal}"] = np.clip(float(per_event) * weighted, -cap, cap)
        return components

    def points_breakdown(self, X: pd.DataFrame) -> pd.DataFrame:
        """Points per component (``fit_*``, ``signal_*``) for each row; rows sum to the score."""
        table = self._table()
        X = self._check_frame(X, table)
        return pd.DataFrame(self._components(X, table), index=X.index)

    def _points(self, X: pd.DataFrame) -> np.ndarray:
        table = self._table()
        components = self._components(self._check_frame(X, table), table)
        return np.sum(list(components.values()), axis=0) if components else np.zeros(len(X))

    def fit(self, X: pd.DataFrame, y: npt.ArrayLike) -> RuleBasedScorer:
        """Resolve the points table and fit the isotonic points → probability map on ``(X, y)``."""
        table = resolve_points(self.points)
        X = self._check_frame(X, table)
        labels = as_labels(y)
        if len(labels) != len(X):
            raise ValueError(f"X has {len(X)} rows, y has {len(labels)}")
        points = np.sum(list(self._components(X, table).values()), axis=0)
        self.isotonic_ = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(points, labels)
        self.points_ = table
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The points score of each row."""
        check_is_fitted(self)
        return self._points(X)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """``[1 - p, p]`` with ``p`` the isotonic map of the points (kept within [1e-4, 1 - 1e-4])."""
        check_is_fitted(self)
        p = np.clip(self.isotonic_.predict(self._points(X)), _PROBABILITY_FLOOR, 1 - _PROBABILITY_FLOOR)
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 where the probability is at least 0.5."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)


def categories_as_strings(X: Any) -> np.ndarray:
    """Categorical columns as an object array of strings, missing values as ``"__missing__"``."""
    frame = pd.DataFrame(X).astype(object)
    frame = frame.where(frame.notna(), "__missing__")
    return frame.map(str).to_numpy(dtype=object)


def make_logistic_baseline(
    *,
    seed: int,
    categorical_features: Sequence[str] = CATEGORICAL_FEATURES,
    numeric_features: Sequence[str] | None = None,
    min_frequency: int = 20,
    C: float = 0.1,
    max_iter: int = 2000,
) -> Pipeline:
    """A logistic regression on the feature frame that cannot collapse under drift.

    Categoricals: strings (missing as its own value) → one-hot, categories seen fewer than
    ``min_frequency`` times grouped, unknown ones ignored. Numerics: signed log1p → clipped to the
    training range (0.5-99.5 % quantiles, so new extremes do not extrapolate) → median imputation
    with missing indicators → robust scaling (median/IQR). L2 regularisation ``C`` (0.1: dozens of
    one-hot columns per feature on a few thousand rows). No class weighting, so the probabilities
    stay calibrated-ish. Numerics default to every non-categorical feature.
    """
    numeric = (
        [name for name in FEATURE_NAMES if name not in set(categorical_features)]
        if numeric_features is None
        else list(numeric_features)
    )
    categorical_steps = Pipeline(
        [
            ("as_strings", FunctionTransformer(categories_as_strings, feature_names_out="one-to-one")),
            (
                "one_hot",
                OneHotEncoder(handle_unknown="ignore", min_frequency=min_frequency, sparse_output=False),
            ),
        ]
    )
    numeric_steps = Pipeline(
        [
            ("signed_log1p", FunctionTransformer(signed_log1p, feature_names_out="one-to-one")),
            ("clip", TrainingRangeClipper()),
            ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
            ("scale", RobustScaler(quantile_range=(5.0, 95.0), unit_variance=True)),
        ]
    )
    features = ColumnTransformer(
        [("categorical", categorical_steps, list(categorical_features)), ("numeric", numeric_steps, numeric)],
        remainder="drop",
    )
    model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed, solver="newton-cholesky")
    return Pipeline([("features", features), ("model", model)])


class EngagementPointsScorer(ClassifierMixin, BaseEstimator):
    """Rule-based baseline for flat exports: points for engagement volume, as automation tools give.

    Each engagement column earns 0-10 points by where the lead stands among training leads (its
    percentile); points add up; an isotonic map turns points into a probability.

    When the export has no numeric engagement column, ``fallback_columns`` (categorical fit fields
    such as channel or landing page) earn the points instead: 0-10 by the smoothed training
    conversion rate of the lead's value (a fit grade as marketing tools learn it from history;
    rare values shrink to the overall rate). ``basis_`` says which was used.
    """

    def __init__(
        self, columns: Sequence[str] = (), fallback_columns: Sequence[str] = (), smoothing: float = 20.0
    ) -> None:
        self.columns = columns
        self.fallback_columns = fallback_columns
        self.smoothing = smoothing

    def fit(self, X: pd.DataFrame, y: npt.ArrayLike) -> EngagementPointsScorer:
        labels = np.asarray(y).astype(int)
        self.classes_ = np.array([0, 1])
        self.sorted_values_ = {
            c: np.sort(pd.to_numeric(X[c], errors="coerce").dropna().to_numpy(dtype=float))
            for c in self.columns
        }
        self.category_points_: dict[str, dict[str, float]] = {}
        if not self.columns:
            prior = float(labels.mean()) if len(labels) else 0.0
            for column in self.fallback_columns:
                values = X[column].astype("string").fillna("(missing)").to_numpy(dtype=object)
                frame = pd.DataFrame({"v": values, "y": labels})
                stats = frame.groupby("v")["y"].agg(["sum", "count"])
                rate = (stats["sum"] + self.smoothing * prior) / (stats["count"] + self.smoothing)
                top = float(rate.max()) if len(rate) else 1.0
                self.category_points_[column] = {
                    str(value): float(points) for value, points in (10.0 * rate / max(top, 1e-12)).items()
                }
                self.category_points_[column]["__prior__"] = 10.0 * prior / max(top, 1e-12)
        self.basis_ = (
            f"engagement percentiles of {list(self.columns)}"
            if self.columns
            else f"smoothed conversion rate of {list(self.fallback_columns)} (no numeric engagement column)"
            if self.fallback_columns
            else "constant (no engagement or categorical column)"
        )
        self.isotonic_ = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4)
        self.isotonic_.fit(self.decision_function(X), labels)
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "sorted_values_")
        points = np.zeros(len(X))
        for column, values in self.sorted_values_.items():
            current = pd.to_numeric(X[column], errors="coerce").to_numpy(dtype=float)
            share = np.searchsorted(values, np.nan_to_num(current, nan=-np.inf), side="right") / max(
                1, len(values)
            )
            points += 10.0 * share
        for column, table in self.category_points_.items():
            values = X[column].astype("string").fillna("(missing)").to_numpy(dtype=object)
            prior = table["__prior__"]
            points += np.array([table.get(v, prior) for v in values], dtype=float)
        return points

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.isotonic_.predict(self.decision_function(X))
        return np.column_stack([1 - p, p])
