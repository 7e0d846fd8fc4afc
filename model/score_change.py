"""Why a lead's score changed, exactly, and when it cools down without new activity.

:func:`explain_score_change` splits the change between two scores of one lead, in the 0-100 score
points the card shows, into three telescoping parts (each step changes one thing):

(a) **model change**: the new model minus the old one, both on the previous record at the previous
    as-of time;
(b) **time passing**: the new model on the previous record's events (those the previous score
    counted) at the new as-of time, minus (a)'s end: recency and the 7/30/90-day windows decay,
    the lead ages;
(c) **new activity**: the new model on the new record at the new as-of time, minus (b)'s end:
    everything the previous score did not see (new events; changed lead details too).

The parts add up to the change by construction: every intermediate score is rounded to 0.1 point
as the card rounds it, and each part is the difference of two rounded scores, so the parts shown
always sum to the change shown. (c) is exactly 0 when no new event arrived: (b) and (c) then read
the same feature row.

Within (b) and (c) each reason's points come from the model's exact TreeSHAP contributions
(LightGBM ``pred_contrib``, in log-odds) of the two rows: a concept's share of the part is its change
in contributions times the part's points per log-odds (the part's change in score over its change
in raw log-odds: the secant of the non-linear probability-to-score map, so the unrounded reason
points add up to the part). The rounded points are then allocated in tenths by largest remainder, so
the reasons shown add up to their part exactly. These are the model's attributions of the change,
not its causes.

:func:`cool_down_forecast` re-scores the same record at daily future as-of times (one batch) and
says when, without new activity, the lead first falls below sales-ready (SQL) or MQL.

:func:`lead_record` reads one lead of a CRM export folder's contract tables as a ``RawLead`` (what
``leadscore why-changed`` passes in). Records are whatever the model reads: leadscore's raw leads,
or an event export's own lead rows with their activities nested.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import cast

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from leadscore.features.catalogue import SIGNAL_BY_NAME, Family, days_since_name, total_count_name
from leadscore.features.events import EventFeatureTransform, naive_utc
from leadscore.features.vocabulary import InputLayout
from leadscore.model.explain import concept_sentence, concepts_for, plural, rows_as_records
from leadscore.model.raw_leads import prepare_leads
from leadscore.model.records import RawLead
from leadscore.model.scoring_model import LeadScoringModel

__all__ = [
    "ChangePart",
    "ChangeReason",
    "CoolDownForecast",
    "LeadAtTime",
    "PartKind",
    "ScoreChange",
    "cool_down_forecast",
    "explain_score_change",
    "lead_record",
]

#: Days ahead the cool-down forecast looks by default.
FORECAST_DAYS = 90
#: Reasons listed per part in the text; the rest are summed into "other factors".
TEXT_REASONS = 3
#: Below this change in raw log-odds a part's points per log-odds is the map's local slope.
_FLAT = 1e-9
_ATTRIBUTION_NOTE = (
    "These points are the model's attributions of the change (TreeSHAP contributions mapped to "
    "score points), not its causes."
)
_OUTPUT = ConfigDict(frozen=True)


@dataclass(frozen=True)
class LeadAtTime:
    """One score's inputs: the model, the lead record it read and when it was scored.

    ``record`` is what the CRM sent: a :class:`~leadscore.model.records.RawLead` (or its dict) for
    leadscore's contract, the export's own lead columns with ``activities`` nested for an event
    export, one export row for a flat export. ``as_of`` is the scoring time (naive UTC, or aware:
    converted to UTC); ``model_version`` names the model in sentences.
    """

    model: LeadScoringModel
    record: RawLead | Mapping[str, object]
    as_of: pd.Timestamp | dt.datetime | str
    model_version: str | None = None


class PartKind(StrEnum):
    """The three parts of a score change, in the order they telescope."""

    MODEL_CHANGE = "model_change"
    TIME_PASSING = "time_passing"
    NEW_ACTIVITY = "new_activity"


class ChangeReason(BaseModel):
    """One concept's share of a part, in score points (to 0.1; a part's reasons add up to it)."""

    model_config = _OUTPUT

    concept: str = Field(description="The feature concept, e.g. demo_request, lead_age_days.")
    sentence: str = Field(description="What changed, in the rep's words.")
    points: float = Field(description="Signed score points, to 0.1.")
    family: Family | None = Field(description="fit, engagement, sales or context; null for the model.")


class ChangePart(BaseModel):
    """One of the three parts of a change, with its reasons."""

    model_config = _OUTPUT

    kind: PartKind
    label: str = Field(description="The part in words, e.g. 'time passing (21 days)'.")
    points: float = Field(description="Signed score points of this part, to 0.1.")
    reasons: tuple[ChangeReason, ...] = Field(description="Non-zero reasons, largest first; they add up.")
    note: str | None = Field(default=None, description="Why a part is 0 by construction, if it is.")

    def text(self, *, top: int = TEXT_REASONS) -> str:
        """'+38.0 new activity: 1 demo request (+31.0), ...': the listed points add up to the part."""
        shown = list(self.reasons[:top])
        rest = round(self.points - sum(r.points for r in shown), 1)
        items = [f"{r.sentence} ({_signed(r.points)})" for r in shown]
        if len(self.reasons) > top and rest != 0:
            items.append(f"other factors ({_signed(rest)})")
        return f"{_signed(self.points)} {self.label}" + (f": {', '.join(items)}" if items else "")


class ScoreChange(BaseModel):
    """Why a score changed: three parts that add up to the change, each with its reasons."""

    model_config = _OUTPUT

    previous_score: float = Field(description="The previous score (0-100, to 0.1, as the card shows).")
    current_score: float = Field(description="The new score (0-100, to 0.1).")
    change: float = Field(description="current_score - previous_score, to 0.1.")
    model_change: ChangePart
    time_passing: ChangePart
    new_activity: ChangePart
    text: str = Field(description="The change in sentences whose points add up to it.")
    note: str = Field(default=_ATTRIBUTION_NOTE, description="What the points are (and are not).")

    @property
    def parts(self) -> tuple[ChangePart, ChangePart, ChangePart]:
        return (self.model_change, self.time_passing, self.new_activity)


class CoolDownForecast(BaseModel):
    """When a lead falls below sales-ready / MQL if nothing new happens (daily re-scoring)."""

    model_config = _OUTPUT

    as_of: dt.datetime = Field(description="The scoring time the forecast starts from.")
    probability_now: float
    sales_ready_now: bool
    marketing_qualified_now: bool = Field(description="At or above the MQL threshold now.")
    below_sales_ready_on: dt.date | None = Field(
        description="First day it is below sales-ready without new activity; null when it is not "
        "sales-ready now or stays so within the window."
    )
    below_mql_on: dt.date | None = Field(
        description="First day it is below MQL without new activity; null when it is below MQL now "
        "or stays above within the window."
    )
    days_checked: int = Field(description="Days ahead that were re-scored.")
    text: str
    note: str | None = None


# --- the score change ----------------------------------------------------------------------------
def explain_score_change(*, previous: LeadAtTime, current: LeadAtTime) -> ScoreChange:
    """Split ``current``'s score minus ``previous``'s into model change, time passing and new activity.

    Raises ``ValueError`` naming the field (``previous.as_of``, ``current.as_of``) when a time is not
    one, the current as-of time is before the previous one or the lead did not exist yet at a time,
    or when a record cannot be read (pydantic's ``ValidationError`` or
    :class:`~leadscore.model.records.RequestInvalid` for a raw lead).
    """
    old_as_of = _timestamp(previous.as_of, "previous.as_of")
    new_as_of = _timestamp(current.as_of, "current.as_of")
    if new_as_of < old_as_of:
        raise ValueError(
            f"current.as_of ({new_as_of}) is before previous.as_of ({old_as_of}): "
            "pass the older score as previous"
        )
    model = current.model
    # the new model on the previous record, at both times (only the events the previous score counted)
    then_and_now = _feature_rows(model, previous.record, [old_as_of, new_as_of], counted_at=old_as_of)
    latest = _feature_rows(model, current.record, [new_as_of])
    rows = pd.concat([then_and_now, latest], ignore_index=True)
    _require_created(rows, ("previous.as_of", "current.as_of", "current.as_of"))
    contributions = model.contributions(rows)
    raw = contributions.sum(axis=1)
    scores = 100.0 * model.calibrate(raw)
    if previous.model is model:
        old_score = float(scores[0])
    else:
        old_rows = (
            then_and_now.iloc[:1]
            if previous.model.transform == model.transform
            else _feature_rows(previous.model, previous.record, [old_as_of])
        )
        old_raw = previous.model.contributions(old_rows).sum(axis=1)
        old_score = float(100.0 * previous.model.calibrate(old_raw)[0])
    # tenths of a point, as the card rounds them: the parts are differences of rounded scores
    t_old, t_a, t_b, t_c = (_tenths(s) for s in (old_score, *scores.tolist()))
    records = rows_as_records(rows.loc[:, list(model.feature_names)])
    same_row = _same_features(rows, 1, 2, model.feature_names)
    days = (new_as_of - old_as_of) / pd.Timedelta(days=1)

    model_part = _model_part(t_a - t_old, previous=previous, current=current)
    flat = model.layout is InputLayout.FLAT_EXPORT
    time_part = ChangePart(
        kind=PartKind.TIME_PASSING,
        label=f"time passing ({_span(days)})",
        points=(t_b - t_a) / 10,
        reasons=()
        if flat
        else _reasons(
            model,
            contributions=contributions,
            scores=scores,
            raw=raw,
            start=0,
            end=1,
            tenths=t_b - t_a,
            records=records,
            phrase=lambda concept: _time_sentence(model, concept, records[0], records[1], days=days),
        ),
        note="This export has no event times (a flat export): time alone does not change its score."
        if flat
        else None,
    )
    new_tenths = 0 if same_row else t_c - t_b
    activity_part = ChangePart(
        kind=PartKind.NEW_ACTIVITY,
        label="new activity",
        points=new_tenths / 10,
        reasons=()
        if same_row
        else _reasons(
            model,
            contributions=contributions,
            scores=scores,
            raw=raw,
            start=1,
            end=2,
            tenths=new_tenths,
            records=records,
            phrase=lambda concept: _activity_sentence(model, concept, records[1], records[2]),
        ),
        note="Nothing new since the previous score." if same_row else None,
    )
    previous_score, current_score = t_old / 10, t_c / 10  # same row: t_c == t_b
    change = (t_c - t_old) / 10
    parts = [p for p in (model_part, time_part, activity_part) if p.points != 0]
    text = f"Score {previous_score:.1f} -> {current_score:.1f} ({_signed(change)})"
    text += (": " + "; ".join(p.text() for p in parts) + ".") if parts else ": no change."
    return ScoreChange(
        previous_score=previous_score,
        current_score=current_score,
        change=change,
        model_change=model_part,
        time_passing=time_part,
        new_activity=activity_part,
        text=text,
    )


def _model_part(tenths: int, *, previous: LeadAtTime, current: LeadAtTime) -> ChangePart:
    same = previous.model is current.model
    if same:
        return ChangePart(
            kind=PartKind.MODEL_CHANGE,
            label="model change",
            points=0.0,
            reasons=(),
            note="The same model gave both scores.",
        )
    versions = (
        f" (version {previous.model_version} -> {current.model_version})"
        if previous.model_version and current.model_version
        else ""
    )
    reasons = (
        (
            ChangeReason(
                concept="model",
                sentence=f"the model was retrained{versions} and reads the same lead differently",
                points=tenths / 10,
                family=None,
            ),
        )
        if tenths
        else ()
    )
    return ChangePart(kind=PartKind.MODEL_CHANGE, label="model change", points=tenths / 10, reasons=reasons)


def _reasons(
    model: LeadScoringModel,
    *,
    contributions: np.ndarray,
    scores: np.ndarray,
    raw: np.ndarray,
    start: int,
    end: int,
    tenths: int,
    records: Sequence[Mapping[str, object]],
    phrase: Callable[[str], str],
) -> tuple[ChangeReason, ...]:
    """Each concept's share of the part from row ``start`` to row ``end`` (same model), in tenths.

    Unrounded points: the change in a concept's contributions times the part's points per log-odds
    (the secant of the score map; its local slope where the raw score did not move). Rounded by
    largest remainder so they add up to ``tenths`` exactly.
    """
    grouping = _grouping(model)
    delta = (contributions[end, :-1] - contributions[start, :-1]) @ grouping
    moved = raw[end] - raw[start]
    if abs(moved) > _FLAT:
        slope = (scores[end] - scores[start]) / moved
    else:
        step = 1e-4
        around = model.calibrate(np.array([raw[start] - step, raw[start] + step]))
        slope = 100.0 * float(around[1] - around[0]) / (2 * step)
    allocated = _allocate(delta * slope * 10.0, total=tenths)
    out = [
        ChangeReason(
            concept=concept.name,
            sentence=phrase(concept.name),
            points=int(share) / 10,
            family=concept.family,
        )
        for concept, share in zip(model.concepts, allocated, strict=True)
        if share != 0
    ]
    return tuple(sorted(out, key=lambda r: -abs(r.points)))


def _allocate(values: np.ndarray, *, total: int) -> np.ndarray:
    """Integers closest to ``values`` that add up to ``total`` (largest remainder)."""
    rounded = np.round(values)
    short = int(total - rounded.sum())
    if short:
        error = values - rounded  # positive: rounded down
        order = np.argsort(-error if short > 0 else error, kind="stable")
        for i in range(abs(short)):
            rounded[order[i % len(order)]] += 1 if short > 0 else -1
    return rounded.astype(np.int64)


def _grouping(model: LeadScoringModel) -> np.ndarray:
    """The model's (features x concepts) grouping, as its reasons group contributions."""
    return concepts_for(model.feature_names, model.transform.catalogue)[1]


