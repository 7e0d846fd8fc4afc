"""Benchmark: batch scoring with reasons, pandas (one process) vs Spark local mode.

    python benchmarks/bench_batch.py --leads 1000000            # both engines, ~15 min on 2 cores
    python benchmarks/bench_batch.py --leads 200000 --engines spark

1. trains a model on a separate small simulated CRM (``--train-leads``) in a throwaway MLflow store;
2. simulates ``--leads`` leads (or reads ``--data``) and writes them as Parquet;
3. scores every lead with probability, score, tier, grade and top-5 reasons with each engine
   (``leadscore.training.batch.score_batch``), timing the whole call (reading, validation,
   features, model, explanations, Parquet output) and sampling the peak RSS of the process tree
   (for Spark: the driver, its JVM and the Python workers);
4. checks both engines agree on every lead's probability and on the reasons of a sample.

With fewer than 1M leads the 1M figure is extrapolated linearly from the measured throughput and
labelled as such.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, write_results

ONE_MILLION = 1_000_000


@contextmanager
def tree_peak_rss(interval: float = 0.1) -> Iterator[dict[str, float]]:
    """Peak resident memory (MB) of this process plus all its children (JVM, Python workers)."""
    me = psutil.Process()
    result = {"peak_rss_mb": 0.0}
    done = threading.Event()

    def total() -> float:
        rss = 0
        for process in [me, *me.children(recursive=True)]:
            with suppress(psutil.Error):  # a worker may exit between listing and reading
                rss += process.memory_info().rss
        return rss / 2**20

    def sample() -> None:
        while not done.is_set():
            result["peak_rss_mb"] = max(result["peak_rss_mb"], total())
            done.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        done.set()
        thread.join()


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live descendants (with their waited-for children)."""
    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        with suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def git_state() -> dict[str, object]:
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=False).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def train_model(work: Path, n_leads: int) -> object:
    """Train (or reuse, when ``work`` has one from an earlier run) the model to score with."""
    import pickle

    cached = work / f"model-{n_leads}.pkl"
    if cached.exists():
        with open(cached, "rb") as handle:
            return pickle.load(handle)
    from leadscore.features.build import simulate_and_build
    from leadscore.training.config import TrackingConfig, TrainConfig
    from leadscore.training.train import TrainJob

    os.environ["LEADSCORE_HOME"] = str(work / "home")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'home' / 'mlflow.db'}"
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    (work / "home").mkdir(parents=True, exist_ok=True)
    table = simulate_and_build(n_leads=n_leads, seed=101, out_dir=work / "train").training_table
    config = TrainConfig(
        training_table=table, tracking=TrackingConfig(experiment="bench-batch", model_name="bench-batch")
    )
    model = TrainJob(config).run().model
    with open(cached, "wb") as handle:
        pickle.dump(model, handle)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=ONE_MILLION)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--train-leads", type=int, default=20_000)
    parser.add_argument("--data", type=Path, help="score this export instead of simulating one")
    parser.add_argument("--engines", default="pandas,spark")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--chunk-leads", type=int, default=50_000)
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/batch.json"))
    args = parser.parse_args()

    from leadscore.features.simulator import simulate_crm, write_crm
    from leadscore.training.batch import score_batch

    code = git_state()  # the code that runs, not whatever is checked out when the run ends
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = train_model(work, args.train_leads)
    train_seconds = time.perf_counter() - started
    print(f"trained the model on {args.train_leads:,} leads in {train_seconds:.1f}s")

    if args.data is None:
        started = time.perf_counter()
        crm = simulate_crm(n_leads=args.leads, seed=args.seed, progress=True)
        write_crm(crm, out_dir=work / "crm")
        n_activities = len(crm.activities)
        as_of = pd.Timestamp(crm.exported_at)
        del crm
        data = work / "crm"
        elapsed = time.perf_counter() - started
        print(f"simulated {args.leads:,} leads, {n_activities:,} activities in {elapsed:.1f}s")
    else:
        data = args.data
        n_activities = pq.ParquetFile(data / "activities.parquet").metadata.num_rows
        as_of = None

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    runs: dict[str, dict[str, object]] = {}
    for engine in engines:
        extra: dict[str, object] = {"engine": engine}
        spark = None
        with tree_peak_rss() as peak:
            started, cpu_started = time.perf_counter(), tree_cpu_seconds()
            if engine == "spark":
                from leadscore.features.spark import spark_session

                spark = spark_session(args.master, driver_memory=args.driver_memory)
                extra["spark_start_seconds"] = round(time.perf_counter() - started, 1)
                extra["master"] = args.master
            result = score_batch(
                model=model,  # type: ignore[arg-type]
                data_dir=data,
                out=work / f"scores-{engine}",
                engine=engine,
                as_of=as_of,
                chunk_leads=args.chunk_leads,
                progress=engine == "pandas",
                spark=spark,
                overwrite=True,
            )
            seconds = time.perf_counter() - started
            cpu_seconds = tree_cpu_seconds() - cpu_started  # before stop(): Spark's workers still live
        if spark is not None:
            spark.stop()
        rate = result.leads / seconds
        extra.update(
            leads_scored=result.leads,
            seconds=round(seconds, 1),
            leads_per_second=round(rate),
            cpu_seconds=round(cpu_seconds, 1),
            cpu_ms_per_lead=round(1000 * cpu_seconds / max(1, result.leads), 3),
            peak_rss_mb_process_tree=round(peak["peak_rss_mb"]),
            tiers=result.tiers,
        )
        if result.leads < ONE_MILLION:
            extra["extrapolated_1m_seconds"] = round(ONE_MILLION / rate, 1)
        runs[engine] = extra
        rss = peak["peak_rss_mb"]
        print(f"{engine}: {result.leads:,} leads in {seconds:.1f}s ({rate:,.0f}/s), peak RSS {rss:,.0f} MB")

    agreement: dict[str, object] = {}
    if {"pandas", "spark"} <= set(runs):
        columns = ["lead_id", "probability", "tier", "grade"]
        a = pd.read_parquet(work / "scores-pandas", columns=columns).sort_values("lead_id", ignore_index=True)
        b = pd.read_parquet(work / "scores-spark", columns=columns).sort_values("lead_id", ignore_index=True)
        same_leads = bool((a["lead_id"].to_numpy() == b["lead_id"].to_numpy()).all())
        agreement = {
            "same_leads": same_leads,
            "max_abs_probability_difference": float(np.abs(a["probability"] - b["probability"]).max()),
            "tier_and_grade_equal": bool(a[["tier", "grade"]].equals(b[["tier", "grade"]])),
        }
        sample = set(a["lead_id"].sample(n=min(5_000, len(a)), random_state=0))
        reasons = ["lead_id", "reasons_positive", "reasons_negative"]
        ra = pd.read_parquet(work / "scores-pandas", columns=reasons, filters=[("lead_id", "in", sample)])
        rb = pd.read_parquet(work / "scores-spark", columns=reasons, filters=[("lead_id", "in", sample)])
        ra, rb = ra.sort_values("lead_id", ignore_index=True), rb.sort_values("lead_id", ignore_index=True)
        agreement["sampled_reason_concepts_equal"] = all(
            [r["concept"] for r in x] == [r["concept"] for r in y]
            for col in ("reasons_positive", "reasons_negative")
            for x, y in zip(ra[col], rb[col], strict=True)
        )
        print(f"agreement: {agreement}")

    payload = {
        "benchmark": "batch scoring with reasons (leadscore score-batch)",
        "machine": machine(),
        "code": code,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "leads": args.leads if args.data is None else None,
        "activities": n_activities,
        "data": "simulated" if args.data is None else str(args.data),
        "model_trained_on_leads": args.train_leads,
        "measured_not_extrapolated": args.leads >= ONE_MILLION,
        "runs": runs,
        "agreement": agreement,
    }
    write_results(args.results, payload)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
