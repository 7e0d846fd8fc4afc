"""Calibration that follows the newest matured period's level only where the evidence says it helps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.model.calibration import CalibrationAnchor
from leadscore.training.config import RefitConfig
from leadscore.training.train import LogLossGain, TestVerdict, TrainJob
from tests.conftest import Trained


def blocks_with_rates(rates: list[float], *, rows: int = 4_000, seed: int = 0) -> list[pd.DataFrame]:
    """Consecutive monthly blocks of lead-flow snapshots converting at ``rates``."""
    rng = np.random.default_rng(seed)
    return [
        pd.DataFrame(
            {
                "as_of": pd.Timestamp("2025-01-01")
                + pd.DateOffset(months=k)
                + pd.to_timedelta(np.arange(rows), "min"),
                "snapshot_age_days": 3,
                "label": (rng.random(rows) < rate).astype(int),
            }
        )
        for k, rate in enumerate(rates)
    ]


def job(trained: Trained, anchor: CalibrationAnchor) -> TrainJob:
    return TrainJob(trained.config.model_copy(update={"refit": RefitConfig(calibration_anchor=anchor)}))


def test_a_funnel_that_fell_is_followed_and_a_steady_one_keeps_the_pooled_level(trained: Trained) -> None:
    pooled = [np.full(4_000, 0.10)] * 4  # what the pooled calibrator says in every block
    fell = job(trained, CalibrationAnchor.AUTO).calibration_anchor(
        pooled, blocks_with_rates([0.1, 0.1, 0.05, 0.05])
    )
    newest_rate = blocks_with_rates([0.1, 0.1, 0.05, 0.05])[-1]["label"].mean()
    expected = np.log(newest_rate / (1 - newest_rate)) - np.log(0.1 / 0.9)
    assert fell.shift == pytest.approx(expected, abs=1e-6) and fell.shift < -0.5
    assert fell.reason.startswith("anchored on the newest matured block") and "odds x0." in fell.reason
    steady = job(trained, CalibrationAnchor.AUTO).calibration_anchor(pooled, blocks_with_rates([0.1] * 4))
    assert (
        steady.shift == 0.0
        and steady.reason.startswith("the pooled level")
        and "within chance" in steady.reason
    )
    assert steady.candidate is not None and abs(steady.candidate) < 0.2  # estimated, not applied
    always = job(trained, CalibrationAnchor.NEWEST).calibration_anchor(pooled, blocks_with_rates([0.1] * 4))
    assert always.shift == steady.candidate
    never = job(trained, CalibrationAnchor.NONE).calibration_anchor(
        pooled, blocks_with_rates([0.1, 0.1, 0.05, 0.05])
    )
    assert never.shift == 0.0 and never.candidate is None


def test_too_few_conversions_in_the_newest_block_keep_the_pooled_level(trained: Trained) -> None:
    pooled = [np.full(300, 0.02)] * 3
    choice = job(trained, CalibrationAnchor.NEWEST).calibration_anchor(
        pooled, blocks_with_rates([0.02, 0.02, 0.01], rows=300)
    )
    assert choice.shift == 0.0 and "an anchor needs 20+ of each outcome" in choice.reason


def test_a_test_period_where_the_anchor_did_harm_vetoes_it_for_the_registered_model(trained: Trained) -> None:
    pooled = [np.full(4_000, 0.10)] * 4
    blocks = blocks_with_rates([0.1, 0.1, 0.05, 0.05])
    helped = TestVerdict(gain=LogLossGain(0.30, 0.29, z=-3.0), ece_pooled=0.03, ece_anchored=0.01, rows=900)
    harmed = TestVerdict(gain=LogLossGain(0.29, 0.30, z=3.0), ece_pooled=0.01, ece_anchored=0.03, rows=900)
    anchored = job(trained, CalibrationAnchor.AUTO).calibration_anchor(pooled, blocks, verdict=helped)
    vetoed = job(trained, CalibrationAnchor.AUTO).calibration_anchor(pooled, blocks, verdict=harmed)
    assert anchored.shift == anchored.candidate != 0.0 and "checked on the test period" in anchored.reason
    assert vetoed.shift == 0.0 and "it did harm" in vetoed.reason and "paired z +3.0" in vetoed.reason


def test_the_registered_model_says_which_level_it_reads_and_the_test_period_backs_it(
    trained: Trained,
) -> None:
    model, metrics = trained.result.model, trained.result.metrics
    level = str(model.metadata["calibration_level"])
    assert "checked on the test period of the pre-test model" in level
    pooled, anchored = metrics["lead_flow_ece_pooled_level"], metrics["lead_flow_ece_anchored_level"]
    shift = float(getattr(model.calibrator, "anchor_logit", 0.0))
    if level.startswith("anchored"):
        assert shift != 0.0 and anchored <= pooled + 0.005  # the test period does not contradict it
    else:
        assert shift == 0.0


def test_the_base_rate_of_open_snapshots_is_estimated_from_scores_alone(trained: Trained) -> None:
    training = TrainJob(trained.config)
    split = training.split(trained.table)
    assert training.current_base_rate(trained.result.model, table=trained.table, split=split) is None
    newest = trained.table.sort_values("as_of").tail(3_000)
    hidden = newest.assign(label=np.nan, horizon_complete=False)  # outcomes not known yet
    estimate = training.current_base_rate(
        trained.result.model, table=pd.concat([trained.table, hidden], ignore_index=True), split=split
    )
    assert estimate is not None
    flow = training.lead_flow_rows(newest)
    actual = float(newest["label"].astype(float)[flow].mean())
    assert estimate["rows"] == int(flow.sum())
    assert estimate["low"] <= estimate["estimate"] <= estimate["high"]
    assert abs(float(estimate["estimate"]) - actual) < 0.03
