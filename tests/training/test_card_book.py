"""Read every card of a simulated book of leads as a rep would, and look for what cannot be true.

Each card (terminal text and scored record) is checked for plural errors, machine codes, impossible
statements (negative ages, counts in a window above the total), contradictions between its lines
(the lead idle for weeks yet active this week; not contacted yet yet called; a signal whose
direction is known read backwards), actions the rep cannot take or just took, and tiers that
dismiss engaged leads.
"""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest
from rich.console import Console

from leadscore.features.catalogue import SIGNALS, Direction, Family
from leadscore.features.vocabulary import LeadStatus, Tier
from leadscore.model.records import LeadScore
from leadscore.model.scoring_model import ACTIONABLE_TYPES, JUST_DONE_DAYS
from leadscore.training.cards import LOW_CONFIDENCE, LeadCard, confidence_text, explain_leads, print_card

from ..conftest import Trained

PLURALS = sorted(
    {s.label for s in SIGNALS} | {"sales touches", "engagement events", "events", "days"},
    key=len,
    reverse=True,
)
MACHINE_CODES = re.compile(r"\b[a-z]+_[a-z_]+\b|\bnan\b|\bNone\b|\bc level\b", re.IGNORECASE)
IDLE = re.compile(r"No activity from the lead for (\d+) days")
QUIET = re.compile(r"^No activity from the lead (for \d+ days|yet)$")
IN_WINDOW = re.compile(r"^(\d+) (.+) in the last (\d+) days$")


@pytest.fixture(scope="module")
def book(trained: Trained) -> tuple[list[LeadCard], pd.DataFrame]:
    crm = trained.crm
    leads = crm.leads.sort_values("created_at").tail(400).reset_index(drop=True)
    cards = explain_leads(
        model=trained.result.model,
        leads=leads,
        activities=crm.activities,
        as_of=crm.exported_at,
        outcomes=crm.outcomes,
    )
    return cards, leads


def _text(card: LeadCard) -> str:
    out = io.StringIO()
    print_card(card, console=Console(file=out, width=400, color_system=None))
    return out.getvalue()


def card_problems(card: LeadCard) -> list[str]:
    """Everything on one card a rep could not believe (empty when the card is sound)."""
    problems: list[str] = []
    s = card.scored.model_dump()
    text = _text(card)
    reasons = s.get("reasons_positive", []) + s.get("reasons_negative", [])
    sentences = [r["sentence"] for r in reasons]
    for noun in PLURALS:
        if re.search(rf"(?<![\d.]){re.escape('1 ' + noun)}\b", text):
            problems.append(f"plural error: '1 {noun}'")
    for sentence in sentences:
        if MACHINE_CODES.search(sentence):
            problems.append(f"machine code in '{sentence}'")
        if re.search(r"-\d+ days?|created -", sentence):
            problems.append(f"impossible negative time in '{sentence}'")
    if LOW_CONFIDENCE in text:
        problems.append("a low-confidence flag without what it means for the tier")
    if s.get("status") != LeadStatus.OPEN:
        if s.get("score") is not None or card.actions:
            problems.append("a closed lead was scored or given actions")
        return problems
    if not 0 <= float(s["score"]) <= 100:
        problems.append(f"score {s['score']} outside 0-100")
    if not s["probability_low"] <= s["probability"] <= s["probability_high"]:
        problems.append("the probability lies outside its own range")
    concepts = [r["concept"] for r in reasons]
    if len(concepts) != len(set(concepts)):
        problems.append("one concept both raises and lowers the score")
    idle = next((int(m.group(1)) for x in sentences if (m := IDLE.search(x))), None)
    by_label = {s.label: s for s in SIGNALS}
    for reason in reasons:
        m = IN_WINDOW.match(reason["sentence"])
        if m and idle is not None:
            noun = m.group(2)
            signal = by_label.get(noun) or next((x for x in SIGNALS if x.one == noun), None)
            if signal is not None and signal.family is Family.ENGAGEMENT and int(m.group(3)) < idle:
                problems.append(f"idle for {idle} days yet '{reason['sentence']}'")
        signal = next((x for x in SIGNALS if x.name == reason["concept"]), None)
        if signal is not None and signal.direction is not Direction.UNKNOWN:
            absent = reason["sentence"].startswith("No ")
            raises = reason["impact"] > 0
            if (signal.direction is Direction.INCREASING) == (absent == raises):
                problems.append(f"'{reason['sentence']}' {'raises' if raises else 'lowers'} the score")
        if reason["sentence"].startswith("The lead was last active") and reason["impact"] < 0:
            problems.append(f"'{reason['sentence']}' lowers the score")
        if QUIET.match(reason["sentence"]) and reason["impact"] > 0:
            problems.append(f"'{reason['sentence']}' raises the score")
    if "Not contacted by sales yet" in sentences and any(
        r["family"] == "sales" and re.match(r"^[1-9]", r["sentence"]) for r in reasons
    ):
        problems.append("not contacted by sales, yet sales touches are listed")
    for action in card.actions:
        if action.action not in ACTIONABLE_TYPES:
            problems.append(f"action a rep cannot take: {action.action}")
        if "not a measured effect" not in action.evidence:
            problems.append(f"action stated as an effect: {action.label}")
    for claim in re.findall(r"[+-]\d+(?:\.\d)? points \(to", text):
        problems.append(f"causal what-if claim: {claim}")
    return problems


