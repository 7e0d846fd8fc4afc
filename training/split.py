"""Time-ordered train / validation / test split of the point-in-time training table.

The time axis is ``as_of`` (timestamps, possibly coarse such as month-level dates) or, for an
export whose rows are in time order but carry no dates, the integer ``row_order`` column.
Boundaries always fall between two distinct time values (a period boundary), so every month of a
month-level export lands wholly in one part; the realised shares are reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from leadscore.training.config import SplitConfig


class TimeAxis(StrEnum):
    TIMESTAMP = "timestamp"  # ``as_of`` holds when each row was observed
    ROW_ORDER = "row_order"  # rows are in time order; ``row_order`` holds their position
    NONE = "none"  # no time order at all: stratified split

    @property
    def column(self) -> str:
        return "row_order" if self is TimeAxis.ROW_ORDER else "as_of"


@dataclass(frozen=True)
class TimeSplit:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    validation_start: Any
    """First time value of validation (a timestamp, a row position, or NaT for a stratified split)."""
    test_start: Any
    purged_rows: int
    time_axis: TimeAxis = TimeAxis.TIMESTAMP
    requested_test_share: float = float("nan")
    labelled: pd.DataFrame | None = None
    """Every labelled row with a complete horizon, purged rows included (what a deployment refit uses)."""

    @property
    def test_share(self) -> float:
        """Realised share of the labelled rows in the test period."""
        total = len(self.train) + len(self.validation) + len(self.test) + self.purged_rows
        return len(self.test) / total if total else float("nan")

    @property
    def deployable(self) -> pd.DataFrame:
        """All labelled rows with a complete horizon, oldest first: by deployment time (after the test
        period) every one of their labels is known, the rows purged for evaluation included."""
        rows = self.labelled
        if rows is None:  # splits built before ``labelled`` existed
            rows = pd.concat([self.earlier, self.test], ignore_index=True)
        if self.time_axis is not TimeAxis.NONE:
            rows = rows.sort_values(self.time_axis.column, kind="stable")
        return rows.reset_index(drop=True)

    @property
    def earlier(self) -> pd.DataFrame:
        """All labelled rows before the test period (train + validation), oldest first."""
        return pd.concat([self.train, self.validation], ignore_index=True)

    def describe(self) -> dict[str, object]:
        return {
            "time_axis": self.time_axis.value,
            "train_rows": len(self.train),
            "validation_rows": len(self.validation),
            "test_rows": len(self.test),
            "validation_start": str(self.validation_start),
            "test_start": str(self.test_start),
            "purged_rows": self.purged_rows,
            "test_share_requested": round(self.requested_test_share, 4),
            "test_share_realised": round(self.test_share, 4),
        }


def _as_numbers(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.to_numpy().astype("datetime64[us]").astype(np.int64)
    return values.to_numpy(dtype=np.float64)


def period_boundary(values: pd.Series, *, newest_share: float) -> Any:
    """The time value that starts the newest ``newest_share`` of rows, snapped to a period boundary.

    Among the distinct time values (each one a period: a day, a month, a row), the boundary whose
    newer share is closest to ``newest_share`` while leaving at least one period on each side.
    """
    counts = values.value_counts(sort=False).sort_index()
    if len(counts) < 2:
        raise ValueError(
            f"the time axis has {len(counts)} distinct value(s): a time split needs at least two"
        )
    newer = counts[::-1].cumsum()[::-1].to_numpy() / counts.sum()  # share at or after each value
    candidates = np.arange(1, len(counts))
    best = candidates[np.argmin(np.abs(newer[candidates] - newest_share))]
    return counts.index[best]


def labelled_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Rows with a label whose horizon is fully observed.

    An incomplete horizon keeps its positives but not its negatives, which would bias the newest
    period towards conversions.
    """
    complete = table.get("horizon_complete", True)
    return table[table["label"].notna() & complete]


def _known_by(part: pd.DataFrame, *, boundary: Any, horizon_days: int | None, axis: TimeAxis) -> pd.Series:
    """Rows whose label was known at ``boundary`` (always true without a horizon or on row order)."""
    if axis is not TimeAxis.TIMESTAMP or not horizon_days:
        return pd.Series(True, index=part.index)
    return part["as_of"] + pd.Timedelta(days=horizon_days) <= boundary


