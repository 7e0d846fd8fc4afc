"""Benchmark: the monthly backtest a team runs, at its default settings, on simulated leads.

    python benchmarks/bench_backtest.py --leads 20000 --seed 7 [--drift]

Simulates a CRM, builds the training table, and runs ``BacktestJob`` with its defaults (the last 6
months, expanding window, the default candidates: what ``train`` would deploy with and without the
EM base-rate estimate, LightGBM, the linear model, the rule-points baseline), logging to a
temporary SQLite MLflow store as ``leadscore backtest`` does. Records the wall time (target <= 3 min
on 2 cores at 20,000 leads), per-candidate mean and pooled metrics, and each period's base rate
estimated without labels against what it had.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, measure, write_results

from leadscore.features.build import BuildFeaturesJob
from leadscore.features.simulator import simulate_crm, write_crm
from leadscore.features.training_table import SnapshotPolicy
from leadscore.training.backtest import BacktestJob
from leadscore.training.config import TrackingConfig, TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drift", action="store_true", help="simulate a drifting funnel")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="leadscore-bench-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    results = args.results or Path(f"benchmarks/results/backtest{'_drift' if args.drift else ''}.json")

    crm = simulate_crm(n_leads=args.leads, seed=args.seed, drift=args.drift)
    paths = write_crm(crm, out_dir=home / "crm")
    table = home / "training_table.parquet"
    BuildFeaturesJob(
        leads=paths["leads"],
        activities=paths["activities"],
        outcomes=paths["outcomes"],
        output=table,
        policy=SnapshotPolicy(),
    ).run()
    config = TrainConfig(training_table=table, tracking=TrackingConfig(experiment="bench-backtest"))
    with measure() as run:
        result = BacktestJob(config).run()
    summary = result.summary.set_index("candidate")
    fresh = result.results[result.results["age"] == 0]
    prior = fresh[fresh["candidate"] == "chosen_prior"]
    chosen = fresh[fresh["candidate"] == "chosen"]
    payload = {
        "benchmark": "backtest (BacktestJob at its defaults)",
        "machine": machine(),
        "leads": args.leads,
        "drift": args.drift,
        "seconds": round(run.seconds, 1),
        "peak_rss_mb": round(run.peak_rss_mb),
        "target_seconds": 180,
        "periods": int(fresh["origin"].nunique()),
        "learner_chosen_per_period": dict(zip(chosen["origin"], chosen["learner"], strict=True)),
        "candidates": {
            str(name): {
                column: round(float(row[column]), 4)
                for column in ("mean_roc_auc", "worst_roc_auc", "mean_ece", "pooled_roc_auc", "pooled_ece")
                if column in row
            }
            for name, row in summary.iterrows()
        },
        "base_rate_without_labels": [
            {
                "period": str(r.origin),
                "estimate": round(float(r.prior_estimate), 4),
                "model_level": round(float(r.prior_trained), 4),
                "actual": round(float(r.positive_rate), 4),
                "rows": int(r.prior_rows),
            }
            for r in prior.itertuples(index=False)
        ],
        "recommendation": {k: v for k, v in result.recommendation.items()},
    }
    write_results(results, payload)
    print(payload)


if __name__ == "__main__":
    main()
