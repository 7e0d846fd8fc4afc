"""Event mappings: leads + activities + deals files with their own names, types and dirty rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from leadscore.features.build import EventBuildJob, TooManyRejects, read_table_metadata_model
from leadscore.features.events import EventFeatureTransform, EventMapping, load_event_mapping
from leadscore.features.loading import DataContractError
from leadscore.features.training_table import lead_ledger_path
from leadscore.features.vocabulary import InputLayout
from leadscore.settings import PROJECT_ROOT, datasets_dir

N_LEADS = 600


def make_event_export(folder: Path, *, seed: int = 0) -> dict[str, Path]:
    """A small CRM export in its own words: 'Page View', 'Trial Login' (a new type), deals."""
    rng = np.random.default_rng(seed)
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(
        np.sort(rng.integers(0, 300 * 86400, N_LEADS)), unit="s"
    )
    intent = rng.random(N_LEADS)
    leads = pd.DataFrame(
        {
            "Contact": [f"C{i:04d}" for i in range(N_LEADS)],
            "Signed Up": created.strftime("%d/%m/%Y %H:%M"),
            "Lead Source": rng.choice(["Web", "Ads", "Event"], N_LEADS),
            "Plan Interest": np.where(intent > 0.5, "pro", "free"),
            "Seats": rng.integers(1, 50, N_LEADS).astype(str),
            "Owner": rng.choice(["ann", "bob"], N_LEADS),
        }
    )
    rows = []
    for i in range(N_LEADS):
        for _ in range(rng.poisson(1 + 6 * intent[i])):
            rows.append(
                (
                    leads["Contact"][i],
                    created[i] + pd.Timedelta(days=float(rng.uniform(0, 40))),
                    "Trial Login",
                )
            )
        for _ in range(rng.poisson(2)):
            rows.append(
                (leads["Contact"][i], created[i] + pd.Timedelta(days=float(rng.uniform(0, 40))), "Page View")
            )
    activities = pd.DataFrame(rows, columns=["Contact", "When", "What"])
    activities["When"] = activities["When"].dt.strftime("%d/%m/%Y %H:%M")
    converts = rng.random(N_LEADS) < 0.05 + 0.4 * intent
    deal_at = created + pd.to_timedelta(rng.integers(10, 60, N_LEADS), unit="D")
    deals = pd.DataFrame(
        {
            "Contact": leads["Contact"][converts].to_numpy(),
            "Won": deal_at[converts].strftime("%d/%m/%Y %H:%M"),
            "Stage": "Closed Won",
            "Rep": "sam",
        }
    )
    paths = {
        "leads": folder / "leads.csv",
        "activities": folder / "activities.csv",
        "outcomes": folder / "deals.csv",
    }
    leads.to_csv(paths["leads"], index=False, sep=";")
    activities.to_csv(paths["activities"], index=False, sep=";")
    deals.to_csv(paths["outcomes"], index=False, sep=";")
    return paths


def mapping_data(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "trial",
        "read": {"date_format": "%d/%m/%Y %H:%M"},  # the separator is sniffed
        "tables": {
            "leads": {
                "path": "leads.csv",
                "id_column": "Contact",
                "created_at_column": "Signed Up",
                "rename": {"Lead Source": "channel"},
                "attributes": {
                    "Plan Interest": {
                        "role": "categorical",
                        "label": "Plan of interest",
                        "sentence": "Interested in {value}",
                    },
                    "Seats": {
                        "role": "numeric",
                        "label": "Seats",
                        "sentence": "Needs {value:.0f} [seat|seats]",
                    },
                    "Owner": {"role": "leaky"},
                },
            },
            "activities": {
                "path": "activities.csv",
                "lead_id_column": "Contact",
                "timestamp_column": "When",
                "type_column": "What",
                "types": {
                    "Page View": "page_view",
                    "Trial Login": {
                        "name": "trial_login",
                        "label": "trial logins",
                        "sentence": "Logged in to the trial {value:.0f} [time|times]",
                        "actionable": False,
                        "windows_days": [7, 30],
                    },
                },
            },
            "outcomes": {
                "path": "deals.csv",
                "lead_id_column": "Contact",
                "date_column": "Won",
                "status_column": "Stage",
                "positive_values": ["Closed Won"],
                "columns": {"Rep": "leaky"},
            },
        },
        "label": {"horizon_days": 60, "ages_days": [1, 7]},
    }
    for dotted, value in changes.items():
        target = data
        *parents, last = dotted.split(".")
        for part in parents:
            target = target[part]  # type: ignore[assignment]
        target[last] = value  # type: ignore[index]
    return data


def write_mapping(folder: Path, **changes: object) -> Path:
    path = folder / "mapping.yaml"
    path.write_text(yaml.safe_dump(mapping_data(**changes), sort_keys=False))
    return path


def test_new_activity_type_becomes_catalogue_features_and_reasons() -> None:
    transform = EventFeatureTransform(EventMapping.model_validate(mapping_data()))
    names = set(transform.feature_names)
    assert {"trial_login_7d", "trial_login_30d", "trial_login_total", "days_since_trial_login"} <= names
    assert "trial_login_90d" not in names
    assert {
        "page_other_7d",
        "engagement_events_30d",
        "channel",
        "plan_interest",
        "seats",
        "lead_age_days",
    } <= names
    assert "owner" not in names and "page_pricing_7d" not in names  # no page column: page_other only
    spec = {f.name: f for f in transform.catalogue}["trial_login_7d"]
    assert spec.label == "Trial logins in the last 7 days" and spec.concept == "trial_login"
    assert transform.sentence("trial_login", {"trial_login_total": 1.0}) == "Logged in to the trial 1 time"
    assert transform.sentence("trial_login", {"trial_login_total": 4.0}) == "Logged in to the trial 4 times"
    assert transform.sentence("seats", {"seats": 1.0}) == "Needs 1 seat"


def test_build_uses_the_same_point_in_time_features_as_scoring(tmp_path: Path) -> None:
    paths = make_event_export(tmp_path)
    result = EventBuildJob(mapping_path=write_mapping(tmp_path), output=tmp_path / "t.parquet").run()
    table = pd.read_parquet(result.output)
    meta = read_table_metadata_model(result.output)
    assert meta.mode == "events" and meta.time_axis == "timestamp" and meta.snapshot_policy.horizon_days == 60
    assert table["trial_login_total"].sum() > 0 and table["label"].astype(int).sum() > 10
    # scoring: the export's own rows and names, as of each snapshot, through the transform the model carries
    transform = EventFeatureTransform(load_event_mapping(tmp_path / "mapping.yaml"))
    leads = pd.read_csv(paths["leads"], sep=";", dtype=str)
    activities = pd.read_csv(paths["activities"], sep=";", dtype=str)
    sample = table.sample(frac=1.0, random_state=0).drop_duplicates("lead_id").head(40)  # one row a lead
    raw_leads = leads.set_index("Contact").loc[sample["lead_id"]].reset_index()
    scored = transform.features(
        leads=raw_leads, activities=activities, as_of=pd.Series(sample["as_of"].to_numpy())
    )
    expected = sample.loc[:, list(transform.feature_names)].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        scored.loc[:, list(transform.feature_names)].astype(str),
        expected.astype(str),
        check_categorical=False,
    )
    # point-in-time: no login after the snapshot is counted
    one = sample.iloc[0]
    mine = activities[(activities["Contact"] == one["lead_id"]) & (activities["What"] == "Trial Login")]
    when = pd.to_datetime(mine["When"], format="%d/%m/%Y %H:%M")
    assert one["trial_login_total"] == (when <= one["as_of"]).sum()


def test_deal_dated_before_its_lead_is_rejected_and_the_build_goes_on(tmp_path: Path) -> None:
    paths = make_event_export(tmp_path)
    deals = pd.read_csv(paths["outcomes"], sep=";", dtype=str)
    contact = deals["Contact"].iloc[3]
    leads = pd.read_csv(paths["leads"], sep=";", dtype=str)
    signed = pd.to_datetime(leads.set_index("Contact").loc[contact, "Signed Up"], format="%d/%m/%Y %H:%M")
    deals.loc[3, "Won"] = (signed - pd.Timedelta(days=2)).strftime("%d/%m/%Y %H:%M")
    deals.to_csv(paths["outcomes"], sep=";", index=False)
    lines = paths["outcomes"].read_text().splitlines()
    result = EventBuildJob(mapping_path=write_mapping(tmp_path), output=tmp_path / "t.parquet").run()
    rejects = pd.read_csv(result.rejects_file)
    assert len(rejects) == 1
    row = rejects.iloc[0]
    assert row["table"] == "outcomes" and row["line"] == 5 and row["column"] == "Won"
    assert row["problem"] == "conversion before the lead was created" and contact in lines[4]


def test_an_unreadable_activity_line_is_set_aside_by_its_line_number(tmp_path: Path) -> None:
    paths = make_event_export(tmp_path)
    lines = paths["activities"].read_text().splitlines()
    width = len(lines[0].split(";"))
    lines.insert(6, lines[5] + ";stray;fields")  # line 7: two separators too many
    lines.insert(3, "")  # a blank line before it: line 8 now
    paths["activities"].write_text("\n".join(lines) + "\n")
    result = EventBuildJob(mapping_path=write_mapping(tmp_path), output=tmp_path / "t.parquet").run()
    rejects = pd.read_csv(result.rejects_file)
    assert len(rejects) == 1
    row = rejects.iloc[0]
    assert row["table"] == "activities" and row["line"] == 8 and pd.isna(row["row"])
    assert row["problem"] == f"unreadable line: expected {width} fields, saw {width + 2}"
    assert paths["activities"].read_text().splitlines()[7].endswith(";stray;fields")


def test_blank_lines_in_every_table_change_nothing_but_the_line_numbers(tmp_path: Path) -> None:
    paths = make_event_export(tmp_path)
    clean = EventBuildJob(mapping_path=write_mapping(tmp_path), output=tmp_path / "clean.parquet").run()
    for path in paths.values():
        lines = path.read_text().splitlines()
        path.write_text("\n".join([*lines[:4], "", *lines[4:]]) + "\n")
    result = EventBuildJob(mapping_path=write_mapping(tmp_path), output=tmp_path / "t.parquet").run()
    pd.testing.assert_frame_equal(pd.read_parquet(result.output), pd.read_parquet(clean.output))


def test_unmapped_activity_type_is_named_with_a_hint_and_stops_above_the_share(tmp_path: Path) -> None:
    paths = make_event_export(tmp_path)
    activities = pd.read_csv(paths["activities"], sep=";", dtype=str)
    activities.loc[activities["What"] == "Page View", "What"] = "Website Visit"
    activities.to_csv(paths["activities"], sep=";", index=False)
    with pytest.raises(TooManyRejects) as excinfo:
        EventBuildJob(mapping_path=write_mapping(tmp_path), output=tmp_path / "t.parquet").run()
    message = str(excinfo.value)
    assert (
        "activities.What" in message and "'Website Visit'" in message and "tables.activities.types" in message
    )
    assert str(paths["activities"]) in message
    # declared as ignorable, the same export builds and the ignored rows are counted
    path = write_mapping(tmp_path, **{"tables.activities.unmapped_types": "ignore"})
    result = EventBuildJob(mapping_path=path, output=tmp_path / "t.parquet").run()
    meta = read_table_metadata_model(result.output).model_dump()
    assert meta["ignored_activity_types"] == {
        "Website Visit": int((activities["What"] == "Website Visit").sum())
    }


def test_non_numeric_attribute_and_unmapped_columns_are_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = make_event_export(tmp_path)
    leads = pd.read_csv(paths["leads"], sep=";", dtype=str)
    leads.loc[9, "Seats"] = "ten"
    leads["Favourite Colour"] = "blue"
    leads.to_csv(paths["leads"], sep=";", index=False)
    with caplog.at_level("WARNING"):
        result = EventBuildJob(mapping_path=write_mapping(tmp_path), output=tmp_path / "t.parquet").run()
    rejects = pd.read_csv(result.rejects_file)
    lead_rows = rejects[rejects["table"] == "leads"]
    assert lead_rows["line"].tolist() == [11] and "not a number, got 'ten'" in lead_rows["problem"].iloc[0]
    assert set(rejects.loc[rejects["table"] != "leads", "problem"]) <= {
        "its lead was rejected (see the leads rows)"
    }
    assert leads.loc[9, "Contact"] not in set(pd.read_parquet(result.output)["lead_id"])
    assert any("Favourite Colour" in r.message and "not in the mapping" in r.message for r in caplog.records)
    columns = read_table_metadata_model(result.output).model_dump()["columns"]
    assert {
        "table": "leads",
        "column": "Owner",
        "mapping": "leaky",
        "action": "excluded from features, audited",
    } in columns


def test_empty_deals_file_is_named(tmp_path: Path) -> None:
    paths = make_event_export(tmp_path)
    paths["outcomes"].write_text("")
    with pytest.raises(ValueError, match=str(paths["outcomes"]) + " is empty"):
        EventBuildJob(mapping_path=write_mapping(tmp_path), output=tmp_path / "t.parquet").run()


def test_missing_mapped_column_is_a_whole_file_problem(tmp_path: Path) -> None:
    make_event_export(tmp_path)
    path = write_mapping(tmp_path, **{"tables.outcomes.date_column": "Closed On"})
    with pytest.raises(DataContractError, match=r"outcomes\.Closed On"):
        EventBuildJob(mapping_path=path, output=tmp_path / "t.parquet").run()


OLIST = datasets_dir() / "olist"


@pytest.mark.dataset
@pytest.mark.skipif(
    not OLIST.exists(), reason=f"Olist data not found at {OLIST} (set LEADSCORE_DATASETS_DIR)"
)
def test_olist_example_builds_from_the_raw_files(tmp_path: Path) -> None:
    result = EventBuildJob(
        mapping_path=PROJECT_ROOT / "examples" / "olist.yaml", output=tmp_path / "olist.parquet"
    ).run()
    table = pd.read_parquet(result.output)
    assert {"landing_page_id", "channel"} <= set(table.columns)
    assert (table["snapshot_age_days"] == 0).sum() == 8000  # every lead at first contact, then older ages
    assert table["snapshot_age_days"].max() > 90 and "lead_age_days" in table.columns
    rejects = pd.read_csv(result.rejects_file)  # the deal dated 2 days before its lead
    assert len(rejects) == 1 and rejects["problem"].iloc[0] == "conversion before the lead was created"
    deals = pd.read_csv(OLIST / "olist_closed_deals_dataset.csv")
    line = int(rejects["line"].iloc[0])
    assert (
        deals["mql_id"].iloc[line - 2] == rejects["value"].iloc[0] or rejects["column"].iloc[0] == "won_date"
    )
    audit = pd.read_csv(result.output.with_suffix(".audit.csv")).set_index("column")
    for column in ("seller_id", "sdr_id", "business_segment", "lead_type", "declared_monthly_revenue"):
        assert audit.loc[column, "tier"] == "flag", column
    assert not audit.loc["landing_page_id", "flagged"]
    meta = read_table_metadata_model(result.output).model_dump()
    assert not meta["audit_flagged_features"]
    assert meta["snapshot_policy"]["horizon_days"] == 90


@pytest.mark.slow
@pytest.mark.dataset
@pytest.mark.skipif(
    not OLIST.exists(), reason=f"Olist data not found at {OLIST} (set LEADSCORE_DATASETS_DIR)"
)
def test_olist_trains_after_build_and_scores_its_own_rows(tmp_path: Path, isolated_state: Path) -> None:
    import mlflow

    from leadscore.training.config import TrainConfig, load_config
    from leadscore.training.train import TrainJob

    table = tmp_path / "olist.parquet"
    EventBuildJob(mapping_path=PROJECT_ROOT / "examples" / "olist.yaml", output=table).run()
    config = load_config(
        TrainConfig,
        PROJECT_ROOT / "leadscore" / "configs" / "train.yaml",
        {"training_table": str(table), "tracking.model_name": "olist"},
    )
    result = TrainJob(config).run()
    assert result.metrics["roc_auc"] > 0.6  # landing page and channel carry signal (README: ~0.66)
    assert result.model.layout is InputLayout.EVENT_EXPORT and "landing_page_id" in result.model.feature_names
    # the service's and pyfunc's input: the export's own lead columns
    raw = pd.DataFrame(
        [
            {
                "mql_id": "x1",
                "first_contact_date": "2018-05-01",
                "landing_page_id": "b76ef37428e6799c421989521c0e5077",
                "origin": "organic_search",
            }
        ]
    )
    # a new lead, scored the day after first contact (scored "now", years later, it would be an old lead
    # whose reasons have faded to its age)
    raw["as_of"] = "2018-05-02"
    scored = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model").predict(raw)
    direct = result.model.score_features(result.model.features_from_records(raw))
    assert scored["probability"].iloc[0] == pytest.approx(direct[0]["probability"])
    reasons = [*scored["reasons_positive"].iloc[0], *scored["reasons_negative"].iloc[0]]
    assert any("landing page" in r["sentence"] or "channel" in r["sentence"] for r in reasons), reasons


def test_native_contract_rejects_a_deal_before_its_lead_and_goes_on(tmp_path: Path) -> None:
    from leadscore.features.build import BuildFeaturesJob
    from leadscore.features.simulator import simulate_crm, write_crm
    from leadscore.features.training_table import SnapshotPolicy

    crm = simulate_crm(n_leads=800, seed=5)
    paths = write_crm(crm, out_dir=tmp_path / "crm", file_format="csv")
    outcomes = pd.read_csv(paths["outcomes"], dtype={"lead_id": str})
    created = crm.leads.set_index(crm.leads["lead_id"].astype(str))["created_at"]
    early = created[outcomes.loc[2, "lead_id"]] - pd.Timedelta(days=2)
    outcomes.loc[2, "converted_at"] = early.isoformat()
    outcomes.to_csv(paths["outcomes"], index=False)
    job = BuildFeaturesJob(
        leads=paths["leads"],
        activities=paths["activities"],
        outcomes=paths["outcomes"],
        output=tmp_path / "t.parquet",
        policy=SnapshotPolicy(),
    )
    result = job.run()
    rejects = pd.read_csv(tmp_path / "t.rejects.csv")
    assert rejects[["table", "line", "problem"]].values.tolist() == [
        ["outcomes", 4, "conversion before the lead was created"]
    ]
    assert result.rows > 0


def _one_lead(*, what: str = "Trial Login") -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    leads = pd.DataFrame(
        {"Contact": ["C1"], "Signed Up": ["01/03/2024 09:00"], "Lead Source": ["Web"], "Seats": ["3"]}
    )
    activities = pd.DataFrame({"Contact": ["C1"], "When": ["10/03/2024 09:00"], "What": [what]})
    return leads, activities, pd.Timestamp("2024-03-12 09:00")


def test_custom_engagement_type_counts_as_the_leads_activity() -> None:
    """A mapping whose only engagement type is its own: the aggregates see it."""
    from leadscore.model.explain import concept_sentence

    trial_only = {"Trial Login": mapping_data()["tables"]["activities"]["types"]["Trial Login"]}  # type: ignore[index]
    transform = EventFeatureTransform(
        EventMapping.model_validate(mapping_data(**{"tables.activities.types": trial_only}))
    )
    assert {"days_since_last_activity", "engagement_events_30d", "engagement_trend_30d"} <= set(
        transform.feature_names
    )
    leads, activities, as_of = _one_lead()
    row = transform.features(leads=leads, activities=activities, as_of=as_of).iloc[0]
    assert row["trial_login_total"] == 1
    assert row["engagement_events_30d"] == 1 and row["days_since_last_activity"] == pytest.approx(2.0)
    assert row["engagement_trend_30d"] == 1  # 1 in the last 30 days, none in the 60 before
    sentence = concept_sentence("days_since_last_activity", row.to_dict())
    assert sentence == "The lead was last active 2 days ago"


def test_custom_sales_type_counts_as_a_sales_touch() -> None:
    sms = {"SMS": {"name": "sales_sms", "family": "sales", "label": "sales texts"}}
    transform = EventFeatureTransform(
        EventMapping.model_validate(mapping_data(**{"tables.activities.types": sms}))
    )
    assert {"sales_touches_total", "days_since_last_sales_touch"} <= set(transform.feature_names)
    leads, activities, as_of = _one_lead(what="SMS")
    row = transform.features(leads=leads, activities=activities, as_of=as_of).iloc[0]
    assert row["sales_touches_total"] == 1 and row["days_since_last_sales_touch"] == pytest.approx(2.0)


def test_nested_records_without_the_lead_id_use_the_synthetic_ids() -> None:
    """The pyfunc's input: lead columns with nested activities, no id column."""
    transform = EventFeatureTransform(EventMapping.model_validate(mapping_data()))
    records = pd.DataFrame(
        [
            {
                "Signed Up": "01/03/2024 09:00",
                "Lead Source": "Web",
                "activities": [
                    {"When": "10/03/2024 09:00", "What": "Trial Login"},
                    {"When": "11/03/2024 09:00", "What": "Trial Login"},
                ],
                "as_of": "2024-03-12T09:00:00",
            },
            {"Signed Up": "02/03/2024 09:00", "Lead Source": "Ads", "activities": [], "as_of": "2024-03-12"},
        ]
    )
    features = transform.features_from_records(records)
    assert features["lead_id"].tolist() == ["row-2", "row-3"]
    assert features["trial_login_total"].tolist() == [2, 0]


