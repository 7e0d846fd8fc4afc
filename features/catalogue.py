"""The feature catalogue: every model feature with its family, concept and a human label.

Explanations, model cards and docs are generated from it, so a feature that is not here does
not exist. Engineered features that come from one concept (e.g. the 7/30/90-day and all-time
counts of pricing-page visits, plus days since the last one) share a ``concept`` so their
contributions can be grouped into one reason a rep can read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from leadscore.features.contract import ActivityType, PageCategory

if TYPE_CHECKING:  # pandas is imported lazily at run time, for a light module
    import pandas as pd


class Family(StrEnum):
    """Who or what a feature describes: the lead's fit, its engagement, or the sales team's work."""

    FIT = "fit"
    ENGAGEMENT = "engagement"
    SALES = "sales"


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
    actionable: bool  # can a rep or marketer cause it (next-best-action candidates)


SIGNALS: tuple[Signal, ...] = (
    Signal(
        "page_pricing",
        ActivityType.PAGE_VIEW,
        PageCategory.PRICING,
        Family.ENGAGEMENT,
        "pricing-page visits",
        False,
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
    Signal("form_fill", ActivityType.FORM_FILL, None, Family.ENGAGEMENT, "form fills", False),
    Signal(
        "content_download", ActivityType.CONTENT_DOWNLOAD, None, Family.ENGAGEMENT, "content downloads", True
    ),
    Signal(
        "webinar_registered",
        ActivityType.WEBINAR_REGISTERED,
        None,
        Family.ENGAGEMENT,
        "webinar registrations",
        True,
    ),
    Signal(
        "webinar_attended", ActivityType.WEBINAR_ATTENDED, None, Family.ENGAGEMENT, "webinars attended", True
    ),
    Signal("email_open", ActivityType.EMAIL_OPEN, None, Family.ENGAGEMENT, "e-mail opens", False),
    Signal("email_click", ActivityType.EMAIL_CLICK, None, Family.ENGAGEMENT, "e-mail clicks", False),
    Signal("demo_request", ActivityType.DEMO_REQUEST, None, Family.ENGAGEMENT, "demo requests", True),
    Signal("sales_call", ActivityType.SALES_CALL, None, Family.SALES, "sales calls", True),
    Signal("sales_email", ActivityType.SALES_EMAIL, None, Family.SALES, "sales e-mails", True),
    Signal("sales_meeting", ActivityType.SALES_MEETING, None, Family.SALES, "sales meetings", True),
    Signal("unsubscribe", ActivityType.UNSUBSCRIBE, None, Family.ENGAGEMENT, "unsubscribes", False),
    Signal("bounce", ActivityType.BOUNCE, None, Family.ENGAGEMENT, "e-mail bounces", False),
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


def catalogue_frame() -> pd.DataFrame:
    """The catalogue as a table (for docs and the MLflow artifact)."""
    import pandas as pd

    return pd.DataFrame([f.as_dict() for f in FEATURE_CATALOGUE])
