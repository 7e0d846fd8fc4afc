"""The model's typed doors: one scored-lead record from which every output is derived, one raw-lead
parser for the service and the pyfunc alike."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from leadscore.model.pyfunc import OUTPUT_SCHEMA, LeadScoringPyfunc, input_signature
from leadscore.model.raw_leads import prepare_leads, raw_leads_from_frame
from leadscore.model.records import (
    SCORED_LEAD_COLUMNS,
    LeadScore,
    RawLead,
    RequestInvalid,
    ScoredLead,
    scored_lead_arrow_schema,
    scored_lead_spark_ddl,
)
from leadscore.model.scoring_model import LeadScoringModel, lead_states
from leadscore.serving.schemas import ExplainResponse, ScoreResponse
from leadscore.training.batch import RESULT_COLUMNS
from leadscore.training.cards import LeadCard, print_card, render_html_card

from ..conftest import Trained

PROVENANCE = ("as_of", "model_name", "model_version")


@pytest.fixture(scope="module")
def model(trained: Trained) -> LeadScoringModel:
    return trained.result.model


def test_every_output_schema_is_derived_from_the_scored_lead_record() -> None:
    fields = list(ScoredLead.model_fields)
    assert fields == [*LeadScore.model_fields, *PROVENANCE]
    # the API: the response's results are the record itself, described once
    assert ScoreResponse.model_fields["results"].annotation == list[ScoredLead]
    assert ExplainResponse.model_fields["score"].annotation is ScoredLead
    item = ScoreResponse.model_json_schema()["$defs"]["ScoredLead"]
    assert list(item["properties"]) == fields
    # batch Parquet and Spark: the same fields, who and when first (as batch files always had them)
    columns = ["lead_id", "as_of", *[name for name in fields if name not in ("lead_id", "as_of")]]
    assert list(RESULT_COLUMNS) == list(SCORED_LEAD_COLUMNS) == columns
    assert scored_lead_arrow_schema().names == columns
    assert [part.split(" ")[0] for part in scored_lead_spark_ddl().split(", ")] == columns
    # the MLflow pyfunc's output: the model's part plus the run that trained it
    assert OUTPUT_SCHEMA.input_names() == [*LeadScore.model_fields, "model_run_id"]
    assert input_signature().outputs.input_names() == OUTPUT_SCHEMA.input_names()
    # the pyfunc's raw-lead input is the RawLead record
    assert input_signature().inputs.input_names() == list(RawLead.model_fields)


def test_the_model_returns_exactly_the_record(model: LeadScoringModel, trained: Trained) -> None:
    rows = trained.table.sort_values("as_of").tail(200).reset_index(drop=True)
    for explain in (True, False):
        for result in model.score_features(rows, explain=explain):
            assert set(result) == set(LeadScore.model_fields)
            LeadScore.model_validate(result)  # and every value has the record's type


def test_cards_show_the_record_fields_and_nothing_else(model: LeadScoringModel, trained: Trained) -> None:
    rows = trained.table.sort_values("as_of").tail(50).reset_index(drop=True)
    for result in model.score_features(rows, explain=True)[:5]:
        card = LeadCard(str(result["lead_id"]), "2025-01-01", LeadScore.model_validate(result), [], "1", 90)
        html = render_html_card(card)  # the template is strict: an unknown field would raise
        out = io.StringIO()
        print_card(card, console=Console(file=out, width=200, color_system=None))
        assert card.scored.grade is not None
        assert f"Grade: {card.scored.grade}" in out.getvalue() and f"Grade <b>{card.scored.grade}</b>" in html


def _frame(**overrides: object) -> pd.DataFrame:
    lead = {
        "lead_id": "L1",
        "created_at": "2025-01-01T09:00:00Z",
        "seniority": "vp",
        "employee_count": 250.0,
        "activities": [
            {"timestamp": "2025-01-03T10:00:00Z", "activity_type": "page_view", "page_category": "pricing"}
        ],
        "as_of": "2025-02-01T00:00:00Z",
    }
    return pd.DataFrame([{**lead, **overrides}])


def test_the_pyfunc_scores_frame_rows_as_the_service_scores_the_request(
    model: LeadScoringModel, tmp_path: Path
) -> None:
    """Raw leads as the pyfunc gets them from a Parquet file (typed times, NaN, numpy arrays of
    activities) score exactly as the same leads sent to the API."""
    lead = {
        "lead_id": "L1",
        "created_at": "2025-01-01T09:00:00+00:00",
        "seniority": "vp",
        "employee_count": 250.0,
        "activities": [
            {
                "timestamp": "2025-01-03T10:00:00+00:00",
                "activity_type": "page_view",
                "page_category": "pricing",
            },
            {
                "timestamp": "2025-01-09T10:00:00+00:00",
                "activity_type": "demo_request",
                "page_category": None,
            },
        ],
        "as_of": "2025-02-01T00:00:00+00:00",
    }
    other = {**lead, "lead_id": "L2", "seniority": None, "employee_count": None, "activities": []}
    frame = pd.DataFrame([lead, other])
    for name in ("created_at", "as_of"):
        frame[name] = pd.to_datetime(frame[name])  # typed timestamps, as a Parquet export has them
    frame["activities"] = [
        [{**a, "timestamp": pd.Timestamp(a["timestamp"]).to_pydatetime()} for a in acts]
        for acts in frame["activities"]
    ]
    frame.to_parquet(tmp_path / "leads.parquet")
    read = pd.read_parquet(tmp_path / "leads.parquet")  # NaN numbers, numpy arrays of activity dicts
    pyfunc = LeadScoringPyfunc()
    pyfunc.model = model
    from_frame = pyfunc.predict(None, read, {"explain": True})
    request = prepare_leads([RawLead.model_validate(lead), RawLead.model_validate(other)], as_of=None)
    from_request = model.score_features(
        model.features(leads=request.leads, activities=request.activities, as_of=request.as_of), explain=True
    )
    assert from_frame["probability"].tolist() == [r["probability"] for r in from_request]
    assert from_frame["reasons_positive"].map(len).tolist() == [
        len(r["reasons_positive"]) for r in from_request
    ]


def test_blank_times_mean_none() -> None:
    """CRM rows write "" for "not converted" and "score as of now": open leads, not refusals."""
    prepared = prepare_leads(
        raw_leads_from_frame(_frame(converted_at="", disqualified_at=" ", as_of="")), as_of=None
    )
    assert lead_states(leads=prepared.leads, as_of=prepared.as_of)[0].status.value == "open"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"created_at": "not a date"}, "leads[0].created_at"),
        ({"employee_count": -5.0}, "leads[0].employee_count"),
        (
            {"activities": [{"timestamp": "2025-01-03T10:00:00Z", "activity_type": "fax"}]},
            "leads[0].activities[0].activity_type",
        ),
        ({"converted_at": "yesterday"}, "leads[0].converted_at"),
    ],
)
def test_bad_raw_leads_are_refused_naming_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(RequestInvalid) as refused:
        prepare_leads(raw_leads_from_frame(_frame(**overrides)), as_of=None)
    assert field in [problem.field for problem in refused.value.problems]


def test_state_fields_close_the_lead() -> None:
    prepared = prepare_leads(
        raw_leads_from_frame(_frame(converted_at="2025-01-20T00:00:00Z", lead_id="L2")), as_of=None
    )
    (state,) = lead_states(leads=prepared.leads, as_of=prepared.as_of)
    assert state.status.value == "converted" and "2025-01-20" in state.note
    later = prepare_leads(raw_leads_from_frame(_frame(converted_at="2025-03-01T00:00:00Z")), as_of=None)
    assert lead_states(leads=later.leads, as_of=later.as_of)[0].status.value == "open"


def test_the_range_reads_as_words_even_at_the_ends() -> None:
    from leadscore.training.cards import probability_text

    top = LeadScore.model_validate(
        {
            "lead_id": "L1",
            "probability": 0.946,
            "probability_low": 0.83,
            "probability_high": 0.9995,
            "score": 94.6,
            "tier": "sales_ready",
            "grade": "A1",
            "fit_points": 1.0,
            "engagement_points": 1.0,
            "base_score": 4.0,
            "reasons_positive": [],
            "reasons_negative": [],
        }
    )
    text = probability_text(top, horizon="90 days")
    assert text == "94.6% chance of an opportunity within 90 days (likely 83% to >99.9%)"
    assert "->" not in text
