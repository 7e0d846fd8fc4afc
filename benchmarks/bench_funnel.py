"""Benchmark: the funnel past the score — sales touches learned from the export, and lead to revenue.

    python benchmarks/bench_funnel.py --leads 20000 --seed 7

Simulates an export (the defaults of ``leadscore simulate`` + ``leadscore build-features``: snapshots
at 3/14/30/60 days, 90-day horizon), then reads its lead ledger as ``leadscore touches`` and
``leadscore channels`` do:

* touches: opportunities (ended horizons), the share with no sales touch before converting, the
  learned range and what it was learned from, and the rate of leads past the range vs all leads;
* closed-won: won deals, win rate (95% interval) and revenue; with a made-up spend on paid search,
  that channel's revenue per unit of spend;
* the cost of the ledger's touch count (one feature computation per lead, at its outcome) next to
  the training table's own feature computation.

The simulator is a test fixture: these numbers show the code paths work and what they report, not
what a real business would see. Neither shared real export has sales activity or a won stage.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pandas as pd
from _measure import machine, write_results

from leadscore.features.build import simulate_and_build
from leadscore.features.loading import load_crm_tables
from leadscore.features.pipeline import compute_features
from leadscore.features.training_table import (
    SnapshotPolicy,
    build_training_table,
    lead_ledger_path,
    observed_until,
    sales_touches_at_outcome,
)
from leadscore.training.channels import ALL_CHANNELS, channel_report
from leadscore.training.touches import touch_report

PAID_SEARCH_SPEND = 120_000.0


def best_of(runs: int, work: object) -> float:
    """Fastest of ``runs`` timings of ``work()`` in seconds."""
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "funnel.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        export = simulate_and_build(n_leads=args.leads, seed=args.seed, out_dir=Path(folder))
        ledger = pd.read_parquet(lead_ledger_path(export.training_table))
        table = pd.read_parquet(export.training_table)
        touches = touch_report(ledger)
        spend = pd.DataFrame({"channel": ["paid_search"], "spend": [PAID_SEARCH_SPEND]})
        channels = channel_report(table=table, ledger=ledger, channel_column="channel", spend=spend)
        tables = load_crm_tables(
            leads=export.paths["leads"],
            activities=export.paths["activities"],
            outcomes=export.paths["outcomes"],
        )
    until = observed_until(leads=tables.leads, activities=tables.activities, outcomes=tables.outcomes)
    policy = SnapshotPolicy()
    table_seconds = best_of(
        3,
        lambda: build_training_table(
            leads=tables.leads,
            activities=tables.activities,
            outcomes=tables.outcomes,
            policy=policy,
            until=until,
        ),
    )
    touches_seconds = best_of(
        3,
        lambda: sales_touches_at_outcome(
            leads=tables.leads,
            outcomes=tables.outcomes,
            policy=policy,
            until=until,
            features_at=lambda s: compute_features(
                leads=tables.leads, activities=tables.activities, snapshots=s
            ),
        ),
    )
    after = touches.after.set_index("touches")
    cadence = touches.cadence
    by_channel = channels.channels.set_index("channel")
    total, paid = by_channel.loc[ALL_CHANNELS], by_channel.loc["paid_search"]
    known = int(after.loc[0, "leads_reaching"])
    opportunities = int(after.loc[0, "opportunities"])
    past = after.loc[cadence.most + 1] if cadence is not None and cadence.most + 1 in after.index else None
    payload: dict[str, object] = {
        "machine": machine(),
        "leads": args.leads,
        "seed": args.seed,
        "horizon_days": policy.horizon_days,
        "touches": {
            "leads_with_ended_horizon": known,
            "opportunities": opportunities,
            "base_rate": round(opportunities / known, 4),
            "opportunities_before_any_touch": int(touches.distribution.loc[0, "opportunities"]),
            "range": None if cadence is None else cadence.span,
            "learned_from_touched_opportunities": None if cadence is None else cadence.opportunities,
            "past_range": None
            if past is None
            else {
                "leads": int(past["leads_reaching"]),
                "rate": round(float(past["rate"]), 4),
                "interval": [round(float(past["rate_low"]), 4), round(float(past["rate_high"]), 4)],
            },
        },
        "closed_won": {
            "won": int(total["won"]),
            "opportunities": int(total["opportunities"]),
            "win_rate": round(float(total["win_rate"]), 4),
            "win_interval": [round(float(total["win_low"]), 4), round(float(total["win_high"]), 4)],
            "revenue": float(total["revenue"]),
            "paid_search": {
                "spend": PAID_SEARCH_SPEND,
                "revenue": float(paid["revenue"]),
                "revenue_per_spend": round(float(paid["revenue_per_spend"]), 2),
            },
        },
        "seconds": {
            "training_table_features": round(table_seconds, 3),
            "ledger_touch_count": round(touches_seconds, 3),
        },
    }
    write_results(args.out, payload)
    print(payload)


if __name__ == "__main__":
    main()
