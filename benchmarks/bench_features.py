"""Benchmark: point-in-time training table for 1M leads / ~20M activities vs an equivalent DuckDB query.

    python benchmarks/bench_features.py --leads 1000000

Simulates (or reads with --data) the CRM, then times in one run:
1. ``build_training_table`` (snapshots, labels, all catalogue features) with peak RSS;
2. ``compute_features`` alone on the same snapshots;
3. DuckDB SQL computing the same activity features (counts per signal in 7/30/90 days, all-time
   counts and days since last) on the same snapshots, with 2 threads;
and checks the two agree on every activity feature of a sample of snapshots.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, measure, write_results

from leadscore.features.catalogue import SIGNALS, days_since_name, total_count_name, window_count_name
from leadscore.features.pipeline import compute_features
from leadscore.features.simulator import simulate_crm
from leadscore.features.training_table import SnapshotPolicy, build_training_table

WINDOWS = (7, 30, 90)


def duckdb_features_sql() -> str:
    """The same activity features as the pandas pipeline, as one SQL query."""
    aggregates = []
    for signal in SIGNALS:
        match = f"signal = '{signal.name}'"
        for days in WINDOWS:
            aggregates.append(
                f"count(*) FILTER (WHERE {match} AND ts > s.as_of - INTERVAL {days} DAY) "
                f"AS {window_count_name(signal.name, days)}"
            )
        aggregates.append(f"count(*) FILTER (WHERE {match}) AS {total_count_name(signal.name)}")
        aggregates.append(
            f"date_diff('second', max(ts) FILTER (WHERE {match}), s.as_of) / 86400.0 "
            f"AS {days_since_name(signal.name)}"
        )
    page = {s.page_category.value: s.name for s in SIGNALS if s.page_category is not None}
    page_case = " ".join(f"WHEN page_category = '{k}' THEN '{v}'" for k, v in page.items())
    return f"""
    WITH a AS (
      SELECT lead_id, timestamp AS ts,
             CASE WHEN activity_type = 'page_view' THEN (CASE {page_case} ELSE 'page_other' END)
                  ELSE activity_type END AS signal
      FROM activities
    )
    SELECT s.sid, {", ".join(aggregates)}
    FROM snapshots s LEFT JOIN a ON a.lead_id = s.lead_id AND a.ts <= s.as_of
    GROUP BY s.sid, s.as_of
    ORDER BY s.sid
    """


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/features.json"))
    args = parser.parse_args()

    started = time.perf_counter()
    crm = simulate_crm(n_leads=args.leads, seed=args.seed, progress=True)
    simulate_seconds = time.perf_counter() - started
    print(
        f"simulated {len(crm.leads):,} leads, {len(crm.activities):,} activities in {simulate_seconds:.1f}s"
    )

    with measure() as table_run:
        table = build_training_table(
            leads=crm.leads,
            activities=crm.activities,
            outcomes=crm.outcomes,
            policy=SnapshotPolicy(),
            until=crm.exported_at,
            progress=True,
        )
    print(
        f"training table: {len(table):,} rows in {table_run.seconds:.1f}s, "
        f"peak RSS {table_run.peak_rss_mb:,.0f} MB"
    )

    snapshots = table[["lead_id", "as_of"]].reset_index(drop=True)
    with measure() as pandas_run:
        features = compute_features(leads=crm.leads, activities=crm.activities, snapshots=snapshots)
    print(f"compute_features: {pandas_run.seconds:.1f}s")

    connection = duckdb.connect(config={"threads": args.threads})
    activities = crm.activities[["lead_id", "timestamp", "activity_type", "page_category"]]
    duck_snapshots = snapshots.assign(sid=np.arange(len(snapshots)))
    connection.register("activities", activities)
    connection.register("snapshots", duck_snapshots)
    with measure() as duck_run:
        duck = connection.execute(duckdb_features_sql()).fetch_df()
    print(f"duckdb ({args.threads} threads): {duck_run.seconds:.1f}s")

    sample = np.random.default_rng(0).choice(len(snapshots), size=min(20_000, len(snapshots)), replace=False)
    mismatches = {}
    for column in duck.columns.drop("sid"):
        ours = features[column].to_numpy(dtype=np.float64)[sample]
        theirs = duck[column].to_numpy(dtype=np.float64)[sample]
        bad = ~(np.isclose(ours, theirs, atol=1e-4) | (np.isnan(ours) & np.isnan(theirs)))
        if bad.any():
            mismatches[column] = int(bad.sum())
    ratio = pandas_run.seconds / duck_run.seconds
    payload = {
        "benchmark": "point-in-time training table",
        "machine": machine(),
        "leads": len(crm.leads),
        "activities": len(crm.activities),
        "snapshot_rows": len(table),
        "feature_columns": int(features.shape[1] - 2),
        "simulate_seconds": round(simulate_seconds, 2),
        "build_training_table_seconds": round(table_run.seconds, 2),
        "build_training_table_peak_rss_mb": round(table_run.peak_rss_mb),
        "rss_before_build_mb": round(table_run.start_rss_mb),
        "compute_features_seconds": round(pandas_run.seconds, 2),
        "compute_features_peak_rss_mb": round(pandas_run.peak_rss_mb),
        "duckdb_threads": args.threads,
        "duckdb_seconds": round(duck_run.seconds, 2),
        "duckdb_peak_rss_mb": round(duck_run.peak_rss_mb),
        "pandas_over_duckdb": round(ratio, 2),
        "activity_features_compared": int(duck.shape[1] - 1),
        "sampled_rows_compared": len(sample),
        "mismatched_columns": mismatches,
    }
    write_results(args.results, payload)
    print(
        f"pandas/duckdb time ratio {ratio:.2f}; mismatching columns: {mismatches or 'none'} -> {args.results}"
    )


if __name__ == "__main__":
    main()
