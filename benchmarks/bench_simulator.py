"""Benchmark the CRM simulator: time ``simulate_crm`` and ``write_crm`` (parquet) at scale.

Usage: ``python benchmarks/bench_simulator.py --leads 1000000 --seed 0``. Records wall times, table
sizes, peak RSS and the machine into a JSON file and prints a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa

from leadscore.features.simulator import simulate_crm, write_crm


def _peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _machine() -> dict[str, object]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count_logical": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpus_usable": usable,
        "memory_total_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the benchmark and write the results JSON; return the results."""
    parser = argparse.ArgumentParser(description="Benchmark simulate_crm and write_crm.")
    parser.add_argument("--leads", type=int, default=1_000_000, help="number of leads (default 1M)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("benchmarks/results/simulator.json"),
        help="results JSON file (its folder is created)",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    crm = simulate_crm(n_leads=args.leads, seed=args.seed)
    simulate_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory(prefix="bench_simulator_") as tmp:
        t0 = time.perf_counter()
        paths = write_crm(crm, out_dir=Path(tmp), file_format="parquet")
        write_s = time.perf_counter() - t0
        file_mb = {name: round(path.stat().st_size / 2**20, 1) for name, path in paths.items()}

    n_activities = len(crm.activities)
    machine = _machine()
    results: dict[str, object] = {
        "benchmark": "simulator",
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": args.seed,
        "leads": args.leads,
        "activities": n_activities,
        "activities_per_lead": round(n_activities / args.leads, 2),
        "outcomes": len(crm.outcomes),
        "conversion_rate": round(float(crm.truth["converts"].mean()), 4),
        "simulate_seconds": round(simulate_s, 2),
        "write_parquet_seconds": round(write_s, 2),
        "total_seconds": round(simulate_s + write_s, 2),
        "activities_per_second": round(n_activities / simulate_s),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "parquet_mb": file_mb,
        "machine": machine,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"simulator: {args.leads:,} leads, {n_activities:,} activities "
        f"({results['activities_per_lead']}/lead) | simulate {simulate_s:.1f}s, "
        f"write parquet {write_s:.1f}s | peak RSS {results['peak_rss_mb']:.0f} MiB | "
        f"{machine['cpus_usable']} cpus -> {args.results}"
    )
    return results


if __name__ == "__main__":
    main()
