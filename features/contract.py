"""The data contract: three tables any CRM or marketing-automation export can be mapped to.

* ``leads``: one row per lead, with demographic and firmographic fit columns and PII that is
  never a feature (only derived signals such as the e-mail domain type are kept).
* ``activities``: one row per timestamped engagement or sales event.
* ``outcomes``: one row per lead that became an opportunity.

All timestamps are naive UTC (time-zone aware input is converted to UTC, then made naive).
Categorical fit columns are open vocabularies: unknown values are accepted and scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from leadscore.features.vocabulary import ActivityType, Channel, PageCategory, Seniority

__all__ = ["ActivityType", "Channel", "PageCategory", "Seniority"]


SALES_TOUCH_TYPES: tuple[ActivityType, ...] = (
    ActivityType.SALES_CALL,
    ActivityType.SALES_EMAIL,
    ActivityType.SALES_MEETING,
)

# Columns of ``leads`` that identify a person: used only to derive signals, then dropped.
PII_COLUMNS: tuple[str, ...] = ("email", "first_name", "last_name", "phone")


def mask_personal_data(
    record: Mapping[str, Any], *, renames: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One lead record safe to store (sidecar, MLflow input example, a mapping's stored examples).

    Name and phone columns are dropped; an e-mail address keeps only its domain, which the model
    reads (its type), behind a placeholder mailbox. Keys are contract column names, or with
    ``renames`` an export's own names, of which only those renamed onto contract columns are read.
    """
    safe: dict[str, Any] = {}
    for key, value in record.items():
        column = key if renames is None else str(renames.get(key, ""))
        if column == "email":
            safe[key] = f"someone@{str(value).rsplit('@', 1)[-1]}" if value else value
        elif column not in PII_COLUMNS:
            safe[key] = value
    return safe


CATEGORICAL_FIT_COLUMNS: tuple[str, ...] = (
    "channel",
    "seniority",
    "department",
    "country",
    "industry",
    "company_type",
)
NUMERIC_FIT_COLUMNS: tuple[str, ...] = ("employee_count", "annual_revenue")


class LeadsSchema(pa.DataFrameModel):
    """One row per lead as exported from the CRM."""

    lead_id: Series[str] = pa.Field(unique=True, nullable=False, description="CRM lead id (unique).")
    created_at: Series[pd.Timestamp] = pa.Field(
        nullable=False, description="When the lead was created (naive UTC)."
    )
    channel: Series[str] = pa.Field(
        nullable=True, description="Source channel, e.g. web_form, paid_search, purchased_list."
    )
    job_title: Series[str] = pa.Field(nullable=True, description="Free-text job title.")
    seniority: Series[str] = pa.Field(nullable=True, description="c_level, vp, director, manager, ...")
    department: Series[str] = pa.Field(nullable=True, description="Department, e.g. marketing, it.")
    country: Series[str] = pa.Field(nullable=True, description="ISO 3166 alpha-2 country code.")
    industry: Series[str] = pa.Field(nullable=True, description="Company industry.")
    employee_count: Series[float] = pa.Field(
        ge=0, nullable=True, description="Number of employees at the company."
    )
    annual_revenue: Series[float] = pa.Field(
        ge=0, nullable=True, description="Company annual revenue in USD."
    )
    company_type: Series[str] = pa.Field(
        nullable=True, description="private, public, nonprofit, government, education."
    )
    email: Series[str] = pa.Field(nullable=True, description="PII: used only to derive the domain type.")
    first_name: Series[str] = pa.Field(nullable=True, description="PII: never a feature.")
    last_name: Series[str] = pa.Field(nullable=True, description="PII: never a feature.")
    phone: Series[str] = pa.Field(nullable=True, description="PII: never a feature.")

    class Config:
        coerce = True
        strict = False  # extra CRM columns are carried along and ignored


class ActivitiesSchema(pa.DataFrameModel):
    """One row per timestamped engagement event or sales touch."""

    lead_id: Series[str] = pa.Field(nullable=False, description="Lead the event belongs to.")
    timestamp: Series[pd.Timestamp] = pa.Field(nullable=False, description="When it happened (naive UTC).")
    activity_type: Series[str] = pa.Field(
        isin=[t.value for t in ActivityType], nullable=False, description="One of ActivityType."
    )
    page_category: Series[str] = pa.Field(
        nullable=True, description="For page_view: pricing, product, docs, blog, careers, other."
    )
    campaign: Series[str] = pa.Field(nullable=True, description="Optional campaign name.")

    class Config:
        coerce = True
        strict = False


class OutcomesSchema(pa.DataFrameModel):
    """One row per lead that became an opportunity."""

    lead_id: Series[str] = pa.Field(unique=True, nullable=False, description="Lead that converted.")
    converted_at: Series[pd.Timestamp] = pa.Field(
        nullable=False, description="When the opportunity was created (naive UTC)."
    )
    opportunity_amount: Series[float] = pa.Field(
        ge=0, nullable=True, description="Optional opportunity amount in USD."
    )
    won_at: Series[pd.Timestamp] = pa.Field(
        nullable=True,
        description="Optional: when the opportunity was won (closed-won, naive UTC); missing while not won.",
    )
    won_amount: Series[float] = pa.Field(
        ge=0, nullable=True, description="Optional: the won deal's amount (revenue); missing when not won."
    )

    class Config:
        coerce = True
        strict = False
