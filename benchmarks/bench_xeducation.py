"""Benchmark: the public X Education lead table through `examples/xeducation.yaml` only.

    python benchmarks/bench_xeducation.py

Builds the flat feature table (leaky columns excluded by the mapping), then runs the full TrainJob
with `examples/xeducation-train.yaml` on five stratified split seeds (the export has no timestamps,
so one 1,848-row test split moves AUC by about +-0.006), and records per-seed and mean test ROC AUC
and ECE for LightGBM and both baselines.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, write_results

from leadscore.features.build import FlatBuildJob
from leadscore.settings import PROJECT_ROOT, datasets_dir
from leadscore.training.config import TrainConfig, load_config
from leadscore.training.train import TrainJob


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/xeducation.json"))
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    home = Path(tempfile.mkdtemp(prefix="leadscore-xed-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.environ["LEADSCORE_HOME"] = str(home)
    table = home / "xeducation.parquet"
    FlatBuildJob(mapping_path=PROJECT_ROOT / "examples" / "xeducation.yaml", output=table).run()
    runs = []
    for seed in range(args.seeds):
        config = load_config(
            TrainConfig,
            PROJECT_ROOT / "examples" / "xeducation-train.yaml",
            {"training_table": str(table), "seed": seed, "tracking.register_model": False},
        )
        started = time.perf_counter()
        result = TrainJob(config).run()
        comparison = result.comparison.set_index("model")
        runs.append(
            {
                "seed": seed,
                "seconds": round(time.perf_counter() - started, 1),
                **{f"{m}_roc_auc": round(float(comparison.loc[m, "roc_auc"]), 4) for m in comparison.index},
                **{f"{m}_ece": round(float(comparison.loc[m, "ece"]), 4) for m in comparison.index},
            }
        )
        print(runs[-1])
    summary = {
        key: {
            "mean": round(float(np.mean([r[key] for r in runs])), 4),
            "sd": round(float(np.std([r[key] for r in runs])), 4),
        }
        for key in runs[0]
        if key.endswith(("roc_auc", "ece"))
    }
    write_results(
        args.results,
        {
            "benchmark": "X Education (flat export, leaky columns excluded)",
            "machine": machine(),
            "data": str(datasets_dir() / "xeducation" / "Leads.csv"),
            "split": "stratified 65/15/20 (no timestamps)",
            "summary": summary,
            "runs": runs,
        },
    )
    print(summary)


if __name__ == "__main__":
    main()
