"""Shared tracking on a real database: train -> promote -> load the champion through an MLflow
server backed by PostgreSQL, with the rows checked in PostgreSQL itself.

Only MLFLOW_TRACKING_URI differs from the local SQLite setup: the training job, the registry
helpers, ``mlflow.pyfunc.load_model`` and the serving engine's model holder run unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from leadscore.cli_scale import check_database, check_tracking_server, tracking_server_command
from leadscore.features.build import simulate_and_build
from leadscore.model import store
from leadscore.training import registry
from leadscore.training.config import BoosterConfig, TrackingConfig, TrainConfig
from leadscore.training.train import TrainJob
from tests.integration.postgres_support import (
    MlflowServer,
    Postgres,
    PostgresUnavailable,
    free_port,
    running_postgres,
    skip_or_fail,
    wait_healthy,
)

pytestmark = pytest.mark.slow
MODEL_NAME = "leadscore-pg"


@dataclass
class Tracking:
    postgres: Postgres
    database: str
    server: MlflowServer


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tracking]:
    pytest.importorskip("psycopg2", reason="psycopg2-binary is a dev dependency")
    try:
        context = running_postgres()
        postgres = context.__enter__()
    except PostgresUnavailable as error:
        skip_or_fail(f"PostgreSQL could not be started: {error}")
        return
    try:
        postgres.create_database("mlflow")
        root = tmp_path_factory.mktemp("mlflow-server")
        check_database(postgres.uri("mlflow"))  # the CLI's pre-flight check passes on a live database
        port = free_port()
        command = tracking_server_command(
            backend_store_uri=postgres.uri("mlflow"),
            artifacts_destination=root / "artifacts",
            port=port,
            workers=1,
        )
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env["MLFLOW_DISABLE_TELEMETRY"] = "true"
        log = root / "server.log"
        with open(log, "wb") as sink:
            process = subprocess.Popen(
                command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=root
            )
        server = MlflowServer(f"http://127.0.0.1:{port}", process, root / "artifacts", log)
        try:
            wait_healthy(server.uri, process, log)
            yield Tracking(postgres, "mlflow", server)
        finally:
            server.stop()
    finally:
        context.__exit__(None, None, None)


def query(tracking: Tracking, sql: str, *args: object) -> list[tuple[object, ...]]:
    connection = tracking.postgres.connect(tracking.database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())
    finally:
        connection.close()


def test_train_promote_and_load_through_postgres_backed_server(
    tracking: Tracking, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("LEADSCORE_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking.server.uri)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    check_tracking_server(tracking.server.uri, timeout=5)

    table_path = simulate_and_build(n_leads=3_000, seed=21, out_dir=home).training_table
    config = TrainConfig(
        training_table=table_path,
        booster=BoosterConfig(max_rounds=60, early_stopping_rounds=20),
        tracking=TrackingConfig(experiment="pg-integration", model_name=MODEL_NAME),
        shap_sample=200,
    )
    result = TrainJob(config).run()
    assert result.model_version == "1"

    decision = registry.promote(model_name=MODEL_NAME)
    assert decision.promoted, decision.reason
    assert store.champion_version(model_name=MODEL_NAME) == result.model_version

    # the champion, as the CLI, the batch scorer and the service load it
    model = store.load_scoring_model(model_name=MODEL_NAME, version=result.model_version)
    assert model.metadata["run_id"] == result.run_id
    raw = pd.DataFrame(json.loads(table_path.with_suffix(".meta.json").read_text())["raw_example"])
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion")
    predicted = pyfunc.predict(raw)
    assert len(predicted) == len(raw)
    assert set(predicted["model_run_id"]) == {result.run_id}
    expected = model.score_features(model.features_from_records(raw))
    np.testing.assert_allclose(predicted["probability"], [r["probability"] for r in expected])

    from leadscore.serving.engine import ModelHolder
    from leadscore.serving.settings import ServingSettings

    holder = ModelHolder(ServingSettings(model_name=MODEL_NAME))
    holder.reload()
    assert holder.current.version == result.model_version

    # ... and the rows are in PostgreSQL
    runs = query(tracking, "SELECT status, lifecycle_stage FROM runs WHERE run_uuid = %s", result.run_id)
    assert runs == [("FINISHED", "active")]
    metrics = query(
        tracking, "SELECT value FROM latest_metrics WHERE run_uuid = %s AND key = 'roc_auc'", result.run_id
    )
    assert metrics and 0.5 < float(metrics[0][0]) <= 1.0  # type: ignore[arg-type]
    versions = query(
        tracking, "SELECT version, run_id, status FROM model_versions WHERE name = %s", MODEL_NAME
    )
    assert versions == [(1, result.run_id, "READY")]
    aliases = query(
        tracking, "SELECT alias, version FROM registered_model_aliases WHERE name = %s", MODEL_NAME
    )
    assert aliases == [("champion", 1)]
    # artifacts live under the server's local artifact root, not in the client's LEADSCORE_HOME
    assert list(tracking.server.artifacts.rglob("scoring_model.pkl"))
    assert not (home / "mlartifacts").exists()


def test_a_down_tracking_server_fails_within_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """With retries off and a short timeout, MLflow's client errors quickly instead of hanging."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import ConnectionError as RequestsConnectionError

    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    started = time.monotonic()
    with pytest.raises((MlflowException, RequestsConnectionError)):
        mlflow.MlflowClient(tracking_uri=uri).search_experiments()
    assert time.monotonic() - started < 10
