"""The causal effect of a rep's action, learned from logged actions: a cross-fitted DR-learner.

A lead score says who is likely to convert; it does not say whether a call *changes* that. Logged
sales touches are not an experiment: reps follow up the leads they like, so comparing touched and
untouched leads (or re-scoring a lead with one more touch, the "what-if") measures association. The
:class:`DRLearner` estimates the conditional average treatment effect ``tau(x) = E[Y(1) - Y(0) | x]``
under "no unmeasured confounding" (the decision to act depends only on what is in ``x``):

1. cross-fitting (``n_folds``): on each fold, LightGBM nuisance models fitted on the other folds give
   the propensity ``e(x) = P(treated | x)`` and the outcome models ``mu_0(x)``, ``mu_1(x)``;
2. the doubly robust pseudo-outcome ``phi = mu_1 - mu_0 + T (Y - mu_1) / e - (1 - T)(Y - mu_0) / (1 - e)``
   (right if either the propensity or the outcome models are right), propensities clipped to
   ``[clip, 1 - clip]``;
3. a regularised LightGBM regression of ``phi`` on ``x`` gives ``tau(x)`` (Kennedy 2023, "Towards
   optimal doubly robust estimation of heterogeneous causal effects").

:func:`qini_against_truth` scores an uplift ranking against known individual effects (the
simulator's truth); :func:`qini_from_outcomes` scores it from logged outcomes alone (what a team
can compute on real data).
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from leadscore.model.encoding import CategoryCodeEncoder

__all__ = ["DRLearner", "qini_against_truth", "qini_from_outcomes"]

_NUISANCE_PARAMS: dict[str, Any] = {
    "n_estimators": 300,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "max_depth": 4,
    "min_child_samples": 50,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "verbose": -1,
}
_FINAL_PARAMS: dict[str, Any] = {
    "n_estimators": 200,
    "learning_rate": 0.03,
    "num_leaves": 7,
    "max_depth": 3,
    "min_child_samples": 400,
    "reg_lambda": 10.0,
    "subsample": 0.8,
    "subsample_freq": 1,
    "verbose": -1,
}


def _categorical_columns(X: pd.DataFrame) -> list[str]:
    return [
        c
        for c in X.columns
        if not (pd.api.types.is_numeric_dtype(X[c].dtype) and not pd.api.types.is_bool_dtype(X[c].dtype))
    ]


class DRLearner(BaseEstimator):
    """Doubly robust (DR-) learner of a binary action's effect on a binary outcome, cross-fitted.

    ``fit(X, treatment, outcome)`` takes the features as they were when the action was decided;
    ``predict(X)`` returns the estimated effect on the outcome probability (``-1..1``). Fitted
    attributes: ``propensity_``, ``mu0_``, ``mu1_`` (out-of-fold nuisance predictions),
    ``pseudo_outcome_``, ``encoder_``, ``final_model_``.
    """

    def __init__(
        self,
        *,
        n_folds: int = 5,
        propensity_clip: float = 0.02,
        seed: int = 0,
        nuisance_params: dict[str, Any] | None = None,
        final_params: dict[str, Any] | None = None,
    ) -> None:
        self.n_folds = n_folds
        self.propensity_clip = propensity_clip
        self.seed = seed
        self.nuisance_params = nuisance_params
        self.final_params = final_params

    def _encoded(self, X: pd.DataFrame) -> pd.DataFrame:
        return self.encoder_.transform(X)  # type: ignore[no-any-return,return-value]

    def _classifier(self) -> lgb.LGBMClassifier:
        params = {**_NUISANCE_PARAMS, **(self.nuisance_params or {}), "random_state": self.seed}
        return lgb.LGBMClassifier(**params)

    def _fit_classifier(self, X: pd.DataFrame, y: np.ndarray) -> lgb.LGBMClassifier | float:
        if np.unique(y).shape[0] < 2:  # a fold without both classes: its constant rate
            return float(y.mean())
        model = self._classifier()
        model.fit(X, y, categorical_feature=self.categorical_positions_)
        return model

    @staticmethod
    def _proba(model: lgb.LGBMClassifier | float, X: pd.DataFrame) -> np.ndarray:
        if isinstance(model, float):
            return np.full(len(X), model)
        return np.asarray(model.predict_proba(X))[:, 1]

    def fit(self, X: pd.DataFrame, treatment: npt.ArrayLike, outcome: npt.ArrayLike) -> DRLearner:
        t = np.asarray(treatment, dtype=int)
        y = np.asarray(outcome, dtype=float)
        if not (len(X) == t.shape[0] == y.shape[0]):
            raise ValueError(f"X has {len(X)} rows, treatment {t.shape[0]}, outcome {y.shape[0]}")
        if not set(np.unique(t)) <= {0, 1} or not set(np.unique(y)) <= {0.0, 1.0}:
            raise ValueError("treatment and outcome must be 0/1")
        if t.min() == t.max():
            raise ValueError("every row has the same treatment: no effect can be learned")
        if not 0.0 < self.propensity_clip < 0.5:
            raise ValueError("propensity_clip must be in (0, 0.5)")
        categorical = _categorical_columns(X)
        self.encoder_ = CategoryCodeEncoder(columns=categorical, min_frequency=20).fit(X)
        self.categorical_positions_ = [list(X.columns).index(c) for c in categorical]
        Z = self._encoded(X)
        n = len(Z)
        e, mu0, mu1 = np.empty(n), np.empty(n), np.empty(n)
        # stratify on treatment x outcome so every fold sees each cell
        folds = StratifiedKFold(n_splits=self.n_folds, shuffle=True, random_state=self.seed)
        for train, held in folds.split(Z, 2 * t + y.astype(int)):
            Zt, tt, yt = Z.iloc[train], t[train], y[train]
            e[held] = self._proba(self._fit_classifier(Zt, tt), Z.iloc[held])
            mu0[held] = self._proba(self._fit_classifier(Zt[tt == 0], yt[tt == 0]), Z.iloc[held])
            mu1[held] = self._proba(self._fit_classifier(Zt[tt == 1], yt[tt == 1]), Z.iloc[held])
        e = np.clip(e, self.propensity_clip, 1.0 - self.propensity_clip)
        self.propensity_, self.mu0_, self.mu1_ = e, mu0, mu1
        self.pseudo_outcome_ = mu1 - mu0 + t * (y - mu1) / e - (1 - t) * (y - mu0) / (1 - e)
        params = {**_FINAL_PARAMS, **(self.final_params or {}), "random_state": self.seed}
        self.final_model_ = lgb.LGBMRegressor(**params)
        self.final_model_.fit(Z, self.pseudo_outcome_, categorical_feature=self.categorical_positions_)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Estimated effect of the action on the outcome probability, per row."""
        check_is_fitted(self, "final_model_")
        return np.clip(np.asarray(self.final_model_.predict(self._encoded(X))), -1.0, 1.0)

    def average_effect(self) -> tuple[float, float]:
        """The average effect on the fitted rows (mean pseudo-outcome) and its standard error."""
        check_is_fitted(self, "pseudo_outcome_")
        phi = self.pseudo_outcome_
        return float(phi.mean()), float(phi.std(ddof=1) / np.sqrt(phi.shape[0]))


