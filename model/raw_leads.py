"""The one parser of raw leads: typed :class:`RawLead` records -> contract tables, checked.

:func:`prepare_leads` turns validated raw-lead records into the contract's ``leads`` and
``activities`` tables plus each lead's ``as_of``. The service (request bodies) and the MLflow
pyfunc (input frames, via :func:`raw_leads_from_frame`) both go through it, so they accept and
refuse the same leads and score them identically. Every check of the contract that the request models cannot
express (timestamps that do not parse, are in the future or precede the lead's creation,
duplicate lead ids, blank ids) runs here, vectorised, on every request.

When any check fails, :func:`leadscore.features.loading.validate_crm_tables` runs on the same
tables and its problems are merged into the report, so a rejected request is described the way
the contract describes bad CRM files, but per field and per lead: ``leads[3].activities[0].timestamp``
of lead ``L0042``. ``LEADSCORE_FULL_VALIDATION=true`` runs the contract validator on every
request as well (slower: tens of milliseconds per request).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from leadscore.features.contract import CATEGORICAL_FIT_COLUMNS, NUMERIC_FIT_COLUMNS
from leadscore.features.loading import DataContractError, validate_crm_tables
from leadscore.model.records import MAX_PROBLEMS, STATE_FIELDS, Problem, RawLead, RequestInvalid

__all__ = [
    "MAX_PROBLEMS",
    "PreparedLeads",
    "RequestInvalid",
    "now_utc",
    "prepare_leads",
    "raw_leads_from_frame",
    "utc_naive",
]

LEAD_TEXT_COLUMNS: tuple[str, ...] = ("job_title", *CATEGORICAL_FIT_COLUMNS, "email")
ACTIVITY_COLUMNS: tuple[str, ...] = ("timestamp", "activity_type", "page_category", "campaign")
_UNUSED_PII = ("first_name", "last_name", "phone")  # contract columns the service never needs
_FROM_EVENTS, _FROM_COUNTS = 0, 1


@dataclass(frozen=True)
class PreparedLeads:
    """Contract tables for one batch, ready for ``LeadScoringModel.features``."""

    leads: pd.DataFrame
    activities: pd.DataFrame
    as_of: pd.Series  # naive UTC, one per lead, in request order


def utc_naive(values: Sequence[str | None] | pd.Series) -> pd.Series:
    """ISO 8601 text -> naive UTC timestamps, as the pyfunc parses them; NaT where unparseable."""
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    if series.empty:
        return pd.Series([], dtype="datetime64[us]")
    parsed = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
    # one resolution for every comparison (pandas infers s/us/ns from the text); the feature
    # pipeline works in microseconds too
    return parsed.dt.tz_localize(None).astype("datetime64[us]")


def now_utc() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


class _Report:
    """Problems keyed by field path (one per field; the first wording wins), at most MAX_PROBLEMS."""

    def __init__(self, lead_ids: Sequence[str]) -> None:
        self.lead_ids = lead_ids
        self.by_field: dict[str, Problem] = {}
        self.more = 0

    def add(self, field: str, problem: str, lead: int | None = None) -> None:
        if field in self.by_field:
            return
        if len(self.by_field) >= MAX_PROBLEMS:
            self.more += 1
            return
        lead_id = self.lead_ids[lead] if lead is not None and lead < len(self.lead_ids) else None
        self.by_field[field] = Problem(field=field, problem=problem, lead_index=lead, lead_id=lead_id)

    def add_rows(
        self, mask: np.ndarray, field_of: Callable[[int], str], problem: str, lead_of: np.ndarray
    ) -> None:
        for row in np.flatnonzero(mask):
            self.add(field_of(int(row)), problem, int(lead_of[row]))

    @property
    def problems(self) -> list[Problem]:
        problems = list(self.by_field.values())
        if self.more:
            problems.append(Problem(field="request", problem=f"{self.more} more problem(s) not listed"))
        return problems


def _blank_to_none(value: str | None) -> str | None:
    return value if value is None or value.strip() else None


def prepare_leads(
    raw: Sequence[RawLead],
    *,
    as_of: str | None,
    now: pd.Timestamp | None = None,
    clock_skew_seconds: float = 300.0,
    full_validation: bool = False,
) -> PreparedLeads:
    """Contract tables for ``raw``; raises :class:`RequestInvalid` naming each bad field and lead.

    ``now`` (default: the current UTC time) plus ``clock_skew_seconds`` bounds every timestamp.
    """
    now = now_utc() if now is None else now
    limit = now + pd.Timedelta(seconds=clock_skew_seconds)
    bound = np.datetime64(limit.as_unit("us"))
    n = len(raw)
    lead_ids = [lead.lead_id for lead in raw]
    report = _Report(lead_ids)

    # --- leads table ----------------------------------------------------------------------------------
    leads = pd.DataFrame({"lead_id": np.array(lead_ids, dtype=object)})
    created = utc_naive([lead.created_at for lead in raw])
    leads["created_at"] = created.to_numpy()
    for name in LEAD_TEXT_COLUMNS:
        leads[name] = np.array([_blank_to_none(getattr(lead, name)) for lead in raw], dtype=object)
    for name in NUMERIC_FIT_COLUMNS:
        values = [getattr(lead, name) for lead in raw]
        leads[name] = np.array([np.nan if v is None else v for v in values], dtype=float)
    for name in STATE_FIELDS:  # blank: the lead is still open
        leads[name] = utc_naive([_blank_to_none(getattr(lead, name)) for lead in raw]).to_numpy()
        given = np.array([_blank_to_none(getattr(lead, name)) is not None for lead in raw], dtype=bool)
        for row in np.flatnonzero(given & np.isnat(leads[name].to_numpy())):
            report.add(f"leads[{row}].{name}", "not a valid ISO 8601 timestamp", int(row))

    # --- activities: events, then expanded counts ----------------------------------------------
    event_lead = np.fromiter((i for i, lead in enumerate(raw) for _ in lead.activities), dtype=np.int64)
    event_item = np.fromiter((j for lead in raw for j in range(len(lead.activities))), dtype=np.int64)
    events = [a for lead in raw for a in lead.activities]
    timestamps = utc_naive([a.timestamp for a in events]).to_numpy()
    columns: dict[str, np.ndarray[Any, Any]] = {
        "activity_type": np.array([a.activity_type for a in events], dtype=object),
        "page_category": np.array([a.page_category for a in events], dtype=object),
        "campaign": np.array([a.campaign for a in events], dtype=object),
    }
    source = np.full(len(events), _FROM_EVENTS, dtype=np.int8)
    counted = _expand_counts(raw, created=created, report=report)
    if counted is not None:
        count_times, count_columns, count_lead, count_item = counted
        timestamps = np.concatenate([timestamps, count_times])
        for name, extra in count_columns.items():
            columns[name] = np.concatenate([columns[name], extra])
        event_lead = np.concatenate([event_lead, count_lead])
        event_item = np.concatenate([event_item, count_item])
        source = np.concatenate([source, np.full(len(count_lead), _FROM_COUNTS, dtype=np.int8)])
    activities = pd.DataFrame(
        {
            "lead_id": np.asarray(lead_ids, dtype=object)[event_lead],
            "timestamp": timestamps,
            **columns,
        }
    )

    # --- as_of per lead -------------------------------------------------------------------------
    default_as_of = now
    if as_of is not None:
        parsed = utc_naive([as_of]).iloc[0]
        if pd.isna(parsed):
            report.add("as_of", "not a valid ISO 8601 timestamp")
        elif parsed > limit:
            report.add("as_of", f"timestamp in the future (after {limit:%Y-%m-%d %H:%M:%S})")
        else:
            default_as_of = parsed
    own = utc_naive([lead.as_of for lead in raw])
    has_own = np.array([lead.as_of is not None for lead in raw], dtype=bool)
    lead_as_of = own.where(pd.Series(has_own), default_as_of)

    # --- the contract's checks, vectorised ------------------------------------------------------
    def lead_field(name: str) -> Callable[[int], str]:
        return lambda row: f"leads[{row}].{name}"

    def activity_field(row: int) -> str:
        kind = "activities" if source[row] == _FROM_EVENTS else "engagement_counts"
        suffix = ".timestamp" if source[row] == _FROM_EVENTS else ""
        return f"leads[{event_lead[row]}].{kind}[{event_item[row]}]{suffix}"

    lead_rows = np.arange(n)
    created_values = leads["created_at"].to_numpy()
    blank_id = np.array([not lead_id.strip() for lead_id in lead_ids], dtype=bool)
    report.add_rows(blank_id, lead_field("lead_id"), "missing value (blank lead_id)", lead_rows)
    duplicated = pd.Index(lead_ids).duplicated(keep=False) & ~blank_id
    report.add_rows(duplicated, lead_field("lead_id"), "duplicate lead_id", lead_rows)
    report.add_rows(
        np.isnat(created_values), lead_field("created_at"), "not a valid ISO 8601 timestamp", lead_rows
    )
    future = f"timestamp in the future (after {limit:%Y-%m-%d %H:%M:%S})"
    report.add_rows(created_values > bound, lead_field("created_at"), future, lead_rows)
    own_values = own.to_numpy()
    report.add_rows(
        has_own & np.isnat(own_values), lead_field("as_of"), "not a valid ISO 8601 timestamp", lead_rows
    )
    report.add_rows(has_own & (own_values > bound), lead_field("as_of"), future, lead_rows)
    as_of_values = lead_as_of.to_numpy()
    early_as_of = as_of_values < created_values  # NaT compares False
    report.add_rows(early_as_of, lead_field("as_of"), "as_of is before the lead was created", lead_rows)

    when = activities["timestamp"].to_numpy()
    from_events = source == _FROM_EVENTS
    report.add_rows(
        np.isnat(when) & from_events, activity_field, "not a valid ISO 8601 timestamp", event_lead
    )
    report.add_rows(when > bound, activity_field, future, event_lead)
    before = when < created_values[event_lead] if n else np.zeros(0, dtype=bool)
    report.add_rows(before, activity_field, "activity before the lead was created", event_lead)

    if report.by_field or full_validation:
        _contract_problems(
            leads, activities, limit=limit, lead_of=event_lead, field_of=activity_field, report=report
        )
    if report.by_field:
        raise RequestInvalid(report.problems)
    return PreparedLeads(leads=leads, activities=activities, as_of=lead_as_of.reset_index(drop=True))


def _expand_counts(
    raw: Sequence[RawLead], *, created: pd.Series, report: _Report
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray] | None:
    """Pre-aggregated counts -> evenly spread synthetic events (None when there are none)."""
    entries = [(i, k, c) for i, lead in enumerate(raw) for k, c in enumerate(lead.engagement_counts)]
    if not entries:
        return None
    last = utc_naive([c.last_at for _, _, c in entries]).to_numpy()
    first_given = utc_naive([c.first_at for _, _, c in entries]).to_numpy()
    created_values = created.to_numpy()
    times, types, pages, lead_of, item_of = [], [], [], [], []
    for row, (i, k, entry) in enumerate(entries):
        field = f"leads[{i}].engagement_counts[{k}]"
        if np.isnat(last[row]):
            report.add(f"{field}.last_at", "not a valid ISO 8601 timestamp", i)
            continue
        start = created_values[i] if entry.first_at is None else first_given[row]
        if entry.first_at is not None and np.isnat(start):
            report.add(f"{field}.first_at", "not a valid ISO 8601 timestamp", i)
            continue
        if entry.count == 0:
            continue
        if np.isnat(start):  # created_at itself is unparseable: reported on the lead
            start = last[row]
        if start > last[row]:
            report.add(f"{field}.first_at", "first_at is after last_at", i)
            continue
        if entry.count == 1:
            spread = np.array([last[row]])
        else:
            span = (last[row] - start).astype("timedelta64[us]").astype(np.int64)
            offsets = np.linspace(0, span, entry.count).round().astype(np.int64)
            spread = start + offsets.astype("timedelta64[us]")
        times.append(spread)
        types += [entry.activity_type] * entry.count
        pages += [entry.page_category] * entry.count
        lead_of.append(np.full(entry.count, i, dtype=np.int64))
        item_of.append(np.full(entry.count, k, dtype=np.int64))
    if not times:
        return None
    columns = {
        "activity_type": np.array(types, dtype=object),
        "page_category": np.array(pages, dtype=object),
        "campaign": np.full(len(types), None, dtype=object),
    }
    return np.concatenate(times), columns, np.concatenate(lead_of), np.concatenate(item_of)


def _contract_problems(
    leads: pd.DataFrame,
    activities: pd.DataFrame,
    *,
    limit: pd.Timestamp,
    lead_of: np.ndarray,
    field_of: Callable[[int], str],
    report: _Report,
) -> None:
    """Run the contract validator on the request's tables and add its problems per field and lead."""
    table = leads.copy()
    for name in _UNUSED_PII:
        table[name] = None
    try:
        validate_crm_tables(leads=table, activities=activities, now=limit)
    except DataContractError as error:
        for contract_problem in error.problems:
            rows = contract_problem.rows
            if not rows:
                where = "leads" if contract_problem.table == "leads" else "leads[].activities"
                column = f".{contract_problem.column}" if contract_problem.column else ""
                report.add(f"{where}{column}", contract_problem.problem)
                continue
            for row in rows:
                if contract_problem.table == "leads":
                    report.add(f"leads[{row}].{contract_problem.column}", contract_problem.problem, row)
                else:
                    report.add(field_of(row), contract_problem.problem, int(lead_of[row]))
            hidden = contract_problem.count - len(rows)
            if hidden > 0:
                report.add(
                    f"{contract_problem.table}.{contract_problem.column}",
                    f"{contract_problem.problem}: {hidden} more row(s) like the ones above",
                )