def test_stored_examples_mask_personal_data_in_the_exports_own_names() -> None:
    from leadscore.features.build import without_personal_data

    renames = {"Lead Source": "channel", "Mail": "email", "Tel": "phone", "Given": "first_name"}
    mapping = EventMapping.model_validate(mapping_data(**{"tables.leads.rename": renames}))
    transform = EventFeatureTransform(mapping)
    leads = pd.DataFrame(
        {
            "Contact": ["C1"],
            "Signed Up": ["01/03/2024 09:00"],
            "Lead Source": ["Web"],
            "Mail": ["ann@acme.com"],
            "Tel": ["+44 1"],
            "Given": ["Ann"],
        }
    )
    (record,) = transform.raw_records(leads=leads, activities=None, n=1)
    assert record["Mail"] == "someone@acme.com" and "Tel" not in record and "Given" not in record
    assert record["Contact"] == "C1" and record["Lead Source"] == "Web"
    # contract-named records (the native sidecar's examples): the same rule
    native = {"lead_id": "L1", "email": "bo@b.org", "first_name": "Bo", "last_name": "B", "phone": "1"}
    assert without_personal_data([native]) == [{"lead_id": "L1", "email": "someone@b.org"}]


def test_build_warns_that_custom_attributes_are_not_point_in_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_event_export(tmp_path)
    with caplog.at_level("WARNING", logger="leadscore.features.build"):
        EventBuildJob(mapping_path=write_mapping(tmp_path), output=tmp_path / "t.parquet").run()
    warned = [r.getMessage() for r in caplog.records if "not point-in-time" in r.getMessage()]
    assert len(warned) == 1 and "'Plan Interest'" in warned[0] and "[1, 7]" in warned[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="leadscore.features.build"):
        EventBuildJob(
            mapping_path=write_mapping(tmp_path, **{"label.ages_days": [0], "label.older_ages_per_lead": 0}),
            output=tmp_path / "u.parquet",
        ).run()
    assert not [r for r in caplog.records if "not point-in-time" in r.getMessage()]


