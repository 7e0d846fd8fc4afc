"""Follow-up advice: the rules, the evidence it reads, and that every scored lead carries the advice
its tier, touches and estimated contact effect imply."""

from __future__ import annotations

import math

import numpy as np
import pytest

from leadscore.features.vocabulary import Tier
from leadscore.model.cadence import BandEffect, ContactAdvice, ContactVerdict, follow_up

from ..conftest import Trained


def advice_of(estimate: float, low: float, high: float) -> ContactAdvice:
    return ContactAdvice(BandEffect(estimate, low, high, units=1_800), follow_up_days=7, learned_from=7_000)


HELPS = advice_of(0.04, 0.01, 0.07)
HURTS = advice_of(-0.05, -0.08, -0.02)
UNSURE = advice_of(0.01, -0.02, 0.04)


@pytest.mark.parametrize(
    ("tier", "touches", "expected"),
    [
        (Tier.SALES_READY, 0, "no estimate of whether contacting now helps"),
        (
            Tier.SALES_READY,
            2,
            "2 touches so far, fewer than usual: keep following up (a common rule of thumb: 5-10",
        ),
        (Tier.SALES_READY, 4, "keep following up"),
        (Tier.SALES_READY, 5, "within the usual 5-10"),
        (Tier.SALES_READY, 10, "within the usual 5-10"),
        (Tier.SALES_READY, 11, "ask for a decision"),
        (Tier.NURTURE, 10, "hand back to marketing nurture"),
        (Tier.MARKETING_QUALIFIED, 12, "hand back to marketing nurture"),
        (Tier.NOT_A_FIT, 10, "hand back to marketing nurture"),
        (Tier.MARKETING_QUALIFIED, 3, "3 touches and not sales-ready: keep nurturing"),
        (Tier.MARKETING_QUALIFIED, 0, "Marketing-qualified, not contacted: keep nurturing"),
        (Tier.NURTURE, 0, "Keep nurturing: not sales-ready"),
        (Tier.REVIEW_OUTSIDE_PROFILE, 0, "have a person review it before any call"),
        (Tier.NOT_A_FIT, 0, "Not a fit: no sales follow-up."),
    ],
)
def test_advice_follows_the_tier_and_the_touches_so_far(tier: Tier, touches: int, expected: str) -> None:
    advice = follow_up(tier=tier, sales_touches=float(touches))
    assert advice is not None and expected in advice


@pytest.mark.parametrize("tier", list(Tier))
@pytest.mark.parametrize("touches", [0.0, 3.0, 9.0])
def test_every_tier_gets_a_line_and_only_sales_ready_is_told_to_keep_calling(
    tier: Tier, touches: float
) -> None:
    advice = follow_up(tier=tier, sales_touches=touches)
    assert advice
    if tier is not Tier.SALES_READY:
        assert "keep following up" not in advice and "reach out" not in advice


@pytest.mark.parametrize("tier", list(Tier))
def test_contact_is_advised_only_where_the_effect_is_positive_with_confidence(tier: Tier) -> None:
    helps = str(follow_up(tier=tier, sales_touches=0.0, contact=HELPS))
    hurts = str(follow_up(tier=tier, sales_touches=0.0, contact=HURTS))
    unsure = str(follow_up(tier=tier, sales_touches=0.0, contact=UNSURE))
    assert "+4.0 points (95% CI +1.0 to +7.0)" in helps and (
        "reach out now" in helps or "short call" in helps
    )
    assert hurts.startswith("Hold off contacting") and "-5.0 points" in hurts
    assert "reach out" not in hurts and "call is" not in hurts
    if tier is not Tier.NOT_A_FIT:
        assert "no evidence that contacting now helps" in unsure and "reach out" not in unsure
    assert HELPS.verdict is ContactVerdict.HELPS and HURTS.verdict is ContactVerdict.HURTS
    assert UNSURE.verdict is ContactVerdict.NO_EVIDENCE


def test_the_effect_estimate_changes_only_the_uncontacted_leads_line() -> None:
    for touches in (1.0, 4.0, 12.0):
        assert follow_up(tier=Tier.SALES_READY, sales_touches=touches, contact=HURTS) == follow_up(
            tier=Tier.SALES_READY, sales_touches=touches
        )


@pytest.mark.parametrize("touches", [None, math.nan])
def test_no_advice_without_sales_activity_data(touches: float | None) -> None:
    assert follow_up(tier=Tier.SALES_READY, sales_touches=touches) is None


def test_every_scored_lead_carries_its_follow_up(trained: Trained) -> None:
    model = trained.result.model
    rows = trained.table.sort_values("as_of").tail(4000).reset_index(drop=True)
    contact = model.contact_advice(rows)
    for explain in (True, False):
        scored = model.score_features(rows, explain=explain)
        expected = [
            follow_up(
                tier=Tier(s["tier"]),
                sales_touches=float(touches),
                cadence=model.touch_cadence,
                contact=advice,
            )
            for s, touches, advice in zip(scored, rows["sales_touches_total"], contact, strict=True)
        ]
        assert [s["follow_up"] for s in scored] == expected
    assert all(s["follow_up"] for s in scored)
    applies = np.array([a is not None for a in contact])
    untouched = rows["sales_touches_total"].fillna(0).to_numpy() == 0
    assert applies.any() and not (applies & ~untouched).any()  # only uncontacted leads get an estimate