# --- sentences -----------------------------------------------------------------------------------
def _sentence(model: LeadScoringModel, concept: str, row: Mapping[str, object]) -> str:
    """The model's own sentence for a concept (the export's wording first, as on the card)."""
    return model.transform.sentence(concept, row) or concept_sentence(concept, row)


def _time_sentence(
    model: LeadScoringModel,
    concept: str,
    before: Mapping[str, object],
    after: Mapping[str, object],
    *,
    days: float,
) -> str:
    if concept == "lead_age_days":
        return f"the lead is {_span(days)} older"
    return _changed_sentence(model, concept, before, after)


def _changed_sentence(
    model: LeadScoringModel, concept: str, before: Mapping[str, object], after: Mapping[str, object]
) -> str:
    """The concept now, with what it was; an unchanged concept says its weight moved with the rest
    (TreeSHAP shares an interaction between the features in it)."""
    now, then = _sentence(model, concept, after), _sentence(model, concept, before)
    if not _concept_moved(model, concept, before, after):
        return f"{now} (unchanged; weighs differently next to the rest)"
    return now if now == then else f"{now} (was: {_lower_first(then)})"


def _concept_moved(
    model: LeadScoringModel, concept: str, before: Mapping[str, object], after: Mapping[str, object]
) -> bool:
    names, grouping = model.feature_names, _grouping(model)
    column = next(i for i, c in enumerate(model.concepts) if c.name == concept)
    for k in np.flatnonzero(grouping[:, column]):
        x, y = before.get(names[k]), after.get(names[k])
        if not (x == y or (_missing(x) and _missing(y))):
            return True
    return False


