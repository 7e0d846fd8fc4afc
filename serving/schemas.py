"""Request and response models of the scoring API; their descriptions become the OpenAPI document.

Requests carry leads in the raw CRM format (the data contract's lead columns plus the lead's
activities, nested), the same format the MLflow pyfunc accepts. Timestamps are ISO 8601 text:
values with a UTC offset are converted to UTC, values without one are taken as UTC. Extra fields
(other CRM columns, ``first_name``, ``phone``, ...) are accepted and ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from leadscore.model.records import (
    INPUT_CONFIG,
    OUTPUT_CONFIG,
    NextBestAction,
    Problem,
    RawLead,
    Reason,
    ScoredLead,
    Timestamp,
)


class ScoreRequest(BaseModel):
    """Leads to score, all through one feature computation and one model call."""

    model_config = INPUT_CONFIG

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

    model_config = INPUT_CONFIG

    lead: RawLead = Field(description="The lead, in the raw CRM format.")
    as_of: Timestamp | None = Field(
        default=None, description="Explain as of this time (ISO 8601; default: now, UTC)."
    )


class ReloadRequest(BaseModel):
    """Nothing to send: the service checks the champion alias (or the pinned version)."""

    model_config = INPUT_CONFIG


class ScoreResponse(BaseModel):
    """Scores, in the order of the request's leads."""

    model_config = OUTPUT_CONFIG

    model_name: str = Field(description="Registered MLflow model name.")
    model_version: str = Field(description="Registered model version that produced every score here.")
    model_horizon_days: int | None = Field(
        description="Days ahead the probability refers to; null when the export declared no horizon."
    )
    results: list[ScoredLead] = Field(description="One entry per lead, in request order.")


class ExplainResponse(BaseModel):
    """Full explanation of one lead."""

    model_config = OUTPUT_CONFIG

    score: ScoredLead = Field(description="The lead's score with its top reasons (top 5 each way).")
    contributions: list[Reason] = Field(
        description="Every grouped factor, strongest first; impacts add up to score - base_score."
    )
    next_best_actions: list[NextBestAction] = Field(
        description="Actionable activities, biggest uplift first."
    )


class ReloadAccepted(BaseModel):
    """A reload was asked for; every worker checks in the background (202)."""

    model_config = OUTPUT_CONFIG

    accepted: bool = Field(description="Always true: the check runs in the background.")
    model_name: str = Field(description="Registered model name.")
    serving_version: str | None = Field(description="Version this worker serves now (GET /readyz later).")
    pinned: bool = Field(description="True when LEADSCORE_MODEL_VERSION pins the version (no alias check).")
    store_reachable: bool | None = Field(
        description="Whether the tracking store answered the last check (null: not checked yet)."
    )


class ReadyStatus(BaseModel):
    """GET /readyz: 200 while a model is serving (even with the store down), else 503."""

    model_config = OUTPUT_CONFIG

    ready: bool = Field(description="A model is loaded and scoring.")
    model_name: str = Field(description="Registered model name.")
    model_version: str | None = Field(description="The version this worker scores with.")
    model_loaded_at: float | None = Field(description="When this worker loaded it (Unix time).")
    pinned: bool = Field(description="True when LEADSCORE_MODEL_VERSION pins the version.")
    store_reachable: bool | None = Field(description="Whether the tracking store answered the last check.")
    store_checked_at: float | None = Field(description="When it was last checked (Unix time).")
    problem: str | None = Field(description="Why the last check or load failed, if it did.")
    batch_process: Literal["off", "not_started", "starting", "ready"] = Field(
        description="The child process this worker answers large requests in (it starts with the first one)."
    )
    batch_process_version: str | None = Field(
        default=None, description="The model version the batch process has read, once it is up."
    )


class ReloadResponse(BaseModel):
    """Outcome of a reload check."""

    model_config = OUTPUT_CONFIG

    reloaded: bool = Field(description="Whether a different model version is now serving.")
    model_name: str = Field(description="Registered model name.")
    model_version: str = Field(description="Version serving after the check.")
    previous_version: str = Field(description="Version serving before the check.")
    pinned: bool = Field(description="True when LEADSCORE_MODEL_VERSION pins the version (no alias check).")


class ErrorResponse(BaseModel):
    """Body of every 4xx/5xx answer; never a stack trace."""

    error: str = Field(
        description="unauthorized, malformed_json, unsupported_media_type, payload_too_large, "
        "invalid_request, not_found, method_not_allowed, request_timeout, too_many_requests, "
        "unavailable, timeout or internal_error."
    )
    message: str = Field(description="What happened and how to fix it.")
    problems: list[Problem] = Field(default_factory=list, description="Every problem found (422).")
