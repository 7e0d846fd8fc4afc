"""What a sales rep is shown must be true (issue 16): state before score, honest actions, reasons
without noise, tiers that respect engagement, who the lead is, and probabilities with their range."""

from __future__ import annotations

import io
import logging
import re

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from leadscore.features.catalogue import (
    FEATURE_NAMES,
    SIGNAL_BY_NAME,
    Family,
    monotone_constraints,
    total_count_name,
    window_count_name,
)
from leadscore.features.vocabulary import LeadStatus, Tier
from leadscore.model.explain import (
    MATERIAL_POINTS,
    Concept,
    concept_sentence,
    contradicts_direction,
    plural,
    signal_sentence,
    top_reasons,
)
from leadscore.model.pyfunc import LeadScoringPyfunc
from leadscore.model.records import RequestInvalid
from leadscore.model.scoring_model import ACTIONABLE_TYPES, LeadScoringModel, lead_states
from leadscore.training.batch import score_leads
from leadscore.training.cards import LeadCard, explain_leads, print_card, render_html_card

from ..conftest import Trained


@pytest.fixture(scope="module")
def model(trained: Trained) -> LeadScoringModel:
    return trained.result.model


def _terminal(card: LeadCard) -> str:
    out = io.StringIO()
    print_card(card, console=Console(file=out, width=220, color_system=None))
    return out.getvalue()


# --- 1. state before score ------------------------------------------------------------------------


def _converted_lead(trained: Trained) -> pd.DataFrame:
    outcomes = trained.crm.outcomes
    early = outcomes[outcomes["converted_at"] < trained.crm.exported_at - pd.Timedelta(days=30)]
    return trained.crm.leads[trained.crm.leads["lead_id"] == early["lead_id"].iloc[0]].reset_index(drop=True)


def test_converted_lead_gets_its_status_not_a_score(trained: Trained, model: LeadScoringModel) -> None:
    lead = _converted_lead(trained)
    card = explain_leads(
        model=model,
        leads=lead,
        activities=trained.crm.activities,
        as_of=trained.crm.exported_at,
        outcomes=trained.crm.outcomes,
    )[0]
    assert card.scored.status == LeadStatus.CONVERTED
    assert card.scored.score is None and card.scored.probability is None and card.scored.tier is None
    assert card.actions == []  # nothing to suggest on a lead that is already an opportunity
    text, page = _terminal(card), render_html_card(card)
    for shown in (text, page):
        assert "Converted" in shown and "Score" not in shown and "Next best action" not in shown


def test_as_of_before_the_lead_existed_is_a_status_not_negative_days(
    trained: Trained, model: LeadScoringModel
) -> None:
    lead = trained.crm.leads.head(1)
    before = pd.Timestamp(lead["created_at"].iloc[0]) - pd.Timedelta(days=351)
    card = explain_leads(model=model, leads=lead, activities=trained.crm.activities, as_of=before)[0]
    assert card.scored.status == LeadStatus.NOT_YET_CREATED
    text = _terminal(card) + render_html_card(card)
    assert "Not created yet" in text and "-351" not in text and "days ago" not in text
    # the states function agrees, and a disqualified lead is closed too
    leads = lead.assign(disqualified_at=pd.Timestamp(lead["created_at"].iloc[0]) + pd.Timedelta(days=2))
    later = pd.Timestamp(lead["created_at"].iloc[0]) + pd.Timedelta(days=5)
    assert lead_states(leads=leads, as_of=later)[0].status is LeadStatus.DISQUALIFIED
    assert lead_states(leads=leads, as_of=later - pd.Timedelta(days=4))[0].status is LeadStatus.OPEN