def _cell(value: Any) -> Any:
    """A frame cell as JSON would carry it: missing (NaN, NaT, pd.NA) -> None, arrays -> lists."""
    if isinstance(value, np.ndarray | list | tuple):
        return [_cell(item) for item in value]
    if isinstance(value, dict):
        return {key: _cell(item) for key, item in value.items()}
    if isinstance(value, datetime | np.datetime64):  # typed times (Parquet, pandas): ISO 8601 text
        stamp = pd.Timestamp(value)
        return None if pd.isna(stamp) else stamp.isoformat()
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def raw_leads_from_frame(frame: pd.DataFrame) -> list[RawLead]:
    """The raw-lead records in ``frame`` (one row per lead, activities nested as lists of dicts), as
    the MLflow pyfunc receives them; raises :class:`RequestInvalid` naming each bad field and row."""
    from pydantic import ValidationError

    leads: list[RawLead] = []
    problems: list[Problem] = []
    for index, row in enumerate(frame.to_dict(orient="records")):
        record = {str(key): _cell(value) for key, value in row.items()}
        if record.get("activities") is None:
            record.pop("activities", None)
        if record.get("engagement_counts") is None:
            record.pop("engagement_counts", None)
        try:
            leads.append(RawLead.model_validate(record))
        except ValidationError as error:
            for detail in error.errors(include_input=False):
                where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in detail["loc"])
                if len(problems) < MAX_PROBLEMS:
                    lead_id = record.get("lead_id")
                    problems.append(
                        Problem(
                            field=f"leads[{index}]{where}",
                            problem=detail["msg"],
                            lead_index=index,
                            lead_id=lead_id if isinstance(lead_id, str) else None,
                        )
                    )
    if problems:
        raise RequestInvalid(problems)
    return leads
