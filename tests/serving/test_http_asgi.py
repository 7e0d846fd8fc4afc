"""Level 2: the BentoML service's ASGI app (middleware included) through starlette's TestClient."""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from tests.serving.serving_support import API_KEY, OTHER_KEY, TrainedModel

with warnings.catch_warnings():  # starlette suggests httpx2 for its TestClient
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

# ``client`` (conftest): one ASGI app per session, limits 50 leads and 1 MB per request.

AUTH = {"X-API-Key": API_KEY}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def lead(trained_model: TrainedModel) -> dict[str, Any]:
    return trained_model.lead(0)


def post(client: TestClient, body: Any, *, path: str = "/score", headers: dict | None = None):
    return client.post(path, json=body, headers={**AUTH, **(headers or {})})


def problems_of(response) -> dict[str, dict[str, Any]]:
    payload = response.json()
    assert set(payload) == {"error", "message", "problems"}
    return {p["field"]: p for p in payload["problems"]}


# --- health, docs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/livez", "/healthz", "/readyz"])
def test_health_endpoints_are_open(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_openapi_describes_every_field_and_the_errors(client: TestClient) -> None:
    spec = client.get("/docs.json").json()
    schemas = spec["components"]["schemas"]
    ours = [
        "RawLead",
        "Activity",
        "EngagementCount",
        "ScoredLead",
        "Reason",
        "NextBestAction",
        "ScoreRequestIODescriptor",
        "ScoreResponseIODescriptor",
        "ExplainRequestIODescriptor",
        "ExplainResponseIODescriptor",
        "ReloadAcceptedIODescriptor",
        "ErrorResponse",
        "Problem",
    ]
    for name in ours:
        for field, prop in schemas[name]["properties"].items():
            assert prop.get("description"), f"{name}.{field} has no description"
    assert set(spec["components"]["securitySchemes"]) == {"ApiKeyHeader", "BearerKey"}
    for path in ("/score", "/explain", "/reload"):
        operation = spec["paths"][path]["post"]
        ok = "202" if path == "/reload" else "200"
        assert {ok, "400", "401", "413", "415", "422"} <= set(operation["responses"])
        assert operation["security"]


# --- authentication ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "wrong"},
        {"X-API-Key": API_KEY[:-1]},
        {"Authorization": f"Basic {API_KEY}"},
        {"Authorization": "Bearer"},
    ],
)
def test_without_a_valid_key_401(client: TestClient, lead: dict, headers: dict) -> None:
    response = client.post("/score", json={"leads": [lead]}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "headers",
    [{"X-API-Key": API_KEY}, {"X-API-Key": OTHER_KEY}, {"Authorization": f"Bearer {API_KEY}"}],
)
def test_with_a_valid_key_200(client: TestClient, lead: dict, headers: dict) -> None:
    response = client.post("/score", json={"leads": [lead]}, headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/explain", "/reload"])
def test_every_api_route_needs_a_key(client: TestClient, path: str) -> None:
    assert client.post(path, json={}).status_code == 401


# --- transport-level errors --------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"{bad", b'{"leads": [', b"\xff\xfe", b'{"leads": [{"lead_id": "a",}]}'])
def test_malformed_json_is_400(client: TestClient, raw: bytes) -> None:
    response = client.post("/score", content=raw, headers={**AUTH, **JSON})
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", None]
)
def test_wrong_content_type_is_415(client: TestClient, lead: dict, content_type: str | None) -> None:
    headers = dict(AUTH)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/score", content=json.dumps({"leads": [lead]}), headers=headers)
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


def test_empty_body_needs_no_content_type(client: TestClient) -> None:
    assert client.post("/reload", headers=AUTH).status_code == 202

    def chunked() -> Iterator[bytes]:
        yield b'{"leads": []}'

    response = client.post("/score", content=chunked(), headers=AUTH)  # a body without a type
    assert response.status_code == 415


def test_json_with_charset_is_fine(client: TestClient, lead: dict) -> None:
    headers = {**AUTH, "Content-Type": "application/json; charset=utf-8"}
    assert client.post("/score", content=json.dumps({"leads": [lead]}), headers=headers).status_code == 200


def test_batch_above_the_limit_is_413(client: TestClient, lead: dict) -> None:
    leads = [dict(lead, lead_id=f"id-{i}", activities=[]) for i in range(51)]  # limit is 50 here
    response = post(client, {"leads": leads})
    assert response.status_code == 413
    assert "LEADSCORE_MAX_BATCH" in response.json()["message"]


