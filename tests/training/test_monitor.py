"""Label-free monitoring (issue 26 part 3): estimates from calibrated probabilities alone that the
realised values confirm once labels mature, and alerts a scheduler can act on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from leadscore.features.build import read_table_metadata_if_any
from leadscore.training.monitor import (
    MonitorJob,
    cohort_table,
    expected_precision,
    expected_roc_auc,
    write_report,
)
from tests.conftest import Trained


def test_the_expected_auc_is_the_mean_auc_of_labels_drawn_from_the_probabilities() -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(0.6, 5.0, 3_000)
    p[:300] = 0.2  # ties count half
    draws = [roc_auc_score(rng.random(len(p)) < p, p) for _ in range(300)]
    assert expected_roc_auc(p) == pytest.approx(float(np.mean(draws)), abs=0.003)
    assert expected_roc_auc(np.full(100, 0.3)) == pytest.approx(0.5)
    assert expected_precision(np.array([0.1, 0.5, 0.7]), threshold=0.5) == pytest.approx(0.6)


def test_a_small_cohort_is_listed_and_flagged_never_estimated() -> None:
    frame = pd.DataFrame(
        {
            "as_of": pd.to_datetime(["2025-01-05"] * 200 + ["2025-02-01"] * 5),
            "probability": 0.1,
            "label": np.nan,
        }
    )
    cohorts = cohort_table(frame, threshold=0.3, trained_prior=0.1).set_index("cohort")
    assert bool(cohorts.loc["2025-02", "too_few"]) and np.isnan(cohorts.loc["2025-02", "estimated_roc_auc"])
    assert cohorts.loc["2025-01", "labelled"] == 0 and "realised_rate" not in cohorts.columns


@pytest.fixture(scope="module")
def monitored(trained: Trained) -> tuple[MonitorJob, Trained]:
    meta = read_table_metadata_if_any(trained.table_path) or {}
    job = MonitorJob(
        model=trained.result.evaluated,  # the pre-test refit: its test period is newer than its data
        table=trained.table,
        ages_days=(meta.get("snapshot_policy") or {}).get("ages_days"),
        reference_auc=trained.result.metrics["roc_auc"],
    )
    return job, trained


def test_estimates_without_labels_track_what_the_labels_later_say(
    monitored: tuple[MonitorJob, Trained], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    job, _ = monitored
    result = job.run()
    judged = result.cohorts.dropna(subset=["realised_roc_auc"])
    recalibrated = judged[judged["recalibrated_on"] > 0]  # fitted on earlier cohorts' matured rows only
    assert len(recalibrated) >= 3
    gap = (recalibrated["estimated_roc_auc_labelled"] - recalibrated["realised_roc_auc"]).abs()
    # each estimate within the realised AUC's own sampling noise (Hanley-McNeil), and close on average
    auc, n1 = recalibrated["realised_roc_auc"], recalibrated["labelled"] * recalibrated["realised_rate"]
    n0 = recalibrated["labelled"] - n1
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    se = np.sqrt((auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n0 - 1) * (q2 - auc**2)) / (n1 * n0))
    table = recalibrated[["cohort", "estimated_roc_auc_labelled", "realised_roc_auc"]]
    assert (gap < 3 * se).all() and gap.mean() < 0.03, table
    assert (recalibrated["calibration_slope"] < 1).all()  # the new months bear out a flatter slope
    full = judged[judged["rows"] >= 500]  # a month of leads, not the stub month at the period's edge
    rates = (full["estimated_base_rate"] - full["realised_rate"]).abs()
    assert len(full) >= 3 and rates.max() < 0.03
    assert result.exit_code == 0, result.alerts  # the simulator's test months are stable
    paths = write_report(result, tmp_path)
    page = paths[0].read_text()
    assert "No alerts" in page and "data:image/png;base64," in page and "estimated" in page


def test_an_injected_drift_raises_alerts_and_a_non_zero_exit(monitored: tuple[MonitorJob, Trained]) -> None:
    job, trained = monitored
    table = trained.table.copy()
    newer = pd.to_datetime(table["as_of"]) > pd.Timestamp(
        str(trained.result.evaluated.metadata["trained_until"])
    )
    table.loc[newer, "channel"] = "purchased_list"  # a bought list floods the newest months
    drifted = MonitorJob(
        model=job.model, table=table, ages_days=job.ages_days, reference_auc=job.reference_auc
    ).run()
    assert drifted.exit_code == 1
    assert any("feature 'channel' shifted" in alert for alert in drifted.alerts)
    assert "ALERTS" in drifted.report_markdown


def test_the_monitor_command_reads_open_snapshots_and_logs_its_report(trained: Trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The registered model learnt from every labelled row, so the newer rows are the snapshots whose
    outcome is still open: a build that keeps them gives their estimates, with no labels at all."""
    from typer.testing import CliRunner

    from leadscore.cli import app
    from leadscore.features.build import BuildFeaturesJob
    from leadscore.features.training_table import SnapshotPolicy

    home = trained.table_path.parent
    newest = tmp_path / "newest.parquet"
    BuildFeaturesJob(
        leads=home / "crm" / "leads.parquet",
        activities=home / "crm" / "activities.parquet",
        outcomes=home / "crm" / "outcomes.parquet",
        output=newest,
        policy=SnapshotPolicy(keep_incomplete_horizon=True),
    ).run()
    env = {
        "LEADSCORE_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "LEADSCORE_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
    }
    out = tmp_path / "report"
    done = CliRunner().invoke(
        app,
        [
            "monitor",
            "--model-name",
            "leadscore-test",
            "--alias",
            trained.result.model_version or "1",
            "--table",
            str(newest),
            "--out",
            str(out),
        ],
        env=env,
    )
    assert done.exit_code in (0, 1), done.output
    cohorts = pd.read_csv(out / "cohorts.csv")
    assert len(cohorts) >= 2 and (cohorts["labelled"] == 0).all()  # open outcomes only: nothing realised
    assert cohorts["estimated_roc_auc"].dropna().between(0.6, 1.0).all()
    assert "monitor.html" in {p.name for p in out.iterdir()} and "Cohorts of the newest export" in done.output


@pytest.mark.slow
def test_the_monitor_report_renders_in_headless_chromium(
    monitored: tuple[MonitorJob, Trained], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from tests.training.test_html_card import _near, _require_browser, _screenshot

    browser = _require_browser()
    job, _ = monitored
    page = write_report(job.run(), tmp_path / "report")[0]
    pixels = _screenshot(browser, page, tmp_path / "monitor.png", tmp_path)
    ink = sum(1 for r, g, b in pixels if r + g + b < 600)
    assert ink > 0.01 * len(pixels), "the screenshot is (nearly) blank"
    assert _near(pixels, (0x1F, 0x77, 0xB4)) > 50, "no estimated-AUC line (matplotlib's first colour) drawn"


def test_scores_that_do_not_separate_get_no_label_free_base_rate() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "as_of": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 90, 3_000), unit="D"),
            "probability": rng.uniform(0.07, 0.09, 3_000),  # every lead alike: nothing to separate
        }
    )
    cohorts = cohort_table(frame, threshold=0.3, trained_prior=0.12)
    assert (cohorts["estimated_roc_auc"] < 0.6).all()
    assert cohorts["estimated_base_rate"].isna().all()  # not the 0% EM would drift to
    from leadscore.model.calibration import em_prior, em_prior_settled

    p = frame["probability"].to_numpy()
    assert em_prior(p, trained_prior=0.12) < 0.01  # what EM alone says: it ran to the bound
    assert np.isnan(em_prior_settled(p, trained_prior=0.12))
