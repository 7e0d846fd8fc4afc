"""Tests for the rule-based and logistic baselines."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from leadscore.features.catalogue import (
    CATEGORICAL_FEATURES,
    FEATURE_CATALOGUE,
    FEATURE_NAMES,
    FeatureKind,
)
from leadscore.training.baselines import (
    DEFAULT_POINTS,
    RuleBasedScorer,
    make_logistic_baseline,
    signed_log1p,
)

VOCABULARY = {
    "channel": ["web_form", "paid_search", "organic_search", "referral", "partner", "purchased_list"],
    "seniority": ["c_level", "vp", "director", "manager", "individual_contributor", "student", "other"],
    "department": ["marketing", "sales", "it", "finance", "engineering"],
    "country": ["US", "GB", "DE", "FR", "IN"],
    "industry": ["software", "retail", "finance", "health"],
    "company_type": ["private", "public", "nonprofit"],
    "email_domain_type": ["corporate", "free", "education", "missing"],
}


def make_feature_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A frame shaped like compute_features' output, with a label driven by demo/pricing activity."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {
        "lead_id": [f"L{i:06d}" for i in range(n)],
        "as_of": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 90, n), unit="D"),
    }
    for spec in FEATURE_CATALOGUE:
        if spec.kind is FeatureKind.CATEGORICAL:
            values = rng.choice(VOCABULARY[spec.name], size=n).astype(object)
            values[rng.random(n) < 0.05] = None
            columns[spec.name] = pd.Categorical(values, categories=VOCABULARY[spec.name])
        elif spec.kind is FeatureKind.WINDOW_COUNT:
            continue  # filled from the totals below so 7d <= 30d <= 90d <= total
        elif spec.kind is FeatureKind.TOTAL_COUNT:
            total = rng.poisson(0.6, n).astype(np.float32)
            d90 = rng.binomial(total.astype(int), 0.8).astype(np.float32)
            d30 = rng.binomial(d90.astype(int), 0.6).astype(np.float32)
            d7 = rng.binomial(d30.astype(int), 0.4).astype(np.float32)
            columns[spec.name] = total
            for days, values in ((7, d7), (30, d30), (90, d90)):
                columns[f"{spec.signal}_{days}d"] = values
        elif spec.kind is FeatureKind.DAYS_SINCE:
            columns[spec.name] = np.where(rng.random(n) < 0.5, np.nan, rng.exponential(30, n)).astype(
                np.float32
            )
        else:
            values = rng.lognormal(4, 1.5, n)
            if spec.name == "engagement_trend_30d":
                values = rng.normal(0, 3, n)
            values[rng.random(n) < 0.1] = np.nan
            columns[spec.name] = values.astype(np.float32)
    frame = pd.DataFrame(columns)[["lead_id", "as_of", *FEATURE_NAMES]]
    logit = (
        -3.0
        + 1.5 * frame["demo_request_30d"].to_numpy()
        + 0.6 * frame["page_pricing_7d"].to_numpy()
        + 0.3 * frame["page_pricing_total"].to_numpy()
    )
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, labels


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    train, y_train = make_feature_frame(3000, seed=1)
    test, y_test = make_feature_frame(2000, seed=2)
    return train, y_train, test, y_test


def test_frame_matches_the_catalogue(data) -> None:
    train, *_ = data
    assert list(train.columns[2:]) == list(FEATURE_NAMES)
    assert all(isinstance(train[c].dtype, pd.CategoricalDtype) for c in CATEGORICAL_FEATURES)


# ---- rule-based scorer --------------------------------------------------------------------------


def test_rule_scorer_ranks_and_calibrates(data) -> None:
    train, y_train, test, y_test = data
    scorer = RuleBasedScorer().fit(train, y_train)
    points = scorer.decision_function(test)
    proba = scorer.predict_proba(test)
    assert proba.shape == (len(test), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert roc_auc_score(y_test, points) > 0.6
    assert roc_auc_score(y_test, proba[:, 1]) > 0.6
    # isotonic: probabilities never decrease with points
    order = np.argsort(points, kind="stable")
    assert np.all(np.diff(proba[order, 1]) >= -1e-12)
    assert abs(proba[:, 1].mean() - y_test.mean()) < 0.05
    assert set(np.unique(scorer.predict(test))) <= {0, 1}


def test_rule_scorer_is_a_well_behaved_estimator(data) -> None:
    train, y_train, test, _ = data
    custom = {"signals": {"demo_request": 50.0, "page_pricing": 5.0}}
    scorer = RuleBasedScorer(points=custom)
    assert scorer.get_params() == {"points": custom}
    cloned = clone(scorer)
    assert cloned.get_params()["points"] == custom
    with pytest.raises(NotFittedError):
        scorer.decision_function(test)
    with pytest.raises(NotFittedError):
        scorer.predict_proba(test)
    scorer.fit(train, y_train)
    assert scorer.points == custom  # __init__ params are left untouched by fit
    assert scorer.points_["signals"] == custom["signals"]
    assert scorer.points_["seniority"] == DEFAULT_POINTS["seniority"]
    fitted = set(vars(scorer)) - set(scorer.get_params())
    assert fitted and all(name.endswith("_") for name in fitted)
    with pytest.raises(NotFittedError):
        clone(scorer).predict_proba(test)
    restored = pickle.loads(pickle.dumps(scorer))
    np.testing.assert_allclose(restored.predict_proba(test), scorer.predict_proba(test))


def _one_lead(train: pd.DataFrame, **changes: object) -> pd.DataFrame:
    row = train.iloc[[0]].copy()
    for name in train.columns:
        if name.endswith(("_7d", "_30d", "_90d", "_total")):
            row[name] = np.float32(0)
    for name, value in changes.items():
        if isinstance(row[name].dtype, pd.CategoricalDtype):
            row[name] = pd.Categorical([value], categories=row[name].cat.categories)
        else:
            row[name] = np.float32(value)
    return row


def test_points_are_directional(data) -> None:
    train, y_train, *_ = data
    scorer = RuleBasedScorer().fit(train, y_train)

    def points(**changes: object) -> float:
        return float(scorer.decision_function(_one_lead(train, **changes))[0])

    base = points(channel="web_form", seniority="manager", email_domain_type="corporate")
    assert points(channel="purchased_list", seniority="manager", email_domain_type="corporate") < base
    assert points(channel="web_form", seniority="c_level", email_domain_type="corporate") > base
    assert points(channel="web_form", seniority="student", email_domain_type="corporate") < base
    assert points(channel="web_form", seniority="manager", email_domain_type="free") < base
    context = {"channel": "web_form", "seniority": "manager", "email_domain_type": "corporate"}
    assert points(**context, demo_request_90d=1, demo_request_total=1) > base
    assert points(**context, page_careers_90d=2, page_careers_total=2) < base
    assert points(**context, unsubscribe_total=1) < base
    # recency: a demo request this week is worth more than one two months ago
    recent = points(
        **context, demo_request_7d=1, demo_request_30d=1, demo_request_90d=1, demo_request_total=1
    )
    older = points(**context, demo_request_90d=1, demo_request_total=1)
    assert recent > older > base
    # bigger companies score more
    small = points(**context, employee_count=5)
    large = points(**context, employee_count=5000)
    assert large > small


def test_points_breakdown_sums_to_score(data) -> None:
    train, y_train, test, _ = data
    scorer = RuleBasedScorer().fit(train, y_train)
    breakdown = scorer.points_breakdown(test)
    assert "signal_demo_request" in breakdown.columns and "fit_seniority" in breakdown.columns
    np.testing.assert_allclose(breakdown.sum(axis=1).to_numpy(), scorer.decision_function(test))
    cap = DEFAULT_POINTS["max_points_per_signal"]
    assert breakdown.filter(like="signal_").abs().to_numpy().max() <= cap


def test_rule_scorer_input_validation(data) -> None:
    train, y_train, *_ = data
    with pytest.raises(ValueError, match="demo_request_7d"):
        RuleBasedScorer().fit(train.drop(columns=["demo_request_7d"]), y_train)
    with pytest.raises(TypeError, match="DataFrame"):
        RuleBasedScorer().fit(train[list(FEATURE_NAMES[7:])].to_numpy(), y_train)
    with pytest.raises(ValueError, match="unknown points sections"):
        RuleBasedScorer(points={"bogus": {}}).fit(train, y_train)
    with pytest.raises(ValueError, match="unknown signals"):
        RuleBasedScorer(points={"signals": {"telepathy": 3.0}}).fit(train, y_train)


# ---- logistic baseline --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logistic(data) -> Pipeline:
    train, y_train, *_ = data
    return make_logistic_baseline(seed=0).fit(train, y_train)  # lead_id, as_of are dropped


def test_logistic_baseline_learns_the_signal(data, logistic) -> None:
    _, _, test, y_test = data
    model = logistic
    assert isinstance(model, Pipeline)
    assert model.named_steps["model"].class_weight is None
    proba = model.predict_proba(test)[:, 1]
    assert roc_auc_score(y_test, proba) > 0.6
    assert abs(proba.mean() - y_test.mean()) < 0.05
    names = model.named_steps["features"].get_feature_names_out()
    assert any("missingindicator" in name for name in names)
    assert not any("lead_id" in name for name in names)


def test_logistic_baseline_handles_unseen_categories_and_missing(data, logistic) -> None:
    test, model = data[2], logistic
    odd = test.head(5).copy()
    odd["country"] = pd.Categorical(["ZZ", None, "US", "QQ", "DE"])
    odd["employee_count"] = np.nan
    proba = model.predict_proba(odd)[:, 1]
    assert np.isfinite(proba).all()
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(restored.predict_proba(odd)[:, 1], proba)


def test_logistic_baseline_is_deterministic(data) -> None:
    train, y_train, test, _ = data
    train, y_train = train.head(600), y_train[:600]
    first = make_logistic_baseline(seed=3, min_frequency=5).fit(train, y_train).predict_proba(test)
    second = make_logistic_baseline(seed=3, min_frequency=5).fit(train, y_train).predict_proba(test)
    np.testing.assert_array_equal(first, second)


def test_signed_log1p_keeps_sign_and_nan() -> None:
    out = signed_log1p(np.array([[-3.0, 0.0, np.nan, np.e - 1]]))
    np.testing.assert_allclose(out[0, [0, 1, 3]], [-np.log(4.0), 0.0, 1.0])
    assert np.isnan(out[0, 2])
