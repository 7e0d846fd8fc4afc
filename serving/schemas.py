"""Request and response models of the scoring API; their descriptions become the OpenAPI document.

Requests carry leads in the raw CRM format (the data contract's lead columns plus the lead's
activities, nested), the same format the MLflow pyfunc accepts. Timestamps are ISO 8601 text:
values with a UTC offset are converted to UTC, values without one are taken as UTC. Extra fields
(other CRM columns, ``first_name``, ``phone``, ...) are accepted and ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from leadscore.features.vocabulary import ActivityType, Tier

# Inputs are never echoed into errors or logs (they can hold personal data).
_INPUT = ConfigDict(
    extra="ignore", hide_input_in_errors=True, coerce_numbers_to_str=True, use_enum_values=True
)
_OUTPUT = ConfigDict(hide_input_in_errors=True)

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


class Activity(BaseModel):
    """One timestamped engagement event or sales touch of the lead."""

    model_config = _INPUT

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

    model_config = _INPUT

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

    model_config = _INPUT

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
    as_of: Timestamp | None = Field(
        default=None,
        description="Score this lead as of this time (ISO 8601); overrides the request's as_of.",
    )


class ScoreRequest(BaseModel):
    """Leads to score, all through one feature computation and one model call."""

    model_config = _INPUT

    leads: list[RawLead] = Field(
        min_length=1,
        description="Leads to score, in the raw CRM format. At most LEADSCORE_MAX_BATCH (default "
        "1000) per request, else 413.",
    )
    as_of: Timestamp | None = Field(
        default=None,
        description="Score as of this time (ISO 8601; default: now, UTC). Must not be in the future.",
    )
    explain: bool = Field(
        default=True,
        description="Return grade and reasons. false skips the explanation (faster for leads at or "
        "above the MQL threshold): grade, points and reasons are then null/empty; the tier is the same "
        "either way.",
    )
    top_k: int = Field(
        default=5, ge=0, le=50, strict=True, description="Reasons per direction (positive, negative)."
    )


RecordValue = str | float | int | bool | None
#: A record field: a value, or (event-export models) the lead's activities as the export's own rows.
RecordField = RecordValue | list[dict[str, RecordValue]]


class RecordsRequest(BaseModel):
    """Leads as rows of the CRM export the model was trained on, with the export's column names.

    Flat exports (``leadscore build-features --mapping``): send each lead as the export row, e.g.
    {"Prospect ID": "...", "Lead Source": "Reference", "TotalVisits": 5,
    "Total Time Spent on Website": 1532}. Event exports (a mapping with leads and activities files,
    e.g. examples/salesforce.yaml): send the lead row with its activities nested as the activities
    file's own rows, e.g. {"Id": "00Q1", "CreatedDate": "2024-03-01T10:00:00Z", "activities":
    [{"ActivityDate": "2024-03-02T09:00:00Z", "Type": "Call"}]}, and optionally "as_of". Columns the
    mapping marks PII, leaky or ignore are ignored; missing feature columns are treated as missing
    values; unknown categories are accepted and scored.
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    records: list[dict[str, RecordField]] = Field(
        min_length=1,
        max_length=100_000,
        description="Export rows, one per lead (limit: LEADSCORE_MAX_BATCH).",
    )
    explain: bool = Field(default=True, description="Return grade, fit/engagement points and reasons.")
    top_k: int = Field(
        default=5, ge=0, le=50, strict=True, description="Reasons per direction (positive, negative)."
    )


class ExplainRequest(BaseModel):
    """One lead to explain in full."""

    model_config = _INPUT

    lead: RawLead = Field(description="The lead, in the raw CRM format.")
    as_of: Timestamp | None = Field(
        default=None, description="Explain as of this time (ISO 8601; default: now, UTC)."
    )


class ReloadRequest(BaseModel):
    """Nothing to send: the service checks the champion alias (or the pinned version)."""

    model_config = _INPUT


class Reason(BaseModel):
    """One grouped factor behind a score, in a sales rep's words."""

    model_config = _OUTPUT

    concept: str = Field(description="Machine name of the factor, e.g. page_pricing, seniority.")
    sentence: str = Field(description="The factor in plain words, from the lead's own values.")
    impact: float = Field(description="Signed effect on the 0-100 score, in points.")
    family: str = Field(description="fit (who the lead is), engagement (what they did) or sales.")