def test_batch_rows_carry_the_status(trained: Trained, model: LeadScoringModel) -> None:
    converted = _converted_lead(trained)
    as_of = trained.crm.exported_at - pd.Timedelta(days=20)
    unborn = trained.crm.leads[trained.crm.leads["created_at"] > as_of].head(1)
    leads = pd.concat([converted, unborn, trained.crm.leads.head(3)], ignore_index=True)
    leads = leads.drop_duplicates("lead_id").reset_index(drop=True)
    frame = score_leads(
        model, leads=leads, activities=trained.crm.activities, as_of=as_of, outcomes=trained.crm.outcomes
    )
    status = dict(zip(frame["lead_id"], frame["status"], strict=True))
    assert status[converted["lead_id"].iloc[0]] == "converted"
    assert status[unborn["lead_id"].iloc[0]] == "not_yet_created"
    closed = frame[frame["status"] != "open"]
    assert closed["probability"].isna().all() and closed["score"].isna().all()
    opened = frame[frame["status"] == "open"]
    assert opened["probability"].notna().all()
    assert (opened["probability_low"] <= opened["probability"]).all()
    assert (opened["probability"] <= opened["probability_high"]).all()


def test_pyfunc_and_api_records_carry_status_and_range(trained: Trained, model: LeadScoringModel) -> None:
    from leadscore.serving.schemas import ScoredLead

    lead = trained.crm.leads.iloc[0]
    created = pd.Timestamp(lead["created_at"])
    raw = pd.DataFrame(
        {
            "lead_id": ["open", "won", "lost"],
            "created_at": [created.isoformat()] * 3,
            "seniority": [lead["seniority"]] * 3,
            "activities": [[], [], []],
            "as_of": [(created + pd.Timedelta(days=10)).isoformat()] * 3,
            "converted_at": [None, (created + pd.Timedelta(days=4)).isoformat(), None],
            "disqualified_at": [None, None, (created + pd.Timedelta(days=2)).isoformat()],
        }
    )
    pyfunc = LeadScoringPyfunc()
    pyfunc.model = model
    out = pyfunc.predict(None, raw).set_index("lead_id")
    assert out.loc["open", "status"] == "open" and out.loc["open", "probability"] > 0
    assert out.loc["won", "status"] == "converted" and pd.isna(out.loc["won", "score"])
    assert out.loc["lost", "status"] == "disqualified" and pd.isna(out.loc["lost", "probability"])
    # scoring a lead as of a time before it existed is the caller's mistake: refused like the API does
    unborn = raw.head(1).assign(as_of=(created - pd.Timedelta(days=3)).isoformat())
    with pytest.raises(RequestInvalid) as refused:
        pyfunc.predict(None, unborn)
    assert [p.field for p in refused.value.problems] == ["leads[0].as_of"]
    record = model.score_features(
        model.features(leads=trained.crm.leads.head(1), activities=trained.crm.activities, as_of=created)
    )[0]
    api = ScoredLead.model_validate(
        {**record, "as_of": created.isoformat(), "model_name": "m", "model_version": "1"}
    )
    assert api.status == "open" and api.probability_low is not None and api.probability_high is not None


# --- 2. next best actions a rep can take, labelled as association ------------------------------------


def test_catalogue_marks_what_a_rep_controls() -> None:
    controllable = {name for name, signal in SIGNAL_BY_NAME.items() if signal.rep_controllable}
    assert controllable == {
        "sales_call",
        "sales_email",
        "sales_meeting",
        "content_download",
        "webinar_registered",
    }
    assert not SIGNAL_BY_NAME["demo_request"].rep_controllable  # the lead must ask
    # a download or a registration is the lead's own act: only a rep's sales touches are actions
    assert set(ACTIONABLE_TYPES) == {"sales_call", "sales_email", "sales_meeting"}


def test_actions_are_never_what_was_just_done_nor_causal_claims(
    trained: Trained, model: LeadScoringModel
) -> None:
    end = trained.crm.exported_at
    recent = trained.crm.activities[
        (trained.crm.activities["activity_type"] == "sales_call")
        & (trained.crm.activities["timestamp"] > end - pd.Timedelta(days=6))
    ]
    called = trained.crm.leads[trained.crm.leads["lead_id"].isin(set(recent["lead_id"]))].head(30)
    assert len(called) >= 5
    cards = explain_leads(model=model, leads=called, activities=trained.crm.activities, as_of=end)
    for card in cards:
        assert "sales_call" not in {a.action for a in card.actions}  # just called: not "call again"
        for action in card.actions:
            assert action.uplift >= 0.01 and action.action in ACTIONABLE_TYPES
            assert (
                action.evidence.startswith("The model scores leads like this higher with one more")
                and "an association, not a measured effect" in action.evidence
            )
        text = _terminal(card) + render_html_card(card)
        assert "demo" not in text.lower().split("next best action")[-1]
        assert not re.search(r"[+-]\d+(\.\d)? points \(to", text)  # the old causal "+36.5 points (to 52%)"