def test_every_card_of_the_book_reads_true(book: tuple[list[LeadCard], pd.DataFrame]) -> None:
    cards, _ = book
    assert len(cards) == 400
    found = {card.lead_id: card_problems(card) for card in cards}
    bad = {lead: problems for lead, problems in found.items() if problems}
    assert not bad, f"{len(bad)} cards with problems, e.g. {list(bad.items())[:5]}"


def test_the_book_has_the_states_and_actions_a_rep_meets(
    trained: Trained, book: tuple[list[LeadCard], pd.DataFrame]
) -> None:
    cards, leads = book
    statuses = {card.scored.status for card in cards}
    assert LeadStatus.OPEN in statuses  # the suite read scored cards ...
    assert sum(bool(card.actions) for card in cards) >= 20  # ... with actions to check
    features = trained.result.model.features(
        leads=leads, activities=trained.crm.activities, as_of=trained.crm.exported_at
    )
    for card, (_, row) in zip(cards, features.iterrows(), strict=True):
        for action in card.actions:  # never what was just done
            column = f"{action.action}_{JUST_DONE_DAYS}d"
            assert row[column] == 0, (card.lead_id, action.action)
        if row["demo_request_total"] > 0:
            assert card.scored.tier != Tier.NOT_A_FIT


def test_the_suite_catches_the_old_wording() -> None:
    """The checks are live: cards written the old way fail them."""
    old = LeadCard(
        lead_id="L1",
        as_of="2025-01-01",
        scored=LeadScore.model_validate(
            {
                "lead_id": "L1",
                "status": "open",
                "probability": 0.007,
                "probability_low": 0.005,
                "probability_high": 0.01,
                "score": 0.7,
                "tier": "not_a_fit",
                "grade": "D1",
                "fit_points": -3.0,
                "engagement_points": 1.0,
                "base_score": 3.0,
                "reasons_positive": [
                    {
                        "concept": "page_blog",
                        "sentence": "No blog visits yet",
                        "impact": 1.2,
                        "family": "engagement",
                    },
                    {
                        "concept": "demo_request",
                        "sentence": "No demo requests yet",
                        "impact": 1.5,
                        "family": "engagement",
                    },
                    {
                        "concept": "webinar_attended",
                        "sentence": "1 webinars attended in the last 7 days",
                        "impact": 2.0,
                        "family": "engagement",
                    },
                ],
                "reasons_negative": [
                    {
                        "concept": "seniority",
                        "sentence": "Seniority: c level",
                        "impact": -4.0,
                        "family": "fit",
                    },
                    {
                        "concept": "days_since_last_activity",
                        "sentence": "No activity from the lead for 15 days",
                        "impact": -2.0,
                        "family": "engagement",
                    },
                    {
                        "concept": "days_since_last_activity",
                        "sentence": "The lead was last active today",
                        "impact": -3.1,
                        "family": "engagement",
                    },
                ],
            }
        ),
        actions=[],
        model_version="1",
    )
    problems = " | ".join(card_problems(old))
    assert "1 webinars attended" in problems
    assert "c level" in problems
    assert "'No demo requests yet' raises" in problems
    assert "idle for 15 days" in problems
    assert "'The lead was last active today' lowers the score" in problems


def test_a_low_confidence_line_says_whether_the_tier_holds() -> None:
    scored = LeadScore.model_validate(
        {
            "lead_id": "L1",
            "status": "open",
            "probability": 0.946,
            "probability_low": 0.83,
            "probability_high": 0.999,
            "low_confidence": True,
            "score": 94.6,
            "tier": "sales_ready",
            "grade": "A1",
            "fit_points": 41.1,
            "engagement_points": 49.9,
            "base_score": 4.0,
            "reasons_positive": [],
            "reasons_negative": [],
        }
    )
    holds = LeadCard("L1", "2025-01-01", scored, [], "1", 90, None, ("sales_ready", "sales_ready"))
    spans = LeadCard("L1", "2025-01-01", scored, [], "1", 90, None, ("nurture", "sales_ready"))
    assert "whole range is sales-ready: act on the tier" in str(confidence_text(holds))
    assert "spans nurture to sales-ready: qualify the lead" in str(confidence_text(spans))
    sure = LeadCard("L1", "2025-01-01", scored.model_copy(update={"low_confidence": False}), [], "1", 90)
    assert confidence_text(sure) is None
