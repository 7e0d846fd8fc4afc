"""Point-in-time training table: snapshots of each lead, features as of then, label after then.

For each lead, one snapshot per configured age (days after creation). A snapshot's features use
only data at or before ``as_of`` (:func:`~leadscore.features.pipeline.compute_features`); its label
is whether the lead became an opportunity in ``(as_of, as_of + horizon]``. Leads that had already
converted at the snapshot are excluded; snapshots whose horizon reaches past the end of the
observed data are excluded (or kept with a missing label when asked), never labelled negative.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from pyarrow import ArrowException
from pydantic import BaseModel, ConfigDict, Field, field_validator

from leadscore.features.pipeline import compute_features

log = logging.getLogger(__name__)


class SnapshotPolicy(BaseModel):
    """When to snapshot leads and how far ahead the label looks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ages_days: tuple[int, ...] = Field(
        default=(3, 14, 30, 60), description="Snapshot ages in days after the lead was created."
    )
    horizon_days: int = Field(default=90, gt=0, description="Label horizon after each snapshot (days).")
    keep_incomplete_horizon: bool = Field(
        default=False,
        description="Keep snapshots whose horizon is not fully observed, with a missing label.",
    )
    older_ages_per_lead: int = Field(
        default=2,
        ge=0,
        le=20,
        description=(
            "Extra snapshots per lead at older ages, drawn log-uniformly between the oldest of "
            "ages_days and the oldest age the export can label for that lead, so that leads of any age "
            "a CRM scores are in the training data (0: only ages_days)."
        ),
    )

    @field_validator("ages_days")
    @classmethod
    def _ages_are_valid(cls, ages: tuple[int, ...]) -> tuple[int, ...]:
        if not ages or any(age < 0 for age in ages) or len(set(ages)) != len(ages):
            raise ValueError("ages_days must be distinct non-negative whole days, at least one")
        return tuple(sorted(ages))


def observed_until(*, leads: pd.DataFrame, activities: pd.DataFrame, outcomes: pd.DataFrame) -> pd.Timestamp:
    """The latest timestamp in the export: nothing after it can be known."""
    candidates = [leads["created_at"].max(), activities["timestamp"].max(), outcomes["converted_at"].max()]
    return max(pd.Timestamp(c) for c in candidates if pd.notna(c))


def make_snapshots(
    *, leads: pd.DataFrame, outcomes: pd.DataFrame, policy: SnapshotPolicy, until: pd.Timestamp
) -> pd.DataFrame:
    """Snapshot rows (lead_id, as_of, snapshot_age_days) for leads not yet converted at ``as_of``."""
    converted_at = _converted_at(leads=leads, outcomes=outcomes)
    created = pd.to_datetime(leads["created_at"]).to_numpy()
    frames = []
    for age in policy.ages_days:
        as_of = created + np.timedelta64(age, "D")
        keep = (as_of <= np.datetime64(until)) & ~(converted_at <= as_of)
        frames.append(
            pd.DataFrame(
                {
                    "lead_id": leads["lead_id"].to_numpy()[keep],
                    "as_of": as_of[keep],
                    "snapshot_age_days": np.int16(age),
                }
            )
        )
    older = older_snapshots(leads=leads, converted_at=converted_at, policy=policy, until=until)
    return pd.concat([*frames, older], ignore_index=True)


