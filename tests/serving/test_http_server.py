"""Level 3: a real ``bentoml serve`` subprocess on 127.0.0.1 (slow).

* scores equal ``mlflow.pyfunc.load_model("models:/leadscore@champion").predict`` on the same leads;
* Prometheus ``/metrics`` carries the custom metrics (with the key);
* a bounded load test (loopback, 1,000 requests from 8 clients, stops by itself) has zero unexpected answers,
  and reports the server's RSS before and after;
* the champion alias is picked up by polling;
* without API keys the server refuses to start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest

from tests.serving.server_support import (
    SERVICE,
    Server,
    bentoml_executable,
    start_server,
    stop_server,
    tree_rss_mb,
)
from tests.serving.serving_support import API_KEY, TrainedModel, serving_environment

pytestmark = pytest.mark.slow

AUTH = {"X-API-Key": API_KEY}
LOAD_REQUESTS = 1000  # 100 of each of the 10 request kinds; ~20 ms of server CPU each on 2 cores
LOAD_CLIENTS = 8


@pytest.fixture(scope="module")
def server(trained_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("server")
    env = {**os.environ, **serving_environment(trained_model, LEADSCORE_RELOAD_SECONDS="1")}
    for name in ("LEADSCORE_MODEL_VERSION", "LEADSCORE_MAX_BATCH", "LEADSCORE_MAX_BODY_MB", "BENTOML_HOST"):
        env.pop(name, None)
    running = start_server(env, workdir)
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=60) as client:
        yield client


def test_binds_loopback_only(server: Server) -> None:
    process = psutil.Process(server.process.pid)
    port = int(server.url.rsplit(":", 1)[1])
    listening = [
        conn.laddr.ip
        for p in [process, *process.children(recursive=True)]
        for conn in p.net_connections(kind="inet")
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port
    ]
    assert listening and set(listening) == {"127.0.0.1"}


def test_scores_equal_the_mlflow_pyfunc(
    http: httpx.Client, trained_model: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    for name, value in trained_model.env.items():
        monkeypatch.setenv(name, value)
    leads = trained_model.batch(100, start=50)
    response = http.post("/score", json={"leads": leads})
    assert response.status_code == 200, response.text
    served = pd.DataFrame(response.json()["results"])

    pyfunc = mlflow.pyfunc.load_model("models:/leadscore@champion")
    expected = pyfunc.predict(pd.DataFrame(leads))
    assert list(served["lead_id"]) == list(expected["lead_id"])
    np.testing.assert_allclose(served["probability"], expected["probability"], rtol=0, atol=1e-9)
    assert list(served["score"]) == list(expected["score"])
    assert list(served["tier"]) == list(expected["tier"])
    assert list(served["grade"]) == list(expected["grade"])
    assert list(served["reasons_positive"]) == list(expected["reasons_positive"])

    fast = http.post("/score", json={"leads": leads, "explain": False}).json()["results"]
    expected_fast = pyfunc.predict(pd.DataFrame(leads), params={"explain": False})
    np.testing.assert_allclose([r["probability"] for r in fast], expected_fast["probability"], atol=1e-9)


def test_metrics_endpoint_has_custom_metrics(
    server: Server, http: httpx.Client, trained_model: TrainedModel
) -> None:
    http.post("/score", json={"leads": trained_model.batch(3)})
    httpx.post(f"{server.url}/score", json={"leads": trained_model.batch(1)})  # no key: 401
    assert httpx.get(f"{server.url}/metrics").status_code == 401  # deny by default: a key is needed
    text = httpx.get(f"{server.url}/metrics", headers=AUTH).text
    assert 'leadscore_requests_total{endpoint="/score",outcome="ok"}' in text
    assert 'leadscore_requests_total{endpoint="/score",outcome="unauthorized"}' in text
    assert "leadscore_score_bucket" in text and "leadscore_leads_scored_total" in text
    deadline = time.monotonic() + 10  # the ledger writes off the request path, a moment later
    while 'leadscore_ledger_rows_total{outcome="written"}' not in text and time.monotonic() < deadline:
        time.sleep(0.2)
        text = httpx.get(f"{server.url}/metrics", headers=AUTH).text
    assert 'leadscore_ledger_rows_total{outcome="written"}' in text and "leadscore_ledger_buffered" in text
    assert "bentoml_service_request_duration_seconds" in text


def test_bounded_load_has_zero_errors(server: Server, trained_model: TrainedModel, record_property) -> None:
    leads = trained_model.leads
    future = dict(trained_model.lead(0))
    future["activities"] = [{"timestamp": "2999-01-01T00:00:00", "activity_type": "page_view"}]

    def request_for(i: int) -> tuple[dict, dict, int]:
        kind = i % 10
        one = leads[i % len(leads)]
        if kind == 0:
            return {"leads": [future]}, AUTH, 422
        if kind == 1:
            return {"leads": [one]}, {}, 401
        if kind in (2, 3):
            return {"leads": [one], "explain": False}, AUTH, 200
        if kind == 4:
            start = i % (len(leads) - 10)
            return {"leads": leads[start : start + 10]}, AUTH, 200
        return {"leads": [one]}, AUTH, 200

    with httpx.Client(base_url=server.url, timeout=60) as warm:
        for i in range(20):
            body, headers, _ = request_for(i + 2)
            warm.post("/score", json=body, headers=headers)
    rss_before = tree_rss_mb(server.process.pid)

    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    next_index = iter(range(LOAD_REQUESTS))

    def client_loop() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                body, headers, expected = request_for(i)
                started = time.perf_counter()
                try:
                    status = client.post("/score", json=body, headers=headers).status_code
                    outcome = "expected" if status == expected else f"unexpected {status} (wanted {expected})"
                except httpx.HTTPError as error:
                    outcome = f"transport error {type(error).__name__}"
                elapsed = time.perf_counter() - started
                with lock:
                    outcomes[outcome] += 1
                    latencies.append(elapsed)

    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(LOAD_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    wall = time.perf_counter() - started
    rss_after = tree_rss_mb(server.process.pid)

    summary = {
        "requests": sum(outcomes.values()),
        "outcomes": dict(outcomes),
        "wall_s": round(wall, 2),
        "requests_per_s": round(sum(outcomes.values()) / wall, 1),
        "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1),
        "server_rss_mb_before": round(rss_before, 1),
        "server_rss_mb_after": round(rss_after, 1),
    }
    record_property("load_test", json.dumps(summary))
    print(f"\nload test: {json.dumps(summary)}")
    assert summary["requests"] == LOAD_REQUESTS
    assert outcomes == Counter({"expected": LOAD_REQUESTS}), summary
    assert rss_after - rss_before < 200, summary  # no gross leak
    assert server.process.poll() is None


def test_polling_picks_up_a_new_champion(
    http: httpx.Client, trained_model: TrainedModel, monkeypatch
) -> None:
    import mlflow

    for name, value in trained_model.env.items():
        monkeypatch.setenv(name, value)
    client = mlflow.MlflowClient()
    current = http.post("/score", json={"leads": trained_model.batch(1)}).json()["model_version"]
    new = mlflow.register_model(f"models:/leadscore/{current}", "leadscore")

    def serving_version() -> str:
        return http.post("/score", json={"leads": trained_model.batch(1)}).json()["model_version"]

    def wait_for(version: str) -> bool:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if serving_version() == version:
                return True
            time.sleep(0.5)
        return False

    client.set_registered_model_alias("leadscore", "champion", new.version)
    try:
        assert wait_for(str(new.version))  # LEADSCORE_RELOAD_SECONDS=1
    finally:
        client.set_registered_model_alias("leadscore", "champion", current)
    assert wait_for(current)


@pytest.mark.parametrize(
    "command",
    [
        [bentoml_executable(), "serve", SERVICE, "--port", "1"],
        [sys.executable, "-m", "leadscore.serving", "--port", "1"],
    ],
    ids=["bentoml-serve", "python-m"],
)
def test_refuses_to_start_without_keys(
    trained_model: TrainedModel, tmp_path: Path, command: list[str]
) -> None:
    env = {**os.environ, **trained_model.env}
    for name in ("LEADSCORE_API_KEYS", "LEADSCORE_API_KEYS_FILE", "LEADSCORE_ALLOW_NO_AUTH"):
        env.pop(name, None)
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "LEADSCORE_API_KEYS" in result.stderr + result.stdout
