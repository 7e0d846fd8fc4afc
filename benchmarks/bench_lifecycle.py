"""Benchmark: what the lead's life after a score costs a single-lead request.

    python benchmarks/bench_lifecycle.py                  # builds a 5,000-lead model under tmp
    python benchmarks/bench_lifecycle.py --home /tmp/ls   # a LEADSCORE_HOME with a champion

In process, one lead per request with reasons through the service's own code (``engine.score_request``
then ``ledger_routes.record``, as ``/score`` runs them), in interleaved rounds of three arms:

* ``no_ledger``: the score alone;
* ``ledger``: plus the score handed to the ledger writer (a real SQLite ledger; the writer thread
  inserts in batches meanwhile);
* ``ledger_and_shadow``: plus the challenger's shadow score, computed on the writer's thread (the same
  model loaded a second time, so its cost is a real model's).

The writer thread shares the interpreter with the request, so what it does shows up in the request's
latency; the difference of the p50/p99 to ``no_ledger`` is what the ledger and the shadow add (target:
<= 1 ms p99 each). After the run the ledger must hold every score and every shadow score.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from _measure import machine, write_results
from bench_serving import ensure_model, summary

TARGET_MS = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--leads", type=int, default=5_000, help="leads simulated for the model")
    parser.add_argument("--requests", type=int, default=3_000, help="requests per arm")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "lifecycle.json")
    args = parser.parse_args()
    home, env = ensure_model(args.home, args.leads)
    os.environ.update(env)
    import json

    from leadscore.ledger.store import Ledger
    from leadscore.ledger.writer import LedgerWriter
    from leadscore.model import store
    from leadscore.serving import engine, ledger_routes
    from leadscore.serving.schemas import ScoreRequest
    from leadscore.serving.settings import ServingSettings

    leads: list[dict[str, Any]] = json.loads((home / "sample_leads.json").read_text())
    version = str(store.champion_version(model_name="leadscore"))

    def loaded_model() -> Any:
        path = store.scoring_model_file(model_name="leadscore", version=version)
        model = store.read_registered_model(path, version=version)
        return engine.prepared_model(model, name="leadscore", version=version, model_file=str(path))

    champion, challenger = loaded_model(), loaded_model()
    settings = ServingSettings(api_keys=("bench-key",))
    ledger_url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='leadscore-bench-ledger-')) / 'ledger.db'}"
    writer = LedgerWriter(open_ledger=lambda: Ledger.open(ledger_url), capacity=100_000)
    requests = [
        ScoreRequest.model_validate(
            {"leads": [dict(lead, lead_id=f"b{i}-{lead['lead_id']}")], "explain": True}
        )
        for i, lead in enumerate(leads)
    ]
    for request in requests[:50]:  # warm-up
        engine.score_request(champion, request, settings)

    def one(arm: str, request: ScoreRequest) -> float:
        started = time.perf_counter()
        answer = engine.score_request(champion, request, settings)
        if arm != "no_ledger":
            pairs = list(zip(answer.results, request.leads, strict=True))
            shadow = challenger if arm == "ledger_and_shadow" else None
            ledger_routes.record(writer, source="score", pairs=pairs, shadow=shadow, settings=settings)
        return time.perf_counter() - started

    arms = ("no_ledger", "ledger", "ledger_and_shadow")
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    for i in range(args.requests):
        for arm in arms:  # interleaved: load on the machine hits every arm alike
            times[arm].append(one(arm, requests[(3 * i + arms.index(arm)) % len(requests)]))
            time.sleep(0.002)  # a request every few ms: the writer thread runs between them
    flushed = writer.flush(timeout=120)
    stats = writer.stats()
    check = Ledger.open(ledger_url)
    frame = check.scores_frame(include_shadow=True)
    check.close()
    writer.close(timeout=10)
    base = summary(times["no_ledger"])
    results = {arm: summary(times[arm]) for arm in arms}
    rng = np.random.default_rng(0)

    def difference_interval(arm: str, q: float) -> list[float]:
        """95% bootstrap interval of the arm's q-th percentile minus no_ledger's (ms)."""
        a, b = np.asarray(times[arm]), np.asarray(times["no_ledger"])
        draws = [
            np.percentile(rng.choice(a, len(a)), q) - np.percentile(rng.choice(b, len(b)), q)
            for _ in range(500)
        ]
        return [round(1000 * float(v), 3) for v in np.percentile(draws, [2.5, 97.5])]

    added = {
        arm: {
            "p50_ms": round(results[arm]["p50_ms"] - base["p50_ms"], 3),
            "p50_ms_interval": difference_interval(arm, 50),
            "p99_ms": round(results[arm]["p99_ms"] - base["p99_ms"], 3),
            "p99_ms_interval": difference_interval(arm, 99),
        }
        for arm in arms[1:]
    }
    payload = {
        "benchmark": "single-lead /score with reasons, in process: the ledger's and the shadow's cost",
        "machine": machine(),
        "requests_per_arm": args.requests,
        "arms": results,
        "added_vs_no_ledger": added,
        "target_ms_p99": TARGET_MS,
        "met": all(v["p99_ms"] <= TARGET_MS for v in added.values()),
        "ledger": {
            "flushed": bool(flushed),
            "scores": int((frame["source"] == "score").sum()),
            "shadow_scores": int((frame["source"] == "shadow").sum()),
            "expected_scores": 2 * args.requests,
            "expected_shadow_scores": args.requests,
            "dropped": int(stats.dropped),
        },
        "mean_shadow_minus_champion_probability": round(
            float(np.mean(frame.loc[frame["source"] == "shadow", "probability"]))
            - float(np.mean(frame.loc[frame["source"] == "score", "probability"])),
            6,
        ),
    }
    write_results(args.results, payload)
    print(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
