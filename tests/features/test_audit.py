"""The leakage audit, second generation: post-contact facts under innocuous names and AUCs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from leadscore.features.audit import audit_columns


def call_export(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A bank-marketing-like export: a call's length is known only after the call and separates
    converted leads (AUC ~0.8) without reaching the hard cut-off."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.15).astype(int)
    length = rng.gamma(2.0, 90.0, n) * np.where(y == 1, 2.2, 1.0)
    age = rng.integers(20, 70, n)
    return (
        pd.DataFrame(
            {
                "call_len_sec": length.round(),
                "Duration": length.round(),
                "age": age,
                "job": rng.choice(["admin", "technician", "services"], n),
            }
        ),
        y,
    )


@pytest.mark.parametrize("column", ["call_len_sec", "Duration"])
def test_call_duration_like_column_is_flagged(column: str) -> None:
    frame, y = call_export()
    auc = roc_auc_score(y, frame[column])
    assert 0.75 <= auc < 0.85  # under the old single cut-off
    report = audit_columns(frame[[column, "age", "job"]], label=y).set_index("column")
    assert report.loc[column, "flagged"] and report.loc[column, "tier"] == "flag"
    assert "suspicious_auc" in report.loc[column, "flags"]
    assert "name_suggests_post_contact" in report.loc[column, "flags"]
    assert not report.loc["age", "flagged"] and not report.loc["job", "flagged"]


def test_strong_column_with_a_neutral_name_is_suspicious_confirm() -> None:
    frame, y = call_export()
    report = audit_columns(frame.rename(columns={"call_len_sec": "x7"})[["x7"]], label=y).set_index("column")
    assert report.loc["x7", "tier"] == "confirm" and report.loc["x7", "flags"] == "suspicious_auc"


def test_deal_columns_filled_for_converted_leads_are_flagged() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    y = (rng.random(n) < 0.1).astype(int)
    filled = (y == 1) & (rng.random(n) < 0.95) | (y == 0) & (rng.random(n) < 0.01)
    segment = np.where(filled, rng.choice(["pet", "car", "home"], n), None)
    report = audit_columns(pd.DataFrame({"business_segment": segment}), label=y).set_index("column")
    assert "filled_mostly_for_converted" in report.loc["business_segment", "flags"]
    assert report.loc["business_segment", "tier"] == "flag"


def test_date_column_at_or_after_the_outcome_is_flagged() -> None:
    rng = np.random.default_rng(2)
    n = 2000
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    y = (rng.random(n) < 0.3).astype(int)
    outcome = pd.Series(created + pd.to_timedelta(rng.integers(1, 60, n), unit="D")).where(y == 1)
    frame = pd.DataFrame(
        {
            "contract_signed": (outcome + pd.to_timedelta(rng.integers(0, 5, n), unit="D")).dt.strftime(
                "%Y-%m-%d"
            ),
            "signed_up": pd.Series(created).dt.strftime("%Y-%m-%d"),
        }
    )
    report = audit_columns(frame, label=y, outcome_at=outcome.to_numpy(), created_at=created.to_numpy())
    report = report.set_index("column")
    assert "date_at_or_after_outcome" in report.loc["contract_signed", "flags"]
    assert "date_at_or_after_outcome" not in str(report.loc["signed_up", "flags"])
