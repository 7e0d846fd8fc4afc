"""One lead's feature row without pandas: the numbers :func:`compute_features` gives for one snapshot.

The batch pipeline (:mod:`leadscore.features.pipeline`) builds DataFrames, Arrow arrays and one
sort key for thousands of leads; for a single lead that costs milliseconds of fixed overhead. This
module computes the same row from plain values: event times in whole seconds (rounded up), the
snapshot in whole seconds (rounded down), window counts, totals and recency per signal, the same
float32 arithmetic for the aggregates, and the e-mail domain type. A property test
(``tests/serving/test_single_lead.py``) checks it against ``compute_features`` on simulated
leads, value for value.

Time stamps are parsed here only in the ISO 8601 forms whose meaning is certain
(``YYYY-MM-DD``, ``YYYY-MM-DD[T ]HH:MM[:SS[.ffffff]]`` with ``Z`` or ``+HH:MM``, years 1678-2261,
the range of pandas' nanosecond timestamps); :func:`epoch_microseconds` returns ``None`` for
anything else, and the caller then takes the batch path, which decides.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from leadscore.features.catalogue import (
    FEATURE_NAMES,
    SIGNALS,
    WINDOWS_DAYS,
    days_since_name,
    total_count_name,
    window_count_name,
)
from leadscore.features.contract import CATEGORICAL_FIT_COLUMNS, NUMERIC_FIT_COLUMNS
from leadscore.features.pipeline import (
    ENGAGEMENT_SIGNALS,
    FREE_MAIL_DOMAINS,
    SALES_SIGNALS,
    SECONDS_PER_DAY,
    activity_feature_columns,
)
from leadscore.features.vocabulary import ActivityType, PageCategory

__all__ = [
    "FEATURE_NAMES",
    "SIGNAL_INDEX",
    "LeadValues",
    "email_domain_type",
    "epoch_microseconds",
    "isoformat_us",
    "lead_features",
    "leads_feature_columns",
    "signal_of",
]

MICROSECONDS = 1_000_000
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?(Z|[+-]\d{2}:\d{2})?)?"
)
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_EPOCH = dt.datetime(1970, 1, 1)
_ONE_MICROSECOND = dt.timedelta(microseconds=1)
_MIN_YEAR, _MAX_YEAR = 1678, 2261  # inside pandas' datetime64[ns] range on both ends
_EDU = re.compile(r"\.ac\.[a-z]{2}$")

_TYPES = [t.value for t in ActivityType]
_PAGES = [p.value for p in PageCategory]
SIGNAL_INDEX: dict[tuple[str, str | None], int] = {}
for _index, _signal in enumerate(SIGNALS):
    _page = _signal.page_category.value if _signal.page_category is not None else None
    SIGNAL_INDEX[(_signal.activity_type.value, _page)] = _index
_PAGE_OTHER = SIGNAL_INDEX[(ActivityType.PAGE_VIEW.value, PageCategory.OTHER.value)]
_ENGAGEMENT = np.array([SIGNALS.index(next(s for s in SIGNALS if s.name == n)) for n in ENGAGEMENT_SIGNALS])
_SALES = np.array([SIGNALS.index(next(s for s in SIGNALS if s.name == n)) for n in SALES_SIGNALS])
_N_SIGNALS = len(SIGNALS)
_SIGNAL_NAMES = tuple(
    (
        tuple((days, window_count_name(spec.name, days)) for days in WINDOWS_DAYS),
        total_count_name(spec.name),
        days_since_name(spec.name),
    )
    for spec in SIGNALS
)


def epoch_microseconds(text: str | None) -> int | None:
    """Naive-UTC microseconds since the epoch for an ISO 8601 text, or None when not certain.

    None covers both unparseable text and forms this parser does not claim to read like pandas
    (the caller falls back to the batch path, which accepts or rejects them).
    """
    if text is None:
        return None
    if (
        len(text) == 19
        and text[10] in "T "
        and text[4] == text[7] == "-"
        and text[13] == text[16] == ":"
        and text[11:13] < "24"  # newer Pythons read hour 24 as the next midnight; pandas does not
        and text.isascii()
    ):  # the commonest export form, read by the C parser: 0.8 vs 4.7 us a call, same answer (tested)
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
        if not _MIN_YEAR <= moment.year <= _MAX_YEAR:
            return None
        return (moment - _EPOCH) // _ONE_MICROSECOND
    return _epoch_microseconds_any_form(text)


def _epoch_microseconds_any_form(text: str) -> int | None:
    """:func:`epoch_microseconds` for every ISO 8601 form it reads (the regular expression)."""
    match = _ISO.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    y = int(year)
    if not _MIN_YEAR <= y <= _MAX_YEAR:
        return None
    try:
        days = dt.date(y, int(month), int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    h = int(hour) if hour is not None else 0
    mi = int(minute) if minute is not None else 0
    s = int(second) if second is not None else 0
    if h > 23 or mi > 59 or s > 59:
        return None
    us = ((days * 86_400 + h * 3_600 + mi * 60 + s) * MICROSECONDS) + (
        int(fraction.ljust(6, "0")) if fraction else 0
    )
    if offset is not None and offset != "Z":
        sign = 1 if offset[0] == "+" else -1
        oh, om = int(offset[1:3]), int(offset[4:6])
        if oh > 23 or om > 59:
            return None
        us -= sign * (oh * 3_600 + om * 60) * MICROSECONDS
    return us


def isoformat_us(us: int) -> str:
    """ISO 8601 text of naive-UTC microseconds, as ``pd.Timestamp.isoformat`` writes it."""
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=us)).isoformat()


def signal_of(activity_type: str, page_category: str | None) -> int:
    """The pipeline's signal index for one activity (-1 for types it does not count)."""
    if activity_type == ActivityType.PAGE_VIEW.value:
        return SIGNAL_INDEX.get((activity_type, page_category), _PAGE_OTHER)
    return SIGNAL_INDEX.get((activity_type, None), -1)


