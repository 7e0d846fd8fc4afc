"""Shared fixtures: isolated MLflow/BentoML state per test session and small simulated CRMs."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from leadscore.features.build import BuildFeaturesJob, simulate_and_build
from leadscore.features.simulator import SimulatedCRM, simulate_crm
from leadscore.features.training_table import SnapshotPolicy
from leadscore.training.config import BoosterConfig, TrackingConfig, TrainConfig
from leadscore.training.train import TrainingResult, TrainJob


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run tests/serving last (otherwise in collection order).

    The serving tests leave threads in this process that ran LightGBM (the in-process ASGI app's event
    loop, the service's batch threads). A live thread that has used OpenMP made later training in
    the main thread about 2x slower (measured: X Education's TrainJob 25 s, 42-48 s after one).
    """
    items.sort(key=lambda item: item.nodeid.startswith("tests/serving/"))


@pytest.fixture(autouse=True)
def no_process_wide_tracking_uri() -> Iterator[None]:
    """Fail a test that leaves MLflow's process-wide tracking URI set (``mlflow.set_tracking_uri``).

    It would override ``MLFLOW_TRACKING_URI`` for every later test, e.g. the serving fixtures' stores.
    """
    from mlflow.tracking._tracking_service import utils as tracking_utils

    environment = os.environ.get("MLFLOW_TRACKING_URI")  # set_tracking_uri also writes it there
    yield
    leaked = tracking_utils._tracking_uri
    if leaked is not None:
        tracking_utils._tracking_uri = None
        if environment is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = environment
        pytest.fail(f"the test left mlflow.set_tracking_uri({leaked!r}) set for the whole process")


@pytest.fixture(scope="session")
def mlflow_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store with every table and migration, to copy into each fresh home.

    Creating a store runs MLflow's migrations (~4 s each time). The template holds no Default
    experiment: MLflow creates it when a copy is first opened, with that home's artifact root.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("mlflow-template")
    path = folder / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{path}", str(folder / "artifacts")).engine.dispose()
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("DELETE FROM experiments WHERE experiment_id = 0")
    return path


@pytest.fixture()
def isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_store_template: Path) -> Path:
    """A private LEADSCORE_HOME with its own SQLite MLflow store (never ~, never the repo's)."""
    home = tmp_path / "leadscore-home"
    home.mkdir()
    shutil.copyfile(mlflow_store_template, home / "mlflow.db")
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


@dataclass
class Trained:
    crm: SimulatedCRM
    table: pd.DataFrame
    table_path: Path
    result: TrainingResult
    config: TrainConfig


@pytest.fixture(scope="session")
def trained(  # one trained, registered model shared by the training and explanation tests
    tmp_path_factory: pytest.TempPathFactory, mlflow_store_template: Path
) -> Iterator[Trained]:
    home = tmp_path_factory.mktemp("leadscore-home")
    shutil.copyfile(mlflow_store_template, home / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADSCORE_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        export = simulate_and_build(n_leads=12_000, seed=5, out_dir=home)
        crm, table_path = export.crm, export.training_table
        config = TrainConfig(
            training_table=table_path,
            booster=BoosterConfig(max_rounds=200),
            tracking=TrackingConfig(experiment="test", model_name="leadscore-test"),
        )
        result = TrainJob(config).run()
        yield Trained(crm, pd.read_parquet(table_path), table_path, result, config)


def build_from_csv(
    folder: Path,
    *,
    leads: pd.DataFrame,
    activities: pd.DataFrame,
    outcomes: pd.DataFrame,
    policy: SnapshotPolicy,
) -> Path:
    """Write the three tables as CSV files in ``folder``; build them as ``leadscore build-features`` does."""
    data = folder / "crm"
    data.mkdir()
    for name, frame in (("leads", leads), ("activities", activities), ("outcomes", outcomes)):
        frame.to_csv(data / f"{name}.csv", index=False)
    output = folder / "table.parquet"
    BuildFeaturesJob(
        leads=data / "leads.csv",
        activities=data / "activities.csv",
        outcomes=data / "outcomes.csv",
        output=output,
        policy=policy,
    ).run()
    return output
