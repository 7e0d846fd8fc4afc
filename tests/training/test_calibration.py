"""Calibrators: isotonic steps in between are plain isotonic; the end steps never claim 0 % or 100 %."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from leadscore.training.calibration import IsotonicCalibrator, PlattCalibrator, fit_calibrator
from leadscore.training.config import CalibrationMethod


@pytest.fixture
def held_out() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    raw = rng.normal(size=5_000)
    y = (rng.random(5_000) < 1 / (1 + np.exp(-(2.5 * raw - 2)))).astype(int)
    y[raw > np.quantile(raw, 0.995)] = 1  # the top 25 leads all converted
    y[raw < np.quantile(raw, 0.2)] = 0  # the bottom 1,000 none did
    return raw, y


def test_end_steps_are_laplace_bounded_and_the_rest_is_plain_isotonic(held_out) -> None:
    raw, y = held_out
    plain = IsotonicRegression(out_of_bounds="clip").fit(raw, y)
    bounded = IsotonicCalibrator().fit(raw, y)
    p_plain, p_bounded = plain.predict(raw), bounded.predict(raw)
    assert p_plain.max() == 1.0 and p_plain.min() == 0.0  # what plain isotonic would tell a rep
    top, bottom = p_plain == 1.0, p_plain == 0.0
    assert p_bounded.max() == pytest.approx((top.sum() + 1) / (top.sum() + 2))
    assert p_bounded.min() == pytest.approx(1 / (bottom.sum() + 2))
    inside = ~top & ~bottom
    np.testing.assert_allclose(p_bounded[inside], p_plain[inside])  # every other step unchanged
    order = np.argsort(raw)
    assert np.all(np.diff(p_bounded[order]) >= 0)  # still monotone
    # out-of-range raw scores clip to the bounded ends
    assert bounded.predict(np.array([raw.max() + 5, raw.min() - 5])) == pytest.approx(
        [p_bounded.max(), p_bounded.min()]
    )


def test_a_tiny_end_block_is_never_bounded_past_its_neighbour() -> None:
    # top block 2/2 (Laplace 0.75) sits above a step at 0.8; bottom block 0/5 (Laplace 0.14) below 0.1
    raw = np.arange(27, dtype=float)
    y = np.array([0] * 5 + [1] + [0] * 9 + [1] * 8 + [0] * 2 + [1, 1])
    plain = IsotonicRegression(out_of_bounds="clip").fit(raw, y).predict(raw)
    bounded = IsotonicCalibrator().fit(raw, y).predict(raw)
    steps = np.unique(plain)
    assert steps[-1] == 1.0 and steps[-2] == pytest.approx(0.8) and steps[0] == 0.0
    assert bounded.max() == pytest.approx(0.8) and bounded[-3] == pytest.approx(0.8)  # tied, not reversed
    assert bounded.min() == pytest.approx(min(1 / 7, steps[1]))
    assert np.all(np.diff(bounded) >= 0)


def test_configured_method_is_used(held_out) -> None:
    raw, y = held_out
    assert isinstance(fit_calibrator(method=CalibrationMethod.ISOTONIC, raw=raw, y=y), IsotonicCalibrator)
    platt = fit_calibrator(method=CalibrationMethod.SIGMOID, raw=raw, y=y)
    assert isinstance(platt, PlattCalibrator) and 0 < platt.predict(raw).min() < platt.predict(raw).max() < 1


def test_a_constant_score_keeps_the_plain_rate() -> None:
    raw, y = np.zeros(10), np.array([0, 1] * 5)
    assert IsotonicCalibrator().fit(raw, y).predict(raw) == pytest.approx(np.full(10, 0.5))
