"""Time-ordered train / validation / test split of the point-in-time training table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.training.config import SplitConfig


@dataclass(frozen=True)
class TimeSplit:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    validation_start: pd.Timestamp
    test_start: pd.Timestamp
    purged_rows: int

    def describe(self) -> dict[str, object]:
        return {
            "train_rows": len(self.train),
            "validation_rows": len(self.validation),
            "test_rows": len(self.test),
            "validation_start": str(self.validation_start),
            "test_start": str(self.test_start),
            "purged_rows": self.purged_rows,
        }


def time_ordered_split(table: pd.DataFrame, *, config: SplitConfig, horizon_days: int) -> TimeSplit:
    """Train on the oldest snapshots, validate on newer ones, test on the newest.

    Boundaries are quantiles of ``as_of``. With ``purge_horizon`` the training and validation
    snapshots whose label window ends after the test period starts are dropped: at deployment
    time (the test start) those labels would not have been known yet.
    """
    # only snapshots whose horizon is fully observed: an incomplete horizon keeps its positives but
    # not its negatives, which would bias the newest period towards conversions
    complete = table.get("horizon_complete", True)
    labelled = table[table["label"].notna() & complete]
    as_of = labelled["as_of"].to_numpy()
    test_start = pd.Timestamp(
        np.quantile(as_of.astype("datetime64[us]").astype(np.int64), 1.0 - config.test_fraction).astype(
            "datetime64[us]"
        )
    )
    earlier = labelled[labelled["as_of"] < test_start]
    purged = 0
    if config.purge_horizon:
        known = earlier["as_of"] + pd.Timedelta(days=horizon_days) <= test_start
        purged = int((~known).sum())
        earlier = earlier[known]
    if earlier.empty:
        raise ValueError(
            "no training data left before the test period: add older data or shorten the horizon"
        )
    share = config.validation_fraction / (1.0 - config.test_fraction)
    earlier_as_of = earlier["as_of"].to_numpy().astype("datetime64[us]").astype(np.int64)
    validation_start = pd.Timestamp(np.quantile(earlier_as_of, 1.0 - share).astype("datetime64[us]"))
    train = earlier[earlier["as_of"] < validation_start]
    validation = earlier[earlier["as_of"] >= validation_start]
    test = labelled[labelled["as_of"] >= test_start]
    for name, part in (("train", train), ("validation", validation), ("test", test)):
        if part.empty or part["label"].nunique() < 2:
            raise ValueError(f"the {name} period has too few rows or only one class; use more data")
    return TimeSplit(
        train.reset_index(drop=True),
        validation.reset_index(drop=True),
        test.reset_index(drop=True),
        validation_start,
        test_start,
        purged,
    )


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
    )
