"""Decision units for "does contacting the lead now help?": hand-raises and whether sales followed up.

A score says who is likely to convert; whether a rep's call *changes* that is another question, and
logged touches are not an experiment. The question a rep faces is concrete: a lead raised its hand
(a form fill, a demo request) and nobody has contacted it yet; follow up within a few days, or not?
Each unit is one such moment, read point-in-time:

* ``as_of``: the lead's first hand-raise of a type (:data:`HAND_RAISE_TYPES`) that came before any
  sales touch and before the lead converted;
* ``treated``: the first sales touch after it came within ``follow_up_days`` and before the lead's next
  hand-raise (a touch after a later demo request answers that request: the unit was not followed up);
* ``converted``: an opportunity within the horizon after ``as_of``; only units whose horizon ended
  before the export's last date are kept;
* the features as of ``as_of``, from the build's own point-in-time code.

Training learns the effect of the follow-up from them (``training.contact``); the model carries it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pyarrow.lib import ArrowException

from leadscore.features.contract import SALES_TOUCH_TYPES
from leadscore.features.vocabulary import ActivityType

__all__ = [
    "FOLLOW_UP_DAYS",
    "HAND_RAISE_TYPES",
    "contact_units",
    "contact_units_path",
    "write_contact_units",
]

log = logging.getLogger(__name__)

#: what a lead does to ask for sales attention
HAND_RAISE_TYPES: tuple[ActivityType, ...] = (ActivityType.FORM_FILL, ActivityType.DEMO_REQUEST)
#: a hand-raise counts as followed up when the first sales touch came within this many days
FOLLOW_UP_DAYS = 7
_UNIT_COLUMNS = ("lead_id", "as_of", "hand_raise", "treated", "converted")


def contact_units(
    *,
    leads: pd.DataFrame,
    activities: pd.DataFrame,
    outcomes: pd.DataFrame,
    horizon_days: int,
    until: pd.Timestamp,
    follow_up_days: int = FOLLOW_UP_DAYS,
) -> pd.DataFrame:
    """One row per lead and hand-raise type: ``lead_id``, ``as_of``, ``hand_raise``, ``treated``,
    ``converted``.

    Empty when the export has no sales touches or no hand-raises (nothing to learn from).
    """
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in _UNIT_COLUMNS})
    if activities.empty:
        return empty
    kinds = activities["activity_type"].astype(str)
    sales = kinds.isin({t.value for t in SALES_TOUCH_TYPES})
    raises = kinds.isin({t.value for t in HAND_RAISE_TYPES})
    if not sales.any() or not raises.any():
        return empty
    ids = activities["lead_id"].astype(str)
    when = pd.to_datetime(activities["timestamp"])
    first_touch = when[sales].groupby(ids[sales]).min()
    firsts = (
        pd.DataFrame({"lead_id": ids[raises], "hand_raise": kinds[raises], "as_of": when[raises]})
        .groupby(["lead_id", "hand_raise"], observed=True)["as_of"]
        .min()
        .reset_index()
        .sort_values(["lead_id", "as_of"], kind="stable")
    )
    # the lead's next hand-raise of another type (NaT for its last): a touch after it answers that one
    firsts["next_raise"] = firsts.groupby("lead_id")["as_of"].shift(-1)
    touch = firsts["lead_id"].map(first_touch)
    created = firsts["lead_id"].map(
        pd.Series(pd.to_datetime(leads["created_at"]).to_numpy(), index=leads["lead_id"].astype(str))
    )
    converted_at = (
        firsts["lead_id"].map(
            pd.to_datetime(outcomes["converted_at"]).groupby(outcomes["lead_id"].astype(str)).min()
        )
        if not outcomes.empty
        else pd.Series(pd.NaT, index=firsts.index)
    )
    horizon_end = firsts["as_of"] + pd.Timedelta(days=horizon_days)
    keep = (
        created.notna()
        & (created <= firsts["as_of"])
        & ~(touch <= firsts["as_of"])  # nobody had contacted the lead yet
        & ~(converted_at <= firsts["as_of"])  # still open
        & (horizon_end <= until)  # its outcome is known
    )
    units = firsts[keep].copy()
    touch, converted_at, horizon_end = touch[keep], converted_at[keep], horizon_end[keep]
    within = touch.notna() & (touch <= units["as_of"] + pd.Timedelta(days=follow_up_days))
    before_next = units["next_raise"].isna() | (touch < units["next_raise"])
    units["treated"] = (within & before_next).astype(int)
    units["converted"] = (converted_at.notna() & (converted_at <= horizon_end)).astype(int)
    return units.loc[:, list(_UNIT_COLUMNS)].sort_values("as_of", kind="stable").reset_index(drop=True)


def contact_units_path(table_path: Path) -> Path:
    """Where a training table's contact units live: beside it, ``<table>.contact.parquet``."""
    return table_path.with_name(table_path.stem + ".contact.parquet")


def write_contact_units(
    table_path: Path,
    *,
    leads: pd.DataFrame,
    activities: pd.DataFrame,
    outcomes: pd.DataFrame,
    horizon_days: int,
    until: pd.Timestamp,
    features_at: Callable[[pd.DataFrame], pd.DataFrame],
) -> Path | None:
    """Write the units with their point-in-time features beside the table (None: nothing to learn from).

    A stale file from an earlier build is removed when this export has no units.
    """
    path = contact_units_path(table_path)
    units = contact_units(
        leads=leads, activities=activities, outcomes=outcomes, horizon_days=horizon_days, until=until
    )
    if units.empty:
        path.unlink(missing_ok=True)
        return None
    features = features_at(units[["lead_id", "as_of"]]).reset_index(drop=True)
    frame = pd.concat(
        [units, features.drop(columns=[c for c in ("lead_id", "as_of") if c in features.columns])], axis=1
    )
    try:
        frame.to_parquet(path, index=False)
    except (ValueError, TypeError, ArrowException) as error:
        log.warning("contact units not written (%s): the model will carry no follow-up effect", error)
        path.unlink(missing_ok=True)
        return None
    log.info(
        "wrote %s (%d hand-raises, %.0f%% followed up within %d days)",
        path,
        len(units),
        100 * float(np.mean(units["treated"])),
        FOLLOW_UP_DAYS,
    )
    return path
