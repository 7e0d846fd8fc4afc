"""The DR-learner recovers a known, confounded, heterogeneous effect; Qini scores rank correctly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.training.uplift import DRLearner, qini_against_truth, qini_from_outcomes


def _confounded(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Reps call seniors more; seniors are put off by the call, juniors respond."""
    rng = np.random.default_rng(seed)
    senior = rng.random(n) < 0.4
    size = rng.normal(0.0, 1.0, n)
    segment = rng.choice(["a", "b", "c"], size=n)
    X = pd.DataFrame({"senior": senior.astype(float), "size": size, "segment": segment})
    base = -1.0 + 1.0 * senior + 0.5 * size
    effect_logit = np.where(senior, -1.0, 1.0) + 0.3 * size
    p0 = 1 / (1 + np.exp(-base))
    p1 = 1 / (1 + np.exp(-(base + effect_logit)))
    treated = (rng.random(n) < np.where(senior, 0.8, 0.25)).astype(int)
    y = (rng.random(n) < np.where(treated == 1, p1, p0)).astype(int)
    return X, treated, y, p1 - p0


def test_dr_learner_recovers_a_confounded_heterogeneous_effect() -> None:
    X, t, y, tau = _confounded(8_000, seed=1)
    learner = DRLearner(n_folds=3, seed=0).fit(X, t, y)
    X_new, _, _, tau_new = _confounded(4_000, seed=2)
    estimate = learner.predict(X_new)
    scores = qini_against_truth(uplift=estimate, true_effect=tau_new)
    assert scores["qini"] > 0.6 and scores["spearman"] > 0.5
    # the sign and size per segment are right although reps called the seniors (put off) more
    senior = X_new["senior"].to_numpy() == 1
    assert estimate[senior].mean() < 0 < estimate[~senior].mean()
    ate, se = learner.average_effect()
    assert abs(ate - tau.mean()) < 4 * se + 0.01
    for group in (senior, ~senior):
        assert abs(estimate[group].mean() - tau_new[group].mean()) < 0.05
    assert learner.propensity_.min() >= 0.02 and learner.propensity_.max() <= 0.98


def test_qini_against_truth_is_one_for_the_perfect_order_and_negative_reversed() -> None:
    tau = np.random.default_rng(0).normal(0.02, 0.05, 1_000)
    assert qini_against_truth(uplift=tau, true_effect=tau)["qini"] == pytest.approx(1.0)
    assert qini_against_truth(uplift=-tau, true_effect=tau)["qini"] < -0.9
    with pytest.raises(ValueError):
        qini_against_truth(uplift=tau[:10], true_effect=tau)


def test_qini_from_outcomes_rewards_a_ranking_that_finds_responders() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    responder = rng.random(n) < 0.3
    treated = rng.random(n) < 0.5  # randomised here, so the logged Qini is unbiased
    y = rng.random(n) < np.where(treated & responder, 0.4, 0.1)
    good = qini_from_outcomes(uplift=responder + rng.random(n) * 0.1, treatment=treated, outcome=y)
    blind = qini_from_outcomes(uplift=rng.random(n), treatment=treated, outcome=y)
    assert good["qini_coefficient"] > 0.01 > abs(blind["qini_coefficient"])


def test_dr_learner_rejects_bad_input() -> None:
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="same treatment"):
        DRLearner().fit(X, [1, 1, 1, 1], [0, 1, 0, 1])
    with pytest.raises(ValueError, match="0/1"):
        DRLearner().fit(X, [0, 1, 2, 1], [0, 1, 0, 1])
    with pytest.raises(ValueError, match="rows"):
        DRLearner().fit(X, [0, 1], [0, 1])
