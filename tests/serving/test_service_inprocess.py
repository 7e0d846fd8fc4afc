"""Level 1: the service class called in-process (no HTTP)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.responses import Response

from leadscore.features.loading import DataContractError, validate_crm_tables
from leadscore.model.pyfunc import LeadScoringPyfunc
from leadscore.model.raw_leads import prepare_leads
from leadscore.model.records import RequestInvalid
from leadscore.serving.schemas import ExplainRequest, RawLead, ScoreRequest, ScoreResponse
from leadscore.serving.settings import ConfigurationError


def make_service():  # imported lazily: the module reads the environment at import
    from leadscore.serving.service import LeadScoringService

    return LeadScoringService()


@pytest.fixture
def service(serving_env):
    return make_service()


def body(response: Response) -> dict:
    return json.loads(bytes(response.body))


def pyfunc_path_probabilities(model, leads: list[dict]) -> np.ndarray:
    """What the MLflow pyfunc computes for the same raw leads (its predict, in process)."""
    pyfunc = LeadScoringPyfunc()
    pyfunc.model = model
    return pyfunc.predict(None, pd.DataFrame(leads), {"explain": False})["probability"].to_numpy()


def test_score_matches_the_pyfunc_code_path(service, serving_env) -> None:
    leads = serving_env.batch(60)
    response = service.score_sync(ScoreRequest.model_validate({"leads": leads}))
    assert isinstance(response, ScoreResponse)
    assert [r.lead_id for r in response.results] == [lead["lead_id"] for lead in leads]
    expected = pyfunc_path_probabilities(service.holder.current.model, leads)
    np.testing.assert_allclose([r.probability for r in response.results], expected, rtol=0, atol=1e-12)
    first = response.results[0]
    assert 0 <= first.score <= 100 and first.score == pytest.approx(100 * first.probability, abs=0.051)
    assert first.grade is not None and first.grade[0] in "ABCD" and first.grade[1] in "1234"
    assert first.model_name == "leadscore" and first.model_version == response.model_version
    assert all(len(r.reasons_positive) <= 5 and len(r.reasons_negative) <= 5 for r in response.results)
    # an old silent lead scores near 0, where no reason reaches a point: judge the leads that list any
    listed = [r for result in response.results for r in (*result.reasons_positive, *result.reasons_negative)]
    assert listed and all(
        r.sentence and r.family in ("fit", "engagement", "sales", "context") for r in listed
    )


def test_explain_false_same_probability_without_reasons(service, serving_env) -> None:
    leads = serving_env.batch(10)
    full = service.score_sync(ScoreRequest.model_validate({"leads": leads}))
    fast = service.score_sync(ScoreRequest.model_validate({"leads": leads, "explain": False}))
    np.testing.assert_allclose(
        [r.probability for r in fast.results], [r.probability for r in full.results], atol=1e-12
    )
    assert all(r.grade is None and not r.reasons_positive and not r.reasons_negative for r in fast.results)


def test_top_k_limits_reasons(service, serving_env) -> None:
    response = service.score_sync(ScoreRequest.model_validate({"leads": serving_env.batch(5), "top_k": 1}))
    assert all(len(r.reasons_positive) <= 1 and len(r.reasons_negative) <= 1 for r in response.results)


def test_batch_over_the_limit_is_413(serving_env, monkeypatch) -> None:
    monkeypatch.setenv("LEADSCORE_MAX_BATCH", "3")
    response = make_service().score_sync(ScoreRequest.model_validate({"leads": serving_env.batch(4)}))
    assert isinstance(response, Response) and response.status_code == 413
    assert "LEADSCORE_MAX_BATCH" in body(response)["message"]


def test_contract_problems_are_422_naming_field_and_lead(service, serving_env) -> None:
    leads = serving_env.batch(4)
    leads[0]["activities"].append({"timestamp": "2999-01-01T00:00:00Z", "activity_type": "page_view"})
    leads[1]["activities"].append({"timestamp": "2000-01-01T00:00:00Z", "activity_type": "email_open"})
    leads[2]["lead_id"] = leads[3]["lead_id"]
    response = service.score_sync(ScoreRequest.model_validate({"leads": leads}))
    assert response.status_code == 422
    problems = {p["field"]: p for p in body(response)["problems"]}
    future = problems[f"leads[0].activities[{len(leads[0]['activities']) - 1}].timestamp"]
    assert "future" in future["problem"] and future["lead_id"] == leads[0]["lead_id"]
    early = problems[f"leads[1].activities[{len(leads[1]['activities']) - 1}].timestamp"]
    assert "before the lead was created" in early["problem"] and early["lead_index"] == 1
    assert "duplicate lead_id" in problems["leads[2].lead_id"]["problem"]
    assert "duplicate lead_id" in problems["leads[3].lead_id"]["problem"]


def test_bad_timestamps_and_as_of(service, serving_env) -> None:
    leads = serving_env.batch(3)
    leads[0]["created_at"] = "not a time"
    leads[1]["as_of"] = "2000-01-01T00:00:00"  # before the lead was created
    response = service.score_sync(
        ScoreRequest.model_validate({"leads": leads, "as_of": "3000-01-01T00:00:00Z"})
    )
    assert response.status_code == 422
    problems = {p["field"]: p["problem"] for p in body(response)["problems"]}
    assert problems["leads[0].created_at"] == "not a valid ISO 8601 timestamp"
    assert "before the lead was created" in problems["leads[1].as_of"]
    assert "future" in problems["as_of"]


def test_explain_one_lead(service, serving_env) -> None:
    # points add up to score - base wherever the score moved at least half a point from the base
    # (below that, points_from_contributions reads the local slope instead: reasons still show)
    checked = 0
    for i in range(6):
        response = service.explain_sync(ExplainRequest.model_validate({"lead": serving_env.lead(i)}))
        score = response.score
        if abs(score.score - score.base_score) < 0.5:
            continue
        total = sum(c.impact for c in response.contributions)
        assert total == pytest.approx(
            score.score - score.base_score, abs=0.1 + 0.01 * len(response.contributions)
        )
        checked += 1
    assert checked >= 3
    impacts = [abs(c.impact) for c in response.contributions]
    assert impacts == sorted(impacts, reverse=True)
    with_actions = 0
    for i in range(60):  # the rep's sales touches, best first, where the follow-up line agrees
        response = service.explain_sync(ExplainRequest.model_validate({"lead": serving_env.lead(i)}))
        uplifts = [a.uplift for a in response.next_best_actions]
        assert uplifts == sorted(uplifts, reverse=True) and len(uplifts) <= 3
        with_actions += bool(uplifts)
        if uplifts:
            assert response.score.tier == "sales_ready" or "short call" in str(response.score.follow_up)
    assert with_actions >= 1


def test_unknown_categories_are_scored_like_other_unseen_values(service, serving_env) -> None:
    lead = serving_env.lead(0)
    one, two = dict(lead, channel="carrier_pigeon"), dict(lead, channel="smoke_signals", lead_id="x2")
    response = service.score_sync(ScoreRequest.model_validate({"leads": [one, two]}))
    assert isinstance(response, ScoreResponse)
    assert response.results[0].probability == response.results[1].probability


def test_blank_text_is_missing_and_offsets_are_utc(service, serving_env) -> None:
    lead = serving_env.lead(1)
    blank = dict(lead, lead_id="blank", industry="   ")
    missing = dict(lead, lead_id="missing", industry=None)
    created = pd.Timestamp(lead["created_at"])
    shifted = dict(
        lead, lead_id="shifted", created_at=(created + pd.Timedelta(hours=2)).isoformat() + "+02:00"
    )
    response = service.score_sync(ScoreRequest.model_validate({"leads": [blank, missing, shifted, lead]}))
    p = [r.probability for r in response.results]
    assert p[0] == p[1]
    assert p[2] == p[3]


def test_engagement_counts_expand_like_events(service, serving_env) -> None:
    lead = serving_env.lead(2)
    created = pd.Timestamp(lead["created_at"])
    times = [created + pd.Timedelta(days=d) for d in (1, 5.5, 10)]
    with_events = dict(lead, lead_id="events", activities=[])
    with_events["activities"] = [
        {"timestamp": t.isoformat(), "activity_type": "page_view", "page_category": "pricing"} for t in times
    ]
    with_counts = dict(lead, lead_id="counts", activities=[])
    with_counts["engagement_counts"] = [
        {
            "activity_type": "page_view",
            "page_category": "pricing",
            "count": 3,
            "first_at": times[0].isoformat(),
            "last_at": times[-1].isoformat(),
        },
        {"activity_type": "demo_request", "count": 0, "last_at": times[0].isoformat()},
    ]
    response = service.score_sync(ScoreRequest.model_validate({"leads": [with_events, with_counts]}))
    assert response.results[0].probability == response.results[1].probability
    assert response.results[0].reasons_positive == response.results[1].reasons_positive


def test_reload_swaps_atomically(service, serving_env) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    before = service.holder.current
    new = mlflow.register_model(f"models:/leadscore/{before.version}", "leadscore")
    client.set_registered_model_alias("leadscore", "champion", new.version)
    try:
        in_flight = service.holder.current  # what a request that already started holds
        outcome = service.holder.reload()
        assert outcome.reloaded and outcome.model_version == str(new.version)
        assert outcome.previous_version == before.version
        assert service.holder.current is not in_flight and in_flight.version == before.version
        response = service.score_sync(ScoreRequest.model_validate({"leads": serving_env.batch(2)}))
        assert response.model_version == str(new.version)
        again = service.holder.reload()
        assert not again.reloaded and again.model_version == str(new.version)
    finally:
        client.set_registered_model_alias("leadscore", "champion", before.version)


def test_a_reload_freezes_the_new_model_and_frees_the_old_one(service, serving_env) -> None:
    import gc
    import weakref

    import mlflow

    client = mlflow.MlflowClient()
    before = service.holder.current
    original = before.version
    assert gc.get_freeze_count() > 0  # start-up froze the long-lived heap
    old_model = weakref.ref(before.model)
    new = mlflow.register_model(f"models:/leadscore/{before.version}", "leadscore")
    client.set_registered_model_alias("leadscore", "champion", new.version)
    try:
        del before
        assert service.holder.reload().reloaded
        gc.collect()
        assert old_model() is None  # not pinned in the frozen generation: no leak per reload
        assert gc.get_freeze_count() > 0
    finally:
        client.set_registered_model_alias("leadscore", "champion", original)
        service.holder.reload()


def test_concurrent_reloads_and_scores_do_not_fail(service, serving_env) -> None:
    request = ScoreRequest.model_validate({"leads": serving_env.batch(3)})
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                assert isinstance(service.score_sync(request), ScoreResponse)
                service.holder.reload()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_pinned_version(serving_env, monkeypatch) -> None:
    monkeypatch.setenv("LEADSCORE_MODEL_VERSION", "1")
    service = make_service()
    outcome = service.holder.reload()
    assert outcome.pinned and not outcome.reloaded and outcome.model_version == "1"


def test_refuses_to_start_without_keys(serving_env, monkeypatch) -> None:
    monkeypatch.delenv("LEADSCORE_API_KEYS")
    with pytest.raises(ConfigurationError, match="LEADSCORE_ALLOW_NO_AUTH"):
        make_service()
    monkeypatch.setenv("LEADSCORE_ALLOW_NO_AUTH", "true")
    assert make_service().holder.ready


def test_keys_file(serving_env, monkeypatch, tmp_path) -> None:
    from leadscore.serving.settings import ServingSettings

    path = tmp_path / "keys"
    path.write_text("# rotated 2025-01\nfile-key-aaaaaaaaaaaaaaaaaaaa\n\n")
    monkeypatch.delenv("LEADSCORE_API_KEYS")
    monkeypatch.setenv("LEADSCORE_API_KEYS_FILE", str(path))
    assert ServingSettings.from_env().api_keys == ("file-key-aaaaaaaaaaaaaaaaaaaa",)


# --- the vectorised contract checks agree with the contract validator ---------------------------

NOW = pd.Timestamp("2026-01-01T00:00:00")
# whole microseconds: API timestamps carry no finer precision (a 1-ns offset cannot arrive as JSON)
offsets_days = st.floats(min_value=-30, max_value=30, allow_nan=False).map(
    lambda d: pd.Timedelta(days=d).round("us")
)


@st.composite
def raw_leads(draw: st.DrawFn) -> list[RawLead]:
    n = draw(st.integers(1, 4))
    ids = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=n, max_size=n))
    leads = []
    for lead_id in ids:
        created = (NOW - pd.Timedelta(days=draw(st.floats(min_value=-1, max_value=60)))).round("us")
        activities = [
            {
                "timestamp": (created + draw(offsets_days)).isoformat(),
                "activity_type": draw(st.sampled_from(["page_view", "email_open", "demo_request"])),
                "page_category": draw(st.sampled_from([None, "pricing", "blog", "unknown-page"])),
            }
            for _ in range(draw(st.integers(0, 3)))
        ]
        leads.append(
            RawLead.model_validate(
                {
                    "lead_id": lead_id,
                    "created_at": created.isoformat(),
                    "employee_count": draw(st.one_of(st.none(), st.floats(0, 1e6))),
                    "channel": draw(st.sampled_from([None, "web_form", "  ", "brand-new"])),
                    "activities": activities,
                }
            )
        )
    return leads


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(leads=raw_leads())
def test_vectorised_checks_agree_with_the_contract_validator(leads: list[RawLead]) -> None:
    try:
        prepared = prepare_leads(leads, as_of=None, now=NOW, clock_skew_seconds=0)
    except RequestInvalid as invalid:
        assert invalid.problems
        accepted = False
    else:
        accepted = True
    full_tables_ok = True
    tables = pd.DataFrame(
        {"lead_id": [lead.lead_id for lead in leads], "created_at": [lead.created_at for lead in leads]}
    )
    activities = pd.DataFrame(
        [{"lead_id": lead.lead_id, **a.model_dump()} for lead in leads for a in lead.activities],
        columns=["lead_id", "timestamp", "activity_type", "page_category", "campaign"],
    )
    for column in ("channel", "job_title", "seniority", "department", "country", "industry", "company_type"):
        tables[column] = [getattr(lead, column) for lead in leads]
    for column in ("employee_count", "annual_revenue", "email", "first_name", "last_name", "phone"):
        tables[column] = [getattr(lead, column, None) for lead in leads]
    try:
        validate_crm_tables(leads=tables, activities=activities, now=NOW)
    except DataContractError:
        full_tables_ok = False
    assert accepted == full_tables_ok
    if accepted:  # the service's own tables pass the contract too
        validate_crm_tables(
            leads=prepared.leads.assign(first_name=None, last_name=None, phone=None),
            activities=prepared.activities,
            now=NOW,
        )


# --- the service definition stays light ----------------------------------------------------------


def test_service_definition_imports_no_model_code(serving_env, tmp_path) -> None:
    import os
    import subprocess
    import sys

    code = (
        "import sys, leadscore.serving.service; "
        "print(sorted(m for m in ('pandas', 'numpy', 'lightgbm', 'mlflow', 'pandera') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=dict(os.environ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
