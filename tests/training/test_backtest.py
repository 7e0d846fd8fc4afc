"""Rolling-origin backtest on a small drifting flat export: every candidate and window, a recommendation."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from leadscore.features.build import FlatBuildJob
from leadscore.training.backtest import DEFAULT_CANDIDATES, BacktestJob, Window
from leadscore.training.config import BoosterConfig, TrackingConfig, TrainConfig

MAPPING = """\
name: drifting
source: {{path: {path}, format: csv}}
id_column: id
label: {{column: won, positive_values: [1]}}
created_at_column: created
columns:
  channel: {{role: categorical, family: fit}}
  visits: {{role: numeric, family: engagement}}
"""


def drifting_export(tmp_path: Path, n: int = 4_000) -> Path:
    """Eight months of leads; the base rate and the channel mix move over time."""
    rng = np.random.default_rng(0)
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.uniform(0, 240, n)), unit="D")
    trend = np.linspace(0, 1, n)
    channel = np.where(rng.random(n) < 0.3 + 0.4 * trend, "partner", "web")
    visits = rng.poisson(2 + 3 * (channel == "partner"), n)
    logit = -3 + 0.8 * (channel == "partner") + 0.35 * visits + 1.0 * trend
    won = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    csv = tmp_path / "export.csv"
    pd.DataFrame(
        {
            "id": np.arange(n),
            "created": created.strftime("%Y-%m-%d"),
            "channel": channel,
            "visits": visits,
            "won": won,
        }
    ).to_csv(csv, index=False)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING.format(path=csv))
    table = tmp_path / "table.parquet"
    FlatBuildJob(mapping_path=mapping, output=table).run()
    return table


def test_backtest_compares_every_candidate_per_period_and_recommends(isolated_state, tmp_path) -> None:  # type: ignore[no-untyped-def]
    table = drifting_export(tmp_path)
    config = TrainConfig(
        training_table=table,
        booster=BoosterConfig(max_rounds=100, early_stopping_rounds=20),
        tracking=TrackingConfig(experiment="backtest-test", register_model=False),
    )
    seen: list[tuple[str, int]] = []
    result = BacktestJob(
        config,
        periods=3,
        window_periods=2,
        max_age=1,
        windows=tuple(Window),
        progress=lambda description, total: seen.append((description, total)),
    ).run()
    assert len(seen) == 3 * len(Window) and {total for _, total in seen} == {6}  # one step per origin
    fresh = result.results[result.results["age"] == 0]
    assert set(fresh["candidate"]) == set(DEFAULT_CANDIDATES)
    # what train deploys is scored as such, and its learner is named
    assert set(fresh.loc[fresh["candidate"] == "chosen", "learner"]) <= {"lightgbm", "linear"}
    # the base rate estimated without labels, next to what each period had
    prior = fresh[fresh["candidate"] == "chosen_prior"]
    assert prior["prior_estimate"].between(0, 1).all() and (prior["prior_rows"] >= 50).all()
    same = fresh.pivot_table(index=["window", "origin"], columns="candidate", values="roc_auc")
    assert np.allclose(same["chosen"], same["chosen_prior"])  # a level shift never changes a period's ranking
    assert set(fresh["window"]) == {w.value for w in Window}
    assert fresh["origin"].nunique() == 3  # the last three months, each scored by models of the months before
    # a sliding window of two months trains on fewer rows than the expanding one
    rows = fresh.groupby("window")["train_rows"].max()
    assert rows["sliding"] < rows["expanding"]
    for column in ("roc_auc", "pr_auc", "lift_top10", "lift_top20", "ece", "positive_rate"):
        assert fresh[column].notna().all(), column
    assert (fresh.groupby("origin")["positive_rate"].nunique() == 1).all()  # same rows for every candidate
    rec = result.recommendation
    assert rec["candidate"] in DEFAULT_CANDIDATES and rec["window"] in {"expanding", "sliding"}
    assert rec["retrain_every_periods"] >= 1 and "AUC by model age" in rec["cadence_why"]
    best = result.summary["mean_roc_auc"].max()
    picked = result.summary.set_index(["window", "candidate"]).loc[
        (rec["window"], rec["candidate"]), "mean_roc_auc"
    ]
    assert picked >= best - 0.005
    assert "Recommendation" in result.report and "Drift" in result.report
    assert {"pooled_roc_auc", "pooled_ece"} <= set(result.summary.columns)
    assert result.summary["pooled_ece"].notna().all()
    assert (
        "prior_adjustment" in rec
        and "Level:" in result.report
        and "estimated without labels" in result.report
    )
    run = mlflow.get_run(result.run_id)
    assert run.data.tags["leadscore.recommended_candidate"] == rec["candidate"]
    children = mlflow.search_runs(
        experiment_ids=[run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert len(children) == len(DEFAULT_CANDIDATES) * len(Window)
    assert "pooled_ece" in children.columns.str.replace("metrics.", "").tolist()
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "backtest")}
    assert {"backtest/backtest.png", "backtest/backtest.md", "backtest/backtest_results.csv"} <= artifacts