def test_actionable_is_documented_as_a_catalogue_label_not_a_next_best_action() -> None:
    transform = EventFeatureTransform(
        EventMapping.model_validate(mapping_data(**{"tables.activities.types.Trial Login.actionable": True}))
    )
    assert all(f.actionable for f in transform.catalogue if f.concept == "trial_login")
    schema = EventMapping.model_json_schema()
    described = schema["$defs"]["ActivityTypeSpec"]["properties"]["actionable"]["description"]
    assert "never a custom type" in described and "next best actions" in described
    attributes = schema["$defs"]["LeadsTable"]["properties"]["attributes"]["description"]
    assert "Not point-in-time" in attributes


def test_missing_text_in_lead_columns_reads_as_no_value_as_the_csv_reader_does() -> None:
    """Records a CRM sends: "NA"/"NULL"/"nan" in a renamed column, a categorical and a numeric
    attribute are no value, as the CSV reader reads them at training (not a category "NA")."""
    transform = EventFeatureTransform(EventMapping.model_validate(mapping_data()))
    raw = pd.DataFrame(
        {
            "Contact": ["c1", "c2"],
            "Signed Up": ["01/02/2024 10:00", "01/02/2024 10:00"],
            "Lead Source": ["NA", "web"],
            "Plan Interest": ["NULL", "pro"],
            "Seats": ["nan", "3"],
        }
    )
    leads = transform.contract_leads(raw)
    assert leads["channel"].tolist() == [None, "web"]
    assert leads["Plan Interest"].tolist() == [None, "pro"]
    assert pd.isna(leads["Seats"].iloc[0]) and leads["Seats"].iloc[1] == 3