def email_domain_type(email: str | None) -> str:
    """corporate, free, education or missing: ``pipeline.email_domain_type`` for one address."""
    if email is None or "@" not in email:
        return "missing"
    domain = email.strip().lower().rsplit("@", 1)[-1]
    if domain.endswith(".edu") or _EDU.search(domain):
        return "education"
    return "free" if domain in FREE_MAIL_DOMAINS else "corporate"


class LeadValues:
    """The lead-table values of one lead that features read (text already blank -> None)."""

    __slots__ = ("annual_revenue", "categorical", "created_us", "email", "employee_count")

    def __init__(
        self,
        *,
        created_us: int,
        categorical: Mapping[str, str | None],
        employee_count: float | None,
        annual_revenue: float | None,
        email: str | None,
    ) -> None:
        self.created_us = created_us
        self.categorical = categorical
        self.employee_count = employee_count
        self.annual_revenue = annual_revenue
        self.email = email


def _float32(value: float | None) -> float:
    return float("nan") if value is None else float(np.float32(value))


def lead_features(
    *,
    lead: LeadValues,
    as_of_us: int,
    event_seconds: np.ndarray,
    event_signals: np.ndarray,
) -> dict[str, object]:
    """The feature row of one snapshot: every catalogue feature, as ``compute_features`` gives it.

    ``event_seconds``: event times in whole seconds since the epoch, rounded up (int64);
    ``event_signals``: each event's :func:`signal_of` (-1 events are ignored). Numeric features
    are float32 values as Python floats (NaN when missing); categoricals are text or None.
    """
    as_of_s = as_of_us // MICROSECONDS
    seen = (event_signals >= 0) & (event_seconds <= as_of_s)
    seconds = event_seconds[seen]
    signals = event_signals[seen]
    totals = np.bincount(signals, minlength=_N_SIGNALS)
    windows = {
        days: np.bincount(signals[seconds > as_of_s - days * SECONDS_PER_DAY], minlength=_N_SIGNALS)
        for days in WINDOWS_DAYS
    }
    last = np.full(_N_SIGNALS, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, signals, seconds)
    days_since = np.full(_N_SIGNALS, np.nan, dtype=np.float32)
    has_any = totals > 0
    days_since[has_any] = (as_of_s - last[has_any]) / SECONDS_PER_DAY

    row: dict[str, object] = {}
    window_counts = {days: counts.tolist() for days, counts in windows.items()}  # exact in float32
    total_counts = totals.tolist()
    recency = days_since.tolist()
    for index, (window_names, total_name, since_name) in enumerate(_SIGNAL_NAMES):
        for days, name in window_names:
            row[name] = float(window_counts[days][index])
        row[total_name] = float(total_counts[index])
        row[since_name] = recency[index]
    window_30 = windows[30].astype(np.float32)
    window_90 = windows[90].astype(np.float32)
    engagement_30d = np.sum(window_30[_ENGAGEMENT], dtype=np.float32)
    engagement_90d = np.sum(window_90[_ENGAGEMENT], dtype=np.float32)
    row["engagement_events_30d"] = float(engagement_30d)
    row["engagement_trend_30d"] = float(engagement_30d - (engagement_90d - engagement_30d) / 2)
    row["days_since_last_activity"] = _nanmin(days_since[_ENGAGEMENT])
    row["sales_touches_total"] = float(np.sum(totals[_SALES].astype(np.float32), dtype=np.float32))
    row["days_since_last_sales_touch"] = _nanmin(days_since[_SALES])
    row["lead_age_days"] = float(np.float32((as_of_us - lead.created_us) / (SECONDS_PER_DAY * 1e6)))
    row["employee_count"] = _float32(lead.employee_count)
    row["annual_revenue"] = _float32(lead.annual_revenue)
    for name in CATEGORICAL_FIT_COLUMNS:
        row[name] = lead.categorical.get(name)
    row["email_domain_type"] = email_domain_type(lead.email)
    return {name: row[name] for name in FEATURE_NAMES}


