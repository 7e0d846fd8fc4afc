"""Follow-up cadence advice: the rules, and that every scored lead carries the advice its tier implies."""

from __future__ import annotations

import math

import pytest

from leadscore.features.vocabulary import Tier
from leadscore.model.cadence import follow_up

from ..conftest import Trained


@pytest.mark.parametrize(
    ("tier", "touches", "expected"),
    [
        (Tier.SALES_READY, 0, "reach out today"),
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
    ],
)
def test_advice_follows_the_tier_and_the_touches_so_far(tier: Tier, touches: int, expected: str) -> None:
    advice = follow_up(tier=tier, sales_touches=float(touches))
    assert advice is not None and expected in advice


@pytest.mark.parametrize("tier", [Tier.MARKETING_QUALIFIED, Tier.NURTURE, Tier.NOT_A_FIT])
@pytest.mark.parametrize("touches", [0.0, 3.0, 9.0])
def test_no_advice_to_call_leads_that_are_not_sales_ready(tier: Tier, touches: float) -> None:
    assert follow_up(tier=tier, sales_touches=touches) is None


@pytest.mark.parametrize("touches", [None, math.nan])
def test_no_advice_without_sales_activity_data(touches: float | None) -> None:
    assert follow_up(tier=Tier.SALES_READY, sales_touches=touches) is None


def test_every_scored_lead_carries_its_follow_up(trained: Trained) -> None:
    model = trained.result.model
    rows = trained.table.sort_values("as_of").tail(4000).reset_index(drop=True)
    for explain in (True, False):
        scored = model.score_features(rows, explain=explain)
        expected = [
            follow_up(tier=Tier(s["tier"]), sales_touches=float(touches), cadence=model.touch_cadence)
            for s, touches in zip(scored, rows["sales_touches_total"], strict=True)
        ]
        assert [s["follow_up"] for s in scored] == expected
    ready = [s for s in scored if s["tier"] == Tier.SALES_READY.value]
    assert ready and all(s["follow_up"] for s in ready)
