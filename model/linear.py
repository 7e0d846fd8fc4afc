"""A regularised logistic regression that stands in for the booster when the evidence picks it.

:class:`LinearScorer` reads the same encoded rows as the booster (the ``CategoryCodeEncoder``'s
codes, numbers as floats, as a frame or a float array) and answers the two calls the scoring model
makes of a booster: ``predict(rows, raw_score=True)`` (log-odds) and
``predict(rows, pred_contrib=True)`` (one column per feature plus the expected value). A logistic
model is additive in its features, so each feature's contribution is exact: its coefficients times
the distance of its transformed columns from their training means (the interventional SHAP values
of a linear model). Reasons, grades, why-changed and the service then run unchanged.

Each feature owns its columns of the design:

* categorical codes: one-hot (missing as its own value, unknown codes ignored);
* numeric features: signed ``log1p``, clipped to the training range (a count or size past anything
  seen scores like the most extreme value seen), mean-imputed with a missing indicator, robustly
  scaled;
* market context (``extrapolate``): no log and no clip, so a linear trend continues past the
  training range (a market index at a new high moves the score as the trend says).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, RobustScaler
from sklearn.utils.validation import check_is_fitted

MISSING_CODE = -1.0


def signed_log1p(X: Any) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: compresses counts and sizes, keeps negative trends and NaN."""
    values = np.asarray(X, dtype=np.float64)
    return np.sign(values) * np.log1p(np.abs(values))


def missing_as_code(X: Any) -> np.ndarray:
    """Category codes with missing values as their own code (``-1``)."""
    values = np.asarray(X, dtype=np.float64)
    return np.where(np.isnan(values), MISSING_CODE, values)


