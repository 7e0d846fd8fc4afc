"""Reasons a sales rep can read, built from TreeSHAP contributions and the feature catalogue.

Contributions of the engineered features of one concept (e.g. all pricing-page windows) are
summed into one grouped contribution; each concept gets a plain-language sentence built from
the lead's own values. Nothing here reads PII: only catalogue features reach it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import islice

import numpy as np
import pandas as pd

from leadscore.features.catalogue import (
    FEATURE_CATALOGUE,
    SIGNAL_BY_NAME,
    WINDOWS_DAYS,
    Direction,
    Family,
    FeatureSpec,
    days_since_name,
    total_count_name,
    window_count_name,
)
from leadscore.features.wording import count_phrase

IDLE_DAYS = 14  # from this many days without activity the card says the lead went quiet


@dataclass(frozen=True)
class Concept:
    """A group of features explained as one reason."""

    name: str
    label: str
    family: Family
    actionable: bool


def concepts_for(
    feature_names: tuple[str, ...], catalogue: tuple[FeatureSpec, ...] = FEATURE_CATALOGUE
) -> tuple[tuple[Concept, ...], np.ndarray]:
    """Concepts of the given features and the (features x concepts) 0/1 grouping matrix."""
    by_name: dict[str, FeatureSpec] = {f.name: f for f in catalogue}
    concepts: dict[str, Concept] = {}
    for name in feature_names:
        spec = by_name[name]
        concepts.setdefault(
            spec.concept, Concept(spec.concept, spec.concept_label, spec.family, spec.actionable)
        )
    order = list(concepts)
    grouping = np.zeros((len(feature_names), len(order)), dtype=np.float64)
    for row, name in enumerate(feature_names):
        grouping[row, order.index(by_name[name].concept)] = 1.0
    return tuple(concepts[c] for c in order), grouping


def _count(value: object) -> int:
    number = _number(value)
    return 0 if number is None else round(number)


def _number(value: object) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


#: Reasons that move the score by less than this many points are not listed (they are noise to a rep).
MATERIAL_POINTS = 1.0

#: Catalogue nouns whose singular is not the rule's (e.g. 'webinars attended').
_SINGULAR: dict[str, str] = {signal.label: signal.one for signal in SIGNAL_BY_NAME.values()}
#: How category values are written: proper names and acronyms, not machine codes.
PROPER_NAMES: dict[str, str] = {
    "c_level": "C-level",
    "vp": "VP",
    "it": "IT",
    "hr": "HR",
    "r_and_d": "R&D",
    "saas": "SaaS",
    "individual_contributor": "Individual contributor",
    "web_form": "web form",
    "paid_search": "paid search",
    "organic_search": "organic search",
    "trade_show": "trade show",
    "content_download": "content download",
    "purchased_list": "purchased list",
}


def plural(count: int, noun: str) -> str:
    """'1 webinar attended', '2 webinars attended', '0 sales touches' (features.wording's rule)."""
    return count_phrase(count, noun, singular=_SINGULAR.get(noun))


def _days(days: float) -> str:
    whole = round(days)
    return "today" if whole == 0 else ("1 day ago" if whole == 1 else f"{whole} days ago")


def _text(value: object, *, capitalise: bool = False) -> str:
    """A category value as a rep reads it: proper names kept ('C-level', 'IT'), underscores gone."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "unknown"
    raw = str(value)
    if raw.lower() in PROPER_NAMES:
        return PROPER_NAMES[raw.lower()] if not capitalise else _first_upper(PROPER_NAMES[raw.lower()])
    if len(raw) <= 3 and raw.isalpha() and raw.isupper():  # codes: US, DE, B2B
        return raw
    text = raw.replace("_", " ")
    return _first_upper(text) if capitalise else text


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def signal_sentence(signal: str, row: Mapping[str, object]) -> str:
    """'4 pricing-page visits in the last 7 days', 'No demo requests yet', ..."""
    label = SIGNAL_BY_NAME[signal].label
    total = _count(row.get(total_count_name(signal)))
    if total == 0:
        return f"No {label} yet"
    for days in WINDOWS_DAYS:
        count = _count(row.get(window_count_name(signal, days)))
        if count:
            return f"{plural(count, label)} in the last {days} days"
    since = _number(row.get(days_since_name(signal)))
    last = f", the last {_days(since)}" if since is not None else ""
    return f"{plural(total, label)} so far{last}"


def concept_sentence(concept: str, row: Mapping[str, object]) -> str:
    """A sentence about one concept, in the rep's language, from the lead's own values."""
    value = row.get(concept)
    if concept in SIGNAL_BY_NAME:
        return signal_sentence(concept, row)
    if concept == "email_domain_type":
        return {
            "free": "Uses a free e-mail address",
            "corporate": "Uses a company e-mail address",
            "education": "Uses a school or university e-mail address",
        }.get(str(value), "No e-mail address on file")
    if concept == "channel":
        return f"Lead came from the {_text(value)} channel"
    if concept in ("seniority", "department", "industry", "country"):
        return f"{concept.capitalize()}: {_text(value, capitalise=True)}"
    if concept == "company_type":
        return f"Company type: {_text(value, capitalise=True)}"
    if concept == "employee_count":
        number = _number(value)
        return "Company size unknown" if number is None else f"Company has {number:,.0f} employees"
    if concept == "annual_revenue":
        number = _number(value)
        return (
            "Company revenue unknown" if number is None else f"Company revenue ${number / 1e6:,.1f}M a year"
        )
    if concept == "lead_age_days":
        return f"Lead created {_days(_number(value) or 0.0)}"
    if concept == "days_since_last_activity":  # the lead's own activity, never the sales team's
        number = _number(value)
        if number is None:
            return "No activity from the lead yet"
        if number >= IDLE_DAYS:
            return f"No activity from the lead for {round(number)} days"
        return f"The lead was last active {_days(number)}"
    if concept == "engagement_events_30d":
        return f"{plural(_count(value), 'engagement events')} by the lead in the last 30 days"
    if concept == "engagement_trend_30d":
        number = _number(value) or 0.0
        if abs(number) < 1:
            return "The lead's engagement is steady"
        events = plural(abs(round(number)), "events")
        direction = "more" if number > 0 else "fewer"
        trend = "rising" if number > 0 else "falling"
        return f"The lead's engagement is {trend} ({events} {direction} than the month before)"
    if concept == "sales_touches_total":
        return f"{plural(_count(value), 'sales touches')} so far"
    if concept == "days_since_last_sales_touch":
        number = _number(value)
        return "Not contacted by sales yet" if number is None else f"Last sales touch {_days(number)}"
    return f"{concept.replace('_', ' ').capitalize()}: {_text(value)}"


@dataclass(frozen=True)
class Reason:
    """One grouped factor behind a score."""

    concept: str
    sentence: str
    impact: float  # signed, in score points (0-100 scale)
    family: Family

    def as_dict(self) -> dict[str, object]:
        return {
            "concept": self.concept,
            "sentence": self.sentence,
            "impact": round(self.impact, 2),
            "family": self.family.value,
        }


def points_from_contributions(
    *, grouped: np.ndarray, scores: np.ndarray, base_score: float, slope: np.ndarray
) -> np.ndarray:
    """Convert grouped log-odds contributions to score points that add up to ``score - base_score``.

    Each lead's points are its contributions scaled by (score - base) / sum(contributions). Where
    that ratio says nothing (the contributions nearly cancel, or the score moved less than half a
    point, e.g. the calibration curve is flat between the base and the lead) the local slope of the
    score (points per log-odds) is used instead, so reasons still show, without adding up exactly.
    """
    total = grouped.sum(axis=1)
    delta = scores - base_score
    informative = (np.abs(total) > 1e-3) & (np.abs(delta) >= 0.5)
    scale = np.where(informative, delta / np.where(informative, total, 1.0), slope)
    return grouped * scale[:, None]


def contradicts_direction(concept: str, row: Mapping[str, object], impact: float) -> bool:
    """True when a reason would read against the signal's known direction.

    For a signal whose direction is known (more pricing visits never lower the score), "1
    pricing-page visit" lowering the score or "No pricing-page visits yet" raising it is a comparison
    with the average lead, not something a rep can read: such reasons are not listed. Likewise the
    lead's recency: "The lead was last active today" never reads as lowering the score, nor "No
    activity from the lead for 20 days" as raising it.
    """
    if concept == "days_since_last_activity" and impact != 0:
        since = _number(row.get(concept))
        recently_active = since is not None and since < IDLE_DAYS
        return recently_active != (impact > 0)
    signal = SIGNAL_BY_NAME.get(concept)
    if signal is None or signal.direction is Direction.UNKNOWN or impact == 0:
        return False
    present = _count(row.get(total_count_name(concept))) > 0
    raises = impact > 0
    if signal.direction is Direction.INCREASING:
        return present != raises
    return present == raises


def top_reasons(
    *,
    concepts: tuple[Concept, ...],
    points_row: np.ndarray,
    feature_row: Mapping[str, object],
    top_positive: int = 5,
    top_negative: int = 5,
    min_abs_points: float = MATERIAL_POINTS,
    sentence: Callable[[str, Mapping[str, object]], str] | None = None,
    per_lead_only: bool = True,
) -> tuple[list[Reason], list[Reason]]:
    """The strongest positive and negative reasons of one lead.

    Reasons below ``min_abs_points`` are not listed; with ``per_lead_only``, neither are context
    concepts (market conditions shared by every lead) nor reasons against a signal's known direction.
    """
    values = points_row.tolist()

    def listed(i: int) -> bool:
        if not per_lead_only:
            return True
        concept = concepts[i]
        if concept.family is Family.CONTEXT:
            return False
        return not contradicts_direction(concept.name, feature_row, values[i])

    order = np.argsort(-points_row).tolist()
    positive = list(islice((i for i in order if values[i] >= min_abs_points and listed(i)), top_positive))
    negative = list(
        islice((i for i in reversed(order) if values[i] <= -min_abs_points and listed(i)), top_negative)
    )

    def reason(index: int) -> Reason:
        concept = concepts[index]
        return Reason(
            concept.name,
            (sentence or concept_sentence)(concept.name, feature_row),
            values[index],
            concept.family,
        )

    return [reason(i) for i in positive], [reason(i) for i in negative]


class FeatureRow(Mapping[str, object]):
    """One row of feature columns, read lazily: reasons touch a handful of its ~100 values."""

    __slots__ = ("_columns", "_index")

    def __init__(self, columns: Mapping[str, list[object]], index: int) -> None:
        self._columns = columns
        self._index = index

    def __getitem__(self, name: str) -> object:
        value = self._columns[name][self._index]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return value

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


class _ColumnLists(Mapping[str, list[object]]):
    """Feature columns turned into Python lists on first read, each once: reasons read a few columns
    of every row, and a list read costs a tenth of a NumPy scalar's; unread columns are never copied."""

    def __init__(self, columns: Mapping[str, np.ndarray]) -> None:
        self._arrays = columns
        self._lists: dict[str, list[object]] = {}

    def __getitem__(self, name: str) -> list[object]:
        found = self._lists.get(name)
        if found is None:
            found = self._lists[name] = self._arrays[name].tolist()
        return found

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)