def _activity_sentence(
    model: LeadScoringModel, concept: str, before: Mapping[str, object], after: Mapping[str, object]
) -> str:
    total = total_count_name(concept)
    if total in after and concept in SIGNAL_BY_NAME:
        added = round((_number(after.get(total)) or 0.0) - (_number(before.get(total)) or 0.0))
        label = SIGNAL_BY_NAME[concept].label
        if added > 0:
            since = _number(after.get(days_since_name(concept)))
            when = f", the last one {_ago(since)}" if since is not None else ""
            return f"{plural(added, label)} since the previous score{when}"
        if added < 0:
            return f"{plural(-added, label)} fewer on record than at the previous score"
    return _changed_sentence(model, concept, before, after)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: object) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _ago(days: float) -> str:
    whole = round(days)
    return "today" if whole == 0 else ("yesterday" if whole == 1 else f"{whole} days ago")


def _span(days: float) -> str:
    whole = round(days)
    if whole == 0:
        hours = round(days * 24)
        return "1 hour" if hours == 1 else f"{hours} hours"
    return "1 day" if whole == 1 else f"{whole} days"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _signed(points: float) -> str:
    return f"{points:+.1f}" if points != 0 else "0.0"


def _tenths(score: float) -> int:
    return round(round(float(score), 1) * 10)


