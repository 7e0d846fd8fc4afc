"""The batch process: large requests answered in a child process with the worker's own answer.

* the child's function (run here) gives the very bytes the worker's path gives: scores, 413, 422, and
  a schema failure handed back for BentoML's own 400;
* a real child (spawned): starts with the first large request (answered by the worker meanwhile),
  then answers with the same bytes, follows a new model at once, is replaced when it dies, and ends
  with its worker even when the worker is killed outright (Linux).
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from starlette.responses import Response

from leadscore.serving import answers, engine
from leadscore.serving.batch_process import BatchProcess, ChildAnswer, ModelReference, answer_in_child
from leadscore.serving.schemas import RecordsRequest, ScoreRequest
from leadscore.serving.settings import ServingSettings
from tests.serving.serving_support import TrainedModel

SETTINGS = ServingSettings(api_keys=("k" * 20,), max_batch=40)


@pytest.fixture(scope="module")
def loaded(champion: engine.LoadedModel) -> engine.LoadedModel:
    """The champion as the worker loads it: read from the registered version's local file."""
    return champion


def worker_answer(loaded: engine.LoadedModel, body: bytes) -> tuple[int, bytes]:
    """What the worker's own path answers for ``body`` (status, JSON bytes)."""
    answer = answers.answer_score(loaded, ScoreRequest.model_validate_json(body), SETTINGS)
    if isinstance(answer, Response):
        return answer.status_code, bytes(answer.body)
    return 200, answer.model_dump_json().encode()


