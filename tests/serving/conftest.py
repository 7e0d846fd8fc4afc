"""Fixtures for the serving tests: one small trained + promoted model per session, under tmp.

The model is built by ``modelkit.py`` in a subprocess (simulate -> features -> train -> promote),
so MLflow state never leaks into the test process and nothing is written under ``~`` or the repo.
Set ``LEADSCORE_TEST_MODEL_HOME`` to reuse a home built earlier by ``modelkit.py`` (faster reruns).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serving.serving_support import HERE, TEST_LEADS, TrainedModel, serving_environment


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory, mlflow_store_template: Path) -> TrainedModel:
    reuse = os.environ.get("LEADSCORE_TEST_MODEL_HOME")
    if reuse and (Path(reuse) / "env.json").exists():
        home = Path(reuse)
    else:
        home = tmp_path_factory.mktemp("leadscore-model")
        shutil.copyfile(mlflow_store_template, home / "mlflow.db")  # a fresh store, without the migrations
        result = subprocess.run(
            [sys.executable, str(HERE / "modelkit.py"), "--home", str(home), "--leads", str(TEST_LEADS)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=home,
        )
        if result.returncode != 0:
            pytest.fail(f"building the test model failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    env = json.loads((home / "env.json").read_text())
    leads = json.loads((home / "sample_leads.json").read_text())
    return TrainedModel(home=home, env=env, leads=leads)


@pytest.fixture(scope="session")
def champion(trained_model: TrainedModel) -> Any:
    """The test model's champion as a worker loads it: read from the registered version's local file
    (an ``engine.LoadedModel``, with its single-lead fast path)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in trained_model.env.items():
            patch.setenv(name, value)
        from leadscore.model import store
        from leadscore.serving import engine

        version = store.champion_version(model_name="leadscore")
        assert version is not None
        path = store.scoring_model_file(model_name="leadscore", version=version)
        model = store.read_registered_model(path, version=version)
    return engine.prepared_model(model, name="leadscore", version=version, model_file=str(path))


@pytest.fixture
def serving_env(trained_model: TrainedModel, monkeypatch: pytest.MonkeyPatch) -> TrainedModel:
    for name in ("LEADSCORE_MODEL_VERSION", "LEADSCORE_API_KEYS_FILE", "LEADSCORE_ALLOW_NO_AUTH"):
        monkeypatch.delenv(name, raising=False)
    for name, value in serving_environment(trained_model).items():
        monkeypatch.setenv(name, value)
    return trained_model


ASGI_LIMITS = {
    "LEADSCORE_MAX_BATCH": "50",
    "LEADSCORE_MAX_BODY_MB": "1",
    "LEADSCORE_MAX_EVENTS_PER_LEAD": "2000",
    "LEADSCORE_AUTH_FAILURES_PER_MINUTE": "1000",  # the 401 tests send many wrong keys
}


@pytest.fixture(scope="session")
def asgi_app_client(trained_model: TrainedModel) -> Iterator[Any]:
    """One BentoML ASGI app per session (a second one would register BentoML's metrics twice).

    Built under the serving environment plus small limits (50 leads, 1 MB) so 413s are cheap to
    provoke; the service and the middleware read their settings at start-up and first request.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    with pytest.MonkeyPatch.context() as patch:
        for name in ("LEADSCORE_MODEL_VERSION", "LEADSCORE_API_KEYS_FILE", "LEADSCORE_ALLOW_NO_AUTH"):
            patch.delenv(name, raising=False)
        for name, value in serving_environment(trained_model, **ASGI_LIMITS).items():
            patch.setenv(name, value)
        from leadscore.serving.service import LeadScoringService

        client = TestClient(LeadScoringService.to_asgi(), raise_server_exceptions=False)
        client.__enter__()  # lifespan: the service instance and its model
        client.get("/livez")  # first request: the middleware stack reads its settings
    try:
        yield client
    finally:
        client.__exit__(None, None, None)


@pytest.fixture
def client(asgi_app_client: Any, serving_env: TrainedModel) -> Any:
    """The session's ASGI client, with the MLflow environment set for this test."""
    return asgi_app_client