def _same_features(rows: pd.DataFrame, i: int, j: int, names: Sequence[str]) -> bool:
    a = rows.iloc[i][list(names)]
    b = rows.iloc[j][list(names)]
    return all((x == y) or (pd.isna(x) and pd.isna(y)) for x, y in zip(a.tolist(), b.tolist(), strict=True))


# --- the cool-down forecast ----------------------------------------------------------------------
def cool_down_forecast(lead: LeadAtTime, *, days: int = FORECAST_DAYS) -> CoolDownForecast:
    """Re-score ``lead``'s record at each of the next ``days`` days (one batch) without new activity.

    Says the first day the lead is below sales-ready (only for a lead sales-ready now) and below MQL
    (only for one at or above MQL now); None where that does not happen within the window.
    """
    if not 1 <= days <= 3650:
        raise ValueError(f"days must be between 1 and 3650, got {days}")
    model = lead.model
    as_of = _timestamp(lead.as_of, "as_of")
    times = [as_of + pd.Timedelta(days=k) for k in range(days + 1)]
    rows = _feature_rows(model, lead.record, times, counted_at=as_of)
    _require_created(rows.iloc[:1], ("as_of",))
    probability = model.calibrate(model.raw_scores(rows))
    sql, mql = model.thresholds.sql, model.thresholds.mql
    sales_ready, qualified = bool(probability[0] >= sql), bool(probability[0] >= mql)

    def first_below(threshold: float) -> dt.date | None:
        below = np.flatnonzero(probability[1:] < threshold)
        return times[int(below[0]) + 1].date() if len(below) else None

    below_sql = first_below(sql) if sales_ready else None
    below_mql = first_below(mql) if qualified else None
    note = None
    if model.layout is InputLayout.FLAT_EXPORT:
        note = "This export has no event times (a flat export): its score does not change with time alone."
    oldest = getattr(model, "trained_lead_age_days", None)
    if "lead_age_days" in rows and oldest is not None and float(rows["lead_age_days"].iloc[-1]) > oldest + 1:
        note = (
            f"Beyond {oldest:.0f} days of age the model has seen no leads: dates past that are read as if "
            "the lead stayed that old."
        )
    if sales_ready:
        text = (
            f"Without new activity it falls below sales-ready around {_day(below_sql, as_of)}."
            if below_sql
            else f"Without new activity it stays sales-ready for at least {days} days."
        )
        if below_mql:
            text += f" Below MQL around {_day(below_mql, as_of)}."
    elif qualified:
        text = (
            "Already below sales-ready (an MQL); without new activity it falls below MQL around "
            f"{_day(below_mql, as_of)}."
            if below_mql
            else "Already below sales-ready (an MQL); without new activity it stays at MQL or above for "
            f"at least {days} days."
        )
    else:
        text = "Already below sales-ready and below MQL: no cool-down date to forecast."
    return CoolDownForecast(
        as_of=as_of.to_pydatetime(),
        probability_now=float(probability[0]),
        sales_ready_now=sales_ready,
        marketing_qualified_now=qualified,
        below_sales_ready_on=below_sql,
        below_mql_on=below_mql,
        days_checked=days,
        text=text,
        note=note,
    )