def older_snapshots(
    *, leads: pd.DataFrame, converted_at: np.ndarray, policy: SnapshotPolicy, until: pd.Timestamp
) -> pd.DataFrame:
    """``policy.older_ages_per_lead`` snapshots per lead at ages past ``max(policy.ages_days)``.

    A CRM scores every open lead, however old: a lead silent for a year must learn its own (low)
    probability, not the oldest snapshot's. Ages are whole days, drawn log-uniformly (more where the
    chance still moves, some at every age) between the oldest configured age and the oldest the lead
    can be labelled at: its horizon must end by ``until`` (with ``keep_incomplete_horizon``, its age at
    ``until``). The draw is a hash of the lead's creation second and the draw's number, so a rebuild, a
    re-ordered export, another CRM's shape of it (other ids) or Spark gives the same ages. Leads
    already converted at that age are left out, as at every snapshot.
    """
    empty = pd.DataFrame(
        {
            "lead_id": leads["lead_id"].to_numpy()[:0],
            "as_of": pd.to_datetime(leads["created_at"]).to_numpy()[:0],
            "snapshot_age_days": np.array([], dtype=np.int16),
        }
    )
    if policy.older_ages_per_lead == 0 or not len(leads):
        return empty
    created = pd.to_datetime(leads["created_at"]).to_numpy()
    youngest = float(max(policy.ages_days))
    room = 0 if policy.keep_incomplete_horizon else policy.horizon_days
    oldest = (np.datetime64(until) - created) / np.timedelta64(1, "D") - room
    # the creation second, not the id: the same lead in another CRM's shape (its own ids) gets the same ages
    seconds = pd.Series(created.astype("datetime64[s]").astype(np.int64)).astype(str)
    frames = []
    for draw in range(policy.older_ages_per_lead):
        hashed = pd.util.hash_pandas_object(seconds + f"#older-age-{draw}", index=False).to_numpy(np.uint64)
        uniform = (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        span = np.log1p(np.maximum(oldest, youngest)) - np.log1p(youngest)
        age = np.floor(np.expm1(np.log1p(youngest) + uniform * span))
        keep = oldest > youngest + 1
        age = np.clip(age, youngest + 1, None)
        as_of = created + (age * 86_400).astype("timedelta64[s]")
        keep &= (as_of <= np.datetime64(until)) & ~(converted_at <= as_of)
        frames.append(
            pd.DataFrame(
                {
                    "lead_id": leads["lead_id"].to_numpy()[keep],
                    "as_of": as_of[keep],
                    "snapshot_age_days": age[keep].astype(np.int16),
                }
            )
        )
    older = pd.concat([empty, *frames], ignore_index=True)
    return older.drop_duplicates(subset=["lead_id", "snapshot_age_days"], ignore_index=True)


def label_snapshots(
    *,
    snapshots: pd.DataFrame,
    leads: pd.DataFrame,
    outcomes: pd.DataFrame,
    policy: SnapshotPolicy,
    until: pd.Timestamp,
) -> pd.DataFrame:
    """Label each snapshot from outcomes strictly after ``as_of`` and within the horizon.

    Adds ``label`` (1/0, missing where the horizon is incomplete and no conversion was seen yet),
    ``label_amount`` (the opportunity's amount for a positive, 0 for a negative, missing where the
    label or the amount is unknown: the revenue a score ranking finds) and ``horizon_complete``.
    """
    converted_by_lead = pd.Series(_converted_at(leads=leads, outcomes=outcomes), index=leads["lead_id"])
    converted_at = converted_by_lead.reindex(snapshots["lead_id"]).to_numpy()
    amount_by_lead = _opportunity_amount(leads=leads, outcomes=outcomes)
    amount = amount_by_lead.reindex(snapshots["lead_id"].astype(str).to_numpy()).to_numpy(dtype=float)
    as_of = snapshots["as_of"].to_numpy()
    horizon_end = as_of + np.timedelta64(policy.horizon_days, "D")
    positive = (converted_at > as_of) & (converted_at <= horizon_end)
    complete = np.asarray(horizon_end <= np.datetime64(until), dtype=bool)
    label = pd.array(np.where(positive, 1, 0), dtype="Int8")
    label[~complete & ~positive] = pd.NA
    labelled = snapshots.copy()
    labelled["label"] = label
    labelled["label_amount"] = np.where(positive, amount, np.where(complete, 0.0, np.nan))
    labelled["horizon_complete"] = complete
    return labelled


def outcome_snapshots(
    *, leads: pd.DataFrame, outcomes: pd.DataFrame, policy: SnapshotPolicy, until: pd.Timestamp
) -> pd.DataFrame:
    """One snapshot (``lead_id``, ``as_of``) per lead, at its outcome, in the leads' order.

    ``as_of`` is the lead's first conversion when it came within the horizon of creation, else the
    horizon's end, or the export's end (``until``) while the horizon is still open.
    """
    created = pd.to_datetime(leads["created_at"]).to_numpy().astype("datetime64[us]")
    converted_at = _converted_at(leads=leads, outcomes=outcomes)
    horizon_end = created + np.timedelta64(policy.horizon_days, "D")
    positive = converted_at <= horizon_end  # NaT compares False
    end = np.minimum(horizon_end, np.datetime64(until, "us"))
    return pd.DataFrame(
        {"lead_id": leads["lead_id"].to_numpy(), "as_of": np.where(positive, converted_at, end)}
    )


def sales_touches_at_outcome(
    *,
    leads: pd.DataFrame,
    outcomes: pd.DataFrame,
    policy: SnapshotPolicy,
    until: pd.Timestamp,
    features_at: Callable[[pd.DataFrame], pd.DataFrame],
) -> np.ndarray | None:
    """Each lead's ``sales_touches_total`` feature as of its outcome (:func:`outcome_snapshots`).

    ``features_at`` is the build's own point-in-time feature code, so the count is exactly what the
    model's feature reads. None when the export's features have no sales touches.
    """
    rows = features_at(outcome_snapshots(leads=leads, outcomes=outcomes, policy=policy, until=until))
    if "sales_touches_total" not in rows.columns:
        return None
    return rows["sales_touches_total"].to_numpy(dtype=float)


#: a campaign touch within this many days of the lead's creation counts as the campaign that brought it in
FIRST_TOUCH_DAYS = 1


def first_campaigns(*, leads: pd.DataFrame, activities: pd.DataFrame) -> pd.Series | None:
    """Each lead's first-touch campaign, by ``lead_id``: the campaign of its earliest activity that names
    one, when it came within :data:`FIRST_TOUCH_DAYS` of the lead's creation.

    None when the activities carry no campaign. A campaign met later is not the one that brought the lead
    in, and counting it would tie the campaign to the outcome: a lead that converted early has had fewer
    chances to meet one (activities stop at conversion in many CRMs).
    """
    if "campaign" not in activities.columns:
        return None
    named = activities[
        activities["campaign"].notna() & (activities["campaign"].astype(str).str.strip() != "")
    ]
    created = pd.Series(pd.to_datetime(leads["created_at"]).to_numpy(), index=leads["lead_id"].astype(str))
    lag = pd.to_datetime(named["timestamp"]).to_numpy() - named["lead_id"].astype(str).map(created).to_numpy()
    named = named[lag <= np.timedelta64(FIRST_TOUCH_DAYS, "D")]
    if named.empty:
        return None
    first = named.sort_values("timestamp", kind="stable").drop_duplicates("lead_id")
    return pd.Series(first["campaign"].astype(str).to_numpy(), index=first["lead_id"].astype(str).to_numpy())


def open_lead_snapshots(*, leads: pd.DataFrame, outcomes: pd.DataFrame, until: pd.Timestamp) -> pd.DataFrame:
    """One snapshot (``lead_id``, ``as_of`` = ``until``) per lead still open at the export's end.

    Open: created by then, not converted by then and not disqualified (an optional ``disqualified_at``).
    """
    created = pd.to_datetime(leads["created_at"]).to_numpy().astype("datetime64[us]")
    end = np.datetime64(until, "us")
    converted_at = _converted_at(leads=leads, outcomes=outcomes)
    open_ = (created <= end) & ~(converted_at <= end)
    if "disqualified_at" in leads.columns:
        gone = pd.to_datetime(leads["disqualified_at"], errors="coerce").to_numpy().astype("datetime64[us]")
        open_ &= ~(gone <= end)
    ids = leads["lead_id"].to_numpy()[open_]
    return pd.DataFrame({"lead_id": ids, "as_of": np.full(len(ids), end)})


def open_leads_path(table_path: Path) -> Path:
    """Where the features of the leads still open at the export's end live: ``<table>.open.parquet``."""
    return table_path.with_name(table_path.stem + ".open.parquet")


def write_open_leads(
    table_path: Path,
    *,
    leads: pd.DataFrame,
    outcomes: pd.DataFrame,
    until: pd.Timestamp,
    features_at: Callable[[pd.DataFrame], pd.DataFrame],
) -> Path | None:
    """The open leads' features as of the export's end, beside the table (the review's expected pipeline)."""
    path = open_leads_path(table_path)
    snapshots = open_lead_snapshots(leads=leads, outcomes=outcomes, until=until)
    if snapshots.empty:
        path.unlink(missing_ok=True)
        return None
    try:
        features_at(snapshots).to_parquet(path, index=False)
    except (ValueError, TypeError, ArrowException) as error:
        log.warning("open leads not written (%s): the monthly review will have no expected pipeline", error)
        path.unlink(missing_ok=True)
        return None
    return path


def lead_ledger(
    *,
    leads: pd.DataFrame,
    outcomes: pd.DataFrame,
    policy: SnapshotPolicy,
    until: pd.Timestamp,
    sales_touches: np.ndarray | None = None,
    campaigns: pd.Series | None = None,
) -> pd.DataFrame:
    """One row per lead, every lead (the training table leaves out leads converted before a snapshot).

    The lead's non-personal columns, ``converted_at`` and ``opportunity_amount`` of its first conversion,
    ``label`` (an opportunity within the horizon of creation: 1/0, missing while the horizon is open and
    no conversion was seen) and ``horizon_complete``; with ``sales_touches``
    (:func:`sales_touches_at_outcome`) a ``sales_touches`` column; when the outcomes record closed-won
    deals, ``won_at`` and ``won_amount`` of the lead's first opportunity (a won date after ``until`` is a
    planned close date, not a win); with ``campaigns`` (:func:`first_campaigns`) a ``campaign`` column
    (when the leads have none of their own). ``leadscore channels``, ``touches`` and ``review`` read it.
    """
    from leadscore.features.contract import PII_COLUMNS

    ledger = leads.drop(columns=[c for c in PII_COLUMNS if c in leads.columns]).reset_index(drop=True)
    for column in ledger.columns:  # mixed-type export columns as text, so Parquet can hold them
        if ledger[column].dtype == object:
            ledger[column] = ledger[column].astype("string")
    ledger["lead_id"] = ledger["lead_id"].astype(str)
    created = pd.to_datetime(ledger["created_at"]).to_numpy()
    converted_at = _converted_at(leads=leads, outcomes=outcomes)
    horizon_end = created + np.timedelta64(policy.horizon_days, "D")
    positive = converted_at <= horizon_end  # NaT compares False
    complete = np.asarray(horizon_end <= np.datetime64(until), dtype=bool)
    label = pd.array(np.where(positive, 1, 0), dtype="Int8")
    label[~complete & ~positive] = pd.NA
    ledger["converted_at"] = converted_at
    ledger["opportunity_amount"] = _opportunity_amount(leads=leads, outcomes=outcomes).to_numpy(dtype=float)
    ledger["label"] = label
    ledger["label_amount"] = np.where(positive, ledger["opportunity_amount"], np.where(complete, 0.0, np.nan))
    ledger["horizon_complete"] = complete
    if sales_touches is not None:
        ledger["sales_touches"] = np.asarray(sales_touches, dtype=float)
    if campaigns is not None and "campaign" not in ledger.columns:
        ledger["campaign"] = ledger["lead_id"].map(campaigns).astype("string")
    if "won_at" in outcomes.columns and outcomes["won_at"].notna().any():  # the export records closed-won
        by_lead = outcomes.set_index(outcomes["lead_id"].astype(str))
        ids = ledger["lead_id"].to_numpy()
        won_at = pd.to_datetime(by_lead["won_at"]).reindex(ids).to_numpy(dtype="datetime64[us]")
        won_at[won_at > np.datetime64(until, "us")] = np.datetime64("NaT")  # a planned close date, not a win
        ledger["won_at"] = won_at
        amount = (
            by_lead["won_amount"]
            if "won_amount" in by_lead.columns
            else pd.Series(np.nan, index=by_lead.index)
        )
        won = ~np.isnat(ledger["won_at"].to_numpy())
        ledger["won_amount"] = np.where(
            won, pd.to_numeric(amount, errors="coerce").reindex(ids).to_numpy(dtype=float), np.nan
        )
    return ledger


def lead_ledger_path(table_path: Path) -> Path:
    """Where a training table's lead ledger lives: beside it, ``<table>.leads.parquet``."""
    return table_path.with_name(table_path.stem + ".leads.parquet")


def write_lead_ledger(table_path: Path, ledger: pd.DataFrame) -> Path | None:
    """Write the ledger beside the table; a column Parquet cannot hold is logged, not fatal to the build."""
    path = lead_ledger_path(table_path)
    try:
        ledger.to_parquet(path, index=False)
    except (ValueError, TypeError, ArrowException) as error:
        log.warning("lead ledger not written (%s): `leadscore channels` will read the training table", error)
        return None
    return path


def build_training_table(
    *,
    leads: pd.DataFrame,
    activities: pd.DataFrame,
    outcomes: pd.DataFrame,
    policy: SnapshotPolicy | None = None,
    until: pd.Timestamp | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """The training table: key columns, features as of each snapshot, and the label."""
    policy = policy or SnapshotPolicy()
    until = until or observed_until(leads=leads, activities=activities, outcomes=outcomes)
    snapshots = make_snapshots(leads=leads, outcomes=outcomes, policy=policy, until=until)
    labelled = label_snapshots(
        snapshots=snapshots, leads=leads, outcomes=outcomes, policy=policy, until=until
    )
    incomplete = int((~labelled["horizon_complete"]).sum())
    if not policy.keep_incomplete_horizon and incomplete:
        log.info(
            "excluded %d snapshots whose %d-day horizon ends after %s", incomplete, policy.horizon_days, until
        )
        labelled = labelled[labelled["horizon_complete"]].reset_index(drop=True)
    features = compute_features(leads=leads, activities=activities, snapshots=labelled, progress=progress)
    table = pd.concat(
        [
            features,
            labelled[["snapshot_age_days", "label", "label_amount", "horizon_complete"]].reset_index(
                drop=True
            ),
        ],
        axis=1,
    )
    log.info(
        "training table: %d snapshots of %d leads, positive rate %.3f",
        len(table),
        table["lead_id"].nunique(),
        float(table["label"].astype("Float64").mean()),
    )
    return table


def _opportunity_amount(*, leads: pd.DataFrame, outcomes: pd.DataFrame) -> pd.Series:
    """Each converted lead's opportunity amount by lead id (NaN where the export has none)."""
    values = (
        outcomes["opportunity_amount"].to_numpy(dtype=float, na_value=np.nan)
        if "opportunity_amount" in outcomes
        else np.full(len(outcomes), np.nan)
    )
    by_lead = pd.Series(values, index=outcomes["lead_id"].astype(str).to_numpy())
    return by_lead.reindex(leads["lead_id"].astype(str).to_numpy())


def _converted_at(*, leads: pd.DataFrame, outcomes: pd.DataFrame) -> np.ndarray:
    """Each lead's conversion time (NaT when it has not converted), aligned with ``leads``."""
    by_lead = pd.Series(
        pd.to_datetime(outcomes["converted_at"]).to_numpy(), index=outcomes["lead_id"].astype(str)
    )
    return by_lead.reindex(leads["lead_id"].astype(str)).to_numpy(dtype="datetime64[us]")
