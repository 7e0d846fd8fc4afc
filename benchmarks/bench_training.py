"""Benchmark: training time on ~1M snapshot rows and the gap to the oracle AUC on the simulator.

    python benchmarks/bench_training.py --leads 350000 [--drift]

Simulates a CRM, builds the training table, runs the full `TrainJob` (LightGBM + calibration +
baselines + plots + MLflow logging into a temporary SQLite store) and compares the model's test
ROC AUC on the same snapshots with two oracles computed from the simulator's truth:

* the point-in-time oracle (``point_in_time_oracle_probability``): the Bayes-optimal probability
  given everything observable at ``as_of`` -- the best any model of the export can do; the issue's
  "within 0.01 of the oracle" target is measured against it (``oracle_gap``);
* the latent oracle (``oracle_probability``): knows each lead's latent intent, an information
  ceiling no model can reach (``latent_oracle_gap``).

``--drift`` simulates a drifting funnel (``simulate_crm(drift=True)``: climbing base rate, moving
channel mix, a market index leaving its range); ``lightgbm_minus_logistic`` is the margin the issue
asks to be >= 0.01 AUC.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, measure, write_results
from sklearn.metrics import roc_auc_score

from leadscore.features.build import BuildFeaturesJob
from leadscore.features.simulator import (
    oracle_probability,
    point_in_time_oracle_probability,
    simulate_crm,
    write_crm,
)
from leadscore.features.training_table import SnapshotPolicy
from leadscore.training.config import BoosterConfig, SplitConfig, TrackingConfig, TrainConfig
from leadscore.training.split import time_ordered_split
from leadscore.training.train import TrainJob, lead_flow_mask


def _margin(comparison: object) -> float | None:
    """Test AUC of the LightGBM model minus the logistic baseline's (rows named by the TrainJob)."""
    import pandas as pd

    frame = comparison if isinstance(comparison, pd.DataFrame) else pd.DataFrame()
    names = [str(m) for m in frame.index]
    model = next((m for m in names if m in {"lightgbm", "linear"}), None)
    logistic = next((m for m in names if "logistic" in m.lower()), None)
    if model is None or logistic is None:
        return None
    auc = frame["roc_auc"].to_numpy(dtype=float)
    return round(float(auc[names.index(model)] - auc[names.index(logistic)]), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=350_000)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--drift", action="store_true", help="simulate a drifting funnel")
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="leadscore-bench-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

    results = args.results or Path(f"benchmarks/results/training{'_drift' if args.drift else ''}.json")

    started = time.perf_counter()
    crm = simulate_crm(n_leads=args.leads, seed=args.seed, drift=args.drift)
    paths = write_crm(crm, out_dir=home / "crm")
    table_path = home / "training_table.parquet"
    BuildFeaturesJob(
        leads=paths["leads"],
        activities=paths["activities"],
        outcomes=paths["outcomes"],
        output=table_path,
        policy=SnapshotPolicy(),
    ).run()
    prepare_seconds = time.perf_counter() - started

    config = TrainConfig(
        training_table=table_path,
        booster=BoosterConfig(),
        tracking=TrackingConfig(experiment="bench", model_name="leadscore-bench"),
    )
    with measure() as run:
        result = TrainJob(config).run()
    import pandas as pd

    table = pd.read_parquet(table_path, columns=["lead_id", "as_of", "label", "snapshot_age_days"])
    split = time_ordered_split(table, config=SplitConfig(), horizon_days=90)
    # the lead flow at the configured ages, as TrainJob's test metrics read it (older-age snapshots of
    # silent old leads are easy to rank and would flatter the oracle)
    test = split.test[lead_flow_mask(split.test, ages_days=list(SnapshotPolicy().ages_days))]
    snapshots = test[["lead_id", "as_of"]]
    y_test = test["label"].astype(int)
    started = time.perf_counter()
    oracle = point_in_time_oracle_probability(crm=crm, snapshots=snapshots, horizon_days=90)
    oracle_seconds = time.perf_counter() - started
    oracle_auc = float(roc_auc_score(y_test, oracle))
    latent = oracle_probability(truth=crm.truth, leads=crm.leads, snapshots=snapshots, horizon_days=90)
    latent_auc = float(roc_auc_score(y_test, latent))
    comparison = result.comparison.set_index("model")
    payload = {
        "benchmark": "training (TrainJob end to end)",
        "machine": machine(),
        "leads": args.leads,
        "drift": args.drift,
        "snapshot_rows": len(table),
        "train_rows": len(split.train),
        "validation_rows": len(split.validation),
        "test_rows": len(split.test),
        "test_rows_lead_flow": len(test),
        "prepare_seconds": round(prepare_seconds, 1),
        "train_job_seconds": round(run.seconds, 1),
        "train_job_peak_rss_mb": round(run.peak_rss_mb),
        "best_iteration": result.metrics["best_iteration"],
        "test_roc_auc": round(result.metrics["roc_auc"], 4),
        "oracle": "point-in-time (Bayes-optimal given the export up to as_of)",
        "oracle_roc_auc": round(oracle_auc, 4),
        "oracle_gap": round(oracle_auc - result.metrics["roc_auc"], 4),
        "oracle_mean_vs_label_rate": [round(float(oracle.mean()), 4), round(float(y_test.mean()), 4)],
        "oracle_seconds": round(oracle_seconds, 1),
        "latent_oracle_roc_auc": round(latent_auc, 4),
        "latent_oracle_gap": round(latent_auc - result.metrics["roc_auc"], 4),
        "test_ece": round(result.metrics["ece"], 4),
        "pipeline_capture_top20": {
            m: round(float(comparison.loc[m, "pipeline_capture_top20"]), 4) for m in comparison.index
        },
        "baselines_roc_auc": {m: round(float(comparison.loc[m, "roc_auc"]), 4) for m in comparison.index},
        "lightgbm_minus_logistic": _margin(comparison),
        "baselines_ece": {m: round(float(comparison.loc[m, "ece"]), 4) for m in comparison.index},
        "learner": result.model.metadata.get("learner", "lightgbm"),
        "learner_choice": result.model.metadata.get("learner_choice", ""),
        "calibration_level": result.model.metadata.get("calibration_level", ""),
        "base_rate_without_labels": {
            key: round(float(result.metrics[key]), 4)
            for key in (
                "base_rate_test_actual",
                "base_rate_test_mean_predicted",
                "base_rate_test_em_estimate",
                "ece_at_em_estimate",
            )
            if key in result.metrics
        },
    }
    write_results(results, payload)
    print(payload)


if __name__ == "__main__":
    main()