def _require_created(rows: pd.DataFrame, fields: Sequence[str]) -> None:
    """Raise a ``ValueError`` naming the as-of field at which the lead did not exist yet."""
    if "lead_age_days" not in rows:
        return
    ages = rows["lead_age_days"].to_numpy(dtype=float)
    for age, field in zip(ages, fields, strict=True):
        if age < 0:
            raise ValueError(f"{field}: the lead was not created yet at that time ({-age:.1f} days before)")


def _day(day: dt.date | None, as_of: pd.Timestamp) -> str:
    if day is None:
        return ""
    text = f"{day.day} {day:%b}"
    return text if day.year == as_of.year else f"{text} {day.year}"


# --- a lead's record from the contract's tables --------------------------------------------------
_RECORD_TEXT = (
    "channel",
    "job_title",
    "seniority",
    "department",
    "country",
    "industry",
    "company_type",
    "email",
)
_RECORD_NUMBERS = ("employee_count", "annual_revenue")


def lead_record(
    leads: pd.DataFrame,
    activities: pd.DataFrame,
    lead_id: str,
    *,
    outcomes: pd.DataFrame | None = None,
) -> RawLead:
    """One lead of the contract's ``leads``/``activities`` tables (a CRM export folder) as a
    :class:`~leadscore.model.records.RawLead`, its activities nested; ``outcomes`` adds its
    ``converted_at``. Raises ``ValueError`` naming ``lead_id`` when the lead is not in ``leads``.
    """
    rows = leads[leads["lead_id"].astype(str) == str(lead_id)]
    if rows.empty:
        raise ValueError(f"lead_id: no lead '{lead_id}' in the leads table")
    row = rows.iloc[0]

    def iso(value: object) -> str | None:
        if _missing(value) or value is pd.NaT:
            return None
        stamp = pd.Timestamp(cast(str, value))
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        return stamp.isoformat()

    def text(value: object) -> str | None:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)

    fields: dict[str, object] = {"lead_id": str(lead_id), "created_at": iso(row["created_at"])}
    for name in _RECORD_TEXT:
        if name in row.index:
            fields[name] = text(row[name])
    for name in _RECORD_NUMBERS:
        if name in row.index:
            fields[name] = _number(row[name])
    for name in ("converted_at", "disqualified_at"):
        if name in row.index:
            fields[name] = iso(row[name])
    if outcomes is not None and len(outcomes) and fields.get("converted_at") is None:
        converted = outcomes.loc[outcomes["lead_id"].astype(str) == str(lead_id), "converted_at"]
        if len(converted):
            fields["converted_at"] = iso(converted.iloc[0])
    own = activities[activities["lead_id"].astype(str) == str(lead_id)]
    page = own["page_category"] if "page_category" in own else pd.Series([None] * len(own), index=own.index)
    campaign = own["campaign"] if "campaign" in own else pd.Series([None] * len(own), index=own.index)
    fields["activities"] = [
        {"timestamp": iso(when), "activity_type": str(kind), "page_category": text(pg), "campaign": text(cp)}
        for when, kind, pg, cp in zip(
            own["timestamp"].tolist(),
            own["activity_type"].tolist(),
            page.tolist(),
            campaign.tolist(),
            strict=True,
        )
    ]
    return RawLead.model_validate(fields)


