"""Tests for the vectorised CRM simulator (``leadscore.features.simulator``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from leadscore.features.contract import (
    SALES_TOUCH_TYPES,
    ActivitiesSchema,
    ActivityType,
    LeadsSchema,
    OutcomesSchema,
    PageCategory,
)
from leadscore.features.simulator import (
    FREEMAIL_DOMAINS,
    SimulatedCRM,
    oracle_probability,
    point_in_time_oracle_probability,
    simulate_crm,
    write_crm,
)

N = 20_000
SALES = {t.value for t in SALES_TOUCH_TYPES}
LOGIT_PARTS = ["logit_base", "logit_fit", "logit_intent", "logit_touch"]


@pytest.fixture(scope="module")
def crm() -> SimulatedCRM:
    return simulate_crm(n_leads=N, seed=7)


@pytest.fixture(scope="module")
def small() -> SimulatedCRM:
    return simulate_crm(n_leads=600, seed=3)


def _rate(mask: pd.Series, crm: SimulatedCRM) -> float:
    return float(crm.truth.loc[mask.to_numpy(), "converts"].mean())


def _leads_with(crm: SimulatedCRM, activity_type: str) -> pd.Series:
    ids = crm.activities.loc[crm.activities["activity_type"] == activity_type, "lead_id"]
    return crm.leads["lead_id"].isin(ids)


# --------------------------------------------------------------------------- schemas and integrity
def test_tables_validate_and_have_contract_columns(crm: SimulatedCRM) -> None:
    LeadsSchema.validate(crm.leads, lazy=True)
    ActivitiesSchema.validate(crm.activities, lazy=True)
    OutcomesSchema.validate(crm.outcomes, lazy=True)
    assert list(crm.leads.columns) == list(LeadsSchema.to_schema().columns)
    assert list(crm.activities.columns) == list(ActivitiesSchema.to_schema().columns)
    assert list(crm.outcomes.columns) == list(OutcomesSchema.to_schema().columns)
    for frame, col in [
        (crm.leads, "created_at"),
        (crm.activities, "timestamp"),
        (crm.outcomes, "converted_at"),
    ]:
        assert frame[col].dtype == "datetime64[ns]"
    for col in ["lead_id", "channel", "job_title", "email", "country"]:
        assert pd.api.types.is_string_dtype(crm.leads[col])
    assert pd.api.types.is_string_dtype(crm.activities["activity_type"])
    assert crm.leads["lead_id"].is_unique and len(crm.leads) == N
    assert crm.leads["lead_id"].iloc[0] == "L0000001"
    assert crm.truth["lead_id"].equals(crm.leads["lead_id"])
    assert set(LOGIT_PARTS) <= set(crm.truth.columns)
    assert crm.truth["converts"].dtype == bool


def test_same_seed_is_identical_and_other_seed_differs() -> None:
    a = simulate_crm(n_leads=3_000, seed=11)
    b = simulate_crm(n_leads=3_000, seed=11)
    c = simulate_crm(n_leads=3_000, seed=12)
    for name in ["leads", "activities", "outcomes", "truth"]:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert a.exported_at == b.exported_at
    assert not a.leads.equals(c.leads)
    assert not a.activities.equals(c.activities)


def test_no_timestamp_after_export(crm: SimulatedCRM) -> None:
    assert crm.exported_at == pd.Timestamp("2025-12-31")
    assert crm.leads["created_at"].min() >= pd.Timestamp("2024-01-01")
    assert crm.leads["created_at"].max() <= crm.exported_at
    assert crm.activities["timestamp"].max() <= crm.exported_at
    assert crm.outcomes["converted_at"].max() <= crm.exported_at


def test_custom_period_is_respected() -> None:
    sim = simulate_crm(n_leads=1_000, seed=5, start="2023-06-15", end=pd.Timestamp("2023-09-01 12:00"))
    assert sim.exported_at == pd.Timestamp("2023-09-01 12:00")
    assert sim.leads["created_at"].between(pd.Timestamp("2023-06-15"), sim.exported_at).all()
    assert sim.activities["timestamp"].max() <= sim.exported_at
    assert sim.outcomes["converted_at"].max() <= sim.exported_at
    assert sim.activities["campaign"].dropna().str[:7].isin(["2023-Q2", "2023-Q3"]).all()


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError):
        simulate_crm(n_leads=0, seed=1)
    with pytest.raises(ValueError):
        simulate_crm(n_leads=10, seed=1, start="2025-01-01", end="2024-01-01")


def test_activities_belong_to_known_leads_after_creation(crm: SimulatedCRM) -> None:
    acts = crm.activities
    assert acts["lead_id"].isin(crm.leads["lead_id"]).all()
    created = acts["lead_id"].map(crm.leads.set_index("lead_id")["created_at"])
    assert (acts["timestamp"] >= created).all()
    # ordered by lead, then time
    key = acts["lead_id"].str[1:].astype(int).to_numpy() * 10**12 + acts["timestamp"].astype("int64") // 10**9
    assert np.all(np.diff(key.to_numpy()) >= 0)
    # converters have no activity after they became an opportunity
    conv = acts["lead_id"].map(crm.outcomes.set_index("lead_id")["converted_at"])
    assert not (acts["timestamp"] > conv).any()


def test_outcomes_match_converters_with_correct_censoring(crm: SimulatedCRM) -> None:
    out = crm.outcomes.merge(crm.leads[["lead_id", "created_at"]], on="lead_id")
    assert (out["converted_at"] >= out["created_at"]).all()
    truth = crm.truth
    observable = truth["converts"] & (truth["converted_at"] <= crm.exported_at)
    assert set(crm.outcomes["lead_id"]) == set(truth.loc[observable, "lead_id"])
    assert truth.loc[truth["converts"] & ~observable, "converted_at"].gt(crm.exported_at).all()
    assert (~truth["converts"] & truth["converted_at"].notna()).sum() == 0
    assert (crm.outcomes["opportunity_amount"].dropna() > 0).all()


def test_conversion_delay_is_fixed_gamma_independent_of_probability(crm: SimulatedCRM) -> None:
    conv = crm.truth[crm.truth["converts"]]
    delay = conv["conversion_delay_days"].to_numpy()
    implied = (conv["converted_at"] - crm.leads.loc[conv.index, "created_at"]) / pd.Timedelta(days=1)
    np.testing.assert_allclose(implied.to_numpy(), delay, atol=1e-6)
    assert stats.kstest(delay, stats.gamma(a=2.0, scale=14.0).cdf).pvalue > 1e-3
    assert abs(stats.spearmanr(delay, conv["true_probability"]).statistic) < 0.06


def test_truth_probability_is_sigmoid_of_logit_parts(crm: SimulatedCRM) -> None:
    logit = crm.truth[LOGIT_PARTS].sum(axis=1).to_numpy()
    np.testing.assert_allclose(crm.truth["true_probability"], 1 / (1 + np.exp(-logit)), rtol=1e-10)
    np.testing.assert_allclose(crm.truth["logit"], logit, rtol=1e-10)
    # intent counts 2.2 in profile (manager or above, corporate e-mail), 0.2 outside it, saturating
    truth = crm.truth
    in_profile = crm.leads["seniority"].isin(["c_level", "vp", "director", "manager"]) & ~truth["freemail"]
    coef = np.where(in_profile, 2.2, 0.2)
    np.testing.assert_allclose(truth["intent_coefficient"], coef)
    np.testing.assert_allclose(truth["logit_intent"], coef * 2.5 * np.tanh(truth["intent"] / 2.5), rtol=1e-12)
    # intent (what engagement reveals) varies more than fit; the base rate drifts down
    assert crm.truth["logit_intent"].std() > 1.1 * crm.truth["logit_fit"].std()
    created = crm.leads["created_at"].astype("int64")
    assert np.corrcoef(created, crm.truth["logit_base"])[0, 1] < -0.99


# --------------------------------------------------------------------------- realism and direction
def test_conversion_rate_in_plausible_band(crm: SimulatedCRM) -> None:
    rate = crm.truth["converts"].mean()
    assert 0.10 <= rate <= 0.20
    assert abs(rate - crm.truth["true_probability"].mean()) < 0.01
    assert 0.08 <= len(crm.outcomes) / N <= 0.20


def test_channel_effects(crm: SimulatedCRM) -> None:
    ch = crm.leads["channel"]
    purchased = _rate(ch == "purchased_list", crm)
    assert purchased < 0.5 * _rate(ch == "referral", crm)
    assert purchased < 0.5 * _rate(ch == "webinar", crm)
    assert 0.07 <= (ch == "purchased_list").mean() <= 0.13
    assert set(ch) == {
        "web_form",
        "paid_search",
        "organic_search",
        "webinar",
        "trade_show",
        "content_download",
        "referral",
        "partner",
        "social",
        "purchased_list",
    }


def test_demo_request_raises_conversion(crm: SimulatedCRM) -> None:
    demo = _leads_with(crm, "demo_request")
    assert 0.02 < demo.mean() < 0.2
    assert _rate(demo, crm) > 2.0 * _rate(~demo, crm)
    # a demo request reveals intent rather than causing conversion: requesters have higher intent
    intent = crm.truth["intent"]
    assert intent[demo.to_numpy()].mean() > intent[~demo.to_numpy()].mean() + 0.5


def test_students_and_freemail_convert_less(crm: SimulatedCRM) -> None:
    student = crm.leads["seniority"] == "student"
    assert _rate(student, crm) < 0.5 * _rate(~student, crm)
    domain = crm.leads["email"].str.extract(r"@(.+)$")[0]
    free = domain.isin(FREEMAIL_DOMAINS)
    corporate = domain.notna() & ~free & ~domain.str.endswith(".edu")
    assert 0.18 <= free.mean() <= 0.32
    assert _rate(free, crm) < 0.8 * _rate(corporate, crm)
    student_domain = domain[student].dropna()
    assert (student_domain.str.endswith(".edu") | student_domain.isin(FREEMAIL_DOMAINS)).all()


def test_unsubscribe_and_careers_lower_conversion(crm: SimulatedCRM) -> None:
    unsub = _leads_with(crm, "unsubscribe")
    assert 0.02 < unsub.mean() < 0.15
    assert _rate(unsub, crm) < 0.6 * _rate(~unsub, crm)
    careers_ids = crm.activities.loc[crm.activities["page_category"] == "careers", "lead_id"]
    careers = crm.leads["lead_id"].isin(careers_ids.value_counts()[lambda s: s >= 3].index)
    assert _rate(careers, crm) < _rate(~careers, crm)
    per_lead = crm.activities.groupby("lead_id", observed=True)["activity_type"]
    assert per_lead.apply(lambda s: (s == "unsubscribe").sum()).max() <= 1
    assert per_lead.apply(lambda s: (s == "bounce").sum()).max() <= 1


def test_high_intent_leads_engage_more(crm: SimulatedCRM) -> None:
    engagement = crm.activities[~crm.activities["activity_type"].isin(SALES)]
    counts = engagement["lead_id"].value_counts().reindex(crm.leads["lead_id"], fill_value=0).to_numpy()
    quartile = pd.qcut(crm.truth["intent"], 4, labels=False).to_numpy()
    means = [counts[quartile == q].mean() for q in range(4)]
    assert means == sorted(means)
    assert means[3] > 2.0 * means[0]
    pricing = crm.activities[crm.activities["page_category"] == "pricing"]["lead_id"].value_counts()
    pricing = pricing.reindex(crm.leads["lead_id"], fill_value=0).to_numpy()
    assert pricing[quartile == 3].mean() > 3.0 * pricing[quartile == 0].mean()


def test_activity_volume_and_mix(crm: SimulatedCRM) -> None:
    acts = crm.activities
    assert 14.0 <= len(acts) / N <= 24.0
    assert set(acts["activity_type"]) == {t.value for t in ActivityType}
    is_view = acts["activity_type"] == "page_view"
    assert (acts["page_category"].notna() == is_view).all()
    assert set(acts.loc[is_view, "page_category"]) == {p.value for p in PageCategory}
    # campaigns only on e-mail and webinar events
    with_campaign = set(acts.loc[acts["campaign"].notna(), "activity_type"])
    assert with_campaign == {"email_open", "email_click", "webinar_registered", "webinar_attended"}
    # touched leads get 1-10 sales touches, each after a form fill or demo request
    touches = acts[acts["activity_type"].isin(SALES)]
    per_lead = touches.groupby("lead_id")["timestamp"].agg(["min", "size"])
    assert per_lead["size"].max() <= 10
    triggers = acts[acts["activity_type"].isin(["form_fill", "demo_request"])]
    first_trigger = triggers.groupby("lead_id")["timestamp"].min()
    assert (per_lead["min"] >= first_trigger.reindex(per_lead.index)).all()
    # webinar attendance is the webinar a registration signed up for, a week later, same campaign
    att = acts[acts["activity_type"] == "webinar_attended"]
    reg = acts[acts["activity_type"] == "webinar_registered"]
    matched = att.assign(timestamp=att["timestamp"] - pd.Timedelta(days=7)).merge(
        reg, on=["lead_id", "timestamp", "campaign"], how="left", indicator=True
    )
    assert len(att) > 100 and (matched["_merge"] == "both").mean() > 0.99


def test_lead_columns_are_realistic(crm: SimulatedCRM) -> None:
    leads = crm.leads
    missing = leads.isna().mean()
    for col in ["department", "industry", "employee_count", "annual_revenue", "company_type", "country"]:
        assert 0.04 <= missing[col] <= 0.16, col
    assert 0.01 <= missing["email"] <= 0.035
    assert leads["country"].nunique() == 12 and leads["industry"].nunique() == 10
    assert set(leads["company_type"].dropna()) == {
        "private",
        "public",
        "nonprofit",
        "government",
        "education",
    }
    assert (leads["employee_count"].dropna() >= 1).all()
    assert (leads["employee_count"].dropna() % 1 == 0).all()
    size = leads[["employee_count", "annual_revenue"]].dropna()
    assert np.corrcoef(np.log(size["employee_count"]), np.log(size["annual_revenue"]))[0, 1] > 0.7
    titles = leads[["seniority", "job_title", "department"]].dropna()
    assert (
        titles.loc[titles["seniority"] == "student", "job_title"]
        .str.lower()
        .str.contains("student|phd|research")
        .all()
    )
    vp = titles[(titles["seniority"] == "vp") & (titles["department"] == "marketing")]
    assert vp["job_title"].str.contains("Marketing", case=False).all()
    assert leads["email"].dropna().str.fullmatch(r"[a-z0-9.]+@[a-z0-9.]+\.[a-z]+").all()
    assert leads["phone"].dropna().str.startswith("+").all()
    # growth: more leads in the second year than the first
    year = leads["created_at"].dt.year
    assert (year == 2025).sum() > 1.3 * (year == 2024).sum()


# --------------------------------------------------------------------------- what trees add
def test_engagement_counts_only_in_profile(crm: SimulatedCRM) -> None:
    # a demo request (high intent) lifts conversion far more for in-profile leads than for the rest
    demo = _leads_with(crm, "demo_request").to_numpy()
    in_profile = (crm.truth["intent_coefficient"] == 2.2).to_numpy()
    p = crm.truth["true_probability"].to_numpy()

    def log_odds(mask: np.ndarray) -> float:
        return float(np.log(p[mask].mean() / (1 - p[mask].mean())))

    lift_in = log_odds(demo & in_profile) - log_odds(~demo & in_profile)
    lift_out = log_odds(demo & ~in_profile) - log_odds(~demo & ~in_profile)
    assert lift_in > lift_out + 0.4


def test_fit_has_interactions_and_thresholds(crm: SimulatedCRM) -> None:
    leads, fit = crm.leads, crm.truth["logit_fit"]

    # seniority x department: IT vs HR matters for directors, hardly (and the other way) for contributors
    def mean_fit(seniority: str, department: str) -> float:
        mask = (leads["seniority"] == seniority) & (leads["department"] == department)
        return float(fit[mask.to_numpy()].mean())

    senior_gap = mean_fit("director", "it") - mean_fit("director", "hr")
    junior_gap = mean_fit("individual_contributor", "it") - mean_fit("individual_contributor", "hr")
    assert senior_gap > 0.6 and junior_gap < 0.2
    # company size: a band, not a line: mid-size companies beat both the smallest and the largest
    size = leads["employee_count"]
    rate = [
        _rate(size.lt(10), crm),
        _rate(size.between(200, 1999), crm),
        _rate(size.ge(10_000), crm),
    ]
    assert rate[1] > 1.5 * rate[0] and rate[1] > 1.2 * rate[2]


# --------------------------------------------------------------------------- sales follow-up (causal)
def test_follow_up_is_decided_on_what_sales_sees(crm: SimulatedCRM) -> None:
    truth = crm.truth
    form_first = truth["form_first"].to_numpy()
    by_form = truth["followed_up"].to_numpy()[form_first] == "form"
    propensity = truth["form_follow_up_probability"].to_numpy()[form_first]
    se = np.sqrt(np.sum(propensity * (1 - propensity))) / propensity.shape[0]
    assert abs(by_form.mean() - propensity.mean()) < 4 * se
    # given the propensity, the decision ignores the latent intent
    residual = by_form - propensity
    assert abs(np.corrcoef(residual, truth["intent"].to_numpy()[form_first])[0, 1]) < 0.05
    # the export shows a touch for every followed-up lead whose first touch came before conversion
    touched_ids = set(crm.activities.loc[crm.activities["activity_type"].isin(SALES), "lead_id"])
    assert touched_ids <= set(truth.loc[truth["followed_up"] != "none", "lead_id"])


def test_follow_up_effects_are_heterogeneous_and_recorded(crm: SimulatedCRM) -> None:
    truth = crm.truth
    untouched = truth["logit"] - truth["logit_touch"]
    np.testing.assert_allclose(truth["p_untouched"], 1 / (1 + np.exp(-untouched)), rtol=1e-10)
    np.testing.assert_allclose(
        truth["p_form_follow_up"], 1 / (1 + np.exp(-untouched - truth["effect_form_follow_up"])), rtol=1e-10
    )
    effect = np.select(
        [truth["followed_up"] == "form", truth["followed_up"] == "demo"],
        [truth["effect_form_follow_up"], truth["effect_demo_follow_up"]],
        0.0,
    )
    np.testing.assert_allclose(truth["logit_touch"], effect, rtol=1e-12)
    uplift = truth["p_form_follow_up"] - truth["p_untouched"]
    # some leads respond to an early call, some are put off (executives, low intent)
    assert (uplift > 0.01).mean() > 0.1 and (uplift < -0.01).mean() > 0.1
    executives = crm.leads["seniority"].isin(["c_level", "vp"]).to_numpy()
    assert uplift[executives].mean() < 0 < uplift[crm.leads["seniority"].eq("manager").to_numpy()].mean()
    # a demo request's follow-up helps more than the early one, for everyone
    assert (truth["effect_demo_follow_up"] > truth["effect_form_follow_up"]).mean() > 0.8


# --------------------------------------------------------------------------- drift
@pytest.fixture(scope="module")
def drifting() -> SimulatedCRM:
    return simulate_crm(n_leads=20_000, seed=9, drift=True)


def test_drift_moves_base_rate_channel_mix_and_market(drifting: SimulatedCRM) -> None:
    leads, truth, market = drifting.leads, drifting.truth, drifting.market
    assert market is not None and list(market.columns) == ["date", "market_index"]
    assert market["date"].is_monotonic_increasing and market["date"].iloc[0] == pd.Timestamp("2024-01-01")
    # the market index leaves its earlier range in the last quarter of the period
    position = np.arange(len(market)) / (len(market) - 1)
    earlier = market.loc[position < 0.75, "market_index"]
    assert market["market_index"].iloc[-30:].min() > earlier.max() + 3
    # every lead carries the index of its creation day, and the logit follows it
    day = ((leads["created_at"] - pd.Timestamp("2024-01-01")) // pd.Timedelta(days=1)).to_numpy()
    np.testing.assert_allclose(truth["market_index"], market["market_index"].to_numpy()[day], atol=1e-5)
    span = (drifting.exported_at - pd.Timestamp("2024-01-01")) / pd.Timedelta(days=1)
    u = ((leads["created_at"] - pd.Timestamp("2024-01-01")) / pd.Timedelta(days=1) / span).to_numpy()
    expected = -3.15 + 0.9 * u + 0.03 * (truth["market_index"].to_numpy() - 100)
    np.testing.assert_allclose(truth["logit_base"], expected, atol=1e-4)
    # the base rate climbs and the channel mix moves
    first, last = u < 0.25, u > 0.75
    assert truth["converts"][last].mean() > 1.2 * truth["converts"][first].mean()
    paid = leads["channel"].isin(["paid_search", "social"]).to_numpy()
    assert paid[last].mean() > paid[first].mean() + 0.08
    web = (leads["channel"] == "web_form").to_numpy()
    assert web[last].mean() < web[first].mean() - 0.04


def test_no_drift_writes_no_market_and_drift_does(
    small: SimulatedCRM, drifting: SimulatedCRM, tmp_path: Path
) -> None:
    assert small.market is None
    assert "market" not in write_crm(small, out_dir=tmp_path / "a")
    paths = write_crm(drifting, out_dir=tmp_path / "b")
    pd.testing.assert_frame_equal(pd.read_parquet(paths["market"]), drifting.market)


# --------------------------------------------------------------------------- oracle
def _snapshots_and_labels(
    crm: SimulatedCRM, as_of: pd.Series, horizon: int
) -> tuple[pd.DataFrame, np.ndarray]:
    leads = crm.leads.assign(as_of=as_of.to_numpy())
    conv = leads["lead_id"].map(crm.outcomes.set_index("lead_id")["converted_at"])
    window_end = leads["as_of"] + pd.Timedelta(days=horizon)
    eligible = (leads["created_at"] <= leads["as_of"]) & ~(conv <= leads["as_of"])
    eligible &= window_end <= crm.exported_at
    label = (conv > leads["as_of"]) & (conv <= window_end)
    return leads.loc[eligible, ["lead_id", "as_of"]], label[eligible].to_numpy()


@pytest.mark.parametrize(
    ("as_of", "horizon"),
    [("fixed", 30), ("relative", 45)],
)
def test_oracle_matches_observed_label_rate(crm: SimulatedCRM, as_of: str, horizon: int) -> None:
    if as_of == "fixed":
        when = pd.Series(pd.Timestamp("2025-03-01"), index=crm.leads.index)
    else:
        when = crm.leads["created_at"] + pd.Timedelta(days=10)
    snaps, label = _snapshots_and_labels(crm, when, horizon)
    assert len(snaps) > 3_000
    p = oracle_probability(truth=crm.truth, leads=crm.leads, snapshots=snaps, horizon_days=horizon)
    assert p.shape == (len(snaps),)
    assert ((p >= 0) & (p <= 1)).all()
    se = np.sqrt(np.sum(p * (1 - p))) / len(p)
    assert abs(p.mean() - label.mean()) < 4 * se
    # and it ranks: leads that convert in the window have a much higher oracle probability
    assert p[label].mean() > 3 * p[~label].mean()


def test_oracle_formula(crm: SimulatedCRM) -> None:
    snaps = crm.leads[["lead_id"]].iloc[::97].copy()
    rng = np.random.default_rng(0)
    snaps["as_of"] = crm.leads["created_at"].iloc[::97] + pd.to_timedelta(
        rng.uniform(-5, 90, len(snaps)), "D"
    )
    got = oracle_probability(truth=crm.truth, leads=crm.leads, snapshots=snaps, horizon_days=30)
    p = crm.truth["true_probability"].iloc[::97].to_numpy()
    s = ((snaps["as_of"] - crm.leads["created_at"].iloc[::97]) / pd.Timedelta(days=1)).to_numpy()
    cdf = stats.gamma(a=2.0, scale=14.0).cdf
    expected = p * (cdf(s + 30) - cdf(s)) / (1 - p * cdf(s))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    # snapshot order follows the input, not the lead table
    rev = snaps.iloc[::-1]
    got_rev = oracle_probability(truth=crm.truth, leads=crm.leads, snapshots=rev, horizon_days=30)
    np.testing.assert_allclose(got_rev, got[::-1])


def test_oracle_rejects_bad_input(small: SimulatedCRM) -> None:
    snaps = pd.DataFrame({"lead_id": ["L9999999"], "as_of": [pd.Timestamp("2025-01-01")]})
    with pytest.raises(KeyError):
        oracle_probability(truth=small.truth, leads=small.leads, snapshots=snaps, horizon_days=30)
    ok = snaps.assign(lead_id=small.leads["lead_id"].iloc[0])
    with pytest.raises(ValueError):
        oracle_probability(truth=small.truth, leads=small.leads, snapshots=ok, horizon_days=0)


@pytest.fixture(scope="module")
def at_ages(crm: SimulatedCRM) -> pd.DataFrame:
    """Snapshots 3, 14 and 30 days after creation (60-day horizon) with both oracles."""
    frames = []
    for age in (3, 14, 30):
        when = crm.leads["created_at"] + pd.Timedelta(days=age)
        snaps, label = _snapshots_and_labels(crm, when, 60)
        frames.append(snaps.assign(label=label, age=age))
    snaps = pd.concat(frames, ignore_index=True)
    keys = snaps[["lead_id", "as_of"]]
    return snaps.assign(
        point_in_time=point_in_time_oracle_probability(crm=crm, snapshots=keys, horizon_days=60),
        latent=oracle_probability(truth=crm.truth, leads=crm.leads, snapshots=keys, horizon_days=60),
    )


def test_point_in_time_oracle_is_calibrated_within_its_own_deciles(at_ages: pd.DataFrame) -> None:
    # a Bayes posterior satisfies E[label | p] = p; a wrong likelihood term shows up as miscalibration
    assert len(at_ages) > 40_000
    decile = pd.qcut(at_ages["point_in_time"], 10, labels=False)
    by = at_ages.assign(var=at_ages["point_in_time"] * (1 - at_ages["point_in_time"])).groupby(decile)
    table = by.agg(p=("point_in_time", "mean"), y=("label", "mean"), n=("label", "size"), var=("var", "sum"))
    se = np.sqrt(table["var"]) / table["n"]
    assert ((table["y"] - table["p"]).abs() < 4 * se + 0.002).all(), table
    assert table["y"].iloc[-1] > 8 * table["y"].iloc[0]  # and it ranks


def test_point_in_time_oracle_sits_below_the_latent_ceiling(at_ages: pd.DataFrame) -> None:
    y = at_ages["label"]
    auc_pit = roc_auc_score(y, at_ages["point_in_time"])
    auc_latent = roc_auc_score(y, at_ages["latent"])
    assert 0.70 < auc_pit < auc_latent - 0.03
    # the more history a snapshot has, the better the oracle separates (the latent one knows it all)
    by_age = at_ages.groupby("age")
    auc = by_age.apply(lambda g: roc_auc_score(g["label"], g["point_in_time"]), include_groups=False)
    assert auc.loc[30] > auc.loc[3]


def test_point_in_time_oracle_never_reads_after_as_of(crm: SimulatedCRM, at_ages: pd.DataFrame) -> None:
    snaps = at_ages[at_ages["age"] == 14].iloc[::5]
    as_of = crm.activities["lead_id"].map(snaps.set_index("lead_id")["as_of"])
    past_only = replace(
        crm, activities=crm.activities[as_of.notna() & (crm.activities["timestamp"] <= as_of)]
    )
    keys = snaps[["lead_id", "as_of"]]
    got = point_in_time_oracle_probability(crm=past_only, snapshots=keys, horizon_days=60)
    np.testing.assert_allclose(got, snaps["point_in_time"], rtol=1e-12)
    # and it does read the past: dropping the history changes it
    no_history = replace(crm, activities=crm.activities.iloc[:0])
    blind = point_in_time_oracle_probability(crm=no_history, snapshots=keys, horizon_days=60)
    assert np.abs(blind - snaps["point_in_time"].to_numpy()).mean() > 0.01


def _follow_up_state(crm: SimulatedCRM, snaps: pd.DataFrame) -> pd.DataFrame:
    acts = crm.activities
    state = {}
    for name, types in [("touch", SALES), ("form", {"form_fill"}), ("demo", {"demo_request"})]:
        first = acts[acts["activity_type"].isin(types)].groupby("lead_id")["timestamp"].min()
        state[name] = (snaps["lead_id"].map(first) <= snaps["as_of"]).to_numpy()
    return pd.DataFrame(state, index=snaps.index)


def test_point_in_time_oracle_is_calibrated_by_follow_up_evidence(
    crm: SimulatedCRM, at_ages: pd.DataFrame
) -> None:
    # what sales did by as_of (a touch, or a form fill / demo request not yet followed up) enters the
    # oracle through the follow-up rule; each observable state must be calibrated on its own
    state = _follow_up_state(crm, at_ages)
    groups = at_ages.groupby([state["touch"], state["form"], state["demo"]])
    table = groups.agg(p=("point_in_time", "mean"), y=("label", "mean"), n=("label", "size"))
    table = table[table["n"] > 300]
    assert len(table) >= 5
    # snapshots of one lead at 3 ages are correlated: allow a wider band than independent rows
    se = np.sqrt(table["p"] * (1 - table["p"]) / table["n"])
    assert ((table["y"] - table["p"]).abs() < 5 * se + 0.003).all(), table


def test_point_in_time_oracle_averages_to_the_latent_oracle(crm: SimulatedCRM) -> None:
    # the law of total expectation: the latent oracle knows more (intent, the follow-up to come), so
    # over any observable group the Bayes posterior must average to it. No Bernoulli noise: a tight
    # check of the prior and of the follow-up rule. Before creation and 10 days after it.
    leads = crm.leads
    conv = leads["lead_id"].map(crm.outcomes.set_index("lead_id")["converted_at"])
    for age in (-2, 10):
        as_of = leads["created_at"] + pd.Timedelta(days=age)
        keep = ~(conv <= as_of) & (as_of + pd.Timedelta(days=60) <= crm.exported_at)
        snaps = pd.DataFrame({"lead_id": leads["lead_id"], "as_of": as_of})[keep.to_numpy()]
        pit = point_in_time_oracle_probability(crm=crm, snapshots=snaps, horizon_days=60)
        latent = oracle_probability(truth=crm.truth, leads=leads, snapshots=snaps, horizon_days=60)
        groups = leads.loc[snaps.index, "seniority"].to_numpy()
        for group in np.unique(groups):
            diff = (pit - latent)[groups == group]
            assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(diff.shape[0]) + 1e-4, (age, group)


@pytest.mark.parametrize("age", [7, 21])
def test_point_in_time_oracle_is_calibrated_under_drift(drifting: SimulatedCRM, age: int) -> None:
    snaps, label = _snapshots_and_labels(drifting, drifting.leads["created_at"] + pd.Timedelta(days=age), 60)
    p = point_in_time_oracle_probability(crm=drifting, snapshots=snaps, horizon_days=60)
    decile = pd.qcut(p, 5, labels=False)
    frame = pd.DataFrame({"p": p, "y": label, "d": decile})
    table = frame.groupby("d").agg(p=("p", "mean"), y=("y", "mean"), n=("y", "size"))
    se = np.sqrt(table["p"] * (1 - table["p"]) / table["n"])
    assert ((table["y"] - table["p"]).abs() < 4 * se + 0.002).all(), table
    # and over time: the oracle follows the climbing base rate (first and last third of the period)
    third = pd.qcut(snaps["as_of"].astype("int64"), 3, labels=False).to_numpy()
    for k in (0, 2):
        se_k = np.sqrt(np.sum(p[third == k] * (1 - p[third == k]))) / (third == k).sum()
        assert abs(p[third == k].mean() - label[third == k].mean()) < 4 * se_k


def test_point_in_time_oracle_rejects_bad_input(small: SimulatedCRM) -> None:
    snaps = pd.DataFrame({"lead_id": ["L9999999"], "as_of": [pd.Timestamp("2025-01-01")]})
    with pytest.raises(KeyError):
        point_in_time_oracle_probability(crm=small, snapshots=snaps, horizon_days=30)
    ok = snaps.assign(lead_id=small.leads["lead_id"].iloc[0])
    with pytest.raises(ValueError):
        point_in_time_oracle_probability(crm=small, snapshots=ok, horizon_days=0)
    late = ok.assign(as_of=small.exported_at + pd.Timedelta(days=1))
    with pytest.raises(ValueError, match="after the export"):
        point_in_time_oracle_probability(crm=small, snapshots=late, horizon_days=30)


def test_point_in_time_oracle_before_creation_is_the_prior(small: SimulatedCRM) -> None:
    leads = small.leads.iloc[:200]
    early = pd.DataFrame({"lead_id": leads["lead_id"], "as_of": leads["created_at"] - pd.Timedelta(days=3)})
    p = point_in_time_oracle_probability(crm=small, snapshots=early, horizon_days=30)
    assert np.isfinite(p).all() and (p > 0).all()
    # nothing is observed before creation: the prior mean of the latent oracle, lead by lead
    no_history = replace(small, activities=small.activities.iloc[:0])
    np.testing.assert_allclose(
        p, point_in_time_oracle_probability(crm=no_history, snapshots=early, horizon_days=30)
    )


# --------------------------------------------------------------------------- I/O and progress
@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_write_crm_round_trips(small: SimulatedCRM, tmp_path: Path, file_format: str) -> None:
    paths = write_crm(small, out_dir=tmp_path / "crm", file_format=file_format)  # type: ignore[arg-type]
    assert set(paths) == {"leads", "activities", "outcomes", "truth"}
    dates = {"leads": ["created_at"], "activities": ["timestamp"], "outcomes": ["converted_at", "won_at"]}
    dates["truth"] = ["converted_at"]
    for name, path in paths.items():
        assert path.exists() and path.suffix == f".{file_format}"
        original = getattr(small, name)
        if file_format == "parquet":
            back = pd.read_parquet(path)
        else:
            back = pd.read_csv(path, parse_dates=dates[name])
            for col in dates[name]:
                back[col] = back[col].astype("datetime64[ns]")
        pd.testing.assert_frame_equal(back, original, check_dtype=file_format == "parquet")
    LeadsSchema.validate(pd.read_parquet(paths["leads"]) if file_format == "parquet" else small.leads)


def test_write_crm_rejects_unknown_format(small: SimulatedCRM, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_crm(small, out_dir=tmp_path, file_format="xlsx")  # type: ignore[arg-type]


def test_progress_bar_runs(capsys: pytest.CaptureFixture[str]) -> None:
    sim = simulate_crm(n_leads=200, seed=1, progress=True)
    assert len(sim.leads) == 200
    assert "simulate_crm" in capsys.readouterr().out


def test_cli_simulate_drift_writes_the_market_table(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from leadscore.cli import app

    result = CliRunner().invoke(
        app, ["simulate", "--leads", "400", "--seed", "2", "--drift", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    market = pd.read_parquet(tmp_path / "market.parquet")
    truth = pd.read_parquet(tmp_path / "truth.parquet")
    assert len(market) == 731 and "market_index" in truth.columns
    plain = CliRunner().invoke(
        app, ["simulate", "--leads", "400", "--seed", "2", "--out", str(tmp_path / "plain")]
    )
    assert plain.exit_code == 0 and not (tmp_path / "plain" / "market.parquet").exists()