class LeadScore(BaseModel):
    """The score of one lead."""

    model_config = _OUTPUT

    lead_id: str = Field(description="The lead's id, as sent.")
    probability: float | None = Field(
        description="Calibrated probability that the lead becomes an opportunity within the model's "
        "horizon (model_horizon_days); null when the lead is not open (see status)."
    )
    score: float | None = Field(description="100 x probability, rounded to 0.1; null when not open.")
    status: str = Field(
        default="open",
        description="open (scored); converted, disqualified or not_yet_created leads are not scored.",
    )
    status_note: str = Field(
        default="",
        description="Why a lead that is not open has no score, for the rep, e.g. 'Converted to an "
        "opportunity on 2024-03-02: work the opportunity; no lead score.'; empty when open.",
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
    tier: Tier | None = Field(
        description="sales_ready (call now), marketing_qualified (warm), nurture, not_a_fit (below the "
        "MQL threshold with fit grade D, not engaged) or review_outside_profile (fit grade D but highly "
        "engaged, or asked for a demo: for a person to review); null when not open."
    )
    follow_up: str | None = Field(
        default=None,
        description="Contact advice from the tier and the sales touches so far (leads usually need 5-10): "
        "e.g. 'Sales-ready and not contacted yet: reach out today'; null when there is nothing to add.",
    )
    grade: str | None = Field(
        description="Fit letter A (best) to D and engagement digit 1 (most engaged) to 4, e.g. B2; "
        "null when explain=false."
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
    as_of: str = Field(description="The time the lead was scored as of (ISO 8601, UTC).")
    model_name: str = Field(description="Registered MLflow model that scored the lead.")
    model_version: str = Field(description="Its registered version.")


class ScoreResponse(BaseModel):
    """Scores, in the order of the request's leads."""

    model_config = _OUTPUT

    model_name: str = Field(description="Registered MLflow model name.")
    model_version: str = Field(description="Registered model version that produced every score here.")
    model_horizon_days: int | None = Field(
        description="Days ahead the probability refers to; null when the export declared no horizon."
    )
    results: list[LeadScore] = Field(description="One entry per lead, in request order.")


class NextBestAction(BaseModel):
    """A rep action the model associates with a higher score for leads like this one.

    The model scores the lead again with one more such activity now: an association learned from
    past leads, not a measured effect of the action.
    """

    model_config = _OUTPUT

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


class ExplainResponse(BaseModel):
    """Full explanation of one lead."""

    model_config = _OUTPUT

    score: LeadScore = Field(description="The lead's score with its top reasons (top 5 each way).")
    contributions: list[Reason] = Field(
        description="Every grouped factor, strongest first; impacts add up to score - base_score."
    )
    next_best_actions: list[NextBestAction] = Field(
        description="Actionable activities, biggest uplift first."
    )


class ReloadAccepted(BaseModel):
    """A reload was asked for; every worker checks in the background (202)."""

    model_config = _OUTPUT

    accepted: bool = Field(description="Always true: the check runs in the background.")
    model_name: str = Field(description="Registered model name.")
    serving_version: str | None = Field(description="Version this worker serves now (GET /readyz later).")
    pinned: bool = Field(description="True when LEADSCORE_MODEL_VERSION pins the version (no alias check).")
    store_reachable: bool | None = Field(
        description="Whether the tracking store answered the last check (null: not checked yet)."
    )


class ReadyStatus(BaseModel):
    """GET /readyz: 200 while a model is serving (even with the store down), else 503."""

    model_config = _OUTPUT

    ready: bool = Field(description="A model is loaded and scoring.")
    model_name: str = Field(description="Registered model name.")
    model_version: str | None = Field(description="The version this worker scores with.")
    model_loaded_at: float | None = Field(description="When this worker loaded it (Unix time).")
    pinned: bool = Field(description="True when LEADSCORE_MODEL_VERSION pins the version.")
    store_reachable: bool | None = Field(description="Whether the tracking store answered the last check.")
    store_checked_at: float | None = Field(description="When it was last checked (Unix time).")
    problem: str | None = Field(description="Why the last check or load failed, if it did.")


class ReloadResponse(BaseModel):
    """Outcome of a reload check."""

    model_config = _OUTPUT

    reloaded: bool = Field(description="Whether a different model version is now serving.")
    model_name: str = Field(description="Registered model name.")
    model_version: str = Field(description="Version serving after the check.")
    previous_version: str = Field(description="Version serving before the check.")
    pinned: bool = Field(description="True when LEADSCORE_MODEL_VERSION pins the version (no alias check).")


class Problem(BaseModel):
    """One problem with a request: which field of which lead, and what is wrong."""

    field: str = Field(description="Path of the bad field, e.g. leads[3].activities[0].timestamp.")
    problem: str = Field(description="What is wrong, in plain words.")
    lead_index: int | None = Field(default=None, description="0-based position of the lead in the request.")
    lead_id: str | None = Field(default=None, description="The lead's id, when it could be read.")


class ErrorResponse(BaseModel):
    """Body of every 4xx/5xx answer; never a stack trace."""

    error: str = Field(
        description="unauthorized, malformed_json, unsupported_media_type, payload_too_large, "
        "invalid_request, not_found, method_not_allowed, request_timeout, too_many_requests, "
        "unavailable, timeout or internal_error."
    )
    message: str = Field(description="What happened and how to fix it.")
    problems: list[Problem] = Field(default_factory=list, description="Every problem found (422).")
