"""Flat exports end to end: mapping -> table -> model -> /score-records, on a simulated flat export."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.features.build import FlatBuildJob
from leadscore.features.simulator import simulate_crm
from leadscore.serving.engine import LoadedModel, score_records_request
from leadscore.serving.errors import RequestInvalid
from leadscore.serving.schemas import RecordsRequest
from leadscore.training.config import BoosterConfig, CalibrationMethod, TrackingConfig, TrainConfig
from leadscore.training.train import TrainJob
from tests.serving.serving_support import API_KEY

MAPPING = {
    "name": "simulated-flat",
    "source": {"path": "export.csv"},
    "id_column": "Lead ID",
    "label": {"column": "Became Opportunity", "positive_values": ["yes"]},
    "missing_values": ["", "Select"],
    "columns": {
        "Channel": {
            "role": "categorical",
            "family": "fit",
            "label": "Channel",
            "sentence": "Lead came from the {value} channel",
        },
        "Seniority": {"role": "categorical", "family": "fit", "label": "Seniority"},
        "Employees": {
            "role": "numeric",
            "family": "fit",
            "label": "Company size",
            "sentence": "Company has {value:,.0f} employees",
        },
        "Pricing Views": {
            "role": "numeric",
            "family": "engagement",
            "label": "Pricing-page visits",
            "sentence": "Visited the pricing page {value:.0f} times",
        },
        "Demo Requests": {
            "role": "numeric",
            "family": "engagement",
            "label": "Demo requests",
            "sentence": "Requested {value:.0f} demos",
        },
        "Email": {"role": "pii"},
        "Sales Status": {"role": "leaky"},
    },
}


@pytest.fixture(scope="module")
def flat_model(
    tmp_path_factory: pytest.TempPathFactory, mlflow_store_template: Path
) -> tuple[LoadedModel, pd.DataFrame]:
    home = tmp_path_factory.mktemp("flat")
    shutil.copyfile(mlflow_store_template, home / "mlflow.db")  # a fresh store, without the migrations
    crm = simulate_crm(n_leads=6000, seed=3)
    counts = (
        crm.activities.assign(
            pricing=(crm.activities["page_category"] == "pricing"),
            demo=(crm.activities["activity_type"] == "demo_request"),
        )
        .groupby("lead_id")[["pricing", "demo"]]
        .sum()
    )
    converted = crm.leads["lead_id"].isin(crm.outcomes["lead_id"])
    export = pd.DataFrame(
        {
            "Lead ID": crm.leads["lead_id"],
            "Channel": crm.leads["channel"],
            "Seniority": crm.leads["seniority"],
            "Employees": crm.leads["employee_count"],
            "Pricing Views": crm.leads["lead_id"].map(counts["pricing"]).fillna(0).astype(int),
            "Demo Requests": crm.leads["lead_id"].map(counts["demo"]).fillna(0).astype(int),
            "Email": crm.leads["email"],
            "Sales Status": converted.map({True: "won", False: "open"}),
            "Became Opportunity": converted.map({True: "yes", False: "no"}),
        }
    )
    export.to_csv(home / "export.csv", index=False)
    (home / "mapping.yaml").write_text(yaml.safe_dump(MAPPING))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        patch.setenv("LEADSCORE_HOME", str(home))
        FlatBuildJob(mapping_path=home / "mapping.yaml", output=home / "table.parquet").run()
        config = TrainConfig(
            training_table=home / "table.parquet",
            calibration=CalibrationMethod.SIGMOID,
            booster=BoosterConfig(max_rounds=150),
            tracking=TrackingConfig(experiment="flat", model_name="flat", register_model=False),
        )
        result = TrainJob(config).run()
    return LoadedModel(result.model, "flat", "1", time.time()), export


def test_audit_flags_the_leaky_status_column(
    flat_model: tuple[LoadedModel, pd.DataFrame], tmp_path: Path
) -> None:
    audit = pd.read_csv(next(Path(flat_model[0].model.metadata["trained_on"]).parent.glob("*.audit.csv")))
    assert "too_predictive" in audit.set_index("column").loc["Sales Status", "flags"]


def test_scores_export_rows_with_readable_reasons(flat_model: tuple[LoadedModel, pd.DataFrame]) -> None:
    loaded, export = flat_model
    rows = export.drop(columns=["Became Opportunity"]).head(30)
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")  # JSON null, not NaN
    records[0]["Channel"] = "a channel never seen in training"  # accepted and scored
    response = score_records_request(loaded, RecordsRequest(records=records))
    assert [r.lead_id for r in response.results] == [str(r["Lead ID"]) for r in records]
    sentences = [
        reason.sentence for r in response.results for reason in r.reasons_positive + r.reasons_negative
    ]
    assert any(s.startswith("Visited the pricing page") for s in sentences)
    assert not any("@" in s or "won" in s for s in sentences)  # neither PII nor the leaky column


def test_rejects_bad_numbers_naming_field_and_record(flat_model: tuple[LoadedModel, pd.DataFrame]) -> None:
    loaded, export = flat_model
    rows = export.drop(columns=["Became Opportunity"]).head(3)
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    records[1]["Pricing Views"] = "ten"
    records[2]["Employees"] = float("inf")
    records[0]["Lead ID"] = ""
    with pytest.raises(RequestInvalid) as caught:
        score_records_request(loaded, RecordsRequest(records=records))
    fields = {p.field for p in caught.value.problems}
    assert fields == {"records[0].Lead ID", "records[1].Pricing Views", "records[2].Employees"}


def test_score_records_on_an_activity_model_is_a_clear_422(client: Any) -> None:
    answer = client.post("/score-records", json={"records": [{"x": 1}]}, headers={"X-API-Key": API_KEY})
    assert answer.status_code == 422
    assert "use POST /score" in answer.text


# --- parity: rows training accepts score the same through the service, the pyfunc and batch reading --

numbers = st.one_of(
    st.none(),
    st.integers(-(10**6), 10**6),
    st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "Select", "12", "-3.5", " 7 ", "1e3"]),
)


@st.composite
def export_rows(draw: st.DrawFn, base: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for i in range(draw(st.integers(1, 8))):
        row = dict(base[draw(st.integers(0, len(base) - 1))], **{"Lead ID": f"r{i}"})
        for column in ("Employees", "Pricing Views", "Demo Requests"):
            if draw(st.booleans()):
                row[column] = draw(numbers)
        if draw(st.booleans()):
            row["Channel"] = draw(st.sampled_from(["web_form", "referral", "never-seen", None, "Select"]))
        rows.append(row)
    return rows


def test_property_service_pyfunc_and_batch_agree_on_rows_training_accepts(
    flat_model: tuple[LoadedModel, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from leadscore.model.pyfunc import LeadScoringPyfunc

    loaded, export = flat_model
    head = export.drop(columns=["Became Opportunity"]).head(40)
    base = head.astype(object).where(head.notna(), None).to_dict(orient="records")
    pyfunc = LeadScoringPyfunc()
    pyfunc.model = loaded.model
    folder = tmp_path_factory.mktemp("parity")

    @given(export_rows(base))
    @settings(max_examples=40, deadline=None)
    def check(rows: list[dict[str, Any]]) -> None:
        served = score_records_request(loaded, RecordsRequest(records=rows))
        through_pyfunc = pyfunc.predict(None, pd.DataFrame.from_records(rows))
        path = folder / "rows.csv"
        pd.DataFrame.from_records(rows).to_csv(path, index=False)  # as the export file training reads
        read = pd.read_csv(path, dtype=str, keep_default_na=False)
        batch = loaded.model.score_features(loaded.model.features_from_records(read), explain=True)
        service_p = [r.probability for r in served.results]
        assert service_p == list(through_pyfunc["probability"])
        assert service_p == [b["probability"] for b in batch]
        assert [[x.model_dump() for x in r.reasons_positive] for r in served.results] == list(
            through_pyfunc["reasons_positive"]
        )

    check()


def test_export_without_an_id_column_is_scored_with_synthetic_ids(
    flat_model: tuple[LoadedModel, pd.DataFrame],
) -> None:
    """An export with no id column: records need no id and get the transform's row ids."""
    import dataclasses

    from leadscore.features.mapping import FlatFeatureTransform

    loaded, export = flat_model
    flat = loaded.model.transform
    assert isinstance(flat, FlatFeatureTransform)
    assert flat is not None
    no_ids = FlatFeatureTransform(flat.mapping.model_copy(update={"id_column": None}))
    model = dataclasses.replace(loaded.model, transform=no_ids)
    unnamed = LoadedModel(model, "flat", "1", time.time())
    rows = export.drop(columns=["Became Opportunity", "Lead ID"]).head(3)
    records = rows.astype(object).where(rows.notna(), None).to_dict(orient="records")
    response = score_records_request(unnamed, RecordsRequest(records=records))
    assert [r.lead_id for r in response.results] == ["row-2", "row-3", "row-4"]
    assert all(r.probability is not None for r in response.results)


def test_record_numbers_are_read_with_the_mapping_s_decimal_mark_and_missing_values() -> None:
    """A decimal-comma export: the service accepts "1,5" as training did, and the column's own
    placeholder as missing (it refused both before)."""
    from leadscore.serving.engine import _record_value_problem

    comma = {"decimal": ",", "thousands": "."}
    assert _record_value_problem("1,5", "numeric", {""}, **comma) is None
    assert _record_value_problem("1.234,5", "numeric", {""}, **comma) is None
    assert _record_value_problem("n/a", "numeric", {"", "n/a"}, **comma) is None
    assert _record_value_problem("1,5", "numeric", {""}) == "expected a number, got text"
    assert _record_value_problem("ten", "numeric", {""}, **comma) == "expected a number, got text"
    assert "finite" in str(_record_value_problem("inf", "numeric", {""}))
