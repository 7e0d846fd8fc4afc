"""Time axes of real exports (coarse dates, row order), cross-fitting folds and drift diagnostics."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from leadscore.training.baselines import EngagementPointsScorer, make_logistic_baseline
from leadscore.training.config import SplitConfig, TrainConfig
from leadscore.training.drift import drift_report
from leadscore.training.split import (
    TimeAxis,
    labelled_rows,
    period_boundary,
    time_blocks,
    time_ordered_split,
)
from leadscore.training.train import TrainJob, table_horizon_days, table_time_axis


def monthly_table(n: int = 6_000, seed: int = 0) -> pd.DataFrame:
    """Month-level dates with a growing lead flow (the newest months hold most rows)."""
    rng = np.random.default_rng(seed)
    months = pd.date_range("2023-01-01", periods=12, freq="MS")
    weights = np.linspace(1, 3, 12)
    as_of = rng.choice(months, size=n, p=weights / weights.sum())
    x = rng.normal(size=n)
    label = (rng.random(n) < 1 / (1 + np.exp(-(x - 1.5)))).astype(float)
    return pd.DataFrame({"lead_id": np.arange(n).astype(str), "as_of": as_of, "x": x, "label": label})


def test_month_level_dates_split_at_period_boundaries_and_report_the_realised_share() -> None:
    table = monthly_table()
    split = time_ordered_split(table, config=SplitConfig(test_fraction=0.2), horizon_days=None)
    # every month lies wholly in one part
    for a, b in ((split.train, split.validation), (split.validation, split.test), (split.train, split.test)):
        assert not set(a["as_of"].unique()) & set(b["as_of"].unique())
    assert split.test_start.day == 1 and split.validation_start.day == 1
    realised = len(split.test) / len(table)
    assert split.test_share == pytest.approx(realised)
    assert split.describe()["test_share_realised"] == round(realised, 4)
    # the boundary is the month whose newer share is closest to the request
    shares = {m: (table["as_of"] >= m).mean() for m in table["as_of"].unique()}
    closest = min((m for m in shares if shares[m] < 1), key=lambda m: abs(shares[m] - 0.2))
    assert split.test_start == closest


def test_row_order_is_a_time_axis() -> None:
    table = monthly_table().drop(columns="as_of")
    table["as_of"] = pd.NaT
    table["row_order"] = np.arange(len(table))
    split = time_ordered_split(table, config=SplitConfig(), horizon_days=30, time_axis=TimeAxis.ROW_ORDER)
    assert split.train["row_order"].max() < split.validation["row_order"].min()
    assert split.validation["row_order"].max() < split.test["row_order"].min()
    assert split.purged_rows == 0  # a horizon in days cannot purge on row order
    assert split.test_share == pytest.approx(0.2, abs=0.001)


class _Captured(Exception):
    pass


def test_the_deployment_refit_sees_every_labelled_row_the_purged_ones_included(tmp_path) -> None:  # type: ignore[no-untyped-def]
    table = monthly_table()
    split = time_ordered_split(table, config=SplitConfig(), horizon_days=40)
    assert split.purged_rows > 0
    seen: dict[str, pd.DataFrame] = {}

    class Capture(TrainJob):
        def fit_refit(self, frame, *, rounds, reference_rows, anchor_verdict=None):  # type: ignore[no-untyped-def,override]
            seen["frame"] = frame
            raise _Captured

    evaluated = SimpleNamespace(metadata={"rounds_per_train_row_x1e6": 10_000})
    with pytest.raises(_Captured):
        Capture(TrainConfig(training_table=tmp_path / "t.parquet")).fit_deployment_model(
            split,
            evaluated=evaluated,  # type: ignore[arg-type]
            evaluated_choice=None,  # type: ignore[arg-type]
        )
    frame = seen["frame"]
    assert len(frame) == len(labelled_rows(table)) == len(split.earlier) + len(split.test) + split.purged_rows
    assert frame["as_of"].is_monotonic_increasing
    purged_window = (frame["as_of"] < split.test_start) & (
        frame["as_of"] + pd.Timedelta(days=40) > split.test_start
    )
    assert int(purged_window.sum()) == split.purged_rows
    assert sorted(frame["lead_id"]) == sorted(labelled_rows(table)["lead_id"])


def test_sidecar_time_axis_and_horizon_are_read_defensively() -> None:
    assert table_time_axis({}) is TimeAxis.TIMESTAMP
    assert table_time_axis({"has_time": False}) is TimeAxis.NONE
    assert table_time_axis({"has_time": False, "time_axis": "row_order"}) is TimeAxis.ROW_ORDER
    assert table_time_axis({"time_axis": "nonsense", "has_time": True}) is TimeAxis.TIMESTAMP
    assert table_horizon_days({"snapshot_policy": {"horizon_days": 0}}) is None  # old flat sidecars
    assert table_horizon_days({"snapshot_policy": {"horizon_days": None}}) is None
    assert table_horizon_days({"snapshot_policy": {"horizon_days": 90}}) == 90
    assert table_horizon_days({}) is None


def test_training_reads_the_sidecar_through_the_typed_reader_old_sidecars_included(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def job_for(sidecar: dict[str, object]) -> TrainJob:
        path = tmp_path / f"t{len(list(tmp_path.iterdir()))}.parquet"
        path.with_suffix(".meta.json").write_text(json.dumps(sidecar))
        return TrainJob(TrainConfig(training_table=path))

    old_flat = job_for({"mode": "flat", "has_time": False, "snapshot_policy": {"horizon_days": 0}})
    assert old_flat.time_axis is TimeAxis.NONE and old_flat.horizon_days is None
    assert old_flat.meta["snapshot_policy"]["horizon_days"] is None  # the card reads the same value
    old_native = job_for({"snapshot_policy": {"horizon_days": 90, "ages_days": [3, 14]}, "source": "crm"})
    assert old_native.time_axis is TimeAxis.TIMESTAMP and old_native.horizon_days == 90
    assert old_native.meta["source"] == "crm"  # other keys are kept
    rows = job_for({"time_axis": "row_order", "has_time": False, "snapshot_policy": {"horizon_days": 30}})
    assert rows.time_axis is TimeAxis.ROW_ORDER and rows.horizon_days == 30
    broken = job_for({"time_axis": "sideways", "snapshot_policy": {"horizon_days": 30}})
    with pytest.raises(ValueError, match=r"\.meta\.json is not a valid table sidecar"):
        _ = broken.time_axis


def test_time_blocks_fit_only_on_the_past_with_known_labels() -> None:
    table = monthly_table().sort_values("as_of").reset_index(drop=True)
    folds = list(time_blocks(table, n_blocks=4, horizon_days=40, time_axis=TimeAxis.TIMESTAMP))
    assert folds
    for fit, score in folds:
        start = table.loc[score, "as_of"].min()
        assert table.loc[fit, "as_of"].max() < start
        assert (table.loc[fit, "as_of"] + pd.Timedelta(days=40) <= start).all()
    scored = np.concatenate([s for _, s in folds])
    assert len(scored) == len(set(scored))  # each row scored once at most


def test_period_boundary_needs_two_periods() -> None:
    with pytest.raises(ValueError, match="distinct"):
        period_boundary(pd.Series([1, 1, 1]), newest_share=0.2)


def test_drift_report_finds_shift_range_mix_and_base_rate() -> None:
    rng = np.random.default_rng(1)
    reference = pd.DataFrame(
        {
            "index": rng.normal(100, 5, 4_000),
            "visits": rng.poisson(3, 4_000).astype(float),
            "channel": rng.choice(["web", "partner", "event"], 4_000, p=[0.6, 0.3, 0.1]),
            "label": (rng.random(4_000) < 0.1).astype(float),
        }
    )
    current = pd.DataFrame(
        {
            "index": rng.normal(130, 5, 1_000),  # a market index at new highs
            "visits": rng.poisson(3, 1_000).astype(float),
            "channel": rng.choice(["web", "partner", "event"], 1_000, p=[0.2, 0.3, 0.5]),
            "label": (rng.random(1_000) < 0.25).astype(float),
        }
    )
    report = drift_report(
        reference=reference,
        current=current,
        numeric_features=["index", "visits"],
        categorical_features=["channel"],
        time_axis=TimeAxis.NONE,
    )
    features = report.features.set_index("feature")
    assert features.loc["index", "psi"] > 1 and features.loc["visits", "psi"] < 0.05
    assert features.loc["index", "out_of_range_share"] > 0.9
    assert features.loc["channel", "mix_change"] == pytest.approx(0.4, abs=0.05)
    text = " ".join(report.warnings)
    assert "base rate moved" in text and "'index'" in text and "'channel'" in text and "'visits'" not in text
    metrics = report.metrics()
    assert metrics["drift_features_out_of_range"] == 1 and metrics["drift_psi.index"] > 1
    assert "Warnings" in report.markdown()
    same = drift_report(
        reference=reference,
        current=reference.sample(frac=0.5, random_state=0),
        numeric_features=["index", "visits"],
        categorical_features=["channel"],
        time_axis=TimeAxis.NONE,
    )
    assert not same.warnings


def test_logistic_baseline_does_not_collapse_when_features_leave_their_range() -> None:
    rng = np.random.default_rng(2)
    n = 3_000
    train = pd.DataFrame({"index": rng.normal(100, 5, n), "channel": rng.choice(["a", "b"], n)})
    y = (rng.random(n) < 1 / (1 + np.exp(-(train["index"] - 100) / 2 - 2))).astype(int)
    future = pd.DataFrame({"index": rng.normal(200, 5, 1_000), "channel": rng.choice(["a", "b"], 1_000)})
    model = make_logistic_baseline(seed=0, categorical_features=["channel"], numeric_features=["index"])
    p = model.fit(train, y).predict_proba(future)[:, 1]
    seen = model.predict_proba(train)[:, 1]
    # clipped to the training range: a lead far past it scores like the most extreme training lead
    assert p.max() <= seen.max() + 1e-12 and p.min() >= np.quantile(seen, 0.99) - 1e-12


def test_points_baseline_falls_back_to_categorical_fit_when_no_engagement_column() -> None:
    rng = np.random.default_rng(4)
    n = 4_000
    page = rng.choice([f"p{i}" for i in range(40)], n)
    rate = {f"p{i}": 0.02 + 0.01 * i for i in range(40)}
    y = (rng.random(n) < np.array([rate[v] for v in page])).astype(int)
    frame = pd.DataFrame({"page": pd.Categorical(page)})
    scorer = EngagementPointsScorer(columns=[], fallback_columns=["page"]).fit(frame, y)
    p = scorer.predict_proba(frame)[:, 1]
    assert np.unique(p).size > 5  # not a constant
    assert "no numeric engagement column" in scorer.basis_
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y, p) > 0.6
    unseen = scorer.predict_proba(pd.DataFrame({"page": pd.Categorical(["never-seen"])}))[:, 1]
    assert 0 < unseen[0] < 1
