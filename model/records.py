"""The model's typed doors: the raw lead a CRM sends in, and the scored lead it gets back.

:class:`RawLead` (with :class:`Activity` and :class:`EngagementCount`) is the one description of a
lead in leadscore's own layout; :func:`leadscore.model.raw_leads.prepare_leads` is its one parser,
used by the service and the MLflow pyfunc alike. :class:`LeadScore` is what the model says of one
lead and :class:`ScoredLead` the record delivered (plus when and by which model): the API response,
the batch Parquet schema (:func:`scored_lead_arrow_schema`), the Spark schema, the pyfunc's output
schema and the rep's cards are all derived from it, never kept by hand. Light module: pydantic only.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from types import NoneType, UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from leadscore.features.vocabulary import ActivityType, Tier

if TYPE_CHECKING:
    import pyarrow as pa

# Inputs are never echoed into errors or logs (they can hold personal data).
INPUT_CONFIG = ConfigDict(
    extra="ignore", hide_input_in_errors=True, coerce_numbers_to_str=True, use_enum_values=True
)
OUTPUT_CONFIG = ConfigDict(hide_input_in_errors=True)

Timestamp = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        json_schema_extra={"format": "date-time"},
        examples=["2025-11-20T10:31:46Z"],
    ),
]
Text = Annotated[str | None, Field(max_length=1000)]
FLOAT32_MAX = 3.4e38  # features are float32: larger values cannot be represented
# strict: true/false and "12" are not numbers (integers are)
NonNegative = Annotated[float | None, Field(ge=0, le=FLOAT32_MAX, allow_inf_nan=False, strict=True)]


def _lead_id_as_sent(value: Any) -> Any:
    """Lead ids are text; a JSON integer is kept digit for digit, anything else numeric is refused.

    ``1e3`` or ``12.0`` would come back as another text ("1000.0") than the CRM holds.
    """
    if isinstance(value, bool | float):
        raise ValueError("send the lead id as a JSON string (a number like 1e3 or 12.0 would be rewritten)")
    if isinstance(value, int):
        return str(value)
    return value


LeadId = Annotated[str, BeforeValidator(_lead_id_as_sent), Field(strict=True)]


def _blank_as_missing(value: Any) -> Any:
    """CRM exports write "" (or spaces) for "no such time": read it as missing, not as a bad timestamp."""
    return None if isinstance(value, str) and not value.strip() else value


#: An optional time where a blank value means "none" (not converted, not disqualified, score as of now).
OptionalTimestamp = Annotated[Timestamp | None, BeforeValidator(_blank_as_missing)]


class Activity(BaseModel):
    """One timestamped engagement event or sales touch of the lead."""

    model_config = INPUT_CONFIG

    timestamp: Timestamp = Field(
        description="When it happened (ISO 8601). Must not be in the future nor before the lead's "
        "created_at. Activities after the scoring time (as_of) are ignored, never counted."
    )
    activity_type: ActivityType = Field(description="What happened: one of the contract's activity types.")
    page_category: Text = Field(
        default=None,
        description="For page_view: pricing, product, docs, blog, careers or other; other values count "
        "as other.",
    )
    campaign: Text = Field(default=None, description="Optional campaign name (not used for scoring).")


class EngagementCount(BaseModel):
    """Pre-aggregated engagement, for CRMs that keep counts instead of events.

    The count is expanded into ``count`` events spread evenly from ``first_at`` (default: the
    lead's created_at) to ``last_at``; window counts (7/30/90 days) are therefore an
    approximation when the real events were not evenly spread. Send events in ``activities``
    where you have them; both can be combined.
    """

    model_config = INPUT_CONFIG

    activity_type: ActivityType = Field(description="Which activity was counted.")
    page_category: Text = Field(default=None, description="For page_view counts: the page category.")
    count: int = Field(
        ge=0,
        le=10_000,
        strict=True,
        description="How many such activities (0 to 10,000). Each becomes a synthetic event: they count "
        "towards LEADSCORE_MAX_EVENTS_PER_LEAD and LEADSCORE_MAX_EVENTS_PER_REQUEST (413 above).",
    )
    last_at: Timestamp = Field(description="When the most recent one happened (ISO 8601).")
    first_at: Timestamp | None = Field(
        default=None, description="When the first one happened (ISO 8601); default: created_at."
    )


class RawLead(BaseModel):
    """A lead as exported from the CRM, with its activities nested."""

    model_config = INPUT_CONFIG

    lead_id: LeadId = Field(
        min_length=1,
        max_length=200,
        description="CRM lead id, unique within the request: a string (a JSON integer is taken digit "
        "for digit).",
    )
    created_at: Timestamp = Field(description="When the lead was created (ISO 8601); not in the future.")
    channel: Text = Field(
        default=None,
        description="Source channel, e.g. web_form, paid_search, referral. Unknown values are "
        "accepted and scored like rare ones.",
    )
    job_title: Text = Field(default=None, description="Free-text job title.")
    seniority: Text = Field(
        default=None, description="c_level, vp, director, manager, individual_contributor, ..."
    )
    department: Text = Field(default=None, description="Department, e.g. marketing, it, sales.")
    country: Text = Field(default=None, description="ISO 3166 alpha-2 country code.")
    industry: Text = Field(default=None, description="Company industry.")
    company_type: Text = Field(default=None, description="private, public, nonprofit, government, education.")
    employee_count: NonNegative = Field(
        default=None, description="Employees at the company (>= 0, finite, at most 3.4e38)."
    )
    annual_revenue: NonNegative = Field(
        default=None, description="Company annual revenue in USD (>= 0, finite, at most 3.4e38)."
    )
    email: Text = Field(
        default=None,
        description="Personal data: used only to derive the e-mail domain type (company, free, "
        "education), never stored or logged.",
    )
    activities: list[Activity] = Field(
        default_factory=list,
        max_length=100_000,
        description="The lead's activities, any order. With engagement_counts, at most "
        "LEADSCORE_MAX_EVENTS_PER_LEAD (default 10,000) events per lead and "
        "LEADSCORE_MAX_EVENTS_PER_REQUEST (default 200,000) per request, else 413 naming the field.",
    )
    engagement_counts: list[EngagementCount] = Field(
        default_factory=list,
        max_length=100,
        description="Optional pre-aggregated engagement (see EngagementCount), added to activities.",
    )
    as_of: OptionalTimestamp = Field(
        default=None,
        description="Score this lead as of this time (ISO 8601); overrides the request's as_of.",
    )
    converted_at: OptionalTimestamp = Field(
        default=None,
        description="When the lead became an opportunity (ISO 8601), if it has: at or before as_of, "
        "the lead gets status converted and no score.",
    )
    disqualified_at: OptionalTimestamp = Field(
        default=None,
        description="When the lead was disqualified (ISO 8601), if it was: at or before as_of, the "
        "lead gets status disqualified and no score.",
    )


#: Raw-lead fields that close a lead: converted or disqualified leads get a status, not a score.
STATE_FIELDS: tuple[str, ...] = ("converted_at", "disqualified_at")


class Problem(BaseModel):
    """One problem with a request: which field of which lead, and what is wrong."""

    field: str = Field(description="Path of the bad field, e.g. leads[3].activities[0].timestamp.")
    problem: str = Field(description="What is wrong, in plain words.")
    lead_index: int | None = Field(default=None, description="0-based position of the lead in the request.")
    lead_id: str | None = Field(default=None, description="The lead's id, when it could be read.")


MAX_PROBLEMS = 200
"""Problems reported per request; the rest are counted in one closing problem."""


class RequestInvalid(ValueError):
    """The leads break the contract; ``problems`` names every bad field and lead."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} problem(s) in the request")


