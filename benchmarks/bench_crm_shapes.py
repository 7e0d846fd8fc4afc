"""Benchmark: the same simulated leads as the native export, a Salesforce and a HubSpot export.

    python benchmarks/bench_crm_shapes.py --leads 20000

Simulates once, writes the native three tables and the two CRM shapes
(``leadscore simulate --shape``), builds each through its own path (native contract;
``examples/salesforce.yaml`` and ``examples/hubspot.yaml`` through the event mapping), trains each
with the same TrainConfig and records test ROC AUC. Done when both shapes are within 0.005 of native.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, write_results

from leadscore.features.build import BuildFeaturesJob, EventBuildJob
from leadscore.features.crm_shapes import CrmShape, write_shape
from leadscore.features.simulator import simulate_crm, write_crm
from leadscore.features.training_table import SnapshotPolicy
from leadscore.settings import PROJECT_ROOT
from leadscore.training.config import TrainConfig, load_config
from leadscore.training.train import TrainJob


def shape_aucs(*, n_leads: int, seed: int, work: Path) -> dict[str, dict[str, float]]:
    """Test-set metrics of LightGBM per shape, trained on the same simulated leads."""
    crm = simulate_crm(n_leads=n_leads, seed=seed)
    tables: dict[str, Path] = {}
    native = write_crm(crm, out_dir=work / "native", file_format="csv")
    tables["native"] = work / "native.parquet"
    BuildFeaturesJob(
        leads=native["leads"],
        activities=native["activities"],
        outcomes=native["outcomes"],
        output=tables["native"],
        policy=SnapshotPolicy(ages_days=(3, 14, 30, 60), horizon_days=90),
    ).run()
    for shape in (CrmShape.SALESFORCE, CrmShape.HUBSPOT):
        write_shape(crm, shape=shape, out_dir=work / shape.value, file_format="csv", seed=seed)
        tables[shape.value] = work / f"{shape.value}.parquet"
        EventBuildJob(
            mapping_path=PROJECT_ROOT / "examples" / f"{shape.value}.yaml",
            output=tables[shape.value],
            data_dir=work / shape.value,
        ).run()
    out: dict[str, dict[str, float]] = {}
    for name, table in tables.items():
        config = load_config(
            TrainConfig,
            PROJECT_ROOT / "leadscore" / "configs" / "train.yaml",
            {"training_table": str(table), "tracking.register_model": False, "tracking.model_name": name},
        )
        started = time.perf_counter()
        result = TrainJob(config).run()
        comparison = result.comparison.set_index("model")
        out[name] = {
            "roc_auc": round(float(comparison.loc["lightgbm", "roc_auc"]), 4),
            "logistic_roc_auc": round(float(comparison.loc["logistic", "roc_auc"]), 4),
            "seconds": round(time.perf_counter() - started, 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/crm_shapes.json"))
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    home = Path(tempfile.mkdtemp(prefix="leadscore-shapes-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.environ["LEADSCORE_HOME"] = str(home)
    started = time.perf_counter()
    results = shape_aucs(n_leads=args.leads, seed=args.seed, work=home)
    gaps = {
        s: round(abs(results[s]["roc_auc"] - results["native"]["roc_auc"]), 4)
        for s in ("salesforce", "hubspot")
    }
    payload = {
        "benchmark": "CRM shapes: native vs Salesforce vs HubSpot export of the same simulated leads",
        "machine": machine(),
        "leads": args.leads,
        "seed": args.seed,
        "results": results,
        "auc_gap_to_native": gaps,
        "within_0_005": all(g <= 0.005 for g in gaps.values()),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_results(args.results, payload)
    print(payload)


if __name__ == "__main__":
    main()
