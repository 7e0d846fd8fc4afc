"""Deny by default, fixed route labels, documented error bodies, strict inputs (ASGI level and units)."""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from leadscore.serving.middleware import API_PATHS, GuardMiddleware
from leadscore.serving.settings import ServingSettings
from tests.serving.serving_support import API_KEY, TrainedModel

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

AUTH = {"X-API-Key": API_KEY}


def test_every_route_in_the_openapi_document_needs_a_key_unless_listed_open(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadscore.serving.service import OPEN_PREFIXES, OPEN_ROUTES

    # BentoML's /metrics collector reads the multi-process folder that `bentoml serve` sets up; without
    # it the route raises before answering and BentoML's timeout middleware holds the 500 for its whole
    # 60 s request timeout. An empty folder lets it render here (the real server's test reads its own).
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    spec = client.get("/docs.json").json()
    assert spec["paths"], "the document lists the routes"
    checked = 0
    for path, operations in spec["paths"].items():
        for method in operations:
            if method.upper() not in ("GET", "POST", "PUT", "DELETE", "PATCH"):
                continue
            response = client.request(method.upper(), path)
            is_open = path in OPEN_ROUTES or path.startswith(OPEN_PREFIXES)
            if is_open:
                assert response.status_code != 401, (method, path)
            else:
                assert response.status_code == 401, (method, path, response.status_code)
                assert response.json()["error"] == "unauthorized"
            checked += 1
    assert checked >= len(API_PATHS)
    # routes outside the document are denied too
    for path in ("/metrics", "/schema.json"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers=AUTH).status_code == 200, path
    for path in OPEN_ROUTES:
        assert client.get(path).status_code in (200, 503), path


def test_unknown_paths_are_404_json_under_one_metrics_label(client: TestClient) -> None:
    from prometheus_client import REGISTRY

    def other() -> float:
        return (
            REGISTRY.get_sample_value(
                "leadscore_requests_total", {"endpoint": "other", "outcome": "not_found"}
            )
            or 0.0
        )

    before = other()
    for path in ("/nope", "/a/b/c", "/jane.doe@example.com", "/score/extra"):
        response = client.get(path, headers=AUTH)
        assert response.status_code == 404
        assert set(response.json()) == {"error", "message", "problems"}
        assert response.json()["error"] == "not_found"
    assert other() == before + 4


def test_readyz_reports_the_live_version_and_the_store(client: TestClient) -> None:
    payload = client.get("/readyz").json()
    assert payload["ready"] is True and payload["model_version"]
    assert payload["store_reachable"] is True and payload["problem"] is None


def test_true_is_not_a_number(client: TestClient, trained_model: TrainedModel) -> None:
    lead = dict(trained_model.lead(0), employee_count=True)
    response = client.post("/score", json={"leads": [lead]}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "leads[0].employee_count"
    counts = dict(trained_model.lead(0))
    counts["engagement_counts"] = [
        {"activity_type": "page_view", "count": True, "last_at": counts["created_at"]}
    ]
    assert client.post("/score", json={"leads": [counts]}, headers=AUTH).status_code == 422


def test_numeric_lead_ids_are_kept_or_refused_never_rewritten(
    client: TestClient, trained_model: TrainedModel
) -> None:
    lead = trained_model.lead(0)
    text = json.dumps({"leads": [dict(lead, lead_id="PLACEHOLDER")]})
    kept = client.post(
        "/score",
        content=text.replace('"PLACEHOLDER"', "12345678901234567890"),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert kept.status_code == 200 and kept.json()["results"][0]["lead_id"] == "12345678901234567890"
    for literal in ("1e3", "12.0"):
        refused = client.post(
            "/score",
            content=text.replace('"PLACEHOLDER"', literal),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert refused.status_code == 422, literal
        assert refused.json()["problems"][0]["field"] == "leads[0].lead_id"


def test_explain_problems_name_the_lead_field(client: TestClient, trained_model: TrainedModel) -> None:
    lead = dict(trained_model.lead(0), created_at="2999-01-01T00:00:00Z")
    response = client.post("/explain", json={"lead": lead}, headers=AUTH)
    assert response.status_code == 422
    fields = [p["field"] for p in response.json()["problems"]]
    assert "lead.created_at" in fields and not any(f.startswith("leads[") for f in fields)


def test_events_over_the_limit_are_413_naming_the_field(
    client: TestClient, trained_model: TrainedModel
) -> None:
    lead = trained_model.lead(0)
    lead["engagement_counts"] = [
        {"activity_type": "email_open", "count": 1500, "last_at": lead["created_at"]},
        {"activity_type": "email_open", "count": 1500, "last_at": lead["created_at"]},
    ]  # 3,000 > 2,000 (LEADSCORE_MAX_EVENTS_PER_LEAD in these tests)
    response = client.post("/score", json={"leads": [lead]}, headers=AUTH)
    assert response.status_code == 413
    problem = response.json()["problems"][0]
    assert (
        problem["field"] == "leads[0].engagement_counts"
        and "LEADSCORE_MAX_EVENTS_PER_LEAD" in problem["problem"]
    )


# --- units: the middleware alone ------------------------------------------------------------------


def _call(
    guard: GuardMiddleware, path: str, headers: list[tuple[bytes, bytes]], client: str = "10.0.0.1"
) -> tuple[int, dict[str, Any], dict[bytes, bytes]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "method": "POST", "headers": headers, "client": (client, 1)}
    asyncio.run(guard(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(start["status"]), json.loads(body), dict(start["headers"])


def _guard(app: Any = None, **settings: Any) -> GuardMiddleware:
    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    values = {"api_keys": (API_KEY,), **settings}
    return GuardMiddleware(app or ok, ServingSettings(**values))


def test_wrong_keys_are_rate_limited_per_address() -> None:
    guard = _guard(auth_failures_per_minute=3)
    wrong = [(b"x-api-key", b"wrong-key-aaaaaaaaaaaaaaa")]
    right = [(b"x-api-key", API_KEY.encode())]
    assert [_call(guard, "/reload", wrong)[0] for _ in range(3)] == [401, 401, 401]
    status, body, headers = _call(guard, "/reload", right)
    assert status == 429 and body["error"] == "too_many_requests" and int(headers[b"retry-after"]) >= 1
    assert _call(guard, "/reload", right, client="10.0.0.2")[0] == 200  # other addresses unaffected
    assert _call(guard, "/reload", [])[0] == 429


def test_saturation_is_503_with_retry_after() -> None:
    guard = _guard(max_concurrency=1)
    guard.in_flight = 1  # one request already in progress
    status, body, headers = _call(guard, "/reload", [(b"x-api-key", API_KEY.encode())])
    assert status == 503 and body["error"] == "unavailable" and headers[b"retry-after"] == b"1"


def test_a_timeout_from_inside_is_the_documented_json() -> None:
    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 504, "headers": []})
        await send({"type": "http.response.body", "body": b'{"error": "timeout: Request timed out"}'})

    status, body, _ = _call(_guard(slow), "/score", [(b"x-api-key", API_KEY.encode())])
    assert status == 504 and set(body) == {"error", "message", "problems"} and body["error"] == "timeout"


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-api-key", API_KEY.encode()), (b"x-api-key", API_KEY.encode())],
        [(b"x-api-key", API_KEY.encode()), (b"authorization", b"Bearer " + API_KEY.encode())],
        [(b"x-api-key", API_KEY.encode() + b"," + API_KEY.encode())],
    ],
    ids=["two-headers", "header-and-bearer", "comma-list"],
)
def test_one_key_per_request(headers: list[tuple[bytes, bytes]]) -> None:
    assert _call(_guard(auth_failures_per_minute=100), "/reload", headers)[0] == 401
