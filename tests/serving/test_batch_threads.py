"""Batch work below single leads: lowered worker threads, large bodies validated off the loop."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from typing import Any

import anyio
import anyio.to_thread
import pydantic
import pytest

from leadscore.serving import batch_threads
from leadscore.serving.batch_threads import INLINE_PARSE_BYTES, parsed_off_the_event_loop
from leadscore.serving.schemas import ScoreRequest
from tests.serving.serving_support import TrainedModel


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priorities are Linux's")
def test_batch_work_runs_on_its_own_lowered_thread_and_nothing_else_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch_threads, "_niceness", [7])
    monkeypatch.setattr(batch_threads, "_pools", {})

    def priority() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    async def each() -> tuple[int, int, int, int]:
        batch = await batch_threads.run_batch_work(priority)
        other = await anyio.to_thread.run_sync(priority)  # e.g. /readyz: never lowered
        parse = await batch_threads.run_batch_work(priority, pool="parse")  # holds the GIL: not lowered
        again = await batch_threads.run_batch_work(priority)
        return batch, other, parse, again

    before = priority()
    try:
        batch, other, parse, again = asyncio.run(each())
    finally:
        for pool in ("score", "parse"):
            batch_threads.batch_pool(pool).shutdown()
    assert batch == again == max(7, before)  # raising it back would need privileges
    assert other == parse == before and priority() == before


class _Request:
    def __init__(self, body: bytes) -> None:
        self._body = body

    async def body(self) -> bytes:
        return self._body


def _json_serde() -> Any:
    from _bentoml_impl.serde import JSONSerde

    return JSONSerde()


def test_the_spec_reads_small_and_large_bodies_as_the_model_does(trained_model: TrainedModel) -> None:
    spec = parsed_off_the_event_loop(ScoreRequest)
    assert spec.__name__ == "ScoreRequestIODescriptor"
    assert spec.model_json_schema()["properties"] == ScoreRequest.model_json_schema()["properties"]
    for n in (1, 60):
        body = json.dumps({"leads": trained_model.batch(n), "top_k": 3}).encode()
        assert (len(body) > INLINE_PARSE_BYTES) == (n > 1)
        parsed = asyncio.run(spec.from_http_request(_Request(body), _json_serde()))
        assert isinstance(parsed, ScoreRequest)
        assert parsed.model_dump() == ScoreRequest.model_validate_json(body).model_dump()


def test_a_bad_large_body_raises_the_model_s_own_validation_error(trained_model: TrainedModel) -> None:
    leads = trained_model.batch(60)
    leads[59] = dict(leads[59], lead_id=1.5)
    body = json.dumps({"leads": leads}).encode()
    spec = parsed_off_the_event_loop(ScoreRequest)
    with pytest.raises(pydantic.ValidationError) as raised:
        asyncio.run(spec.from_http_request(_Request(body), _json_serde()))
    assert raised.value.errors()[0]["loc"][:3] == ("leads", 59, "lead_id")


@pytest.mark.parametrize(("raw", "expected"), [("", 10), ("0", 0), ("19", 19), ("20", None), ("2.5", None)])
def test_batch_niceness_setting_is_read_or_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: int | None
) -> None:
    from leadscore.serving.settings import ConfigurationError, ServingSettings

    monkeypatch.setenv("LEADSCORE_BATCH_NICENESS", raw)
    if expected is None:
        with pytest.raises(ConfigurationError, match="LEADSCORE_BATCH_NICENESS"):
            ServingSettings.from_env()
    else:
        assert ServingSettings.from_env().batch_niceness == expected