def _area(gain: np.ndarray) -> float:
    """Area under a cumulative-gain curve sampled at 0, 1/n, ..., 1 (trapezoids)."""
    return float(np.trapezoid(gain, dx=1.0 / (gain.shape[0] - 1)))


def _cumulative(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(values[order])])


def _order(score: np.ndarray) -> np.ndarray:
    """Highest score first; ties in a fixed, row-order-free way (stable on the score alone)."""
    return np.argsort(-score, kind="stable")


def qini_against_truth(*, uplift: npt.ArrayLike, true_effect: npt.ArrayLike) -> dict[str, float]:
    """How well ``uplift`` ranks rows by their known individual effect (``true_effect``).

    Acting on the top k rows of the ranking gains the sum of their true effects; the curve over
    k and its area (AUUC, per row) are compared with a random order and with the perfect order.
    ``qini`` = (area - random) / (perfect - random): 1 is perfect, 0 is no better than random,
    negative is worse. ``gain_top20`` / ``gain_top20_perfect``: mean true effect on the top 20 %.
    """
    score = np.asarray(uplift, dtype=float)
    tau = np.asarray(true_effect, dtype=float)
    if score.shape != tau.shape or score.ndim != 1 or score.shape[0] < 2:
        raise ValueError("uplift and true_effect must be 1-d arrays of the same length (>= 2)")
    n = tau.shape[0]
    model = _area(_cumulative(tau, _order(score))) / n
    perfect = _area(_cumulative(tau, _order(tau))) / n
    random = float(tau.sum()) / 2 / n
    top = max(1, n // 5)
    return {
        "auuc": model,
        "auuc_random": random,
        "auuc_perfect": perfect,
        "qini": float((model - random) / (perfect - random)) if perfect > random else float("nan"),
        "spearman": float(pd.Series(score).rank().corr(pd.Series(tau).rank())),
        "gain_top20": float(tau[_order(score)[:top]].mean()),
        "gain_top20_perfect": float(tau[_order(tau)[:top]].mean()),
        "mean_effect": float(tau.mean()),
    }


def qini_from_outcomes(
    *, uplift: npt.ArrayLike, treatment: npt.ArrayLike, outcome: npt.ArrayLike, bins: int = 10
) -> dict[str, float]:
    """The Qini coefficient computable from logged data: no individual effect is known.

    At each decile cut of the ranking, incremental conversions = treated conversions - untreated
    conversions x (treated / untreated rows) among the top rows; the Qini coefficient is the area
    between that curve and the straight line to its end point, per row. Biased when the action was
    not randomised (reps chose whom to call): the simulator's truth checks it.
    """
    score = np.asarray(uplift, dtype=float)
    t = np.asarray(treatment, dtype=int)
    y = np.asarray(outcome, dtype=float)
    order = _order(score)
    t, y = t[order], y[order]
    n = t.shape[0]
    cuts = np.linspace(0, n, bins + 1).round().astype(int)
    ct, cy1, cy0 = np.cumsum(t), np.cumsum(y * t), np.cumsum(y * (1 - t))
    gain = [0.0]
    for k in cuts[1:]:
        n1, n0 = ct[k - 1], k - ct[k - 1]
        gain.append(float(cy1[k - 1] - (cy0[k - 1] * n1 / n0 if n0 > 0 else 0.0)))
    curve = np.array(gain) / n
    line = np.linspace(0.0, curve[-1], bins + 1)
    return {
        "qini_coefficient": float(np.trapezoid(curve - line, dx=1.0 / bins)),
        "incremental_total": float(curve[-1]),
    }
