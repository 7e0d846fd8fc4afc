"""Explanations on the simulator, where the truth is known: additivity, reasons, no cross-talk, no PII."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from leadscore.features.contract import PII_COLUMNS
from leadscore.features.training_table import SnapshotPolicy
from leadscore.model.explain import concept_sentence, signal_sentence
from leadscore.model.scoring_model import LeadScoringModel
from leadscore.training.cards import explain_leads, render_html_card

from ..conftest import Trained


@pytest.fixture(scope="module")
def model(trained: Trained) -> LeadScoringModel:
    return trained.result.model


@pytest.fixture(scope="module")
def newest(trained: Trained) -> pd.DataFrame:
    """The newest snapshots of the lead flow (the configured ages, not the older-age extras)."""
    flow = trained.table["snapshot_age_days"] <= max(SnapshotPolicy().ages_days)
    return trained.table[flow].sort_values("as_of").tail(3000).reset_index(drop=True)


def test_contributions_add_up_to_the_raw_score(model: LeadScoringModel, newest: pd.DataFrame) -> None:
    contributions = model.contributions(newest)
    np.testing.assert_allclose(contributions.sum(axis=1), model.raw_scores(newest), atol=1e-9)


def test_reason_points_add_up_to_score_minus_base(model: LeadScoringModel, newest: pd.DataFrame) -> None:
    checked = 0
    for reasons, scored in zip(
        model.all_reasons(newest.head(300)), model.score_features(newest.head(300)), strict=True
    ):
        total = sum(r.impact for r in reasons)
        assert scored["fit_points"] + scored["engagement_points"] == pytest.approx(total, abs=0.2)
        # else: flat calibration step, slope used (0.5 on the unrounded scores; both are shown to 0.01)
        if abs(scored["score"] - scored["base_score"]) >= 0.52:
            assert total == pytest.approx(scored["score"] - scored["base_score"], abs=0.2)
            checked += 1
        else:
            assert reasons and any(abs(r.impact) > 0 for r in reasons)  # never an empty explanation
    assert checked >= 100


def test_demo_requests_show_among_top_positive_reasons(model: LeadScoringModel, newest: pd.DataFrame) -> None:
    demo = newest[newest["demo_request_total"] > 0].head(150)
    assert len(demo) >= 20
    scored = model.score_features(demo)
    # reasons under a point are not listed: judge the leads whose demo request moves a point or more
    material = [
        any(r.concept == "demo_request" and r.impact >= 1.0 for r in reasons)
        for reasons in model.all_reasons(demo)
    ]
    assert sum(material) >= 20
    hits = [
        any(r["concept"] == "demo_request" for r in s["reasons_positive"])
        for s, m in zip(scored, material, strict=True)
        if m
    ]
    assert np.mean(hits) >= 0.8


def test_purchased_list_without_engagement_shows_among_negatives(
    model: LeadScoringModel, newest: pd.DataFrame
) -> None:
    cold = newest[
        (newest["channel"].astype(str) == "purchased_list") & (newest["engagement_events_30d"] == 0)
    ]
    assert len(cold) >= 20
    # cold leads score near zero, where few reasons reach a point: judge the cards that list any
    scored = [s for s in model.score_features(cold.head(150)) if s["reasons_negative"]]
    assert len(scored) >= 20
    hits = [
        any(
            r["concept"] in ("channel", "days_since_last_activity", "engagement_events_30d")
            or "No " in r["sentence"]
            for r in s["reasons_negative"]
        )
        for s in scored
    ]
    assert np.mean(hits) >= 0.8
    channel_negative = [any(r["concept"] == "channel" for r in s["reasons_negative"]) for s in scored]
    assert np.mean(channel_negative) >= 0.5


def test_no_cross_talk_between_leads_in_a_batch(model: LeadScoringModel, newest: pd.DataFrame) -> None:
    batch = newest.head(50).copy()
    alone = model.score_features(batch.iloc[[7]])[0]
    changed = batch.copy()
    changed.loc[changed.index != 7, "demo_request_total"] += 5
    changed.loc[changed.index != 7, "channel"] = "purchased_list"
    in_batch = model.score_features(changed)[7]
    assert in_batch == alone


def test_explanations_never_mention_pii(trained: Trained, model: LeadScoringModel) -> None:
    """Reasons, the scored record and the card outside its "who" line never carry personal data."""
    leads = trained.crm.leads.head(40)
    cards = explain_leads(
        model=model, leads=leads, activities=trained.crm.activities, as_of=trained.crm.exported_at
    )
    pii = {str(v).lower() for c in PII_COLUMNS for v in leads[c].dropna()}
    for card in cards:
        page = re.sub(r'<div class="who">.*?</div>', "", render_html_card(card), flags=re.S)
        text = (str(card.scored) + repr(card) + page).lower()
        assert not [value for value in pii if len(value) > 3 and value in text]


def test_next_best_action_varies_only_actionable_activities(
    trained: Trained, model: LeadScoringModel
) -> None:
    leads = trained.crm.leads.head(10)
    actions = model.next_best_actions(
        leads=leads, activities=trained.crm.activities, as_of=trained.crm.exported_at
    )
    # only what a rep can do or directly invite: never what the lead must do (demo request, attending)
    allowed = {"webinar_registered", "content_download", "sales_call", "sales_email", "sales_meeting"}
    for per_lead in actions:
        assert {a.action for a in per_lead} <= allowed
        assert [a.uplift for a in per_lead] == sorted((a.uplift for a in per_lead), reverse=True)


def test_sentences_read_naturally() -> None:
    row = {
        "page_pricing_7d": 4.0,
        "page_pricing_30d": 4.0,
        "page_pricing_90d": 5.0,
        "page_pricing_total": 5.0,
        "days_since_page_pricing": 1.0,
        "demo_request_total": 0.0,
    }
    assert signal_sentence("page_pricing", row) == "4 pricing-page visits in the last 7 days"
    assert signal_sentence("demo_request", row) == "No demo requests yet"
    assert (
        concept_sentence("email_domain_type", {"email_domain_type": "free"}) == "Uses a free e-mail address"
    )
    assert concept_sentence("days_since_last_activity", {"days_since_last_activity": 63.0}) == (
        "No activity from the lead for 63 days"
    )
    assert concept_sentence("sales_touches_total", {"sales_touches_total": 1.0}) == "1 sales touch so far"


def test_shap_figures_never_draw_over_other_plots(model: LeadScoringModel, newest: pd.DataFrame) -> None:
    import matplotlib.pyplot as plt

    from leadscore.training import plots
    from leadscore.training.train import shap_figures

    y = np.arange(len(newest)) % 7 == 0
    before = plots.gains_chart(y_true=y, scores={"m": np.linspace(0, 1, len(newest))})  # the current figure
    axes_before = len(before.axes)
    try:
        figures = shap_figures(model=model, features=newest.head(300))
        assert all(figure is not before for figure in figures.values())
        assert len(before.axes) == axes_before  # the gains chart is untouched
        assert before.axes[0].get_title() == "Cumulative gains"
    finally:
        plt.close("all")


def test_reasons_are_read_against_the_lead_flow_s_average_lead(
    model: LeadScoringModel, trained: Trained
) -> None:
    assert model.reason_baseline is not None
    flow = trained.table[trained.table["snapshot_age_days"] <= max(SnapshotPolicy().ages_days)]
    sample = flow.sample(n=3_000, random_state=1)
    grouped, base_raw = model.grouped_contributions(model.contributions(sample))
    np.testing.assert_allclose(grouped.sum(axis=1) + base_raw, model.raw_scores(sample), atol=1e-9)
    assert np.abs(grouped.mean(axis=0)).max() < 0.1  # the lead flow's average lead: each concept ~0
    # against the average training row (older-age snapshots too), youth alone would read as a reason
    age = [i for i, c in enumerate(model.concepts) if c.name == "lead_age_days"]
    old = trained.table[trained.table["snapshot_age_days"] > max(SnapshotPolicy().ages_days)].head(3_000)
    if age and len(old):
        plain = model.contributions(sample)[:, :-1] @ model._grouping
        assert plain[:, age[0]].mean() > grouped[:, age[0]].mean() + 0.1