@pytest.mark.parametrize(
    ("won", "message"),
    [
        ({"stage_values": ["Closed Won"]}, "name a stage_column .with stage_values. or a date_column"),
        ({"stage_column": "Stage"}, "stage_column needs stage_values"),
    ],
)
def test_a_won_block_must_say_how_a_won_deal_is_known(won: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EventMapping.model_validate(mapping_data(**{"tables.outcomes.won": won}))


def test_won_deals_keep_every_label_when_their_date_or_amount_is_unreadable(tmp_path: Path) -> None:
    paths = make_event_export(tmp_path)
    deals = pd.read_csv(paths["outcomes"], sep=";", dtype=str)
    n = len(deals)
    deals["Stage"] = np.where(np.arange(n) % 2 == 0, "Closed Won", "Closed Lost")
    deals["Closed"] = deals["Won"]
    deals.loc[0, "Closed"] = "not a date"  # won, date unreadable: the deal date stands in
    deals["Value"] = "1200"
    deals.loc[2, "Value"] = "-5"  # won, negative: left missing
    deals.to_csv(paths["outcomes"], sep=";", index=False)
    won = {
        "stage_column": "Stage",
        "stage_values": ["Closed Won"],
        "date_column": "Closed",
        "amount_column": "Value",
    }
    mapping = write_mapping(
        tmp_path,
        **{
            "tables.outcomes.won": won,
            "tables.outcomes.status_column": None,
            "tables.outcomes.positive_values": [],
        },
    )
    built = EventBuildJob(mapping_path=mapping, output=tmp_path / "t.parquet").run()
    assert built.rejected == 0
    ledger = pd.read_parquet(lead_ledger_path(built.output)).set_index("lead_id")
    assert int(ledger["converted_at"].notna().sum()) == n  # every deal is still an opportunity
    won_ids = deals.loc[deals["Stage"] == "Closed Won", "Contact"]
    assert set(ledger.index[ledger["won_at"].notna()]) == set(won_ids)
    first = ledger.loc[deals.loc[0, "Contact"]]
    assert first["won_at"] == first["converted_at"]  # the stand-in
    read = deals.iloc[1:].loc[deals["Stage"] == "Closed Won"].set_index("Contact")["Closed"]
    closed = pd.to_datetime(read, format="%d/%m/%Y %H:%M")  # the mapping's day-first format, not month-first
    assert (pd.to_datetime(ledger.loc[closed.index, "won_at"]).to_numpy() == closed.to_numpy()).all()
    assert np.isnan(ledger.loc[deals.loc[2, "Contact"], "won_amount"])
    assert ledger.loc[deals.loc[4, "Contact"], "won_amount"] == 1200.0
