"""Shared fixtures: isolated MLflow/BentoML state per test session and small simulated CRMs."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadscore.features.simulator import SimulatedCRM, simulate_crm


@pytest.fixture()
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private LEADSCORE_HOME with its own SQLite MLflow store (never ~, never the repo's)."""
    home = tmp_path / "leadscore-home"
    home.mkdir()
    monkeypatch.setenv("LEADSCORE_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.setenv("BENTOML_HOME", str(home / "bentoml"))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "true")
    return home


@pytest.fixture(scope="session")
def small_crm() -> SimulatedCRM:
    """3,000 simulated leads with their activities, outcomes and truth."""
    return simulate_crm(n_leads=3_000, seed=11)
