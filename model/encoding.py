"""Categorical encoding for the booster, as a scikit-learn transformer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

OTHER = "__other__"


class CategoryCodeEncoder(TransformerMixin, BaseEstimator):
    """Encode categorical columns as integer codes that LightGBM treats as categories.

    Categories seen fewer than ``min_frequency`` times at fit, and categories never seen
    (unknown values at serving are accepted and scored), share one "other" code. Missing values
    stay missing (NaN). Other columns pass through as float. ``columns=None`` treats every
    column as categorical.
    """

    def __init__(self, columns: Sequence[str] | None = None, min_frequency: int = 1) -> None:
        self.columns = columns
        self.min_frequency = min_frequency

    def fit(self, X: pd.DataFrame | np.ndarray, y: object = None) -> CategoryCodeEncoder:
        frame = self._validated_frame(X, reset=True)
        names = list(frame.columns) if self.columns is None else list(self.columns)
        missing = [name for name in names if name not in frame.columns]
        if missing:
            raise ValueError(f"columns not in the input: {missing}")
        self.categorical_columns_ = tuple(names)
        self.categories_: dict[str, tuple[str, ...]] = {}
        for name in names:
            counts = frame[name].dropna().astype(str).value_counts()
            frequent = sorted(counts.index[counts >= self.min_frequency])
            self.categories_[name] = (*frequent, OTHER)
        return self

    def transform(self, X: pd.DataFrame | np.ndarray) -> pd.DataFrame | np.ndarray:
        check_is_fitted(self, "categories_")
        frame = self._validated_frame(X, reset=False)
        out = np.empty((len(frame), frame.shape[1]), dtype=np.float64)
        numbers: list[int] = []  # plain number columns: converted together, in one call
        for position, (name, dtype) in enumerate(zip(frame.columns, frame.dtypes, strict=True)):
            if name in self.categories_:
                out[:, position] = self._codes(name, frame.iloc[:, position])
            elif pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
                numbers.append(position)
            else:
                out[:, position] = pd.to_numeric(frame.iloc[:, position], errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
        if numbers:
            out[:, numbers] = frame.iloc[:, numbers].to_numpy(dtype=np.float64, na_value=np.nan)
        encoded = pd.DataFrame(out, index=frame.index, columns=frame.columns)
        return encoded if isinstance(X, pd.DataFrame) else encoded.to_numpy(dtype=np.float64)

    def _codes(self, name: str, values: pd.Series) -> np.ndarray:
        """Codes of one categorical column: known -> position, unknown/rare -> other, missing -> NaN."""
        known = pd.Index(self.categories_[name])
        other = float(len(known) - 1)
        if isinstance(values.dtype, pd.CategoricalDtype):  # map the few categories, not every row
            mapping = known.get_indexer(values.cat.categories.astype(str)).astype(np.float64)
            mapping[mapping < 0] = other
            mapping = np.append(mapping, np.nan)  # code -1 (missing) takes the last slot
            return mapping[values.cat.codes.to_numpy()]
        as_text = values.astype("string")
        result = known.get_indexer(pd.Index(as_text.fillna(OTHER))).astype(np.float64)
        result[result < 0] = other
        result[as_text.isna().to_numpy()] = np.nan
        return result

    def _validated_frame(self, X: pd.DataFrame | np.ndarray, *, reset: bool) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, reset=reset, skip_check_array=True)
            if X.shape[0] == 0:
                raise ValueError("Found array with 0 sample(s) while a minimum of 1 is required.")
            return X
        array = validate_data(self, X, reset=reset, dtype=None, ensure_all_finite="allow-nan")
        if reset:
            self._array_columns_ = [str(i) for i in range(array.shape[1])]
        return pd.DataFrame(array, columns=self._array_columns_)

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = ["float64"]
        tags.input_tags.allow_nan = True
        return tags