def body_of(leads: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps({"leads": leads, **extra}).encode()


# --- the child's function, run here -------------------------------------------------------------------
def test_the_child_function_answers_with_the_worker_s_bytes(
    loaded: engine.LoadedModel, trained_model: TrainedModel
) -> None:
    reference = ModelReference.of(loaded)
    assert reference is not None and Path(reference.model_file).is_file()
    good = body_of(trained_model.batch(30), top_k=3)
    bad_date = trained_model.batch(5)
    bad_date[3] = dict(bad_date[3], created_at="yesterday-ish")
    too_many = body_of(trained_model.batch(41), explain=False)
    closed = [dict(lead, converted_at=lead["created_at"]) for lead in trained_model.batch(3)]
    converted = body_of(closed)  # converted leads are not open: no score, no tier
    for body, status in ((good, 200), (body_of(bad_date), 422), (too_many, 413), (converted, 200)):
        child = answer_in_child("score", body, reference, SETTINGS)
        assert (child.status, child.body) == worker_answer(loaded, body) and child.status == status
    assert answer_in_child("score", converted, reference, SETTINGS).tiers == (None, None, None)
    scored = json.loads(answer_in_child("score", good, reference, SETTINGS).body)
    assert scored["model_version"] == loaded.version and len(scored["results"]) == 30
    child = answer_in_child("score", good, reference, SETTINGS)
    assert child.scores == tuple(r["score"] for r in scored["results"])
    assert child.tiers == tuple(r["tier"] for r in scored["results"])


def test_a_body_that_fails_the_schema_is_handed_back_for_bentoml_s_own_400(
    loaded: engine.LoadedModel, trained_model: TrainedModel
) -> None:
    reference = ModelReference.of(loaded)
    assert reference is not None
    for body in (b"{", body_of(trained_model.batch(2), top_k="three"), b'{"records": 5}'):
        for endpoint in ("score", "score-records"):
            child = answer_in_child(endpoint, body, reference, SETTINGS)  # type: ignore[arg-type]
            assert child == ChildAnswer(status=400, body=b"", invalid_body=True)
    records = RecordsRequest.model_validate({"records": [{"Lead Number": "1"}]}).model_dump_json()
    child = answer_in_child("score-records", records.encode(), reference, SETTINGS)
    assert child.status == 422  # a model on the native event features takes no export records


def test_a_model_not_read_from_a_file_stays_with_the_worker(loaded: engine.LoadedModel) -> None:
    unfiled = engine.LoadedModel(loaded.model, loaded.name, loaded.version, 0.0)
    assert ModelReference.of(unfiled) is None
    process = BatchProcess(niceness=0)
    assert asyncio.run(process.answer("score", b"{}", unfiled, SETTINGS)) is None
    assert process.status() == {"batch_process": "not_started", "batch_process_version": None}


@pytest.mark.slow
def test_a_child_that_cannot_read_the_model_is_not_restarted_on_every_request(
    loaded: engine.LoadedModel, tmp_path: Path
) -> None:
    missing = str(tmp_path / "gone")
    gone = engine.LoadedModel(loaded.model, loaded.name, loaded.version, 0.0, model_file=missing)
    process = BatchProcess(niceness=0, restart_after_seconds=3600)
    try:
        assert asyncio.run(process.answer("score", b"{}", gone, SETTINGS)) is None  # starts it
        _wait(lambda: process.status()["batch_process"] == "not_started", "the failed start")
        assert asyncio.run(process.answer("score", b"{}", gone, SETTINGS)) is None
        assert process.status()["batch_process"] == "not_started" and process.child_pid is None
    finally:
        process.close()


# --- a real child -------------------------------------------------------------------------------------
def _wait(condition: Any, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def batch_process() -> Iterator[BatchProcess]:
    process = BatchProcess(niceness=0, restart_after_seconds=0)
    try:
        yield process
    finally:
        process.close()


@pytest.mark.slow
def test_a_real_child_answers_like_the_worker_follows_reloads_and_is_replaced_when_it_dies(
    batch_process: BatchProcess, loaded: engine.LoadedModel, trained_model: TrainedModel, tmp_path: Path
) -> None:
    body = body_of(trained_model.batch(25), top_k=2)
    expected = worker_answer(loaded, body)

    def ask(model: engine.LoadedModel = loaded) -> ChildAnswer | None:
        return asyncio.run(batch_process.answer("score", body, model, SETTINGS))

    assert ask() is None  # the first large request starts the child; the worker answers it
    assert batch_process.status()["batch_process"] in ("starting", "ready")
    _wait(lambda: batch_process.ready, "the batch process to read the model")
    assert batch_process.status() == {"batch_process": "ready", "batch_process_version": loaded.version}
    child = ask()
    assert child is not None and (child.status, child.body) == expected and batch_process.answered == 1

    # a reload hands the child the new version before the next batch; answers carry the worker's version
    newer_file = tmp_path / "model.pkl"
    newer_file.write_bytes(Path(loaded.model_file).read_bytes())
    newer = engine.LoadedModel(loaded.model, loaded.name, "99", 0.0, model_file=str(newer_file))
    batch_process.follow(newer)
    assert batch_process.status()["batch_process_version"] != "99"  # the worker answers until it is read
    _wait(lambda: batch_process.status()["batch_process_version"] == "99", "the child to read version 99")
    child = ask(newer)
    assert child is not None and json.loads(child.body)["model_version"] == "99"
    assert ask() is None  # a request begun on the old model is answered by the worker, with that model

    # killed while idle: /readyz says so, a reload does not fail, and a large request starts a new one
    pid = batch_process.child_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: batch_process.status()["batch_process"] == "not_started", "the dead child to be noticed")
    batch_process.follow(loaded)  # a reload meanwhile: nothing to follow, and no error
    assert ask() is None  # the worker answers it, and a new child starts
    _wait(lambda: batch_process.ready, "a new batch process")
    child = ask()
    assert child is not None and (child.status, child.body) == expected

    # killed with requests in flight and queued behind it: they go back to the worker
    pid = batch_process.child_pid
    assert pid is not None

    # eight requests of the largest batch the settings allow: the kill lands while some are in flight
    large = body_of(trained_model.batch(40), top_k=2)
    large_expected = worker_answer(loaded, large)

    async def eight_then_kill() -> list[ChildAnswer | None]:
        asking = [batch_process.answer("score", large, loaded, SETTINGS) for _ in range(8)]
        asked = [asyncio.ensure_future(request) for request in asking]
        await asyncio.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        return list(await asyncio.gather(*asked))

    answered = asyncio.run(eight_then_kill())
    assert None in answered and all(a is None or (a.status, a.body) == large_expected for a in answered)
    _wait(lambda: batch_process.status()["batch_process"] == "not_started", "the second death")
    assert ask() is None  # (starts a third child, which close() below ends while it is starting)

    pid = batch_process.child_pid
    assert pid is not None
    batch_process.close()
    _wait(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", "close", timeout=30)
    assert ask() is None


ORPHAN_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from types import SimpleNamespace
    from leadscore.serving.batch_process import BatchProcess
    loaded = SimpleNamespace(name="m", version="1", identity="", model_file=sys.argv[1])
    process = BatchProcess(niceness=0)
    process.start(loaded)
    deadline = time.monotonic() + 90
    while not process.ready:
        if time.monotonic() > deadline:
            print("never ready", flush=True)
            sys.exit(1)
        time.sleep(0.1)
    print(process.child_pid, flush=True)
    time.sleep(600)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_the_child_ends_when_its_worker_is_killed_outright(loaded: engine.LoadedModel) -> None:
    worker = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT, loaded.model_file], stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None
        ready, _, _ = select.select([worker.stdout], [], [], 120)
        assert ready, "the script never reported its child"
        line = worker.stdout.readline()
        assert line.strip().isdigit(), line
        child_pid = int(line)
        assert psutil.pid_exists(child_pid)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        _wait(
            lambda: not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == "zombie",
            "the orphaned child to end",
            timeout=15,
        )
    finally:
        worker.kill()