def leads_feature_columns(
    *,
    leads: Sequence[LeadValues],
    as_of_us: np.ndarray,
    event_seconds: Sequence[np.ndarray],
    event_signals: Sequence[np.ndarray],
) -> dict[str, np.ndarray]:
    """Feature columns of one snapshot per lead (``leads[i]`` as of ``as_of_us[i]``), without pandas.

    The activity features come from :func:`~leadscore.features.pipeline.activity_feature_columns`,
    the kernel of ``compute_features``; ``event_seconds[i]``/``event_signals[i]`` are lead i's
    events as in :func:`lead_features`. Numbers are float32 arrays (NaN when missing), categoricals
    object arrays of text or None; every catalogue feature, in catalogue order.
    """
    n = len(leads)
    as_of = np.asarray(as_of_us, dtype=np.int64)
    columns = activity_feature_columns(
        n_leads=n,
        snapshot_lead=np.arange(n, dtype=np.int64),
        as_of_s=np.floor_divide(as_of, MICROSECONDS),
        activity_lead=np.repeat(np.arange(n, dtype=np.int64), [len(e) for e in event_seconds]),
        event_s=np.concatenate([*event_seconds, np.zeros(0, dtype=np.int64)]).astype(np.int64),
        signal=np.concatenate([*event_signals, np.zeros(0, dtype=np.int64)]).astype(np.int64),
    )
    created = np.array([lead.created_us for lead in leads], dtype=np.int64)
    columns["lead_age_days"] = ((as_of - created) / (SECONDS_PER_DAY * 1e6)).astype(np.float32)
    for name in NUMERIC_FIT_COLUMNS:
        values = [getattr(lead, name) for lead in leads]
        columns[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64).astype(
            np.float32
        )
    for name in CATEGORICAL_FIT_COLUMNS:
        columns[name] = np.array([lead.categorical.get(name) for lead in leads], dtype=object)
    columns["email_domain_type"] = np.array([email_domain_type(lead.email) for lead in leads], dtype=object)
    return {name: columns[name] for name in FEATURE_NAMES}


def _nanmin(values: np.ndarray) -> float:
    present = values[~np.isnan(values)]
    return float(present.min()) if present.size else float("nan")


def spread_events(*, start_us: int, last_us: int, count: int) -> np.ndarray:
    """``count`` synthetic event times (microseconds) spread evenly from ``start_us`` to ``last_us``.

    The same arithmetic as the service's batch expansion of ``engagement_counts``.
    """
    if count == 1:
        return np.array([last_us], dtype=np.int64)
    offsets = np.linspace(0, last_us - start_us, count).round().astype(np.int64)
    return start_us + offsets


def ceil_seconds(us: np.ndarray) -> np.ndarray:
    """Event times in whole seconds, rounded up (an event is counted from its whole second on)."""
    return -np.floor_divide(-us, MICROSECONDS)


def numeric_value(value: float | None) -> float | None:
    """A fit number as the lead table holds it (None and NaN both mean missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


NUMERIC_COLUMNS: Sequence[str] = NUMERIC_FIT_COLUMNS
