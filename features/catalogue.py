"""The feature catalogue: every model feature with its family, concept and a human label.

Explanations, model cards and docs are generated from it, so a feature that is not here does
not exist. Engineered features that come from one concept (e.g. the 7/30/90-day and all-time
counts of pricing-page visits, plus days since the last one) share a ``concept`` so their
contributions can be grouped into one reason a rep can read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING

from leadscore.features.contract import ActivityType, PageCategory
from leadscore.features.wording import singular_of

if TYPE_CHECKING:  # pandas is imported lazily at run time, for a light module
    import pandas as pd


class Family(StrEnum):
    """Who or what a feature describes: the lead's fit, its engagement, the sales team's work, or the context.

    ``context`` holds values every lead shares at a time (market indices, the calendar): they can
    move the probability, but say nothing about this lead, so they stay out of the fit part, the
    grade and the per-lead reasons (cards group them as "market conditions").
    """

    FIT = "fit"
    ENGAGEMENT = "engagement"
    SALES = "sales"
    CONTEXT = "context"


class Direction(IntEnum):
    """The known direction of a signal: more of it never lowers (+1) or never raises (-1) the score."""

    DECREASING = -1
    UNKNOWN = 0
    INCREASING = 1


class FeatureKind(StrEnum):
    CATEGORICAL = "categorical"
    NUMERIC = "numeric"
    WINDOW_COUNT = "window_count"
    TOTAL_COUNT = "total_count"
    DAYS_SINCE = "days_since"


@dataclass(frozen=True)
class Signal:
    """One kind of activity the pipeline counts (an activity type, page views split by page)."""

    name: str
    activity_type: ActivityType
    page_category: PageCategory | None
    family: Family
    label: str  # plural noun phrase: "pricing-page visits"
    actionable: bool  # can a rep or marketer cause it
    singular: str = ""  # "pricing-page visit" (default: the label without its final s)
    rep_action: str | None = None  # what a rep does to cause it ("Call the lead"); None: the lead must act
    direction: Direction = Direction.UNKNOWN  # known effect of more of it (monotone constraint)

    @property
    def one(self) -> str:
        """The singular noun phrase."""
        return self.singular or singular_of(self.label)

    @property
    def rep_controllable(self) -> bool:
        """A rep can do it (or directly invite it): a next-best-action candidate."""
        return self.rep_action is not None


SIGNALS: tuple[Signal, ...] = (
    Signal(
        "page_pricing",
        ActivityType.PAGE_VIEW,
        PageCategory.PRICING,
        Family.ENGAGEMENT,
        "pricing-page visits",
        False,
        direction=Direction.INCREASING,
    ),
    Signal(
        "page_product",
        ActivityType.PAGE_VIEW,
        PageCategory.PRODUCT,
        Family.ENGAGEMENT,
        "product-page visits",
        False,
    ),
    Signal(
        "page_docs",
        ActivityType.PAGE_VIEW,
        PageCategory.DOCS,
        Family.ENGAGEMENT,
        "documentation visits",
        False,
        singular="documentation visit",
    ),
    Signal("page_blog", ActivityType.PAGE_VIEW, PageCategory.BLOG, Family.ENGAGEMENT, "blog visits", False),
    Signal(
        "page_careers",
        ActivityType.PAGE_VIEW,
        PageCategory.CAREERS,
        Family.ENGAGEMENT,
        "careers-page visits",
        False,
    ),
    Signal(
        "page_other",
        ActivityType.PAGE_VIEW,
        PageCategory.OTHER,
        Family.ENGAGEMENT,
        "other page visits",
        False,
    ),
    Signal(
        "form_fill",
        ActivityType.FORM_FILL,
        None,
        Family.ENGAGEMENT,
        "form fills",
        False,
        direction=Direction.INCREASING,
    ),
    Signal(
        "content_download",
        ActivityType.CONTENT_DOWNLOAD,
        None,
        Family.ENGAGEMENT,
        "content downloads",
        True,
        rep_action="Send relevant content",
    ),
    Signal(
        "webinar_registered",
        ActivityType.WEBINAR_REGISTERED,
        None,
        Family.ENGAGEMENT,
        "webinar registrations",
        True,
        rep_action="Invite to a webinar",
    ),
    Signal(
        "webinar_attended",
        ActivityType.WEBINAR_ATTENDED,
        None,
        Family.ENGAGEMENT,
        "webinars attended",
        True,
        singular="webinar attended",
        direction=Direction.INCREASING,
    ),
    Signal("email_open", ActivityType.EMAIL_OPEN, None, Family.ENGAGEMENT, "e-mail opens", False),
    Signal("email_click", ActivityType.EMAIL_CLICK, None, Family.ENGAGEMENT, "e-mail clicks", False),
    Signal(
        "demo_request",
        ActivityType.DEMO_REQUEST,
        None,
        Family.ENGAGEMENT,
        "demo requests",
        True,
        direction=Direction.INCREASING,
    ),
    Signal(
        "sales_call",
        ActivityType.SALES_CALL,
        None,
        Family.SALES,
        "sales calls",
        True,
        rep_action="Call the lead",
    ),
    Signal(
        "sales_email",
        ActivityType.SALES_EMAIL,
        None,
        Family.SALES,
        "sales e-mails",
        True,
        rep_action="Send a personal e-mail",
    ),
    Signal(
        "sales_meeting",
        ActivityType.SALES_MEETING,
        None,
        Family.SALES,
        "sales meetings",
        True,
        rep_action="Book a meeting",
    ),
    Signal(
        "unsubscribe",
        ActivityType.UNSUBSCRIBE,
        None,
        Family.ENGAGEMENT,
        "unsubscribes",
        False,
        direction=Direction.DECREASING,
    ),
    Signal(
        "bounce",
        ActivityType.BOUNCE,
        None,
        Family.ENGAGEMENT,
        "e-mail bounces",
        False,
        singular="e-mail bounce",
        direction=Direction.DECREASING,
    ),
)
SIGNAL_BY_NAME: dict[str, Signal] = {s.name: s for s in SIGNALS}
WINDOWS_DAYS: tuple[int, ...] = (7, 30, 90)


@dataclass(frozen=True)
class FeatureSpec:
    """A model feature: its column name, family, the concept it belongs to, and labels."""

    name: str
    family: Family
    kind: FeatureKind
    concept: str
    concept_label: str  # what the grouped reason is about: "Pricing page visits"
    label: str  # this feature alone: "Pricing-page visits in the last 7 days"
    window_days: int | None = None
    signal: str | None = None
    actionable: bool = False
    monotone: Direction = Direction.UNKNOWN  # more of it never lowers (+1) / raises (-1) the score

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "family": self.family.value,
            "kind": self.kind.value,
            "concept": self.concept,
            "concept_label": self.concept_label,
            "label": self.label,
            "window_days": self.window_days,
            "signal": self.signal,
            "actionable": self.actionable,
            "monotone": int(self.monotone),
        }


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def window_count_name(signal: str, days: int) -> str:
    return f"{signal}_{days}d"


def total_count_name(signal: str) -> str:
    return f"{signal}_total"


def days_since_name(signal: str) -> str:
    return f"days_since_{signal}"


FIT_CATEGORICAL: tuple[tuple[str, str], ...] = (
    ("channel", "Lead source channel"),
    ("seniority", "Seniority"),
    ("department", "Department"),
    ("country", "Country"),
    ("industry", "Industry"),
    ("company_type", "Company type"),
    ("email_domain_type", "E-mail domain type"),
)
FIT_NUMERIC: tuple[tuple[str, str], ...] = (
    ("employee_count", "Company size (employees)"),
    ("annual_revenue", "Company annual revenue"),
)
TIMING_NUMERIC: tuple[tuple[str, str, Family], ...] = (
    ("lead_age_days", "Days since the lead was created", Family.ENGAGEMENT),
    ("days_since_last_activity", "Days since the lead's last activity", Family.ENGAGEMENT),
    ("engagement_events_30d", "Engagement events in the last 30 days", Family.ENGAGEMENT),
    ("engagement_trend_30d", "Engagement trend (last 30 days vs the 60 before)", Family.ENGAGEMENT),
    ("sales_touches_total", "Sales touches so far", Family.SALES),
    ("days_since_last_sales_touch", "Days since the last sales touch", Family.SALES),
)


def _build_catalogue(windows: tuple[int, ...]) -> tuple[FeatureSpec, ...]:
    specs: list[FeatureSpec] = []
    for name, label in FIT_CATEGORICAL:
        specs.append(FeatureSpec(name, Family.FIT, FeatureKind.CATEGORICAL, name, label, label))
    for name, label in FIT_NUMERIC:
        specs.append(FeatureSpec(name, Family.FIT, FeatureKind.NUMERIC, name, label, label))
    for name, label, family in TIMING_NUMERIC:
        specs.append(FeatureSpec(name, family, FeatureKind.NUMERIC, name, label, label))
    for signal in SIGNALS:
        concept_label = _capitalised(signal.label)
        for days in windows:
            specs.append(
                FeatureSpec(
                    window_count_name(signal.name, days),
                    signal.family,
                    FeatureKind.WINDOW_COUNT,
                    signal.name,
                    concept_label,
                    f"{concept_label} in the last {days} days",
                    window_days=days,
                    signal=signal.name,
                    actionable=signal.actionable,
                    monotone=signal.direction,
                )
            )
        specs.append(
            FeatureSpec(
                total_count_name(signal.name),
                signal.family,
                FeatureKind.TOTAL_COUNT,
                signal.name,
                concept_label,
                f"{concept_label} so far",
                signal=signal.name,
                actionable=signal.actionable,
                monotone=signal.direction,
            )
        )
        specs.append(
            FeatureSpec(
                days_since_name(signal.name),
                signal.family,
                FeatureKind.DAYS_SINCE,
                signal.name,
                concept_label,
                f"Days since the last of the {signal.label}",
                signal=signal.name,
                actionable=signal.actionable,
            )
        )
    return tuple(specs)


FEATURE_CATALOGUE: tuple[FeatureSpec, ...] = _build_catalogue(WINDOWS_DAYS)
FEATURES_BY_NAME: dict[str, FeatureSpec] = {f.name: f for f in FEATURE_CATALOGUE}
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURE_CATALOGUE)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(
    f.name for f in FEATURE_CATALOGUE if f.kind is FeatureKind.CATEGORICAL
)


def monotone_constraints(
    feature_names: tuple[str, ...] | list[str], catalogue: tuple[FeatureSpec, ...] = FEATURE_CATALOGUE
) -> list[int]:
    """LightGBM's ``monotone_constraints`` for ``feature_names``, from each entry's ``monotone``.

    Features the catalogue does not know (or has no direction for) are unconstrained (0).
    """
    by_name = {f.name: f for f in catalogue}
    return [int(by_name[name].monotone) if name in by_name else 0 for name in feature_names]


def catalogue_frame() -> pd.DataFrame:
    """The catalogue as a table (for docs and the MLflow artifact)."""
    import pandas as pd

    return pd.DataFrame([f.as_dict() for f in FEATURE_CATALOGUE])
