"""The ``context`` family (issue 15 item 5): values every lead shares at a time (market indices, the
calendar) move the probability but are no reason about this lead: they stay out of the fit part, the
grade and the per-lead reasons, and are shown apart as market conditions."""

from __future__ import annotations

import io

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from leadscore.features.catalogue import Family
from leadscore.features.mapping import (
    ColumnMapping,
    ColumnRole,
    ExportMapping,
    FlatFeatureTransform,
    LabelMapping,
    SourceMapping,
)
from leadscore.model.calibration import PlattCalibrator
from leadscore.model.encoding import CategoryCodeEncoder
from leadscore.model.records import LeadScore
from leadscore.model.scoring_model import GradeCutoffs, LeadScoringModel, TierThresholds
from leadscore.model.uncertainty import ScoreUncertainty
from leadscore.training.cards import LeadCard, print_card, render_html_card


@pytest.fixture(scope="module")
def model_and_rows() -> tuple[LeadScoringModel, pd.DataFrame]:
    rng = np.random.default_rng(3)
    n = 6000
    month = rng.integers(0, 12, n)
    market = np.linspace(-1.5, 1.5, 12)[month]  # one value per month, shared by every lead
    frame = pd.DataFrame(
        {
            "id": [f"x{i}" for i in range(n)],
            "size": rng.lognormal(4, 1, n),
            "visits": rng.poisson(2, n).astype(float),
            "market_index": market,
        }
    )
    logit = -2.0 + 0.4 * np.log(frame["size"]) - 1.6 + 0.5 * frame["visits"] + 1.2 * market
    frame["y"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    mapping = ExportMapping(
        name="context-test",
        source=SourceMapping(path="unused.csv"),
        id_column="id",
        label=LabelMapping(column="y"),
        columns={
            "size": ColumnMapping(role=ColumnRole.NUMERIC, family=Family.FIT, label="Company size"),
            "visits": ColumnMapping(role=ColumnRole.NUMERIC, family=Family.ENGAGEMENT, label="Visits"),
            "market_index": ColumnMapping(
                role=ColumnRole.NUMERIC, family=Family.CONTEXT, label="Market index"
            ),
        },
    )
    flat = FlatFeatureTransform(mapping)
    features = flat.features(frame)
    names = tuple(f.name for f in flat.catalogue)
    encoder = CategoryCodeEncoder(columns=[], min_frequency=1)
    x = encoder.fit_transform(features.loc[:, list(names)])
    booster = lgb.train(  # stumps: contributions are exactly additive, parts independent of each other
        {"objective": "binary", "max_depth": 1, "num_leaves": 2, "verbosity": -1, "seed": 1},
        lgb.Dataset(x, frame["y"].to_numpy()),
        num_boost_round=150,
    )
    raw = booster.predict(x, raw_score=True)
    calibrator = PlattCalibrator().fit(raw, frame["y"].to_numpy())
    parts = dict(
        encoder=encoder, booster=booster, calibrator=calibrator, feature_names=names, horizon_days=30
    )
    draft = LeadScoringModel(
        **parts,
        thresholds=TierThresholds(0.3, 0.6),
        grade_cutoffs=GradeCutoffs((0, 0, 0), (0, 0, 0)),
        transform=flat,
    )
    contributions = draft.contributions(features)[:, :-1] @ draft._grouping
    fit_q = np.quantile(contributions[:, draft._fit_concepts].sum(axis=1), [0.25, 0.5, 0.75])
    engagement_q = np.quantile(contributions[:, draft._engagement_concepts].sum(axis=1), [0.25, 0.5, 0.75])
    model = LeadScoringModel(
        **parts,
        thresholds=TierThresholds(0.3, 0.6),
        grade_cutoffs=GradeCutoffs(tuple(fit_q), tuple(engagement_q)),  # type: ignore[arg-type]
        transform=flat,
        uncertainty=ScoreUncertainty.fit(raw=raw, y=frame["y"].to_numpy()),
    )
    return model, features


def test_context_is_its_own_part_never_a_reason(
    model_and_rows: tuple[LeadScoringModel, pd.DataFrame],
) -> None:
    model, features = model_and_rows
    families = {c.name: c.family for c in model.concepts}
    assert families["market_index"] is Family.CONTEXT
    scored = model.score_features(features.head(400), top_k=10)
    assert any(abs(s["context_points"]) >= 1 for s in scored)  # the market does move the probability
    for s in scored:
        concepts = {r["concept"] for r in s["reasons_positive"] + s["reasons_negative"]}
        assert "market_index" not in concepts
    # all_reasons (the API's full contributions, which add up) still carries it, labelled context
    full = model.all_reasons(features.head(5))
    assert all(any(r.concept == "market_index" and r.family is Family.CONTEXT for r in rs) for rs in full)


def test_grade_and_fit_part_ignore_the_market(model_and_rows: tuple[LeadScoringModel, pd.DataFrame]) -> None:
    model, features = model_and_rows
    rows = features.head(200)
    boom, bust = rows.assign(market_index=1.5), rows.assign(market_index=-1.5)
    high, low = model.score_features(boom), model.score_features(bust)
    assert np.mean([h["probability"] for h in high]) > np.mean([lo["probability"] for lo in low])
    assert [h["grade"] for h in high] == [lo["grade"] for lo in low]


def test_card_shows_market_conditions_apart(model_and_rows: tuple[LeadScoringModel, pd.DataFrame]) -> None:
    model, features = model_and_rows
    scored = model.score_features(features.head(400))
    record = max(scored, key=lambda s: abs(s["context_points"]))
    card = LeadCard(str(record["lead_id"]), "2025-01-01", LeadScore.model_validate(record), [], "1", 30)
    out = io.StringIO()
    print_card(card, console=Console(file=out, width=200, color_system=None))
    assert "Market conditions" in out.getvalue() and "Market conditions" in render_html_card(card)