class TrainingRangeClipper(BaseEstimator):
    """Clips each column to its training quantiles ``[q, 1 - q]`` (NaN kept).

    A value past the training range (a count no lead reached before) then scores like the most
    extreme value seen, instead of extrapolating the linear log-odds into certainty.
    """

    def __init__(self, quantile: float = 0.005) -> None:
        self.quantile = quantile

    def fit(self, X: Any, y: Any = None) -> TrainingRangeClipper:
        values = np.asarray(X, dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column: no bounds
            self.low_ = np.nanquantile(values, self.quantile, axis=0)
            self.high_ = np.nanquantile(values, 1 - self.quantile, axis=0)
        self.n_features_in_ = values.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        values = np.asarray(X, dtype=np.float64)
        low = np.where(np.isnan(self.low_), -np.inf, self.low_)
        high = np.where(np.isnan(self.high_), np.inf, self.high_)
        return np.where(np.isnan(values), np.nan, np.clip(values, low, high))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(input_features if input_features is not None else [], dtype=object)


def _numeric_steps(*, extrapolate: bool) -> Pipeline:
    steps: list[tuple[str, Any]] = []
    if not extrapolate:
        steps += [
            ("signed_log1p", FunctionTransformer(signed_log1p, feature_names_out="one-to-one")),
            ("clip", TrainingRangeClipper()),
        ]
    steps += [
        # the mean: as good as the median with a missing indicator beside it, and many times faster
        ("impute", SimpleImputer(strategy="mean", add_indicator=True, keep_empty_features=True)),
        ("scale", RobustScaler(quantile_range=(5.0, 95.0), unit_variance=True)),
    ]
    return Pipeline(steps)


def _categorical_steps() -> Pipeline:
    return Pipeline(
        [
            ("missing", FunctionTransformer(missing_as_code, feature_names_out="one-to-one")),
            ("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )


class LinearScorer(BaseEstimator):
    """L2-regularised logistic regression on encoded rows, answering a booster's ``predict`` calls.

    ``categorical`` names the encoded columns that hold category codes; ``extrapolate`` the numeric
    ones that enter linearly without clipping (market context). ``C`` is the inverse L2 strength.
    """

    def __init__(
        self,
        *,
        feature_names: Sequence[str],
        categorical: Sequence[str] = (),
        extrapolate: Sequence[str] = (),
        C: float = 0.1,
        max_iter: int = 2000,
    ) -> None:
        self.feature_names = feature_names
        self.categorical = categorical
        self.extrapolate = extrapolate
        self.C = C
        self.max_iter = max_iter

    def _matrix(self, rows: pd.DataFrame | np.ndarray) -> np.ndarray:
        if isinstance(rows, pd.DataFrame):
            rows = rows.loc[:, list(self.feature_names)].to_numpy(dtype=np.float64, na_value=np.nan)
        matrix = np.asarray(rows, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.shape[1] != len(self.feature_names):
            raise ValueError(f"{len(self.feature_names)} feature columns expected, got {matrix.shape[1]}")
        return matrix

    def fit(
        self, rows: pd.DataFrame | np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> LinearScorer:
        """Fit the column groups and the regression on encoded rows and 0/1 labels."""
        names = list(self.feature_names)
        categorical, extrapolate = set(self.categorical), set(self.extrapolate)
        blocks = {
            "categorical": [i for i, n in enumerate(names) if n in categorical],
            "numeric": [i for i, n in enumerate(names) if n not in categorical and n not in extrapolate],
            "context": [i for i, n in enumerate(names) if n not in categorical and n in extrapolate],
        }
        steps = {
            "categorical": _categorical_steps(),
            "numeric": _numeric_steps(extrapolate=False),
            "context": _numeric_steps(extrapolate=True),
        }
        self.columns_ = ColumnTransformer(
            [(name, steps[name], columns) for name, columns in blocks.items() if columns],
            remainder="drop",
            sparse_threshold=0.0,
        )
        matrix = self._matrix(rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-missing columns: median of nothing
            design = self.columns_.fit_transform(matrix)
        self.regression_ = LogisticRegression(C=self.C, max_iter=self.max_iter, solver="newton-cholesky")
        self.regression_.fit(design, np.asarray(y).astype(int), sample_weight=sample_weight)
        self.design_mean_ = np.average(design, axis=0, weights=sample_weight)
        self.feature_columns_ = self._feature_columns(blocks, n_features=len(names))
        return self

    def _feature_columns(self, blocks: dict[str, list[int]], *, n_features: int) -> list[np.ndarray]:
        """Each input feature's columns of the design (its one-hot columns; its value and missing flag)."""
        owned: list[list[int]] = [[] for _ in range(n_features)]
        for name, features in blocks.items():
            if not features:
                continue
            start = self.columns_.output_indices_[name].start
            fitted = self.columns_.named_transformers_[name]
            if name == "categorical":
                offset = start
                for feature, categories in zip(
                    features, fitted.named_steps["one_hot"].categories_, strict=True
                ):
                    owned[feature] += list(range(offset, offset + len(categories)))
                    offset += len(categories)
                continue
            for k, feature in enumerate(features):  # the imputed values, one column each, in order
                owned[feature].append(start + k)
            indicator = fitted.named_steps["impute"].indicator_
            for j, k in enumerate(indicator.features_ if indicator is not None else []):
                owned[features[int(k)]].append(start + len(features) + j)
        return [np.asarray(columns, dtype=np.intp) for columns in owned]

    def _design(self, rows: pd.DataFrame | np.ndarray) -> np.ndarray:
        check_is_fitted(self, "regression_")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an unseen category code: ignored, as intended
            return np.asarray(self.columns_.transform(self._matrix(rows)), dtype=np.float64)

    def predict(
        self,
        rows: pd.DataFrame | np.ndarray,
        *,
        raw_score: bool = False,
        pred_contrib: bool = False,
        num_threads: int | None = None,
    ) -> np.ndarray:
        """Log-odds (``raw_score``), per-feature contributions + expected value (``pred_contrib``), or
        probabilities, for encoded rows (the arguments a LightGBM booster takes)."""
        design = self._design(rows)
        coef = self.regression_.coef_[0]
        intercept = float(self.regression_.intercept_[0])
        if pred_contrib:
            weighted = (design - self.design_mean_) * coef
            out = np.empty((len(design), len(self.feature_columns_) + 1), dtype=np.float64)
            for j, columns in enumerate(self.feature_columns_):
                out[:, j] = weighted[:, columns].sum(axis=1)
            out[:, -1] = intercept + float(self.design_mean_ @ coef)
            return out
        logit = (design * coef).sum(axis=1) + intercept  # row by row: one row scores as in a batch
        if raw_score:
            return np.asarray(logit, dtype=np.float64)
        return np.asarray(1.0 / (1.0 + np.exp(-logit)), dtype=np.float64)

    def num_feature(self) -> int:
        return len(self.feature_names)

    def current_iteration(self) -> int:
        """0: a linear model has no boosting rounds (read as such on the card)."""
        return 0

    def coefficients(self) -> pd.Series:
        """Each feature's largest absolute coefficient in its column group (for the card and MLflow)."""
        coef = np.abs(self.regression_.coef_[0])
        return pd.Series(
            [float(coef[c].max()) if c.size else 0.0 for c in self.feature_columns_],
            index=list(self.feature_names),
        ).sort_values(ascending=False)