# --- feature rows of one record at several times -------------------------------------------------
def _timestamp(value: pd.Timestamp | dt.datetime | str, field: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{field}: not a timestamp ({error})") from None
    if pd.isna(stamp):
        raise ValueError(f"{field}: missing timestamp")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.as_unit("us")


def _counted(timestamps: pd.Series, as_of: pd.Timestamp) -> np.ndarray:
    """Events the pipeline counts at ``as_of``: whole seconds, an event's rounded up, as_of's down."""
    seconds = timestamps.to_numpy(dtype="datetime64[us]").astype("datetime64[s]")
    exact = timestamps.to_numpy(dtype="datetime64[us]")
    ceiled = np.where(exact > seconds, seconds + np.timedelta64(1, "s"), seconds)
    limit = np.datetime64(as_of.floor("s").to_datetime64()).astype("datetime64[s]")
    return np.asarray(np.isnat(seconds) | (ceiled <= limit), dtype=bool)


def _feature_rows(
    model: LeadScoringModel,
    record: RawLead | Mapping[str, object],
    times: Sequence[pd.Timestamp],
    *,
    counted_at: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """The model's feature rows of one record at each of ``times`` (one batch), through its transform.

    With ``counted_at``, only the events counted at that time are read (the previous score's events).
    """
    if model.layout is InputLayout.LEADSCORE:
        raw = record if isinstance(record, RawLead) else RawLead.model_validate(dict(record))
        prepared = prepare_leads([raw.model_copy(update={"as_of": None})], as_of=None)
        activities = prepared.activities
        if counted_at is not None and len(activities):
            activities = activities[_counted(activities["timestamp"], counted_at)]
        ids = [f"{raw.lead_id}\x1f{k}" for k in range(len(times))]
        leads = pd.concat([prepared.leads.assign(lead_id=i) for i in ids], ignore_index=True)
        events = pd.concat([activities.assign(lead_id=i) for i in ids], ignore_index=True)
        return model.features(leads=leads, activities=events, as_of=pd.Series(list(times)))
    if isinstance(record, RawLead):
        raise ValueError(
            f"this model reads the export '{model.transform.name}', not leadscore's raw leads: "
            "pass the export's own records"
        )
    row = dict(record)
    if model.layout is InputLayout.FLAT_EXPORT:  # no event times: the row reads the same at any time
        return model.features_from_records(pd.DataFrame([row] * len(times)))
    transform = cast(EventFeatureTransform, model.transform)
    items = row.get("activities")
    if counted_at is not None and isinstance(items, list | tuple):
        _, split, _ = transform.split_records(pd.DataFrame([{k: v for k, v in row.items() if k != "as_of"}]))
        if len(split):
            stamps = naive_utc(transform.contract_activities(split)["timestamp"])
            keep = _counted(stamps, counted_at)
            row["activities"] = [item for item, kept in zip(items, keep, strict=True) if kept]
    id_column = transform.mapping.tables.leads.id_column
    copies: list[dict[str, object]] = []
    for k, when in enumerate(times):
        copy = {**row, "as_of": when.isoformat()}
        if id_column is not None and id_column in copy:
            copy[id_column] = f"{copy[id_column]}\x1f{k}"
        copies.append(copy)
    return model.features_from_records(pd.DataFrame(copies))
