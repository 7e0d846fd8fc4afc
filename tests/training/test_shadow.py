"""Challenger vs champion on live traffic: paired ledger scores read against matured outcomes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.training.shadow import shadow_comparison

T0 = pd.Timestamp("2025-01-01")


def live_scores(n: int, *, challenger_noise: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Champion v1 scores ``n`` leads with the truth plus noise; challenger v2 with ``challenger_noise``."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.02, 0.6, n)
    converts = rng.random(n) < truth
    ids = [f"L{i}" for i in range(n)]
    as_of = T0 + pd.to_timedelta(rng.integers(0, 30, n), unit="D")

    def rows(version: str, source: str, noise: float) -> pd.DataFrame:
        p = np.clip(truth + rng.normal(0, noise, n), 0.001, 0.999)
        return pd.DataFrame(
            {
                "lead_id": ids,
                "as_of": as_of,
                "scored_at": as_of,
                "model_version": version,
                "probability": p,
                "source": source,
            }
        )

    scores = pd.concat([rows("1", "score", 0.05), rows("2", "shadow", challenger_noise)], ignore_index=True)
    ledger = pd.DataFrame(
        {"lead_id": ids, "converted_at": np.where(converts, as_of + pd.Timedelta(days=10), pd.NaT)}
    )
    return scores, ledger


def test_a_better_challenger_passes_and_a_worse_one_fails() -> None:
    scores, ledger = live_scores(3000, challenger_noise=0.01)
    better = shadow_comparison(scores, ledger=ledger, until=T0 + pd.Timedelta(days=200), horizon_days=90)
    assert (better.champion_version, better.challenger_version) == ("1", "2")
    assert better.paired == 3000 and better.matured == 3000 and better.supports_promotion
    scores, ledger = live_scores(3000, challenger_noise=0.4)
    worse = shadow_comparison(scores, ledger=ledger, until=T0 + pd.Timedelta(days=200), horizon_days=90)
    assert not worse.supports_promotion
    assert any(c.metric == "roc_auc" and not c.passed for c in worse.checks)


def test_outcomes_still_open_are_waited_for() -> None:
    scores, ledger = live_scores(500, challenger_noise=0.01)
    ledger["converted_at"] = pd.NaT
    early = shadow_comparison(scores, ledger=ledger, until=T0 + pd.Timedelta(days=40), horizon_days=90)
    assert early.matured == 0 and not early.checks and "wait for more to mature" in early.note
    assert not early.supports_promotion


def test_no_shadow_scores_is_a_readable_error() -> None:
    scores, ledger = live_scores(50, challenger_noise=0.01)
    with pytest.raises(ValueError, match="no shadow scores"):
        shadow_comparison(scores[scores["source"] == "score"], ledger=ledger, until=T0, horizon_days=90)