class Reason(BaseModel):
    """One grouped factor behind a score, in a sales rep's words."""

    model_config = OUTPUT_CONFIG

    concept: str = Field(description="Machine name of the factor, e.g. page_pricing, seniority.")
    sentence: str = Field(description="The factor in plain words, from the lead's own values.")
    impact: float = Field(description="Signed effect on the 0-100 score, in points.")
    family: str = Field(description="fit (who the lead is), engagement (what they did) or sales.")


class LeadScore(BaseModel):
    """The score of one lead."""

    model_config = OUTPUT_CONFIG

    lead_id: str = Field(description="The lead's id, as sent.")
    status: str = Field(
        default="open",
        description="open (scored); converted or disqualified leads (converted_at / disqualified_at at or "
        "before as_of) are not scored; batch files also mark leads created after as_of not_yet_created.",
    )
    status_note: str = Field(
        default="",
        description="Why a lead that is not open has no score, for the rep, e.g. 'Converted to an "
        "opportunity on 2024-03-02: work the opportunity; no lead score.'; empty when open.",
    )
    probability: float | None = Field(
        description="Calibrated probability that the lead becomes an opportunity within the model's "
        "horizon (model_horizon_days); null when the lead is not open (see status)."
    )
    probability_low: float | None = Field(
        default=None,
        description="Lower end of the 90% range of the conversion rate of leads scored like this one "
        "(from the calibration set); null for models without one.",
    )
    probability_high: float | None = Field(default=None, description="Upper end of that range.")
    low_confidence: bool | None = Field(
        default=False,
        description="True where few calibration leads back the probability: read it as a range "
        "(null when not open).",
    )
    score: float | None = Field(description="100 x probability, rounded to 0.1; null when not open.")
    tier: Tier | None = Field(
        description="sales_ready (call now), marketing_qualified (warm), nurture, not_a_fit (below the "
        "MQL threshold with fit grade D, not engaged) or review_outside_profile (fit grade D but highly "
        "engaged, or asked for a demo: for a person to review); null when not open."
    )
    grade: str | None = Field(
        description="Fit letter A (best) to D and engagement digit 1 (most engaged) to 4, e.g. B2; "
        "null when explain=false."
    )
    follow_up: str | None = Field(
        default=None,
        description="Contact advice consistent with the tier: for a lead sales has touched, against the "
        "range of touches the export's past opportunities had (learned at training; the 5-10 rule of thumb "
        "when too few); for an uncontacted lead with a recent hand-raise, what the learned effect of a "
        "follow-up says ('reach out now' only where it is positive with confidence, 'Hold off contacting' "
        "where negative, else 'no evidence that contacting now helps', with its interval); null without "
        "sales activity data.",
    )
    age_note: str | None = Field(
        default=None,
        description="Set when the lead is older than any lead the model learnt from (its oldest training "
        "snapshot): the score then reads the lead as that old and the range reaches down to 0%; null "
        "otherwise (and when not open).",
    )
    fit_points: float | None = Field(description="Score points from fit factors (null if explain=false).")
    engagement_points: float | None = Field(
        description="Score points from engagement and sales factors (null if explain=false)."
    )
    context_points: float | None = Field(
        default=None,
        description="Score points from market conditions shared by every lead at that time (context "
        "factors: no part of the grade); null if explain=false.",
    )
    base_score: float | None = Field(description="Score of an average lead; points add up from it.")
    reasons_positive: list[Reason] = Field(description="Strongest factors raising the score, top_k at most.")
    reasons_negative: list[Reason] = Field(description="Strongest factors lowering the score, top_k at most.")