# --- 3. reasons without noise -------------------------------------------------------------------------


def test_reasons_under_a_point_are_not_listed(trained: Trained, model: LeadScoringModel) -> None:
    rows = trained.table.sort_values("as_of").tail(400)
    for scored in model.score_features(rows):
        for reason in scored["reasons_positive"] + scored["reasons_negative"]:
            assert abs(reason["impact"]) >= MATERIAL_POINTS


def test_monotone_constraints_come_from_the_catalogue() -> None:
    constraints = dict(zip(FEATURE_NAMES, monotone_constraints(FEATURE_NAMES), strict=True))
    assert constraints["page_pricing_7d"] == constraints["demo_request_total"] == 1
    assert constraints["unsubscribe_total"] == -1
    assert constraints["page_blog_7d"] == constraints["country"] == constraints["sales_call_7d"] == 0
    assert monotone_constraints(("not_in_catalogue",)) == [0]


def test_more_pricing_visits_or_demo_requests_never_lower_the_score(
    trained: Trained, model: LeadScoringModel
) -> None:
    rows = trained.table.sort_values("as_of").tail(500).reset_index(drop=True)
    before = model.raw_scores(rows)
    for signal in ("page_pricing", "demo_request"):
        more = rows.copy()
        for column in [window_count_name(signal, d) for d in (7, 30, 90)] + [total_count_name(signal)]:
            more[column] = more[column] + 2
        assert (model.raw_scores(more) >= before - 1e-9).all(), signal


def test_reasons_never_read_against_a_known_direction() -> None:
    row = {"page_pricing_total": 1.0, "page_pricing_7d": 1.0, "demo_request_total": 0.0}
    assert contradicts_direction("page_pricing", row, -2.0)  # "1 pricing-page visit" lowering the score
    assert contradicts_direction("demo_request", row, +2.0)  # "No demo requests yet" raising it
    assert not contradicts_direction("page_pricing", row, +2.0)
    assert not contradicts_direction("page_blog", {"page_blog_total": 0.0}, +2.0)  # direction unknown
    concepts = (Concept("page_pricing", "Pricing-page visits", Family.ENGAGEMENT, False),)
    positive, negative = top_reasons(concepts=concepts, points_row=np.array([-3.0]), feature_row=row)
    assert positive == negative == []


def test_sentences_name_who_acted_and_count_properly() -> None:
    assert plural(1, "webinars attended") == "1 webinar attended"
    assert plural(2, "webinars attended") == "2 webinars attended"
    assert plural(1, "sales touches") == "1 sales touch"
    assert plural(1, "e-mail bounces") == "1 e-mail bounce"
    row = {"webinar_attended_total": 1.0, "webinar_attended_7d": 1.0}
    assert signal_sentence("webinar_attended", row) == "1 webinar attended in the last 7 days"
    assert concept_sentence("seniority", {"seniority": "c_level"}) == "Seniority: C-level"
    assert concept_sentence("seniority", {"seniority": "vp"}) == "Seniority: VP"
    assert concept_sentence("department", {"department": "it"}) == "Department: IT"
    assert concept_sentence("country", {"country": "US"}) == "Country: US"
    assert concept_sentence("days_since_last_activity", {"days_since_last_activity": 15.0}) == (
        "No activity from the lead for 15 days"
    )
    assert concept_sentence("engagement_events_30d", {"engagement_events_30d": 1.0}) == (
        "1 engagement event by the lead in the last 30 days"
    )


# --- 4. tiers that respect engagement -----------------------------------------------------------------