def time_ordered_split(
    table: pd.DataFrame,
    *,
    config: SplitConfig,
    horizon_days: int | None,
    time_axis: TimeAxis = TimeAxis.TIMESTAMP,
) -> TimeSplit:
    """Train on the oldest rows, validate on newer ones, test on the newest.

    Boundaries are period boundaries of the time axis (``period_boundary``). With ``purge_horizon``
    and a known horizon, training and validation rows whose label window ends after the test start
    are dropped: at deployment time (the test start) those labels would not have been known yet.
    """
    column = time_axis.column
    labelled = labelled_rows(table)
    labelled = labelled[labelled[column].notna()]
    test_start = period_boundary(labelled[column], newest_share=config.test_fraction)
    earlier = labelled[labelled[column] < test_start]
    purged = 0
    if config.purge_horizon:
        known = _known_by(earlier, boundary=test_start, horizon_days=horizon_days, axis=time_axis)
        purged = int((~known).sum())
        earlier = earlier[known]
    if earlier.empty or earlier[column].nunique() < 2:
        raise ValueError(
            "no training data left before the test period: add older data or shorten the horizon"
        )
    share = config.validation_fraction / (1.0 - config.test_fraction)
    validation_start = period_boundary(earlier[column], newest_share=share)
    train = earlier[earlier[column] < validation_start]
    validation = earlier[earlier[column] >= validation_start]
    test = labelled[labelled[column] >= test_start]
    for name, part in (("train", train), ("validation", validation), ("test", test)):
        if part.empty or part["label"].nunique() < 2:
            raise ValueError(f"the {name} period has too few rows or only one class; use more data")
    return TimeSplit(
        train.sort_values(column, kind="stable").reset_index(drop=True),
        validation.sort_values(column, kind="stable").reset_index(drop=True),
        test.reset_index(drop=True),
        validation_start,
        test_start,
        purged,
        time_axis,
        config.test_fraction,
        labelled.reset_index(drop=True),
    )


def time_blocks(
    frame: pd.DataFrame,
    *,
    n_blocks: int,
    horizon_days: int | None,
    time_axis: TimeAxis = TimeAxis.TIMESTAMP,
    min_rows: int = 50,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Time-blocked cross-fitting folds: (rows to fit on, rows to score) for each block after the first.

    ``frame`` is cut into ``n_blocks`` consecutive periods; block ``k`` is scored by a model fitted
    on blocks ``0..k-1`` minus the rows whose label was not yet known when block ``k`` starts. Folds
    with fewer than ``min_rows`` rows or one class to fit on are skipped. Without a time axis the
    blocks are a seeded shuffle of rows (plain cross-fitting).
    """
    if time_axis is TimeAxis.NONE:
        order = np.random.default_rng(0).permutation(len(frame))
        keys = np.empty(len(frame), dtype=np.int64)
        keys[order] = np.arange(len(frame))
        values = pd.Series(keys, index=frame.index)
    else:
        values = frame[time_axis.column]
    numbers = _as_numbers(values)
    edges = np.unique(np.quantile(numbers, np.linspace(0, 1, n_blocks + 1)[1:-1]))
    horizon = horizon_days * 86_400 * 1_000_000 if time_axis is TimeAxis.TIMESTAMP and horizon_days else 0
    labels = frame["label"].to_numpy()
    for low, high in zip(edges, [*edges[1:], np.inf], strict=True):
        fit = numbers + horizon <= low if horizon else numbers < low
        fit &= numbers < low
        score = (numbers >= low) & (numbers < high)
        if int(fit.sum()) < min_rows or np.unique(labels[fit]).size < 2 or not score.any():
            continue
        yield np.flatnonzero(fit), np.flatnonzero(score)


def stratified_split(table: pd.DataFrame, *, config: SplitConfig, seed: int) -> TimeSplit:
    """Fallback for exports without timestamps: a seeded stratified split (no time order exists).

    Scores from such a model are not validated against the future; the run and the model card say so.
    """
    from sklearn.model_selection import train_test_split

    labelled = table[table["label"].notna()].reset_index(drop=True)
    y = labelled["label"].astype(int)
    rest, test = train_test_split(labelled, test_size=config.test_fraction, stratify=y, random_state=seed)
    share = config.validation_fraction / (1.0 - config.test_fraction)
    train, validation = train_test_split(
        rest, test_size=share, stratify=rest["label"].astype(int), random_state=seed
    )
    nat = pd.Timestamp("NaT")
    return TimeSplit(
        train.reset_index(drop=True),
        validation.reset_index(drop=True),
        test.reset_index(drop=True),
        nat,
        nat,
        0,
        TimeAxis.NONE,
        config.test_fraction,
        labelled,
    )