def test_body_above_the_limit_is_413(client: TestClient) -> None:
    big = b'{"leads": [], "pad": "' + b"x" * (2 * 2**20) + b'"}'  # limit is 1 MB here
    response = client.post("/score", content=big, headers={**AUTH, **JSON})
    assert response.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: read bounded
        yield b'{"pad": "'
        for _ in range(40):
            yield b"x" * 2**16
        yield b'"}'

    response = client.post("/score", content=chunks(), headers={**AUTH, **JSON})
    assert response.status_code == 413


def test_get_on_an_api_route_is_405(client: TestClient) -> None:
    response = client.get("/score", headers=AUTH)
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


# --- 422: every bad field named, with its lead -------------------------------------------------------


def _set(lead: dict, path: str, value: Any) -> dict:
    target = lead
    *parents, leaf = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is _DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return lead


_DELETE = object()
COUNT = {"activity_type": "page_view", "page_category": "pricing", "last_at": "2025-12-01T00:00:00"}

BAD_FIELDS = [
    ("employee_count", -5, "employee_count", "greater than or equal to 0"),
    ("annual_revenue", "lots", "annual_revenue", "valid number"),
    ("created_at", _DELETE, "created_at", "Field required"),
    ("created_at", "2999-01-01T00:00:00Z", "created_at", "future"),
    ("created_at", "yesterday-ish", "created_at", "not a valid ISO 8601 timestamp"),
    ("activities.0.activity_type", "telepathy", "activities[0].activity_type", "'page_view'"),
    ("activities.0.timestamp", "2999-01-01T00:00:00+00:00", "activities[0].timestamp", "future"),
    (
        "activities.0.timestamp",
        "2001-01-01T00:00:00",
        "activities[0].timestamp",
        "before the lead was created",
    ),
    (
        "engagement_counts",
        [dict(COUNT, count=-1)],
        "engagement_counts[0].count",
        "greater than or equal to 0",
    ),
    ("engagement_counts", [dict(COUNT, count=2.5)], "engagement_counts[0].count", "valid integer"),
    ("as_of", "not-a-date", "as_of", "not a valid ISO 8601 timestamp"),
]


@pytest.mark.parametrize(
    ("path", "value", "field", "message"), BAD_FIELDS, ids=[b[2] + "-" + b[3][:12] for b in BAD_FIELDS]
)
def test_bad_fields_are_422_naming_field_and_lead(
    client: TestClient, trained_model: TrainedModel, path: str, value: Any, field: str, message: str
) -> None:
    # three leads whose middle one has an activity to break
    middle = next(i for i, lead in enumerate(trained_model.leads) if i and lead["activities"])
    leads = trained_model.batch(3, start=middle - 1)
    leads[1] = _set(leads[1], path, value)
    response = post(client, {"leads": leads})
    assert response.status_code == 422, response.text
    problems = problems_of(response)
    problem = problems[f"leads[1].{field}"]
    assert message in problem["problem"]
    assert problem["lead_index"] == 1 and problem["lead_id"] == leads[1]["lead_id"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_inf_are_422(client: TestClient, lead: dict, literal: bytes) -> None:
    text = json.dumps({"leads": [dict(lead, employee_count=0)]}).encode()
    text = text.replace(b'"employee_count": 0', b'"employee_count": ' + literal)
    response = client.post("/score", content=text, headers={**AUTH, **JSON})
    assert response.status_code == 422, response.text
    assert "finite" in problems_of(response)["leads[0].employee_count"]["problem"]


def test_several_problems_reported_at_once(client: TestClient, trained_model: TrainedModel) -> None:
    leads = trained_model.batch(4)
    leads[0]["activities"].append({"timestamp": "2999-01-01T00:00:00", "activity_type": "page_view"})
    leads[2]["lead_id"] = leads[3]["lead_id"]
    response = post(client, {"leads": leads})
    assert response.status_code == 422
    fields = set(problems_of(response))
    assert f"leads[0].activities[{len(leads[0]['activities']) - 1}].timestamp" in fields
    assert {"leads[2].lead_id", "leads[3].lead_id"} <= fields


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "leads"),
        ({"leads": []}, "leads"),
        ({"leads": "x"}, "leads"),
        ({"leads": [{}], "top_k": -1}, "top_k"),
    ],
)
def test_wrong_shapes_are_422(client: TestClient, body: dict, field: str) -> None:
    response = post(client, body)
    assert response.status_code == 422
    assert field in problems_of(response)


# --- happy paths -------------------------------------------------------------------------------------


