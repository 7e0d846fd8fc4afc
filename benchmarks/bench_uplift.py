"""Benchmark: does a rep's follow-up *cause* conversion? Uplift learning vs what-if re-scoring.

    python benchmarks/bench_uplift.py --leads 60000

The simulator gives sales follow-ups a causal, per-lead effect (an early call after a form fill puts
executives and low-intent leads off, helps engaged managers) and records each lead's true effect.
Units: leads whose first form fill comes before any demo request, at the moment of that form fill
(features computed point-in-time at ``as_of`` = the form fill), created early enough for the
outcome to be seen (form fill at least 150 days before the export). Treatment: sales followed the
form fill up (a touch before any demo request), logged by reps who chose whom to call (propensity
by seniority and company size). Outcome: converted by the export.

Three rankings of "whom to follow up" on the newest 40 % of units (fitted on the older 60 %), each
scored against the simulator's true individual effect (Qini / AUUC, ``training.uplift``):

* ``dr_learner``: cross-fitted DR-learner with LightGBM nuisance models (causal, checkable);
* ``what_if``: the lead-score model (LightGBM on the point-in-time training table) re-scored with
  one more sales call, minus its score: an association, what the cards' what-if shows;
* ``score``: the conversion score itself (calling the hottest leads first).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, write_results

from leadscore.features.build import BuildFeaturesJob
from leadscore.features.catalogue import (
    CATEGORICAL_FEATURES,
    FEATURE_NAMES,
    WINDOWS_DAYS,
    days_since_name,
    total_count_name,
    window_count_name,
)
from leadscore.features.contract import SALES_TOUCH_TYPES
from leadscore.features.pipeline import compute_features
from leadscore.features.simulator import simulate_crm, true_form_follow_up_effect, write_crm
from leadscore.features.training_table import SnapshotPolicy
from leadscore.model.encoding import CategoryCodeEncoder
from leadscore.training.uplift import DRLearner, qini_against_truth, qini_from_outcomes

_SALES = {t.value for t in SALES_TOUCH_TYPES}


def form_fill_units(crm: object, *, min_days_before_export: float = 150.0) -> pd.DataFrame:
    """One row per lead whose first form fill precedes any demo request: as_of, treatment, outcome."""
    acts = crm.activities  # type: ignore[attr-defined]
    first = {
        name: acts[acts["activity_type"].isin(types)].groupby("lead_id", observed=True)["timestamp"].min()
        for name, types in (("form", {"form_fill"}), ("demo", {"demo_request"}), ("touch", _SALES))
    }
    units = first["form"].rename("as_of").reset_index()
    demo = units["lead_id"].map(first["demo"])
    touch = units["lead_id"].map(first["touch"])
    exported = crm.exported_at  # type: ignore[attr-defined]
    units = units[
        ~(demo <= units["as_of"]) & (units["as_of"] <= exported - pd.Timedelta(days=min_days_before_export))
    ]
    demo, touch = demo.loc[units.index], touch.loc[units.index]
    units = units.assign(
        treated=(touch.notna() & ~(demo < touch)).astype(int).to_numpy(),
        converted=units["lead_id"].isin(crm.outcomes["lead_id"]).astype(int).to_numpy(),  # type: ignore[attr-defined]
    )
    return units.sort_values("as_of", kind="stable").reset_index(drop=True)


def one_more_call(X: pd.DataFrame) -> pd.DataFrame:
    """The feature frame as if a rep had just made one sales call (the what-if re-scoring)."""
    out = X.copy()
    for days in WINDOWS_DAYS:
        out[window_count_name("sales_call", days)] = out[window_count_name("sales_call", days)].fillna(0) + 1
    out[total_count_name("sales_call")] = out[total_count_name("sales_call")].fillna(0) + 1
    out["sales_touches_total"] = out["sales_touches_total"].fillna(0) + 1
    out["days_since_last_sales_touch"] = 0.0
    if days_since_name("sales_call") in out.columns:
        out[days_since_name("sales_call")] = 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/uplift.json"))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="leadscore-uplift-"))
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    started = time.perf_counter()

    crm = simulate_crm(n_leads=args.leads, seed=args.seed)
    units = form_fill_units(crm)
    X = compute_features(leads=crm.leads, activities=crm.activities, snapshots=units[["lead_id", "as_of"]])
    X = X[list(FEATURE_NAMES)]
    true_effect = true_form_follow_up_effect(crm=crm, snapshots=units[["lead_id", "as_of"]])
    cut = int(len(units) * 0.6)  # fit on the older 60 %, rank the newest 40 %
    fit, test = slice(0, cut), slice(cut, None)

    learner = DRLearner(seed=args.seed).fit(
        X.iloc[fit], units["treated"].iloc[fit], units["converted"].iloc[fit]
    )
    dr = learner.predict(X.iloc[test])

    # the lead-score model, trained on the point-in-time table of leads created before the test units
    paths = write_crm(crm, out_dir=home / "crm")
    table_path = home / "training_table.parquet"
    BuildFeaturesJob(
        leads=paths["leads"],
        activities=paths["activities"],
        outcomes=paths["outcomes"],
        output=table_path,
        policy=SnapshotPolicy(),
    ).run()
    table = pd.read_parquet(table_path)
    table = table[table["as_of"] < units["as_of"].iloc[cut]]
    encoder = CategoryCodeEncoder(columns=list(CATEGORICAL_FEATURES), min_frequency=20)
    Z = encoder.fit_transform(table[list(FEATURE_NAMES)])
    booster = lgb.LGBMClassifier(
        n_estimators=400, learning_rate=0.05, num_leaves=15, max_depth=4, min_child_samples=50, verbose=-1
    )
    categorical = [list(FEATURE_NAMES).index(c) for c in CATEGORICAL_FEATURES]
    booster.fit(Z, table["label"].astype(int), categorical_feature=categorical)
    X_test = X.iloc[test]
    score = np.asarray(booster.predict_proba(encoder.transform(X_test)))[:, 1]
    what_if = np.asarray(booster.predict_proba(encoder.transform(one_more_call(X_test))))[:, 1] - score

    tau = true_effect[test]
    t_test, y_test = units["treated"].iloc[test].to_numpy(), units["converted"].iloc[test].to_numpy()
    rankings = {"dr_learner": dr, "what_if": what_if, "score": score}
    ate, ate_se = learner.average_effect()
    treated = units["treated"].iloc[fit].to_numpy().astype(bool)
    converted = units["converted"].iloc[fit].to_numpy()
    payload = {
        "benchmark": "uplift of a sales follow-up of a form fill (simulator truth)",
        "machine": machine(),
        "leads": args.leads,
        "units_fit": cut,
        "units_test": len(units) - cut,
        "treated_share": round(float(units["treated"].mean()), 4),
        "true_effect_mean": round(float(true_effect[fit].mean()), 4),
        "true_effect_share_negative": round(float((true_effect < 0).mean()), 4),
        "dr_average_effect": [round(ate, 4), round(ate_se, 4)],
        "naive_difference": round(float(converted[treated].mean() - converted[~treated].mean()), 4),
        "against_truth": {
            name: {k: round(v, 4) for k, v in qini_against_truth(uplift=r, true_effect=tau).items()}
            for name, r in rankings.items()
        },
        "from_outcomes": {
            name: {
                k: round(v, 5)
                for k, v in qini_from_outcomes(uplift=r, treatment=t_test, outcome=y_test).items()
            }
            for name, r in rankings.items()
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_results(args.results, payload)
    print(payload)


if __name__ == "__main__":
    main()
