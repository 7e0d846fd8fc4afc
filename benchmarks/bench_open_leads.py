"""Benchmark: a right number for every open lead a CRM holds, at any age.

    python benchmarks/bench_open_leads.py --leads 20000 --seed 7

A CRM scores every lead that is still open, not only leads at the ages the training table
snapshots. On the simulator, trains the package's model with ``TrainJob`` and scores *all* open
leads (not converted by the export's end) at the export's end, then compares, per lead-age band
and per tier, the mean predicted probability with the point-in-time oracle's (the Bayes-optimal
probability given the lead's export up to then) and the share of 90% ranges that hold the oracle.

``--ages`` sets the training snapshots' ages (the default policy's when left out) and
``--older-per-lead`` how many extra snapshots per lead at older ages (``SnapshotPolicy``), so the
run before and after lead-age coverage is the same script.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
import pandas as pd
from _measure import machine, write_results

from leadscore.features.build import simulate_and_build
from leadscore.features.simulator import point_in_time_oracle_probability
from leadscore.features.training_table import SnapshotPolicy
from leadscore.training.config import TrackingConfig, TrainConfig
from leadscore.training.train import TrainJob

AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("0-30", 0, 30),
    ("31-90", 30, 90),
    ("91-365", 90, 365),
    ("366+", 365, np.inf),
)


def band_rows(frame: pd.DataFrame) -> dict[str, dict[str, float | int | None]]:
    """Mean predicted vs oracle, its relative gap, and range coverage of the oracle, per group."""

    def one(part: pd.DataFrame) -> dict[str, float | int | None]:
        oracle = float(part["oracle"].mean())
        predicted = float(part["probability"].mean())
        return {
            "leads": len(part),
            "mean_predicted": round(predicted, 5),
            "mean_oracle": round(oracle, 5),
            "relative_gap": round((predicted - oracle) / oracle, 3) if oracle > 0 else None,
            "range_holds_oracle": round(float(part["covered"].mean()), 4),
            "oracle_below_range": round(float((part["oracle"] < part["low"]).mean()), 4),
            "outside_trained_ages": round(float(part["outside"].mean()), 4),
        }

    return {"all": one(frame)} | {str(key): one(part) for key, part in frame.groupby("group", sort=False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ages", type=int, nargs="*", default=None)
    parser.add_argument("--older-per-lead", type=int, default=None)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/open_leads.json"))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="leadscore-bench-open-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ["LEADSCORE_HOME"] = str(home)
    started = time.perf_counter()
    policy_args: dict[str, object] = {}
    if args.ages:
        policy_args["ages_days"] = tuple(args.ages)
    if args.older_per_lead is not None:
        policy_args["older_ages_per_lead"] = args.older_per_lead
    policy = SnapshotPolicy(**policy_args)  # type: ignore[arg-type]
    export = simulate_and_build(n_leads=args.leads, seed=args.seed, out_dir=home, policy=policy)
    crm = export.crm
    table = pd.read_parquet(export.training_table)
    config = TrainConfig(
        training_table=export.training_table,
        tracking=TrackingConfig(experiment="bench-open-leads", model_name="leadscore-bench-open-leads"),
    )
    result = TrainJob(config).run()
    model = result.model
    trained_seconds = time.perf_counter() - started

    end = crm.exported_at
    converted = set(crm.outcomes["lead_id"])
    open_leads = crm.leads[~crm.leads["lead_id"].isin(converted)].reset_index(drop=True)
    features = model.features(leads=open_leads, activities=crm.activities, as_of=end)
    scored = model.score_features(features, explain=False)
    snapshots = pd.DataFrame({"lead_id": open_leads["lead_id"], "as_of": end})
    oracle = point_in_time_oracle_probability(crm=crm, snapshots=snapshots, horizon_days=policy.horizon_days)
    age = (end - pd.to_datetime(open_leads["created_at"])).dt.total_seconds().to_numpy() / 86_400
    frame = pd.DataFrame(
        {
            "age": age,
            "probability": [s["probability"] for s in scored],
            "low": [s["probability_low"] for s in scored],
            "high": [s["probability_high"] for s in scored],
            "tier": [str(s["tier"]) for s in scored],
            "outside": [s.get("age_note") is not None for s in scored],
            "oracle": oracle,
        }
    )
    frame["covered"] = (frame["oracle"] >= frame["low"]) & (frame["oracle"] <= frame["high"])
    frame["band"] = pd.cut(
        frame["age"],
        bins=[b[1] for b in AGE_BANDS] + [np.inf],
        labels=[b[0] for b in AGE_BANDS],
        include_lowest=True,
    ).astype(str)
    by_age = band_rows(frame.assign(group=frame["band"]))
    by_tier = band_rows(frame.assign(group=frame["tier"]))
    by_age_tier = band_rows(frame.assign(group=frame["band"] + " / " + frame["tier"]))
    ages_seen = table["lead_age_days"] if "lead_age_days" in table.columns else pd.Series(dtype=float)
    payload = {
        "benchmark": "every open lead at the export's end vs the point-in-time oracle, by age band and tier",
        "machine": machine(),
        "leads": args.leads,
        "seed": args.seed,
        "policy": policy.model_dump(mode="json"),
        "training_rows": len(table),
        "training_lead_age_days_max": round(float(ages_seen.max()), 1) if len(ages_seen) else None,
        "open_leads": len(frame),
        "open_lead_age_days_max": round(float(frame["age"].max()), 1),
        "calibration_level": model.metadata.get("calibration_level"),
        "train_seconds": round(trained_seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "by_age_band": by_age,
        "by_tier": by_tier,
        "by_age_band_and_tier": by_age_tier,
    }
    write_results(args.results, payload)
    print(pd.DataFrame(by_age).T.to_string())
    print(pd.DataFrame(by_tier).T.to_string())
    print(pd.DataFrame(by_age_tier).T.to_string())


if __name__ == "__main__":
    main()
