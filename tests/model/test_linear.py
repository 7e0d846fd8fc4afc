"""The linear learner answers a booster's calls: exact per-feature contributions, codes as categories,
market context extrapolating past its training range while other numbers are clipped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.model.linear import LinearScorer


@pytest.fixture(scope="module")
def rows() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 4000
    frame = pd.DataFrame(
        {
            "channel": rng.integers(0, 4, n).astype(float),  # category codes, as the encoder gives them
            "visits": rng.poisson(2, n).astype(float),
            "market": rng.normal(0, 1, n),
        }
    )
    frame.loc[rng.random(n) < 0.1, "visits"] = np.nan
    frame.loc[rng.random(n) < 0.05, "channel"] = np.nan
    logit = -1.0 + 0.8 * (frame["channel"] == 2) + 0.4 * np.log1p(frame["visits"].fillna(0)) + frame["market"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, y.to_numpy()


@pytest.fixture(scope="module")
def scorer(rows: tuple[pd.DataFrame, np.ndarray]) -> LinearScorer:
    frame, y = rows
    return LinearScorer(
        feature_names=list(frame.columns), categorical=["channel"], extrapolate=["market"], C=1.0
    ).fit(frame, y)


def test_contributions_add_up_to_the_raw_score(
    scorer: LinearScorer, rows: tuple[pd.DataFrame, np.ndarray]
) -> None:
    frame, _ = rows
    contributions = scorer.predict(frame, pred_contrib=True)
    assert contributions.shape == (len(frame), 4)
    np.testing.assert_allclose(contributions.sum(axis=1), scorer.predict(frame, raw_score=True), atol=1e-9)
    # centred on the training rows: each feature's mean contribution is 0
    np.testing.assert_allclose(contributions[:, :-1].mean(axis=0), 0.0, atol=1e-9)


def test_frames_and_float_arrays_score_alike(
    scorer: LinearScorer, rows: tuple[pd.DataFrame, np.ndarray]
) -> None:
    frame, _ = rows
    head = frame.head(50)
    np.testing.assert_allclose(
        scorer.predict(head, raw_score=True), scorer.predict(head.to_numpy(dtype=float), raw_score=True)
    )
    one = scorer.predict(head.to_numpy(dtype=float)[0], pred_contrib=True)  # one row, as the fast path sends
    assert one.shape == (1, 4)


def test_learns_the_signs_and_accepts_unseen_codes(
    scorer: LinearScorer, rows: tuple[pd.DataFrame, np.ndarray]
) -> None:
    frame, y = rows
    probability = scorer.predict(frame)
    assert np.corrcoef(probability, y)[0, 1] > 0.3
    unseen = frame.head(1).assign(channel=99.0)
    assert np.isfinite(scorer.predict(unseen, raw_score=True)).all()
    assert scorer.coefficients().index[0] in {"market", "channel"}


def test_context_extrapolates_and_other_numbers_are_clipped(scorer: LinearScorer) -> None:
    base = pd.DataFrame({"channel": [1.0] * 3, "visits": [2.0] * 3, "market": [0.0, 4.0, 8.0]})
    rising = scorer.predict(base, raw_score=True)
    assert rising[2] - rising[1] == pytest.approx(rising[1] - rising[0], rel=1e-6)  # linear past the range
    assert rising[2] > rising[1] + 1.0
    counts = pd.DataFrame({"channel": [1.0] * 2, "visits": [1e3, 1e6], "market": [0.0] * 2})
    clipped = scorer.predict(counts, raw_score=True)
    assert clipped[0] == pytest.approx(clipped[1])  # past anything seen: as the most extreme seen


def test_wrong_width_is_refused(scorer: LinearScorer) -> None:
    with pytest.raises(ValueError, match="3 feature columns expected"):
        scorer.predict(np.zeros((2, 5)), raw_score=True)


def test_a_feature_moves_only_its_own_contribution(
    scorer: LinearScorer, rows: tuple[pd.DataFrame, np.ndarray]
) -> None:
    frame, _ = rows
    row = frame.head(1)
    before = scorer.predict(row, pred_contrib=True)[0]
    for name, value in (("channel", 2.0), ("visits", np.nan), ("market", 1.5)):
        after = scorer.predict(row.assign(**{name: value}), pred_contrib=True)[0]
        moved = np.flatnonzero(~np.isclose(before, after))
        assert set(moved) <= {list(frame.columns).index(name)}, name