class ScoredLead(LeadScore):
    """The score of one lead as delivered: what the model says, when, and which model said it."""

    as_of: str = Field(
        description="The time the lead was scored as of (ISO 8601, UTC).",
        json_schema_extra={"format": "date-time"},
    )
    model_name: str = Field(description="Registered MLflow model that scored the lead.")
    model_version: str = Field(description="Its registered version.")


class NextBestAction(BaseModel):
    """A rep action the model associates with a higher score for leads like this one.

    The model scores the lead again with one more such activity now: an association learned from
    past leads, not a measured effect of the action.
    """

    model_config = OUTPUT_CONFIG

    action: str = Field(
        description="The rep-controllable activity type varied, e.g. sales_call (never what only the "
        "lead can do, such as a demo request)."
    )
    label: str = Field(description="The rep's action in plain words, e.g. 'Call the lead'.")
    probability_after: float = Field(
        description="The model's probability for this lead with one more such activity now."
    )
    uplift: float = Field(
        description="probability_after - probability: how much higher the model scores leads like "
        "this with one more of it (an association, not an effect)."
    )
    evidence: str = Field(
        default="",
        description="The association in words, e.g. 'The model scores leads like this higher with one "
        "more sales call: 31% vs 24% now (an association, not a measured effect).'",
    )
    kind: Literal["association"] = Field(
        default="association",
        description="Always 'association': what the model learned from past leads, not a causal effect.",
    )


def _arrow_type(annotation: Any, *, field_name: str, date_time: bool) -> pa.DataType:
    import pyarrow as pa

    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        (inner,) = [arg for arg in get_args(annotation) if arg is not NoneType]
        return _arrow_type(inner, field_name=field_name, date_time=date_time)
    if origin is list:
        (item,) = get_args(annotation)
        return pa.list_(_arrow_type(item, field_name=field_name, date_time=False))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct(
            [
                pa.field(name, _arrow_type(info.annotation, field_name=name, date_time=False))
                for name, info in annotation.model_fields.items()
            ]
        )
    if annotation is bool:
        return pa.bool_()
    if annotation is float:
        return pa.float64()
    if annotation is int:
        return pa.int64()
    if annotation is str or (isinstance(annotation, type) and issubclass(annotation, str)):
        return pa.timestamp("us") if date_time else pa.string()
    raise TypeError(f"no Arrow type for {field_name}: {annotation!r}")


#: The delivered record's columns, in order (batch Parquet files, Spark): who and when first, as
#: batch files have always had them.
SCORED_LEAD_COLUMNS: tuple[str, ...] = (
    "lead_id",
    "as_of",
    *(name for name in ScoredLead.model_fields if name not in ("lead_id", "as_of")),
)


@cache
def scored_lead_arrow_schema() -> pa.Schema:
    """The Arrow schema of :class:`ScoredLead` (batch Parquet files): reasons as lists of structs,
    ``as_of`` a timestamp (ISO 8601 text in the API)."""
    import pyarrow as pa

    fields = []
    for name in SCORED_LEAD_COLUMNS:
        info = ScoredLead.model_fields[name]
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        date_time = extra.get("format") == "date-time"
        fields.append(pa.field(name, _arrow_type(info.annotation, field_name=name, date_time=date_time)))
    return pa.schema(fields)


def _spark_type(arrow_type: pa.DataType) -> str:
    import pyarrow as pa

    if pa.types.is_list(arrow_type):
        return f"array<{_spark_type(arrow_type.value_type)}>"
    if pa.types.is_struct(arrow_type):
        inner = ",".join(f"{f.name}:{_spark_type(f.type)}" for f in arrow_type)
        return f"struct<{inner}>"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp_ntz"
    names = {pa.bool_(): "boolean", pa.float64(): "double", pa.int64(): "bigint", pa.string(): "string"}
    return names[arrow_type]


def scored_lead_spark_ddl() -> str:
    """The Spark DDL schema of :class:`ScoredLead` (``applyInPandas`` output)."""
    return ", ".join(f"{f.name} {_spark_type(f.type)}" for f in scored_lead_arrow_schema())
