"""Whether contacting a lead now helps: hand-raise units, the learned effect bands, and advice that
never tells a rep to make a call the evidence says hurts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.features.contact_units import contact_units, contact_units_path
from leadscore.features.simulator import true_contact_effect
from leadscore.model.cadence import BandEffect, ContactAdvice, ContactVerdict
from leadscore.model.scoring_model import ACTIONABLE_TYPES
from leadscore.training.contact import learn_contact_effect
from leadscore.training.model_card import _contact_text

from ..conftest import Trained

T0 = pd.Timestamp("2025-01-01")


def _day(days: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=days)


def test_units_are_unanswered_hand_raises_and_a_touch_answers_the_newest_one() -> None:
    leads = pd.DataFrame({"lead_id": list("abcdef"), "created_at": [T0] * 6})
    rows = [
        ("a", 1, "form_fill"), ("a", 3, "sales_call"),  # followed up in 2 days
        ("b", 1, "form_fill"), ("b", 20, "sales_call"),  # a touch 19 days later: not followed up
        # the touch answers the demo request
        ("c", 1, "form_fill"), ("c", 2, "demo_request"), ("c", 2.5, "sales_email"),
        ("d", 1, "sales_call"), ("d", 2, "form_fill"),  # contacted before the hand-raise: no unit
        ("e", 1, "form_fill"),  # converted before any touch
        ("f", 300, "form_fill"),  # its 90-day horizon has not ended
    ]  # fmt: skip
    activities = pd.DataFrame(rows, columns=["lead_id", "day", "activity_type"])
    activities["timestamp"] = activities.pop("day").map(_day)
    outcomes = pd.DataFrame({"lead_id": ["a", "e"], "converted_at": [_day(30), _day(10)]})
    units = contact_units(
        leads=leads, activities=activities, outcomes=outcomes, horizon_days=90, until=_day(320)
    ).set_index(["lead_id", "hand_raise"])
    assert set(units.index) == {
        ("a", "form_fill"), ("b", "form_fill"), ("c", "form_fill"), ("c", "demo_request"), ("e", "form_fill")
    }  # fmt: skip
    treated = units["treated"].to_dict()
    assert treated[("a", "form_fill")] == 1 and treated[("b", "form_fill")] == 0
    assert treated[("c", "form_fill")] == 0 and treated[("c", "demo_request")] == 1
    assert units.loc[("a", "form_fill"), "converted"] == 1 and units.loc[("e", "form_fill"), "converted"] == 1
    assert units.loc[("b", "form_fill"), "converted"] == 0


def test_an_export_without_sales_touches_has_no_units() -> None:
    leads = pd.DataFrame({"lead_id": ["a"], "created_at": [T0]})
    activities = pd.DataFrame({"lead_id": ["a"], "timestamp": [_day(1)], "activity_type": ["form_fill"]})
    outcomes = pd.DataFrame(
        {"lead_id": pd.Series(dtype=str), "converted_at": pd.Series(dtype="datetime64[ns]")}
    )
    assert contact_units(
        leads=leads, activities=activities, outcomes=outcomes, horizon_days=90, until=_day(200)
    ).empty


def synthetic_units(n: int, *, seed: int) -> pd.DataFrame:
    """Executives are put off by a call (-25 points), managers helped (+25), others unmoved; reps call
    managers more often (confounding the naive comparison)."""
    rng = np.random.default_rng(seed)
    seniority = rng.choice(["executive", "manager", "other"], size=n)
    visits = rng.poisson(3, size=n).astype(float)
    propensity = np.where(seniority == "manager", 0.7, 0.35)
    treated = (rng.random(n) < propensity).astype(int)
    base = 0.3 + 0.03 * np.minimum(visits, 5)
    effect = np.select([seniority == "executive", seniority == "manager"], [-0.25, 0.25], 0.0)
    converted = (rng.random(n) < np.clip(base + treated * effect, 0, 1)).astype(int)
    return pd.DataFrame(
        {
            "seniority": pd.Categorical(seniority),
            "page_pricing_total": visits,
            "sales_touches_total": 0.0,
            "days_since_form_fill": 1.0,
            "treated": treated,
            "converted": converted,
        }
    )


def learned(n: int, seed: int = 3):  # type: ignore[no-untyped-def]
    return learn_contact_effect(
        synthetic_units(n, seed=seed),
        feature_names=("seniority", "page_pricing_total", "sales_touches_total", "days_since_form_fill"),
        categorical_features=("seniority",),
        hand_raise_columns=("days_since_form_fill",),
        follow_up_days=7,
        seed=seed,
    )


@pytest.fixture(scope="module")
def strong() -> object:
    return learned(6_000)


def test_a_strong_effect_is_found_in_both_directions(strong) -> None:  # type: ignore[no-untyped-def]
    effect = strong.effect
    assert effect is not None and len(effect.bands) == 4
    verdicts = [b.verdict for b in effect.bands]
    assert verdicts[0] is ContactVerdict.HURTS and verdicts[-1] is ContactVerdict.HELPS
    assert effect.bands[0].high < 0 < effect.bands[-1].low
    rows = pd.DataFrame(
        {
            "seniority": pd.Categorical(["executive", "manager", "manager"]),
            "page_pricing_total": [3.0, 3.0, 3.0],
            "sales_touches_total": [0.0, 0.0, 2.0],
            "days_since_form_fill": [1.0, 1.0, 1.0],
        }
    )
    executive, manager, touched = effect.advice(rows)
    assert executive is not None and executive.verdict is ContactVerdict.HURTS
    assert manager is not None and manager.verdict is ContactVerdict.HELPS
    assert touched is None  # already contacted: the cadence speaks, not the first-contact effect
    stale = rows.assign(days_since_form_fill=30.0)
    assert effect.advice(stale) == [None, None, None]  # not the decision the units measured
    for frame in (rows, stale):  # the fast path's one-row check agrees with the frame's
        records = frame.astype(object).to_dict(orient="records")
        assert [effect.row_applies(r) for r in records] == effect.applies(frame).tolist()


def test_no_effect_is_reported_as_no_evidence_in_nearly_every_export() -> None:
    """With no effect at all, the simultaneous 95% intervals call a band "helps" or "hurts" in about 5%
    of exports (Bonferroni: at most 5%): of 8 exports, at most one."""
    false_verdicts = 0
    for seed in range(8):
        units = synthetic_units(3_000, seed=seed)
        rng = np.random.default_rng(seed + 100)
        units["converted"] = (rng.random(len(units)) < 0.3).astype(int)  # a call changes nothing
        result = learn_contact_effect(
            units,
            feature_names=("seniority", "page_pricing_total", "sales_touches_total", "days_since_form_fill"),
            categorical_features=("seniority",),
            hand_raise_columns=("days_since_form_fill",),
            follow_up_days=7,
            seed=seed,
        )
        assert result.effect is not None
        false_verdicts += any(b.verdict is not ContactVerdict.NO_EVIDENCE for b in result.effect.bands)
    assert false_verdicts <= 1


def test_too_few_hand_raises_learn_nothing_and_say_why() -> None:
    result = learned(300)
    assert result.effect is None and "too few hand-raises" in result.summary and "300 units" in result.summary


def test_the_trained_model_carries_the_effect_and_the_card_explains_it(trained: Trained) -> None:
    model = trained.result.model
    assert contact_units_path(trained.table_path).exists()
    effect = model.contact_effect
    assert effect is not None and effect.units >= 1_000
    assert trained.result.evaluated.contact_effect is effect  # learned once, carried by both
    assert "learned from" in str(model.metadata["contact_effect"])
    text = _contact_text(model)
    assert "Cards advise contact only in a band whose interval is above 0" in text


def test_advice_on_the_simulator_never_contradicts_the_actions(trained: Trained) -> None:
    model = trained.result.model
    crm = trained.crm
    end = crm.exported_at
    open_leads = crm.leads[~crm.leads["lead_id"].isin(set(crm.outcomes["lead_id"]))].head(3_000)
    features = model.features(leads=open_leads, activities=crm.activities, as_of=end)
    scored = model.score_features(features, explain=False)
    contact = model.contact_advice(features)
    actions = model.next_best_actions(leads=open_leads, activities=crm.activities, as_of=end)
    assert set(ACTIONABLE_TYPES) == {"sales_call", "sales_email", "sales_meeting"}
    for s, advice, suggested in zip(scored, contact, actions, strict=True):
        line = str(s["follow_up"])
        if advice is not None and advice.verdict is ContactVerdict.HURTS:
            assert not suggested and line.startswith("Hold off")
        if s["tier"] != "sales_ready" and (advice is None or advice.verdict is not ContactVerdict.HELPS):
            assert not suggested  # "keep nurturing" never comes with "Call the lead"
        if "reach out" in line:
            assert advice is not None and advice.verdict is ContactVerdict.HELPS
    truth = true_contact_effect(
        crm=crm, snapshots=pd.DataFrame({"lead_id": open_leads["lead_id"], "as_of": end})
    )
    assert np.isfinite(truth).all() and (truth < 0).any() and (truth > 0).any()


def test_a_hurting_band_removes_sales_actions_even_for_sales_ready_leads(trained: Trained) -> None:
    model = trained.result.model
    hurts = ContactAdvice(BandEffect(-0.05, -0.08, -0.02, 900), follow_up_days=7, learned_from=4_000)
    n = 3
    base = np.full(n, min(0.99, model.thresholds.sql + 0.05))
    after = np.full((len(ACTIONABLE_TYPES), n), min(1.0, base[0] + 0.2))
    kept = model.actions_from_probabilities(
        base=base,
        after=after,
        column=lambda name: None,
        open_leads=np.ones(n, dtype=bool),
        contact=[None, hurts, None],
    )
    assert kept[0] and not kept[1] and kept[2]
