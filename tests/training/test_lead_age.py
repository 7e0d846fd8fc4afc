"""Leads of every age a CRM holds: old silent leads fall, leads past the trained ages say so.

Model-behaviour tests (directional and minimum functionality) on the shared trained model, whose
table has older-age snapshots (``SnapshotPolicy.older_ages_per_lead``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.training_table import SnapshotPolicy
from tests.conftest import Trained


def _silent_after(trained: Trained, *, days: int, leads: int = 200) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leads with activity in their first ``days`` days and none kept after (a lead gone quiet)."""
    crm = trained.crm
    created = crm.leads.set_index("lead_id")["created_at"]
    activities = crm.activities[
        crm.activities["timestamp"] <= crm.activities["lead_id"].map(created) + pd.Timedelta(days=days)
    ]
    active = activities["lead_id"].value_counts()
    converted = set(crm.outcomes["lead_id"])
    chosen = [lead for lead in active.index if lead not in converted][:leads]
    return crm.leads[crm.leads["lead_id"].isin(chosen)].reset_index(drop=True), activities


def test_the_table_covers_old_leads_and_the_model_knows_its_oldest(trained: Trained) -> None:
    policy = SnapshotPolicy()
    table = trained.table
    assert table["snapshot_age_days"].max() > 4 * max(policy.ages_days)
    model = trained.result.model
    assert model.trained_lead_age_days is not None
    assert model.trained_lead_age_days == float(table.loc[table["label"].notna(), "lead_age_days"].max())


def test_a_lead_gone_quiet_falls_with_age(trained: Trained) -> None:
    model = trained.result.model
    leads, activities = _silent_after(trained, days=20)
    created = pd.to_datetime(leads["created_at"])
    probability = {}
    for age in (30, 120, 300):
        features = model.features(leads=leads, activities=activities, as_of=created + pd.Timedelta(days=age))
        probability[age] = model.predict_proba_features(features)
    assert probability[120].mean() < 0.5 * probability[30].mean()
    assert probability[300].mean() < probability[120].mean() + 1e-4
    assert (probability[300] <= probability[30] + 1e-9).mean() > 0.95


def test_a_lead_older_than_the_model_knows_gets_a_note_and_a_wider_range(trained: Trained) -> None:
    model = trained.result.model
    assert model.trained_lead_age_days is not None
    leads, activities = _silent_after(trained, days=20, leads=50)
    created = pd.to_datetime(leads["created_at"])
    inside = model.score_features(
        model.features(leads=leads, activities=activities, as_of=created + pd.Timedelta(days=60)),
        explain=False,
    )
    beyond_age = model.trained_lead_age_days + 40
    beyond = model.score_features(
        model.features(leads=leads, activities=activities, as_of=created + pd.Timedelta(days=beyond_age)),
        explain=True,
    )
    assert all(result["age_note"] is None for result in inside)
    for result in beyond:
        assert result["status"] == "open"
        note = str(result["age_note"])
        assert "older than any lead the model learnt from" in note and f"{beyond_age:.0f} days old" in note
        assert result["probability_low"] == 0.0 and result["low_confidence"] is True
        assert np.isclose(float(result["probability"]), float(result["probability"]))  # still a number
