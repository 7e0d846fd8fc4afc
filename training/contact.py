"""Learn whether following up a hand-raise helps, from the export's own follow-ups (DR-learner + GATES).

The units (``features.contact_units``) are hand-raises nobody had answered yet; the action is a sales
touch within the follow-up window. :class:`~leadscore.training.uplift.DRLearner` gives cross-fitted
doubly robust pseudo-outcomes ``phi`` (their mean is the average effect, right when either the
propensity or the outcome models are right, under "no unmeasured confounding"). The per-lead effect
estimates are too noisy to show one by one, so the advice reads *bands* of them (sorted group average
treatment effects, Chernozhukov et al. 2018, "GATES"):

1. the final stage (a LightGBM regression of ``phi``) is cross-fitted, so each unit's estimated effect
   comes from a model that did not see it;
2. the units are cut into equal bands of that estimate (fewer bands for fewer units);
3. each band's effect is the mean ``phi`` of its units, with a Bonferroni-adjusted 95% interval.

A band is "helps" or "hurts" only when its interval excludes 0; with the sample sizes of most exports
most bands hold 0, and the advice says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import stats
from sklearn.model_selection import KFold

from leadscore.model.cadence import BandEffect, ContactEffect
from leadscore.training.uplift import _FINAL_PARAMS, DRLearner

__all__ = ["MIN_UNITS_PER_BAND", "ContactLearning", "learn_contact_effect"]

log = logging.getLogger(__name__)

#: a band needs at least this many hand-raises (an effect of a few points needs thousands)
MIN_UNITS_PER_BAND = 1_500
MAX_BANDS = 4
#: fewer units, or fewer of either arm or of converters, and nothing is learned
MIN_UNITS = 600
MIN_PER_ARM = 150
MIN_CONVERTED = 50


@dataclass(frozen=True)
class ContactLearning:
    """The learned effect (None when there was too little to learn from) and why, in words."""

    effect: ContactEffect | None
    summary: str


def learn_contact_effect(
    units: pd.DataFrame,
    *,
    feature_names: tuple[str, ...],
    categorical_features: tuple[str, ...],
    hand_raise_columns: tuple[str, ...],
    follow_up_days: int,
    seed: int = 0,
) -> ContactLearning:
    """The effect of following up a hand-raise, per band, from the units' ``treated`` / ``converted``."""
    n = len(units)
    treated = units["treated"].to_numpy(dtype=int)
    converted = units["converted"].to_numpy(dtype=int)
    arms = (int(treated.sum()), int(n - treated.sum()))
    if n < MIN_UNITS or min(arms) < MIN_PER_ARM or converted.sum() < MIN_CONVERTED:
        return ContactLearning(
            None,
            f"too few hand-raises to learn whether following up helps ({n:,} units, {arms[0]:,} followed up, "
            f"{arms[1]:,} not, {int(converted.sum()):,} converted; needs {MIN_UNITS:,} / {MIN_PER_ARM} per "
            f"arm / {MIN_CONVERTED})",
        )
    X = units.loc[:, list(feature_names)].copy()
    for name in categorical_features:  # as the DR-learner's encoder expects: text categories
        if name in X:
            X[name] = X[name].astype("string")
    learner = DRLearner(seed=seed).fit(X, treated, converted)
    phi = learner.pseudo_outcome_
    Z = learner._encoded(X)
    positions = learner.categorical_positions_
    params = {**_FINAL_PARAMS, "random_state": seed}
    estimate = np.empty(n)
    for fit_rows, held in KFold(n_splits=5, shuffle=True, random_state=seed).split(Z):
        final = lgb.LGBMRegressor(**params).fit(
            Z.iloc[fit_rows], phi[fit_rows], categorical_feature=positions
        )
        estimate[held] = final.predict(Z.iloc[held])
    k = int(np.clip(n // MIN_UNITS_PER_BAND, 1, MAX_BANDS))
    cutoffs = tuple(float(c) for c in np.quantile(estimate, [j / k for j in range(1, k)]))
    band = np.searchsorted(np.asarray(cutoffs), estimate, side="right")
    z = float(stats.norm.ppf(1.0 - 0.05 / (2 * k)))
    bands = []
    for b in range(k):
        values = phi[band == b]
        mean = float(values.mean())
        se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("inf")
        bands.append(BandEffect(estimate=mean, low=mean - z * se, high=mean + z * se, units=len(values)))
    effect = ContactEffect(
        encoder=learner.encoder_,
        booster=learner.final_model_.booster_,
        feature_names=tuple(feature_names),
        cutoffs=cutoffs,
        bands=tuple(bands),
        hand_raise_columns=hand_raise_columns,
        follow_up_days=follow_up_days,
        units=n,
        treated_share=float(treated.mean()),
    )
    average, average_se = learner.average_effect()
    summary = (
        f"{effect.summary()}; average effect {100 * average:+.1f} points "
        f"(95% CI {100 * (average - 1.96 * average_se):+.1f} to {100 * (average + 1.96 * average_se):+.1f})"
    )
    log.info("contact effect: %s", summary)
    return ContactLearning(effect, summary)
