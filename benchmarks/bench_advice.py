"""Benchmark: follow-up advice that does no harm, against the simulator's true effect of a call.

    python benchmarks/bench_advice.py --leads 40000 --seed 7

The simulator gives a sales follow-up a causal, per-lead effect (an early call puts executives and
low-intent leads off and helps engaged managers; answering a demo request helps nearly everyone) and
records each lead's potential outcomes. ``TrainJob`` learns the effect of following up a hand-raise
from the export (``training.contact``: cross-fitted DR-learner, bands with Bonferroni 95% intervals)
and the cards advise contact only in a band whose interval is above 0. At the export's end, over the
open leads nobody has contacted, each policy of whom to contact now is scored by the true effect of
contacting (``simulator.true_contact_effect``):

* ``advice``: the leads whose card says "reach out now" (band verdict "helps");
* ``previous_rule``: every uncontacted sales-ready lead (what cards said before: "reach out today");
* ``cards``: what a rep following the cards contacts: a "reach out now" lead, or a sales-ready lead
  whose card does not say "hold off" (the score still ranks; the card no longer claims an effect);
* ``score_first``: as many leads as ``advice`` (or as ``previous_rule`` when advice names none), the
  highest scores first;
* ``oracle_of_observables``: a ceiling no real export allows: a regression of the *true* effect on
  the features (fitted on the training hand-raises' true effects), contacting the leads it puts above
  0, and its best 5% / 1%. It shows how often contact harms a lead even when the expected effect
  given everything the export shows is known exactly.

Reported per policy: leads, the share whose true effect is negative, and the expected conversions
gained (the sum of true effects). The simulator is a test fixture, not the truth.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lightgbm as lgb
import numpy as np
import pandas as pd
from _measure import machine, write_results

from leadscore.features.build import simulate_and_build
from leadscore.features.contact_units import contact_units_path
from leadscore.features.simulator import true_contact_effect
from leadscore.model.cadence import ContactVerdict
from leadscore.training.config import TrackingConfig, TrainConfig
from leadscore.training.train import TrainJob


def policy_row(effect: np.ndarray, chosen: np.ndarray) -> dict[str, float | int | None]:
    """How many leads a policy contacts, how many of them a call harms, and the conversions it gains."""
    part = effect[chosen]
    return {
        "leads": int(chosen.sum()),
        "share_harmed": round(float((part < 0).mean()), 4) if len(part) else None,
        "expected_conversions_gained": round(float(part.sum()), 2),
        "mean_effect": round(float(part.mean()), 5) if len(part) else None,
    }


def top(values: np.ndarray, k: int, among: np.ndarray) -> np.ndarray:
    """The ``k`` highest ``values`` among ``among`` (a mask)."""
    chosen = np.zeros(len(values), dtype=bool)
    rows = np.flatnonzero(among)
    if k > 0 and len(rows):
        chosen[rows[np.argsort(-values[rows], kind="stable")[:k]]] = True
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/advice.json"))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="leadscore-bench-advice-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["LEADSCORE_HOME"] = str(home)
    started = time.perf_counter()
    export = simulate_and_build(n_leads=args.leads, seed=args.seed, out_dir=home)
    crm = export.crm
    config = TrainConfig(
        training_table=export.training_table,
        tracking=TrackingConfig(experiment="bench-advice", model_name="leadscore-bench-advice"),
    )
    model = TrainJob(config).run().model
    effect_model = model.contact_effect

    end = crm.exported_at
    converted = set(crm.outcomes["lead_id"])
    open_leads = crm.leads[~crm.leads["lead_id"].isin(converted)].reset_index(drop=True)
    features = model.features(leads=open_leads, activities=crm.activities, as_of=end)
    uncontacted = features["sales_touches_total"].fillna(0).to_numpy() == 0
    features, open_leads = features[uncontacted].reset_index(drop=True), open_leads[uncontacted]
    scored = model.score_features(features, explain=False)
    advice = model.contact_advice(features)
    truth = true_contact_effect(
        crm=crm, snapshots=pd.DataFrame({"lead_id": features["lead_id"], "as_of": end})
    )
    probability = np.array([s["probability"] for s in scored], dtype=float)
    tier = np.array([str(s["tier"]) for s in scored])
    verdict = np.array([a.verdict.value if a is not None else "no_estimate" for a in advice])
    everyone = np.ones(len(features), dtype=bool)

    advised = verdict == ContactVerdict.HELPS.value
    previous = tier == "sales_ready"
    k = int(advised.sum()) or int(previous.sum())
    # the ceiling: the true effect's regression on the features of the hand-raises training learnt from
    units = pd.read_parquet(contact_units_path(export.training_table))
    unit_truth = true_contact_effect(crm=crm, snapshots=units[["lead_id", "as_of"]])
    names = list(model.feature_names)
    encoder = effect_model.encoder if effect_model is not None else None
    oracle_rows: dict[str, dict[str, float | int | None]] = {}
    if encoder is not None:
        regression = lgb.LGBMRegressor(
            n_estimators=400, learning_rate=0.05, num_leaves=31, min_child_samples=50, verbose=-1
        ).fit(encoder.transform(units[names]), unit_truth)
        expected = np.asarray(regression.predict(encoder.transform(features[names])))
        oracle_rows = {
            "contact_if_expected_positive": policy_row(truth, expected > 0),
            "best_5_percent": policy_row(truth, top(expected, max(1, len(expected) // 20), everyone)),
            "best_1_percent": policy_row(truth, top(expected, max(1, len(expected) // 100), everyone)),
            "same_leads_as_score_first": policy_row(truth, top(expected, k, everyone)),
        }
    payload = {
        "benchmark": "follow-up advice vs the true effect of contacting uncontacted open leads (simulator)",
        "machine": machine(),
        "leads": args.leads,
        "seed": args.seed,
        "contact_effect": model.metadata.get("contact_effect"),
        "hand_raise_units": len(units),
        "uncontacted_open_leads": len(features),
        "true_effect_share_negative": round(float((truth < 0).mean()), 4),
        "verdicts": {str(v): int((verdict == v).sum()) for v in np.unique(verdict)},
        "verdicts_sales_ready": {str(v): int((verdict[previous] == v).sum()) for v in np.unique(verdict)},
        "policies": {
            "advice": policy_row(truth, advised),
            "previous_rule": policy_row(truth, previous),
            "cards": policy_row(truth, advised | (previous & (verdict != ContactVerdict.HURTS.value))),
            "score_first": policy_row(truth, top(probability, k, everyone)),
            "oracle_of_observables": oracle_rows,
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_results(args.results, payload)
    print(payload)


if __name__ == "__main__":
    main()