def records_from_columns(columns: Mapping[str, np.ndarray]) -> list[FeatureRow]:
    """Feature rows as read-only mappings over whole columns (numbers as floats, missing as None)."""
    n = len(next(iter(columns.values()))) if columns else 0
    lists = _ColumnLists(columns)
    return [FeatureRow(lists, i) for i in range(n)]


def rows_as_records(frame: pd.DataFrame) -> list[FeatureRow]:
    """Feature rows as read-only mappings (categoricals as strings, missing as None)."""
    numeric = [
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        for dtype in frame.dtypes
    ]
    columns: dict[str, np.ndarray] = {}
    positions = [i for i, is_number in enumerate(numeric) if is_number]
    if positions:  # every number column in one conversion: NaN reads as None, floats as floats
        block = frame.iloc[:, positions].to_numpy(dtype=np.float64, na_value=np.nan)
        for j, i in enumerate(positions):
            columns[str(frame.columns[i])] = block[:, j]
    for i, is_number in enumerate(numeric):
        if not is_number:
            name = str(frame.columns[i])
            columns[name] = frame.iloc[:, i].to_numpy(dtype=object, na_value=None)  # type: ignore[call-overload]  # stubs reject na_value=None
    if not columns:
        return [FeatureRow({}, i) for i in range(len(frame))]
    return records_from_columns(columns)
