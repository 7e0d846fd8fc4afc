"""The service and the score ledger: /score and /explain results appended off the request path,
read back through GET /leads/{lead_id}/history, erased with the keyed DELETE /leads/{lead_id},
counted in /metrics. Reuses the session's ASGI app (the ledger is on by default, SQLite under
the test model's LEADSCORE_HOME)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.serving.serving_support import API_KEY, TrainedModel

AUTH = {"X-API-Key": API_KEY}


@pytest.fixture
def writer(client: Any) -> Any:
    from leadscore.serving import state

    assert state.LEDGER is not None, "the ledger is on by default"
    return state.LEDGER


def fresh_lead(trained_model: TrainedModel, i: int = 0) -> dict[str, Any]:
    lead = trained_model.lead(i)
    lead["lead_id"] = f"ledger-{uuid.uuid4().hex[:10]}"
    return lead


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_score_and_explain_are_appended_and_read_back(
    client: Any, writer: Any, trained_model: TrainedModel
) -> None:
    lead = fresh_lead(trained_model)
    written_before = sample("leadscore_ledger_rows_total", {"outcome": "written"})
    first = client.post("/score", json={"leads": [lead]}, headers=AUTH)
    assert first.status_code == 200, first.text
    second = client.post("/explain", json={"lead": lead}, headers=AUTH)
    assert second.status_code == 200, second.text
    assert writer.flush(timeout=10)

    response = client.get(f"/leads/{lead['lead_id']}/history", headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["lead_id"] == lead["lead_id"]
    rows = body["history"]
    assert [r["source"] for r in rows] == ["score", "explain"]  # time order: as-of, then scored-at
    scored = first.json()["results"][0]
    assert rows[0]["score"] == scored["score"] and rows[0]["tier"] == scored["tier"]
    assert rows[0]["model_version"] == scored["model_version"] and rows[0]["previous_score"] is None
    assert rows[1]["previous_score"] == rows[0]["score"]
    assert rows[1]["change"] == pytest.approx(rows[1]["score"] - rows[0]["score"], abs=0.05)
    assert rows[1]["trend"] in ("improving", "steady", "declining")
    # the same lead at the same as-of (its own): the same features, the same hash
    assert len(rows[0]["feature_hash"]) == 64 and rows[0]["feature_hash"] == rows[1]["feature_hash"]
    expected = scored["reasons_positive"] + scored["reasons_negative"]
    assert [r["concept"] for r in rows[0]["reasons"]] == [r["concept"] for r in expected]
    assert "email" not in response.text  # the lead's input is hashed, never stored
    assert sample("leadscore_ledger_rows_total", {"outcome": "written"}) >= written_before + 2
    assert sample("leadscore_ledger_buffered") == 0  # /metrics text: tests/serving/test_http_server.py


def test_erasure_route_deletes_every_row_and_needs_the_key(
    client: Any, writer: Any, trained_model: TrainedModel
) -> None:
    lead = fresh_lead(trained_model, 1)
    for _ in range(2):
        assert client.post("/score", json={"leads": [lead]}, headers=AUTH).status_code == 200
    assert writer.flush(timeout=10)
    path = f"/leads/{lead['lead_id']}"
    assert client.delete(path).status_code == 401  # keyed
    assert client.get(f"{path}/history").status_code == 401
    assert client.get(path, headers=AUTH).status_code == 405  # erasure is DELETE only
    erased = client.delete(path, headers=AUTH)
    assert erased.status_code == 200, erased.text
    assert erased.json() == {"lead_id": lead["lead_id"], "deleted": 2}
    assert client.get(f"{path}/history", headers=AUTH).json()["history"] == []
    assert client.delete(path, headers=AUTH).json()["deleted"] == 0


def test_a_full_buffer_drops_and_counts_but_scoring_goes_on(
    client: Any, writer: Any, trained_model: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "capacity", 0)  # as if the database had been down for long
    dropped_before = sample("leadscore_ledger_rows_total", {"outcome": "dropped"})
    lead = fresh_lead(trained_model, 2)
    response = client.post("/score", json={"leads": [lead]}, headers=AUTH)
    assert response.status_code == 200
    assert sample("leadscore_ledger_rows_total", {"outcome": "dropped"}) == dropped_before + 1
    monkeypatch.undo()
    assert client.get(f"/leads/{lead['lead_id']}/history", headers=AUTH).json()["history"] == []


def test_feedback_is_stored_with_the_score_it_refers_to_and_erased_with_the_lead(
    client: Any, writer: Any, trained_model: TrainedModel
) -> None:
    lead = fresh_lead(trained_model, 3)
    scored = client.post("/score", json={"leads": [lead]}, headers=AUTH).json()["results"][0]
    assert writer.flush(timeout=10)
    body = {"lead_id": lead["lead_id"], "verdict": "disagree", "reason": "not_decision_maker"}
    body["note"] = "intern"
    assert client.post("/feedback", json=body).status_code == 401  # keyed
    given = client.post("/feedback", json=body, headers=AUTH)
    assert given.status_code == 201, given.text
    answer = given.json()
    assert answer["verdict"] == "disagree" and answer["score"] == scored["score"]
    assert answer["model_version"] == scored["model_version"]
    assert sample("leadscore_feedback_total", {"verdict": "disagree"}) >= 1
    stored = writer.ledger().feedback_frame()
    mine = stored[stored["lead_id"] == lead["lead_id"]]
    assert len(mine) == 1 and mine["reason"].iloc[0] == "not_decision_maker"
    assert mine["note"].iloc[0] == "intern"
    erased = client.delete(f"/leads/{lead['lead_id']}", headers=AUTH).json()
    assert erased["deleted"] == 2  # the score and the feedback
    assert writer.ledger().feedback_frame().query("lead_id == @lead['lead_id']").empty


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lead_id": "x", "verdict": "maybe", "reason": "other"}, "verdict"),
        ({"lead_id": "x", "verdict": "agree", "reason": "vibes"}, "reason"),
        ({"verdict": "agree", "reason": "other"}, "lead_id"),
        ({"lead_id": "x", "verdict": "agree", "reason": "other", "mood": 3}, "mood"),
        ({"lead_id": "never-scored-lead", "verdict": "agree", "reason": "other"}, "lead_id"),
    ],
)
def test_bad_feedback_names_the_field(client: Any, body: dict[str, Any], field: str) -> None:
    response = client.post("/feedback", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert field in {p["field"] for p in response.json()["problems"]}


def test_a_challenger_is_scored_in_shadow_never_returned(
    client: Any, writer: Any, trained_model: TrainedModel
) -> None:
    import mlflow

    from leadscore.serving import state

    mlflow_client = mlflow.MlflowClient()
    champion = mlflow_client.get_model_version_by_alias("leadscore", "champion")
    # the same run registered again: a second version to play the challenger
    challenger = mlflow.register_model(f"models:/leadscore/{champion.version}", "leadscore").version
    holder = state.HOLDER
    try:
        mlflow_client.set_registered_model_alias("leadscore", "challenger", challenger)
        holder.refresh_shadow()
        assert holder.shadow is not None and holder.shadow.version == str(challenger)
        lead = fresh_lead(trained_model, 4)
        response = client.post("/score", json={"leads": [lead]}, headers=AUTH)
        assert response.status_code == 200
        returned = response.json()["results"][0]
        assert returned["model_version"] == str(champion.version)  # the champion answers
        assert writer.flush(timeout=20)
        rows = writer.ledger().scores_frame(include_shadow=True)
        mine = rows[rows["lead_id"] == lead["lead_id"]].set_index("source")
        assert set(mine.index) == {"score", "shadow"}
        assert mine.loc["shadow", "model_version"] == str(challenger)
        assert mine.loc["shadow", "as_of"] == mine.loc["score", "as_of"]  # the same moment, scored twice
        same_model = pytest.approx(mine.loc["score", "probability"], abs=1e-9)  # the same model here
        assert mine.loc["shadow", "probability"] == same_model
        served = writer.ledger().scores_frame()
        assert set(served.loc[served["lead_id"] == lead["lead_id"], "source"]) == {
            "score"
        }  # shadow kept apart
        history = client.get(f"/leads/{lead['lead_id']}/history", headers=AUTH).json()["history"]
        assert {row["source"] for row in history} == {"score"}  # a rep's history: the champion's scores
        batch = [fresh_lead(trained_model, i) for i in (5, 6, 7)]  # one request: one challenger call
        assert client.post("/score", json={"leads": batch}, headers=AUTH).status_code == 200
        assert writer.flush(timeout=20)
        rows = writer.ledger().scores_frame(include_shadow=True)
        for one in batch:
            sources = rows.loc[rows["lead_id"] == one["lead_id"], "source"].tolist()
            assert sorted(sources) == ["score", "shadow"], one["lead_id"]
    finally:
        mlflow_client.delete_registered_model_alias("leadscore", "challenger")
        holder.refresh_shadow()
        mlflow_client.delete_model_version("leadscore", challenger)
    assert holder.shadow is None
