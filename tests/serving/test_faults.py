"""Fault tests against a real ``bentoml serve`` subprocess (slow): one test per defect of issue 13.

1. tracking store down during a reload: 202 at once, scoring continues at the same latency;
2. amplification (engagement_counts asking for millions of events): 413 naming the field, the
   worker's memory does not grow;
3. a chunked body over the limit (with or without a fake Content-Length): 413 / 400;
4. 2,000 junk paths (one holding an e-mail address): ``/metrics`` keeps its size, the address is
   in neither ``/metrics`` nor the log;
5. slow and silent connections are closed after ``LEADSCORE_READ_TIMEOUT_SECONDS``;
6. a missing or dead store, or an unknown model, at start-up: exit non-zero within 30 s naming it;
   a replaced store is noticed by the next reload;
7. many keys in one request: 401.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from tests.serving.server_support import Server, bentoml_executable, free_port, start_server, stop_server
from tests.serving.serving_support import API_KEY, TrainedModel, serving_environment

pytestmark = pytest.mark.slow

SERVICE = "leadscore.serving.service:LeadScoringService"
AUTH = {"X-API-Key": API_KEY}
READ_TIMEOUT = 2.0


def model_processes_rss_mb(server: Server) -> dict[str, float]:
    """RSS of the worker and of its batch process (the two processes holding a model)."""
    root = psutil.Process(server.process.pid)
    sizes: dict[str, float] = {}
    for process in [root, *root.children(recursive=True)]:
        command = " ".join(process.cmdline())
        role = "batch process" if "spawn_main" in command else "worker" if "worker" in command else None
        if role is not None:
            sizes[role] = process.memory_info().rss / 2**20
    return sizes


def wait_for_batch_process(server: Server, lead: dict) -> None:
    """Send a large batch (the first one starts the batch process) and wait until it is up."""
    batch = [dict(lead, lead_id=f"warm-{i}") for i in range(60)]
    httpx.post(f"{server.url}/score", json={"leads": batch}, headers=AUTH, timeout=60).raise_for_status()
    deadline = time.monotonic() + 90
    while httpx.get(f"{server.url}/readyz", timeout=5).json().get("batch_process") != "ready":
        assert time.monotonic() < deadline, "the batch process did not come up"
        time.sleep(0.2)


def base_env(trained_model: TrainedModel, **extra: str) -> dict[str, str]:
    env = {**os.environ, **serving_environment(trained_model, **extra)}
    for name in ("LEADSCORE_MODEL_VERSION", "BENTOML_HOST"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def limited(trained_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("faults")
    env = base_env(
        trained_model,
        LEADSCORE_MAX_BODY_MB="1",
        LEADSCORE_READ_TIMEOUT_SECONDS=str(READ_TIMEOUT),
        LEADSCORE_AUTH_FAILURES_PER_MINUTE="1000",
    )
    running = start_server(env, workdir)
    try:
        yield running
    finally:
        stop_server(running)


# --- 2. amplification ------------------------------------------------------------------------------
def test_amplification_is_413_naming_the_field_without_memory_growth(
    limited: Server, trained_model: TrainedModel
) -> None:
    lead = trained_model.lead(0)
    httpx.post(f"{limited.url}/score", json={"leads": [lead]}, headers=AUTH, timeout=30)
    wait_for_batch_process(limited, lead)  # large requests go there: it must not grow either
    before = model_processes_rss_mb(limited)
    assert set(before) == {"worker", "batch process"}
    lead["engagement_counts"] = [
        {
            "activity_type": "page_view",
            "page_category": "pricing",
            "count": 10_000,
            "last_at": lead["created_at"],
        }
    ] * 100  # a million synthetic events from ~10 KB
    many = [dict(lead, lead_id=f"amp-{i}") for i in range(5)]  # 5 million, still well under 1 MB
    for body in ({"leads": [lead]}, {"leads": many}):
        response = httpx.post(f"{limited.url}/score", json=body, headers=AUTH, timeout=30)
        assert response.status_code == 413, response.text
        answer = response.json()
        assert answer["error"] == "payload_too_large"
        assert answer["problems"][0]["field"] == "leads[0].engagement_counts"
        assert "LEADSCORE_MAX_EVENTS_PER_LEAD" in answer["problems"][0]["problem"]
    explain = httpx.post(f"{limited.url}/explain", json={"lead": lead}, headers=AUTH, timeout=30)
    assert explain.status_code == 413 and explain.json()["problems"][0]["field"] == "lead.engagement_counts"
    after = model_processes_rss_mb(limited)
    assert all(after[role] - before[role] < 50 for role in before), (before, after)


# --- 3. body limit on bytes read ---------------------------------------------------------------------
def _raw_request(url: str, head: bytes, body: bytes = b"", *, wait: float = 10.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(head + body)
        received = b""
        try:
            while b"\r\n\r\n" not in received or len(received) < 12:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            pass
    return received


def test_chunked_body_over_the_limit_is_413(limited: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"leads": ['
        for _ in range(40):
            yield b'{"lead_id": "x", "created_at": "2025-01-01", "job_title": "' + b"a" * 50_000 + b'"},'
        yield b"]}"

    response = httpx.post(
        f"{limited.url}/score",
        content=chunks(),
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


def test_chunked_with_a_fake_content_length_is_refused(limited: Server) -> None:
    body = b"200000\r\n" + b" " * 0x200000 + b"\r\n0\r\n\r\n"
    head = (
        b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-API-Key: " + API_KEY.encode() + b"\r\nTransfer-Encoding: chunked\r\nContent-Length: 100\r\n\r\n"
    )
    answer = _raw_request(limited.url, head, body)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1") else 0
    assert status in (400, 413), answer[:200]


# --- 4. metrics and logs carry no client text -------------------------------------------------------
def test_junk_paths_do_not_grow_metrics_or_reach_the_log(limited: Server) -> None:
    with httpx.Client(base_url=limited.url, timeout=30) as client:
        for i in range(20):
            client.get(f"/warm-{i}")
        before = client.get("/metrics", headers=AUTH)
        assert before.status_code == 200
        for i in range(2000):
            response = client.get(f"/junk/{i}/jane.doe{i}@example.com")
            assert response.status_code == 404 and response.json()["error"] == "not_found"
        after = client.get("/metrics", headers=AUTH).text
    assert abs(len(after) - len(before.text)) < 500
    assert "example.com" not in after and "/junk" not in after
    assert "example.com" not in limited.log.read_text(errors="replace")


def test_not_found_and_method_not_allowed_are_the_documented_json(limited: Server) -> None:
    for response, status in (
        (httpx.get(f"{limited.url}/score", headers=AUTH), 405),
        (httpx.post(f"{limited.url}/nowhere", headers=AUTH), 404),
        (httpx.delete(f"{limited.url}/livez"), 405),
    ):
        assert response.status_code == status
        assert set(response.json()) == {"error", "message", "problems"}


# --- 5. slow connections -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"POST /score HTTP/1.1\r\nHost: x\r\n",
        b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n"
        b"Content-Type: application/json\r\nX-API-Key: " + API_KEY.encode() + b'\r\n\r\n{"leads"',
    ],
    ids=["silent", "half-headers", "half-body"],
)
def test_slow_connections_are_closed(limited: Server, sent: bytes) -> None:
    host, port = limited.url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=READ_TIMEOUT + 10) as sock:
        if sent:
            sock.sendall(sent)
        try:
            while sock.recv(4096):
                pass  # an answer (e.g. 408) or nothing: the server must close
        except (ConnectionResetError, TimeoutError):
            pass
    elapsed = time.monotonic() - started
    assert elapsed < READ_TIMEOUT + 5, elapsed


# --- 7. one key per request ---------------------------------------------------------------------------
def test_many_keys_are_401(limited: Server, trained_model: TrainedModel) -> None:
    headers = [("X-API-Key", f"wrong-{i:04d}-aaaaaaaaaaaa") for i in range(50)] + [("X-API-Key", API_KEY)]
    body = json.dumps({"leads": [trained_model.lead(0)]}).encode()
    with httpx.Client(base_url=limited.url, timeout=30) as client:
        many = client.post("/score", content=body, headers=[*headers, ("Content-Type", "application/json")])
        both = client.post(
            "/score",
            content=body,
            headers={
                "X-API-Key": API_KEY,
                "Authorization": f"Bearer {API_KEY}",
                "Content-Type": "application/json",
            },
        )
        one = client.post("/score", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert many.status_code == 401 and both.status_code == 401 and one.status_code == 200


# --- 1 and 6. the tracking store ------------------------------------------------------------------------
def _copy_store(trained_model: TrainedModel, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    database = folder / "mlflow.db"
    source = sqlite3.connect(trained_model.home / "mlflow.db")
    target = sqlite3.connect(database)
    source.backup(target)
    source.close()
    target.close()
    return database


def _latencies(client: httpx.Client, lead: dict, n: int) -> np.ndarray:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.post("/score", json={"leads": [lead]})
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return np.array(times)


def test_store_down_during_reload_keeps_scoring(trained_model: TrainedModel, tmp_path: Path) -> None:
    database = _copy_store(trained_model, tmp_path / "store")
    env = base_env(trained_model, MLFLOW_TRACKING_URI=f"sqlite:///{database}")
    server = start_server(env, tmp_path)
    try:
        lead = trained_model.lead(3)
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
            ready = client.get("/readyz").json()
            assert ready["ready"] and ready["store_reachable"] and ready["model_version"]
            _latencies(client, lead, 20)
            before = _latencies(client, lead, 100)
            database.rename(tmp_path / "away.db")  # the store is gone
            started = time.perf_counter()
            reload = client.post("/reload")
            assert reload.status_code == 202 and time.perf_counter() - started < 2.0
            during = _latencies(client, lead, 100)
            deadline = time.monotonic() + 20
            while (
                client.get("/readyz").json()["store_reachable"] is not False and time.monotonic() < deadline
            ):
                time.sleep(0.2)
            status = client.get("/readyz")
            assert status.status_code == 200  # still serving
            assert status.json()["store_reachable"] is False and "does not exist" in status.json()["problem"]
            assert not database.exists()  # never recreated
            after = _latencies(client, lead, 100)
            p99 = float(np.percentile(before, 99))
            assert float(np.percentile(during, 99)) < 2 * p99 + 0.05
            assert float(np.percentile(after, 99)) < 2 * p99 + 0.05

            # the store comes back, replaced: same version number, another registration
            (tmp_path / "away.db").rename(database)
            loaded_at = client.get("/readyz").json()["model_loaded_at"]
            connection = sqlite3.connect(database)
            connection.execute("UPDATE model_versions SET creation_time = creation_time + 1")
            connection.commit()
            connection.close()
            client.post("/reload")
            deadline = time.monotonic() + 30
            while (
                client.get("/readyz").json()["model_loaded_at"] == loaded_at and time.monotonic() < deadline
            ):
                time.sleep(0.3)
            final = client.get("/readyz").json()
            assert final["store_reachable"] and final["model_loaded_at"] != loaded_at
    finally:
        stop_server(server)


def _serve_and_wait(command: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def _port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("fault", ["unknown-model", "missing-store", "dead-server", "hanging-server"])
def test_start_up_faults_exit_fast_with_a_message(
    trained_model: TrainedModel, tmp_path: Path, fault: str
) -> None:
    port = free_port()
    env = base_env(trained_model, LEADSCORE_STARTUP_TIMEOUT_SECONDS="8")
    expected = "leadscore"
    listener = None
    if fault == "unknown-model":
        env["LEADSCORE_MODEL_NAME"] = expected = "nonexistent"
    elif fault == "missing-store":
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'gone' / 'mlflow.db'}"
        expected = "does not exist"
    elif fault == "dead-server":
        env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{free_port()}"
    else:  # accepts connections, never answers
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        command = [str(Path(sys.executable).with_name("leadscore")), "serve", "--port", str(port)]
        if not Path(command[0]).exists():
            command = [bentoml_executable(), "serve", SERVICE, "--port", str(port)]
        code, output, elapsed = _serve_and_wait(command, env, tmp_path)
    finally:
        if listener is not None:
            listener.close()
    assert code != 0, output[-2000:]
    assert elapsed < 30, elapsed
    assert expected in output, output[-2000:]
    assert "Traceback" not in output, output[-2000:]
    assert _port_is_closed(port)
    if fault == "missing-store":
        assert not (tmp_path / "gone").exists()


def test_serve_honours_the_environment(trained_model: TrainedModel, tmp_path: Path) -> None:
    """``LEADSCORE_MODEL_NAME=x leadscore serve`` serves (or refuses) x, not the default model."""
    executable = Path(sys.executable).with_name("leadscore")
    if not executable.exists():
        pytest.skip("the leadscore command is not installed next to this Python")
    env = base_env(trained_model, LEADSCORE_MODEL_NAME="other-model", LEADSCORE_STARTUP_TIMEOUT_SECONDS="8")
    code, output, _ = _serve_and_wait([str(executable), "serve", "--port", str(free_port())], env, tmp_path)
    assert code != 0 and "other-model" in output
    shutil.rmtree(tmp_path, ignore_errors=True)