def test_engaged_lead_outside_profile_is_for_review_not_dismissed(model: LeadScoringModel) -> None:
    below = model.thresholds.mql / 2
    assert model.tier(below, fit_grade="D", engagement_grade="4") is Tier.NOT_A_FIT
    assert model.tier(below, fit_grade="D", engagement_grade="1") is Tier.REVIEW_OUTSIDE_PROFILE
    assert model.tier(below, fit_grade="D", engagement_grade="3", hand_raised=True) is (
        Tier.REVIEW_OUTSIDE_PROFILE
    )


def test_no_demo_requester_is_called_not_a_fit(trained: Trained, model: LeadScoringModel) -> None:
    rows = trained.table[trained.table["demo_request_total"] > 0].tail(600)
    for explain in (True, False):
        tiers = {s["tier"] for s in model.score_features(rows, explain=explain)}
        assert Tier.NOT_A_FIT.value not in tiers


# --- 5. who the lead is: on the card, nowhere else ------------------------------------------------------


def test_card_names_the_lead_escaped(trained: Trained, model: LeadScoringModel) -> None:
    lead = trained.crm.leads.head(1).copy()
    lead["first_name"], lead["last_name"] = "Ada", "<b>Lovelace</b>"
    lead["job_title"], lead["company"] = "VP Engineering", "Analytical Engines"
    card = explain_leads(
        model=model, leads=lead, activities=trained.crm.activities, as_of=trained.crm.exported_at
    )[0]
    page = render_html_card(card)
    assert "Ada &lt;b&gt;Lovelace&lt;/b&gt;, VP Engineering at Analytical Engines" in page
    assert "Ada <b>Lovelace</b>, VP Engineering at Analytical Engines" in _terminal(card)
    assert "Ada" not in repr(card) and "Lovelace" not in str(card.scored)


EMAIL = re.compile(rb"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
FULL_NAME = re.compile(rb"[A-Za-z][a-z'-]+ [A-Za-z][a-z'-]+")


def _personal_data_in(blob: bytes, *, names: set[str], emails: set[str]) -> set[str]:
    """Which of the export's full names and e-mail addresses appear in ``blob``."""
    found = {m.decode(errors="ignore").lower() for m in EMAIL.findall(blob)} & emails
    found |= {m.decode(errors="ignore").lower() for m in FULL_NAME.findall(blob)} & names
    return found


def test_names_never_reach_features_logs_or_tracking(
    trained: Trained, model: LeadScoringModel, caplog: pytest.LogCaptureFixture
) -> None:
    leads = trained.crm.leads
    names = {
        f"{first} {last}".lower()
        for first, last in zip(leads["first_name"], leads["last_name"], strict=True)
        if isinstance(first, str) and isinstance(last, str)
    }
    emails = {str(e).lower() for e in leads["email"].dropna()}
    with caplog.at_level(logging.DEBUG):
        cards = explain_leads(
            model=model,
            leads=leads.tail(20),
            activities=trained.crm.activities,
            as_of=trained.crm.exported_at,
        )
    assert all(card.who is not None and card.who.name for card in cards)  # shown to the rep ...
    assert not _personal_data_in(caplog.text.encode(), names=names, emails=emails)  # ... never logged
    assert not any(  # not features
        "name" in column or column == "email" or "phone" in column for column in trained.table.columns
    )
    home = trained.table_path.parent
    # the MLflow model logs leadscore's own source as its code (code_paths): the simulator's name
    # vocabulary there can spell a simulated lead's name, but it is program text, not a lead's data
    stored = [
        p
        for p in home.rglob("*")
        if p.is_file()
        and "crm" not in p.relative_to(home).parts
        and not (p.suffix == ".py" and "code" in p.relative_to(home).parts)
    ]
    assert len(stored) > 10  # the table, its sidecar, the MLflow store and artifacts (model, card, ...)
    for path in stored:
        found = _personal_data_in(path.read_bytes(), names=names, emails=emails)
        assert not found, f"personal data in {path.relative_to(home)}: {sorted(found)[:3]}"
