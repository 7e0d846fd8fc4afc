"""Event-mapping models (an export with its own column and activity names) in the service.

Their transform reads the export's own rows, so they are scored through ``/score-records`` (the
export's lead columns with nested activities, as the MLflow pyfunc reads them); ``/score``,
``/explain``, score-batch and the CLI cards send leadscore's own layout and must refuse them with
a message naming the alternative instead of scoring misread rows.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from leadscore.features.build import EventBuildJob, read_table_metadata_model
from leadscore.features.crm_shapes import CrmShape, write_shape
from leadscore.features.simulator import SimulatedCRM, simulate_crm
from leadscore.features.vocabulary import InputLayout
from leadscore.serving.engine import (
    LoadedModel,
    _warm_up,
    explain_request,
    score_records_request,
    score_request,
)
from leadscore.serving.errors import PayloadTooLarge, RequestInvalid
from leadscore.serving.fast import applies_to
from leadscore.serving.schemas import ExplainRequest, RecordsRequest, ScoreRequest
from leadscore.serving.settings import ServingSettings
from leadscore.settings import PROJECT_ROOT
from leadscore.training.batch import score_leads
from leadscore.training.cards import explain_leads
from leadscore.training.config import BoosterConfig, TrackingConfig, TrainConfig
from leadscore.training.train import TrainJob


@pytest.fixture(scope="module")
def event_model(
    tmp_path_factory: pytest.TempPathFactory, mlflow_store_template: Path
) -> tuple[LoadedModel, list[dict[str, Any]], SimulatedCRM]:
    home = tmp_path_factory.mktemp("events")
    shutil.copyfile(mlflow_store_template, home / "mlflow.db")  # a fresh store, without the migrations
    crm = simulate_crm(n_leads=2_500, seed=11)
    write_shape(crm, shape=CrmShape.SALESFORCE, out_dir=home / "sf", file_format="csv", seed=1)
    table = home / "sf.parquet"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        patch.setenv("LEADSCORE_HOME", str(home))
        EventBuildJob(
            mapping_path=PROJECT_ROOT / "examples" / "salesforce.yaml", output=table, data_dir=home / "sf"
        ).run()
        config = TrainConfig(
            training_table=table,
            booster=BoosterConfig(max_rounds=60),
            tracking=TrackingConfig(experiment="events", model_name="events", register_model=False),
        )
        result = TrainJob(config).run()
    raw = read_table_metadata_model(table).model_dump()["raw_example"]
    assert result.model.layout is InputLayout.EVENT_EXPORT
    return LoadedModel(result.model, "events", "1", time.time()), raw, crm


def _native_leads(crm: SimulatedCRM, n: int) -> list[dict[str, Any]]:
    leads = crm.leads.head(n)
    return [
        {
            "lead_id": str(row.lead_id),
            "created_at": pd.Timestamp(row.created_at).isoformat(),
            "activities": [],
        }
        for row in leads.itertuples()
    ]


def test_score_refuses_event_models_naming_score_records(event_model: Any) -> None:
    loaded, _, crm = event_model
    settings = ServingSettings(api_keys=("k" * 20,))
    for n in (1, 2):  # one lead used to take the fast path, two gave misread rows
        with pytest.raises(RequestInvalid) as caught:
            score_request(loaded, ScoreRequest.model_validate({"leads": _native_leads(crm, n)}), settings)
        assert "/score-records" in caught.value.problems[0].problem
    with pytest.raises(RequestInvalid) as caught:
        explain_request(loaded, ExplainRequest.model_validate({"lead": _native_leads(crm, 1)[0]}), settings)
    assert "/score-records" in caught.value.problems[0].problem


def test_fast_path_does_not_apply_to_event_models(event_model: Any) -> None:
    assert not applies_to(event_model[0].model)


def test_score_records_reads_the_exports_own_rows_like_the_pyfunc(event_model: Any) -> None:
    loaded, raw, _ = event_model
    assert len(raw) >= 2 and any(record.get("activities") for record in raw)
    response = score_records_request(loaded, RecordsRequest.model_validate({"records": raw}))
    assert [r.lead_id for r in response.results] == [str(record["Id"]) for record in raw]
    expected = loaded.model.score_features(
        loaded.model.features_from_records(pd.DataFrame.from_records(raw)), explain=True, top_k=5
    )
    assert [r.probability for r in response.results] == [e["probability"] for e in expected]
    assert all(r.status == "open" and r.probability is not None for r in response.results)


def test_score_records_names_a_missing_creation_time(event_model: Any) -> None:
    loaded, raw, _ = event_model
    records = [dict(raw[0]), dict(raw[1])]
    records[1]["CreatedDate"] = None
    with pytest.raises(RequestInvalid) as caught:
        score_records_request(loaded, RecordsRequest.model_validate({"records": records}))
    assert [p.field for p in caught.value.problems] == ["records[1].CreatedDate"]


def test_score_records_caps_nested_activities_per_lead_and_request(event_model: Any) -> None:
    loaded, raw, _ = event_model
    with_activities = [dict(r) for r in raw if isinstance(r.get("activities"), list) and r["activities"]]
    record = with_activities[0]
    many = dict(record, activities=record["activities"] * 10)
    per_lead = ServingSettings(model_name="x", max_events_per_lead=len(record["activities"]) * 5)
    with pytest.raises(PayloadTooLarge) as caught:
        score_records_request(loaded, RecordsRequest.model_validate({"records": [record, many]}), per_lead)
    assert [p.field for p in caught.value.problems] == ["records[1].activities"]
    per_request = ServingSettings(model_name="x", max_events=len(record["activities"]) * 3)
    with pytest.raises(PayloadTooLarge) as caught:
        score_records_request(loaded, RecordsRequest.model_validate({"records": [record] * 4}), per_request)
    assert [p.field for p in caught.value.problems] == ["records"]
    # within the limits it scores
    fine = ServingSettings(model_name="x")
    assert (
        len(score_records_request(loaded, RecordsRequest.model_validate({"records": [record]}), fine).results)
        == 1
    )


def test_warm_up_scores_an_event_model(event_model: Any) -> None:
    _warm_up(event_model[0].model)


def test_batch_and_cards_refuse_event_models_naming_the_alternative(event_model: Any, tmp_path: Path) -> None:
    loaded, _, crm = event_model
    as_of = pd.Timestamp(crm.exported_at)
    leads, activities = crm.leads.head(3), crm.activities.head(0)
    with pytest.raises(ValueError, match="/score-records"):
        score_leads(loaded.model, leads=leads, activities=activities, as_of=as_of)
    with pytest.raises(ValueError, match="/score-records"):
        explain_leads(model=loaded.model, leads=leads, activities=activities, as_of=as_of)