def test_score_happy_path(client: TestClient, trained_model: TrainedModel) -> None:
    leads = trained_model.batch(20)
    response = post(client, {"leads": leads, "explain": True, "top_k": 3})
    assert response.status_code == 200
    payload = response.json()
    assert [r["lead_id"] for r in payload["results"]] == [lead["lead_id"] for lead in leads]
    for result in payload["results"]:
        assert 0 < result["probability"] < 1 and 0 <= result["score"] <= 100
        assert result["tier"] in ("sales_ready", "marketing_qualified", "nurture", "not_a_fit")
        assert len(result["grade"]) == 2
        assert len(result["reasons_positive"]) <= 3 and len(result["reasons_negative"]) <= 3
        for reason in result["reasons_positive"] + result["reasons_negative"]:
            assert {"concept", "sentence", "impact", "family"} == set(reason)
        assert result["model_name"] == "leadscore" and result["model_version"]


def test_unknown_category_is_accepted_and_scored(client: TestClient, lead: dict) -> None:
    odd = dict(
        lead,
        channel="carrier_pigeon",
        industry="asteroid_mining",
        country="ZZ",
        seniority="wizard",
        first_name="ignored",
        crm_custom_field=42,
    )
    odd["activities"] = [dict(a, page_category="brand-new-page") for a in odd["activities"]]
    response = post(client, {"leads": [odd]})
    assert response.status_code == 200, response.text
    assert math.isfinite(response.json()["results"][0]["probability"])


def test_explain_endpoint(client: TestClient, lead: dict, trained_model: TrainedModel) -> None:
    response = post(client, {"lead": lead}, path="/explain")
    assert response.status_code == 200
    payload = response.json()
    assert payload["score"]["lead_id"] == lead["lead_id"]
    assert len(payload["contributions"]) > 10
    rep_actions = {"Call the lead", "Send a personal e-mail", "Book a meeting"}
    ready = 0
    for i in range(60):  # a sales-ready lead gets a rep's sales actions; the others only where contact helps
        payload = post(client, {"lead": trained_model.lead(i)}, path="/explain").json()
        labels = {a["label"] for a in payload["next_best_actions"]}
        assert labels <= rep_actions
        if payload["score"]["tier"] == "sales_ready":
            ready += bool(labels)
        elif "reach out now" not in str(payload["score"]["follow_up"]) and "short call" not in str(
            payload["score"]["follow_up"]
        ):
            assert not labels, payload["score"]["follow_up"]
    assert ready >= 1


def test_reload_endpoint_answers_at_once(client: TestClient) -> None:
    response = client.post("/reload", headers=AUTH)
    assert response.status_code == 202
    payload = response.json()
    assert payload["accepted"] is True and payload["serving_version"] and payload["model_name"] == "leadscore"


def test_server_keeps_serving_after_bad_requests(client: TestClient, lead: dict) -> None:
    for raw in (b"{", b"[]", b"null", b'{"leads": null}', b'"x"', b"1e999"):
        assert client.post("/score", content=raw, headers={**AUTH, **JSON}).status_code in (400, 422)
    assert post(client, {"leads": [lead]}).status_code == 200


