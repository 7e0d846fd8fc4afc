"""Calibrators: isotonic steps in between are plain isotonic; the end steps never claim 0 % or 100 %."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from leadscore.model.calibration import (
    IsotonicCalibrator,
    PlattCalibrator,
    PriorShiftedCalibrator,
    fit_calibrator,
    intercept_shift,
    prior_logit,
    shifted_probability,
)
from leadscore.model.uncertainty import ScoreUncertainty
from leadscore.training.config import CalibrationMethod


@pytest.fixture
def held_out() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=5_000)
    y = (rng.random(5_000) < 1 / (1 + np.exp(-(2.5 * raw - 2)))).astype(int)
    y[raw > np.quantile(raw, 0.995)] = 1  # the top 25 leads all converted
    y[raw < np.quantile(raw, 0.2)] = 0  # the bottom 1,000 none did
    return raw, y


def test_end_blocks_are_laplace_bounded_and_the_rest_follows_isotonic(held_out) -> None:
    raw, y = held_out
    plain = IsotonicRegression(out_of_bounds="clip").fit(raw, y)
    bounded = IsotonicCalibrator().fit(raw, y)
    p_plain, p_bounded = plain.predict(raw), bounded.predict(raw)
    assert p_plain.max() == 1.0 and p_plain.min() == 0.0  # what plain isotonic would tell a rep
    top, bottom = p_plain == 1.0, p_plain == 0.0
    # the top block's knot sits at its Laplace estimate; nothing reaches certainty
    assert p_bounded.max() < 1.0 and p_bounded.min() > 0.0
    # the end knots sit at the ends of the held-out range with the end blocks' Laplace estimates
    assert p_bounded.max() == pytest.approx((top.sum() + 1) / (top.sum() + 2))
    assert p_bounded.min() == pytest.approx(1 / (bottom.sum() + 2))
    # inside, the curve interpolates the isotonic steps: same calibration, no step ties
    inside = ~top & ~bottom
    assert np.abs(p_bounded[inside] - p_plain[inside]).mean() < 0.03
    assert abs(p_bounded.mean() - y.mean()) < 0.01


def test_calibration_keeps_the_raw_ranking(held_out) -> None:
    raw, y = held_out
    for method in CalibrationMethod:
        calibrated = fit_calibrator(method=method, raw=raw, y=y).predict(raw)
        order = np.argsort(raw)
        assert np.all(np.diff(calibrated[order]) > 0), method  # strictly increasing: no mass ties
        assert len(np.unique(calibrated)) == len(np.unique(raw))
    # beyond the held-out range it keeps ranking, with a bounded slope (no jump to certainty)
    isotonic = IsotonicCalibrator().fit(raw, y)
    far = isotonic.predict(np.array([raw.min() - 10, raw.min() - 5, raw.max() + 5, raw.max() + 10]))
    assert far[0] < far[1] < far[2] < far[3]
    assert isotonic.tail_slope_ <= 1.0


def test_a_tiny_end_block_is_never_bounded_past_its_neighbour() -> None:
    # top block 2/2 (Laplace 0.75) sits above a step at 0.8; bottom block 0/5 (Laplace 0.14) below 0.1
    raw = np.arange(27, dtype=float)
    y = np.array([0] * 5 + [1] + [0] * 9 + [1] * 8 + [0] * 2 + [1, 1])
    bounded = IsotonicCalibrator().fit(raw, y).predict(raw)
    assert np.all(np.diff(bounded) > 0)  # merged with its neighbour, never reversed
    assert bounded.max() < 0.9 and bounded.min() < 0.2


def test_prior_shifted_calibrator_reads_raw_scores_from_its_model_prior(held_out) -> None:
    raw, y = held_out
    inner = IsotonicCalibrator().fit(raw, y)
    shifted = PriorShiftedCalibrator(inner, prior_logit=-1.5)
    np.testing.assert_allclose(shifted.predict(raw - 1.5), inner.predict(raw))
    assert prior_logit(np.array([0, 0, 0, 1])) == pytest.approx(np.log(1 / 3))


def test_configured_method_is_used(held_out) -> None:
    raw, y = held_out
    assert isinstance(fit_calibrator(method=CalibrationMethod.ISOTONIC, raw=raw, y=y), IsotonicCalibrator)
    platt = fit_calibrator(method=CalibrationMethod.SIGMOID, raw=raw, y=y)
    assert isinstance(platt, PlattCalibrator) and 0 < platt.predict(raw).min() < platt.predict(raw).max() < 1


def test_a_constant_score_keeps_the_plain_rate() -> None:
    raw, y = np.zeros(10), np.array([0, 1] * 5)
    assert IsotonicCalibrator().fit(raw, y).predict(raw) == pytest.approx(np.full(10, 0.5))


def test_prior_shifted_calibrator_exposes_intervals_in_its_own_raw_score_domain(held_out) -> None:
    raw, y = held_out
    inner = fit_calibrator(method=CalibrationMethod.ISOTONIC, raw=raw, y=y)
    shifted = PriorShiftedCalibrator(inner, prior_logit=-1.5)
    assert shifted.uncertainty_ is not None  # the deployed model reads it through getattr
    deployed_raw = raw[:500] - 1.5  # what the deployed booster hands over: unshifted raw scores
    probability = shifted.predict(deployed_raw)
    got = shifted.uncertainty_.intervals(raw=deployed_raw, probability=probability)
    want = inner.uncertainty_.intervals(raw=raw[:500], probability=probability)
    np.testing.assert_allclose(got.low, want.low, atol=1e-6)
    np.testing.assert_allclose(got.high, want.high, atol=1e-6)
    np.testing.assert_array_equal(got.support, want.support)
    # just past a dense edge of the calibration range: not low confidence for that alone (the
    # deployed booster's raw scores spread wider than the cross-fitted ones); thin support still is
    rng = np.random.default_rng(1)
    flat = ScoreUncertainty.fit(raw=rng.uniform(-1, 1, 20_000), y=(rng.random(20_000) < 0.3).astype(int))
    edge, far = np.array([1.01]), np.array([3.0])
    assert flat.intervals(raw=edge, probability=np.array([0.3])).low_confidence[0]
    view = flat.shifted(-1.5)
    assert not view.intervals(raw=edge - 1.5, probability=np.array([0.3])).low_confidence[0]
    assert view.intervals(raw=far - 1.5, probability=np.array([0.3])).low_confidence[0]


def test_intercept_shift_brings_the_mean_probability_to_the_observed_rate() -> None:
    rng = np.random.default_rng(1)
    p = rng.beta(1, 9, size=20_000)  # mean ~0.10
    y = (rng.random(20_000) < p * 0.6).astype(int)  # the period converts ~40% less often
    shift = intercept_shift(p, y)
    assert shift < 0
    assert shifted_probability(p, shift).mean() == pytest.approx(y.mean(), abs=1e-6)
    assert intercept_shift(p, (rng.random(20_000) < p).astype(int)) == pytest.approx(0.0, abs=0.05)
    assert intercept_shift(p, np.zeros(20_000)) == -3.0  # bounded: no period proves "never"


def test_an_anchored_calibrator_moves_probability_and_range_by_one_log_odds_shift(held_out) -> None:
    raw, y = held_out
    inner = fit_calibrator(method=CalibrationMethod.ISOTONIC, raw=raw, y=y)
    pooled = PriorShiftedCalibrator(inner, prior_logit=0.3)
    anchored = PriorShiftedCalibrator(inner, prior_logit=0.3, anchor_logit=-0.5)
    leads = np.linspace(-2, 3, 50)
    p0, p1 = pooled.predict(leads), anchored.predict(leads)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    assert np.allclose(logit(p1) - logit(p0), -0.5)
    assert (np.diff(p1) >= 0).all()  # the ranking is kept
    base, moved = pooled.uncertainty_, anchored.uncertainty_
    assert base is not None and moved is not None
    b0, b1 = base.intervals(raw=leads, probability=p0), moved.intervals(raw=leads, probability=p1)
    inside = (b0.low > 0) & (b0.high < 1)
    assert np.allclose(logit(b1.low[inside]) - logit(b0.low[inside]), -0.5, atol=1e-6)
    assert np.allclose(logit(b1.high[inside]) - logit(b0.high[inside]), -0.5, atol=1e-6)
    assert (b1.low <= p1).all() and (p1 <= b1.high).all()
    saved_before = PriorShiftedCalibrator(inner, prior_logit=0.3)
    del saved_before.anchor_logit  # a calibrator pickled before anchors reads as the pooled level
    assert np.array_equal(saved_before.predict(leads), p0)
    assert saved_before.uncertainty_ is not None


def _label_shifted(prior: float, *, n: int, seed: int) -> np.ndarray:
    """Bayes posteriors at a 10% training prior, for leads drawn at ``prior`` (what a lead looks like
    given its outcome stays the same: label shift)."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < prior
    score = rng.normal(np.where(y, 1.2, 0.0), 1.0)  # one score per lead, class-conditional normals
    likelihood_ratio = np.exp(1.2 * score - 0.72)
    odds = likelihood_ratio * 0.1 / 0.9
    return odds / (1 + odds)


@pytest.mark.parametrize("prior", [0.03, 0.1, 0.3])
def test_em_prior_recovers_a_shifted_base_rate_without_labels(prior: float) -> None:
    from leadscore.model.calibration import em_prior, em_prior_interval

    posterior = _label_shifted(prior, n=20_000, seed=4)
    estimate = em_prior(posterior, trained_prior=0.1)
    assert abs(estimate - prior) < 0.015
    if prior != 0.1:  # the posteriors' own mean is biased towards the training prior; EM is not
        assert abs(estimate - prior) < abs(float(posterior.mean()) - prior)
    low, high = em_prior_interval(posterior, trained_prior=0.1, n_boot=40)
    assert low <= estimate <= high and high - low < 0.03


def test_the_prior_shift_moves_posteriors_by_bayes_rule() -> None:
    from leadscore.model.calibration import prior_shift_logit, shifted_probability

    shift = prior_shift_logit(trained_prior=0.1, new_prior=0.3)
    assert shift == pytest.approx(np.log(0.3 / 0.7) - np.log(0.1 / 0.9))
    moved = shifted_probability(np.array([0.1, 0.5]), shift)
    assert moved[0] == pytest.approx(0.3)  # a lead at the old base rate sits at the new one