def test_unexpected_errors_are_500_json_without_details(
    client: TestClient, lead: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadscore.serving import engine

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(engine, "score_prepared", broken)
    monkeypatch.setattr(engine, "score_one_fast", broken)
    monkeypatch.setattr(engine, "score_many_fast", broken)
    response = post(client, {"leads": [lead, dict(lead, lead_id="another")]})
    assert response.status_code == 500
    response = post(client, {"leads": [lead]})
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "secret" not in response.text and "Traceback" not in response.text
    monkeypatch.undo()
    assert post(client, {"leads": [lead]}).status_code == 200


def test_requests_are_counted_by_outcome(client: TestClient, lead: dict) -> None:
    from prometheus_client import REGISTRY

    def count(outcome: str) -> float:
        labels = {"endpoint": "/score", "outcome": outcome}
        return REGISTRY.get_sample_value("leadscore_requests_total", labels) or 0.0

    before = {o: count(o) for o in ("ok", "unauthorized", "invalid_request", "malformed_json")}
    post(client, {"leads": [lead]})
    client.post("/score", json={"leads": [lead]})
    post(client, {"leads": []})
    client.post("/score", content=b"{", headers={**AUTH, **JSON})
    for outcome in before:
        assert count(outcome) == before[outcome] + 1, outcome
    assert (REGISTRY.get_sample_value("leadscore_score_count") or 0) > 0


def test_logs_carry_no_personal_data(
    client: TestClient, lead: dict, caplog: pytest.LogCaptureFixture
) -> None:
    secret_id = "L-PRIVATE-7731"
    email = "jane.private@example.org"
    good = dict(lead, lead_id=secret_id, email=email, job_title="Chief Secret Officer")
    bad = dict(good, employee_count=-1)
    future = dict(good)
    future["activities"] = [{"timestamp": "2999-01-01T00:00:00", "activity_type": "page_view"}]
    with caplog.at_level(logging.DEBUG):
        assert post(client, {"leads": [good]}).status_code == 200
        assert post(client, {"leads": [bad]}).status_code == 422
        assert post(client, {"leads": [future]}).status_code == 422
        assert post(client, {"lead": good}, path="/explain").status_code == 200
    text = caplog.text
    for private in (secret_id, email, "Chief Secret Officer", "jane.private"):
        assert private not in text


def test_a_large_batch_is_validated_off_the_event_loop_with_the_same_errors(
    client: TestClient, trained_model: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bodies above INLINE_PARSE_BYTES are validated on a worker thread (the batch process off): a bad
    field deep in a large batch is still a 422 naming the field and the lead, and a good batch scores."""
    from leadscore.serving import batch_threads
    from leadscore.serving.batch_threads import INLINE_PARSE_BYTES

    monkeypatch.setattr(batch_threads, "_keep_large_bodies_raw", [False])  # the worker's own path

    leads = trained_model.batch(45)
    assert len(json.dumps({"leads": leads})) > INLINE_PARSE_BYTES
    good = post(client, {"leads": leads, "explain": False})
    assert good.status_code == 200 and len(good.json()["results"]) == 45
    leads[40] = dict(leads[40], created_at="yesterday-ish")
    bad = post(client, {"leads": leads})
    assert bad.status_code == 422, bad.text
    problem = problems_of(bad)["leads[40].created_at"]
    assert "ISO 8601" in problem["problem"] and problem["lead_id"] == leads[40]["lead_id"]


@pytest.mark.slow
def test_large_requests_are_answered_by_the_batch_process_as_the_worker_would(
    client: TestClient, trained_model: TrainedModel
) -> None:
    """With the batch process up, a large batch is answered there: the same bytes the worker's own path
    gives, the same 422 naming a bad field, the same 400/422 for a body that fails the schema, and
    ``/readyz`` says which version the child has read."""
    import time

    from leadscore.serving import answers, state
    from leadscore.serving.batch_threads import INLINE_PARSE_BYTES
    from leadscore.serving.schemas import ScoreRequest

    process, holder = state.BATCH_PROCESS, state.HOLDER
    assert process is not None, "the batch process is on by default"
    process.start(holder.current)
    deadline = time.monotonic() + 90
    while not process.ready and time.monotonic() < deadline:
        time.sleep(0.1)
    ready = client.get("/readyz").json()
    assert ready["batch_process"] == "ready" and ready["batch_process_version"] == ready["model_version"]

    leads = trained_model.batch(45)
    body = {"leads": leads, "top_k": 2}
    assert len(json.dumps(body)) > INLINE_PARSE_BYTES
    before = process.answered
    response = post(client, body)
    assert response.status_code == 200 and process.answered == before + 1
    own = answers.answer_score(holder.current, ScoreRequest.model_validate(body), holder.settings)
    assert response.content == own.model_dump_json().encode()  # type: ignore[union-attr]

    leads[40] = dict(leads[40], created_at="yesterday-ish")  # breaks the data contract: the child's 422
    bad = post(client, {"leads": leads})
    assert bad.status_code == 422 and process.answered == before + 2
    assert problems_of(bad)["leads[40].created_at"]["lead_id"] == leads[40]["lead_id"]
    leads[40] = dict(leads[40], employee_count={"not": "a number"})  # fails the schema: parsed here
    schema = post(client, {"leads": leads})
    assert schema.status_code == 422 and "leads[40].employee_count" in problems_of(schema)


def test_a_batch_answer_is_serialised_on_the_batch_thread_as_the_model_s_json(
    client: TestClient, trained_model: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's ~77 KB answer is turned into JSON on the score thread, not on the event loop, and
    the bytes sent are the response model's own JSON (what BentoML would have sent)."""
    import threading

    from leadscore.serving.schemas import ScoreResponse

    dumped: list[tuple[str, bytes]] = []
    original = ScoreResponse.model_dump_json

    def recording(self: ScoreResponse, **kwargs: Any) -> str:
        text = original(self, **kwargs)
        dumped.append((threading.current_thread().name, text.encode()))
        return text

    monkeypatch.setattr(ScoreResponse, "model_dump_json", recording)
    response = post(client, {"leads": trained_model.batch(5), "explain": True, "top_k": 3})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert len(dumped) == 1
    thread, body = dumped[0]
    assert thread.startswith("leadscore-score") and response.content == body
    assert len(response.json()["results"]) == 5
