"""Tests for ``leadscore.features.loading``: contract problems collected into one readable error."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.features.contract import (
    ActivitiesSchema,
    ActivityType,
    LeadsSchema,
    OutcomesSchema,
)
from leadscore.features.loading import (
    ContractProblem,
    CrmTables,
    DataContractError,
    empty_activities,
    empty_outcomes,
    export_lines,
    load_crm_tables,
    read_export_file,
    read_table,
    validate_crm_tables,
)

NOW = pd.Timestamp("2025-06-30 12:00:00")
LOGGER = "leadscore.features.loading"


def make_leads(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": [f"00{i}" for i in range(n)],
            "created_at": pd.date_range("2024-01-01", periods=n, freq="D"),
            "channel": "web_form",
            "job_title": "Head of IT",
            "seniority": "director",
            "department": "it",
            "country": "DE",
            "industry": "software",
            "employee_count": 250.0,
            "annual_revenue": 2.5e7,
            "company_type": "private",
            "email": [f"person{i}@acme.example" for i in range(n)],
            "first_name": "Ada",
            "last_name": "Lovelace",
            "phone": "0612345678",
        }
    )


def make_activities(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": [f"00{i % 4}" for i in range(n)],
            "timestamp": pd.Timestamp("2024-03-01") + pd.to_timedelta(np.arange(n), unit="h"),
            "activity_type": ["page_view", "email_open", "demo_request", "sales_call"] * (n // 4)
            + ["page_view"] * (n % 4),
            "page_category": ["pricing", None, None, None] * (n // 4) + [None] * (n % 4),
            "campaign": "spring",
        }
    )


def make_outcomes() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": ["001", "003"],
            "converted_at": pd.to_datetime(["2024-04-01", "2024-05-01"]),
            "opportunity_amount": [12_000.0, np.nan],
        }
    )


def problems_of(excinfo: pytest.ExceptionInfo[DataContractError]) -> list[ContractProblem]:
    return excinfo.value.problems


def validate(**tables: pd.DataFrame) -> CrmTables:
    tables.setdefault("leads", make_leads())
    return validate_crm_tables(**tables, now=NOW)


# ----------------------------------------------------------------------------------------------- #
# Happy path
# ----------------------------------------------------------------------------------------------- #


def test_valid_tables_pass_with_contract_dtypes_and_extra_columns_kept() -> None:
    leads = make_leads().assign(crm_owner="sam")
    tables = validate(leads=leads, activities=make_activities(8), outcomes=make_outcomes())

    assert len(tables.leads) == 4 and len(tables.activities) == 8 and len(tables.outcomes) == 2
    assert tables.leads["crm_owner"].tolist() == ["sam"] * 4
    assert tables.leads["lead_id"].tolist() == ["000", "001", "002", "003"]
    assert tables.leads["created_at"].dtype == np.dtype("datetime64[ns]")
    assert tables.activities["timestamp"].dtype == np.dtype("datetime64[ns]")
    assert set(tables.leads.columns) >= {"email", "first_name", "last_name", "phone"}  # PII kept here


def test_missing_activities_and_outcomes_become_empty_contract_frames() -> None:
    tables = validate()

    pd.testing.assert_frame_equal(tables.activities, empty_activities())
    pd.testing.assert_frame_equal(tables.outcomes, empty_outcomes())
    assert list(empty_activities().columns) == list(ActivitiesSchema.to_schema().columns)
    assert list(empty_outcomes().columns) == list(OutcomesSchema.to_schema().columns)
    ActivitiesSchema.validate(empty_activities())
    OutcomesSchema.validate(empty_outcomes())


def test_integer_lead_ids_become_text_and_still_match_across_tables(
    caplog: pytest.LogCaptureFixture,
) -> None:
    leads = make_leads().assign(lead_id=[10, 11, 12, 13])
    activities = make_activities().assign(lead_id=[10.0, 11.0, 12.0, 13.0])
    caplog.set_level(logging.INFO, logger=LOGGER)

    tables = validate(leads=leads, activities=activities)

    assert tables.leads["lead_id"].tolist() == ["10", "11", "12", "13"]
    assert tables.activities["lead_id"].tolist() == ["10", "11", "12", "13"]
    assert "leads.lead_id: 4 non-text values" in caplog.text
    assert "activities.lead_id: 4 non-text values" in caplog.text


def test_input_frames_are_not_modified() -> None:
    leads = make_leads()
    leads.loc[0, "channel"] = "  "
    before = leads.copy()

    validate(leads=leads)

    pd.testing.assert_frame_equal(leads, before)


# ----------------------------------------------------------------------------------------------- #
# One test per problem kind
# ----------------------------------------------------------------------------------------------- #


def test_missing_columns_are_all_reported_by_name() -> None:
    leads = make_leads().drop(columns=["created_at", "lead_id", "country"])  # country is optional

    with pytest.raises(DataContractError) as excinfo:
        validate(leads=leads)

    problems = problems_of(excinfo)
    assert {p.column for p in problems} == {"created_at", "lead_id"}
    assert all(p.table == "leads" and p.problem == "missing column" for p in problems)
    assert all(p.count == 4 and p.rows == () for p in problems)


def test_wrong_type_in_timestamp_column_names_the_value_once() -> None:
    leads = make_leads().astype({"created_at": "str"})
    leads.loc[2, "created_at"] = "abc"

    with pytest.raises(DataContractError) as excinfo:
        validate(leads=leads)

    assert problems_of(excinfo) == [
        ContractProblem("leads", "created_at", "wrong type: expected datetime, got 'abc'", (2,), 1)
    ]  # not also reported as a missing value


def test_wrong_type_in_number_column_names_the_value() -> None:
    leads = make_leads().astype({"employee_count": "object"})
    leads.loc[1, "employee_count"] = "lots"
    leads.loc[3, "employee_count"] = "1,000"

    with pytest.raises(DataContractError) as excinfo:
        validate(leads=leads)

    assert problems_of(excinfo) == [
        ContractProblem("leads", "employee_count", "wrong type: expected number, got 'lots'", (1, 3), 2)
    ]


def test_numbers_in_a_timestamp_column_are_a_wrong_type() -> None:
    activities = make_activities().assign(timestamp=[1_700_000_000, 1, 2, 3])

    with pytest.raises(DataContractError) as excinfo:
        validate(activities=activities)

    assert problems_of(excinfo) == [
        ContractProblem(
            "activities", "timestamp", "wrong type: expected datetime, got 1700000000", (0, 1, 2, 3), 4
        )
    ]


def test_timestamp_outside_the_supported_range() -> None:
    outcomes = make_outcomes().astype({"converted_at": "str"})
    outcomes.loc[1, "converted_at"] = "9999-12-31"

    with pytest.raises(DataContractError) as excinfo:
        validate(outcomes=outcomes)

    (problem,) = problems_of(excinfo)
    assert (problem.table, problem.column, problem.rows, problem.count) == (
        "outcomes",
        "converted_at",
        (1,),
        1,
    )
    assert problem.problem.startswith("timestamp out of range")
    assert "'9999-12-31'" in problem.problem


def test_missing_required_value() -> None:
    leads = make_leads()
    leads.loc[[1, 2], "lead_id"] = None

    with pytest.raises(DataContractError) as excinfo:
        validate(leads=leads)

    assert problems_of(excinfo) == [ContractProblem("leads", "lead_id", "missing value", (1, 2), 2)]


def test_duplicate_lead_id_in_leads() -> None:
    leads = make_leads()
    leads.loc[3, "lead_id"] = "000"

    with pytest.raises(DataContractError) as excinfo:
        validate(leads=leads)

    assert problems_of(excinfo) == [ContractProblem("leads", "lead_id", "duplicate lead_id", (0, 3), 2)]


def test_duplicate_lead_id_in_outcomes() -> None:
    outcomes = pd.concat([make_outcomes(), make_outcomes().iloc[[0]]], ignore_index=True)

    with pytest.raises(DataContractError) as excinfo:
        validate(outcomes=outcomes)

    assert problems_of(excinfo) == [ContractProblem("outcomes", "lead_id", "duplicate lead_id", (0, 2), 2)]


def test_activity_for_unknown_lead() -> None:
    activities = make_activities(6)
    activities.loc[[2, 5], "lead_id"] = "nobody"

    with pytest.raises(DataContractError) as excinfo:
        validate(activities=activities)

    assert problems_of(excinfo) == [
        ContractProblem("activities", "lead_id", "activity for unknown lead", (2, 5), 2)
    ]


def test_activity_before_the_lead_was_created() -> None:
    activities = make_activities()
    activities.loc[1, "timestamp"] = pd.Timestamp("2023-12-31")  # lead 001 created 2024-01-02

    with pytest.raises(DataContractError) as excinfo:
        validate(activities=activities)

    assert problems_of(excinfo) == [
        ContractProblem("activities", "timestamp", "activity before the lead was created", (1,), 1)
    ]


def test_outcome_for_unknown_lead() -> None:
    outcomes = make_outcomes()
    outcomes.loc[0, "lead_id"] = "999"

    with pytest.raises(DataContractError) as excinfo:
        validate(outcomes=outcomes)

    assert problems_of(excinfo) == [
        ContractProblem("outcomes", "lead_id", "outcome for unknown lead", (0,), 1)
    ]


def test_conversion_before_the_lead_was_created() -> None:
    outcomes = make_outcomes()
    outcomes.loc[1, "converted_at"] = pd.Timestamp("2024-01-03")  # lead 003 created 2024-01-04

    with pytest.raises(DataContractError) as excinfo:
        validate(outcomes=outcomes)

    assert problems_of(excinfo) == [
        ContractProblem("outcomes", "converted_at", "conversion before the lead was created", (1,), 1)
    ]


@pytest.mark.parametrize(
    ("table", "column"),
    [("leads", "created_at"), ("activities", "timestamp"), ("outcomes", "converted_at")],
)
def test_timestamp_in_the_future(table: str, column: str) -> None:
    frames = {"leads": make_leads(), "activities": make_activities(), "outcomes": make_outcomes()}
    frames[table].loc[1, column] = NOW + pd.Timedelta(seconds=1)
    if table == "leads":  # its activities and outcome would then precede its creation
        del frames["activities"], frames["outcomes"]

    with pytest.raises(DataContractError) as excinfo:
        validate_crm_tables(**frames, now=NOW)

    assert problems_of(excinfo) == [
        ContractProblem(table, column, "timestamp in the future (after 2025-06-30 12:00:00)", (1,), 1)
    ]


def test_future_defaults_to_the_current_time() -> None:
    leads = make_leads()
    leads.loc[0, "created_at"] = pd.Timestamp.now() + pd.Timedelta(days=400)

    with pytest.raises(DataContractError) as excinfo:
        validate_crm_tables(leads=leads)

    (problem,) = problems_of(excinfo)
    assert problem.problem.startswith("timestamp in the future") and problem.rows == (0,)


@pytest.mark.parametrize(
    ("table", "column"),
    [("leads", "employee_count"), ("leads", "annual_revenue"), ("outcomes", "opportunity_amount")],
)
def test_negative_value(table: str, column: str) -> None:
    frames = {"leads": make_leads(), "outcomes": make_outcomes()}
    frames[table].loc[1, column] = -5.0

    with pytest.raises(DataContractError) as excinfo:
        validate_crm_tables(**frames, now=NOW)

    assert problems_of(excinfo) == [ContractProblem(table, column, "negative value", (1,), 1)]


def test_unknown_activity_type_names_the_bad_values() -> None:
    activities = make_activities(8)
    activities.loc[[1, 4], "activity_type"] = "clik"
    activities.loc[6, "activity_type"] = "Page_View"

    with pytest.raises(DataContractError) as excinfo:
        validate(activities=activities)

    (problem,) = problems_of(excinfo)
    assert (problem.table, problem.column, problem.rows, problem.count) == (
        "activities",
        "activity_type",
        (1, 4, 6),
        3,
    )
    assert "'clik' (2)" in problem.problem and "'Page_View' (1)" in problem.problem
    assert "page_view" in problem.problem  # the allowed values are listed


def test_only_the_first_ten_rows_are_listed_but_all_are_counted() -> None:
    activities = make_activities(40)
    activities.loc[activities.index >= 15, "lead_id"] = "ghost"

    with pytest.raises(DataContractError) as excinfo:
        validate(activities=activities)

    (problem,) = problems_of(excinfo)
    assert problem.count == 25
    assert problem.rows == tuple(range(15, 25))


def test_rows_are_positions_even_with_a_custom_index() -> None:
    leads = make_leads().set_index(pd.Index([100, 200, 300, 400]))
    leads.loc[300, "employee_count"] = -1.0

    with pytest.raises(DataContractError) as excinfo:
        validate(leads=leads)

    assert problems_of(excinfo)[0].rows == (2,)


# ----------------------------------------------------------------------------------------------- #
# All problems together, readable report
# ----------------------------------------------------------------------------------------------- #


def _broken_tables() -> dict[str, pd.DataFrame]:
    leads = make_leads()
    leads = pd.concat([leads, leads.iloc[[0]]], ignore_index=True)  # lead 000 twice
    activities = make_activities()
    activities.loc[3, "lead_id"] = "ghost"
    activities.loc[0, "activity_type"] = "clik"
    outcomes = make_outcomes()
    outcomes.loc[1, "opportunity_amount"] = -1.0
    return {"leads": leads, "activities": activities, "outcomes": outcomes}


def test_problems_of_all_tables_come_back_together() -> None:
    with pytest.raises(DataContractError) as excinfo:
        validate_crm_tables(**_broken_tables(), now=NOW)

    found = {(p.table, p.column, p.problem.split(":")[0], p.rows) for p in problems_of(excinfo)}
    assert found == {
        ("leads", "lead_id", "duplicate lead_id", (0, 4)),
        ("activities", "lead_id", "activity for unknown lead", (3,)),
        ("activities", "activity_type", "unknown activity_type", (0,)),
        ("outcomes", "opportunity_amount", "negative value", (1,)),
    }
    assert [p.table for p in problems_of(excinfo)] == ["leads"] + ["activities"] * 2 + ["outcomes"]


def test_error_message_is_a_readable_report_without_traceback() -> None:
    with pytest.raises(DataContractError) as excinfo:
        validate_crm_tables(**_broken_tables(), now=NOW)

    message = str(excinfo.value)
    lines = message.splitlines()
    assert len(lines) == 1 + len(excinfo.value.problems)
    assert "leads.lead_id: duplicate lead_id (2 rows: 0, 4)" in message
    assert "activities.lead_id: activity for unknown lead (1 row: 3)" in message
    assert "outcomes.opportunity_amount: negative value (1 row: 1)" in message
    assert "Traceback" not in message and 'File "' not in message and "SchemaError" not in message
    assert isinstance(excinfo.value, ValueError)


# ----------------------------------------------------------------------------------------------- #
# Normalisation
# ----------------------------------------------------------------------------------------------- #


def test_time_zone_aware_timestamps_become_naive_utc(caplog: pytest.LogCaptureFixture) -> None:
    leads = make_leads()
    leads["created_at"] = pd.date_range("2024-01-01 10:00", periods=4, freq="D", tz="Europe/Berlin")
    activities = make_activities().assign(
        timestamp=[
            "2024-03-01T10:00:00+02:00",
            "2024-03-01T08:00:00Z",
            "2024-03-01 08:00:00",
            "2024-03-01T03:00:00-05:00",
        ]
    )
    caplog.set_level(logging.INFO, logger=LOGGER)

    tables = validate_crm_tables(leads=leads, activities=activities, now=pd.Timestamp(NOW, tz="UTC"))

    assert tables.leads["created_at"].dtype == np.dtype("datetime64[ns]")
    assert tables.leads["created_at"].iloc[0] == pd.Timestamp("2024-01-01 09:00")
    assert tables.activities["timestamp"].dtype == np.dtype("datetime64[ns]")
    assert (tables.activities["timestamp"] == pd.Timestamp("2024-03-01 08:00")).all()
    assert "leads.created_at: 4 time-zone aware timestamps converted to naive UTC" in caplog.text
    assert "activities.timestamp: 3 time-zone aware timestamps converted to naive UTC" in caplog.text


def test_non_iso_timestamp_strings_are_parsed() -> None:
    timestamps = pd.Series(["03/01/2024 10:00", "03/02/2024", "2024-03-03", None], dtype="str")
    activities = make_activities().assign(timestamp=timestamps)

    with pytest.raises(DataContractError) as excinfo:  # only the missing value is a problem
        validate(activities=activities)

    assert problems_of(excinfo) == [ContractProblem("activities", "timestamp", "missing value", (3,), 1)]


def test_empty_and_whitespace_strings_become_missing_and_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    leads = make_leads()
    leads["channel"] = ["", "   ", "web_form", "\t"]
    leads["note"] = ["", "keep", None, "x"]  # extra text column
    caplog.set_level(logging.INFO, logger=LOGGER)

    tables = validate(leads=leads)

    assert tables.leads["channel"].isna().tolist() == [True, True, False, True]
    assert tables.leads["note"].isna().tolist() == [True, False, True, False]
    assert "leads.channel: 3 empty or whitespace-only strings set to missing" in caplog.text
    assert "leads.note: 1 empty or whitespace-only strings set to missing" in caplog.text


def test_blank_required_value_is_reported_as_missing() -> None:
    leads = make_leads()
    leads.loc[1, "lead_id"] = "  "

    with pytest.raises(DataContractError) as excinfo:
        validate(leads=leads)

    assert problems_of(excinfo) == [ContractProblem("leads", "lead_id", "missing value", (1,), 1)]


# ----------------------------------------------------------------------------------------------- #
# Files
# ----------------------------------------------------------------------------------------------- #


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet", ".pq"])
def test_file_round_trip(tmp_path: Path, suffix: str) -> None:
    frames = {
        "leads": make_leads().assign(crm_owner=pd.Series(["a", None, "b", "c"], dtype="str")),
        "activities": make_activities(8),
        "outcomes": make_outcomes(),
    }
    paths = {}
    for name, frame in frames.items():
        paths[name] = tmp_path / f"{name}{suffix}"
        if "csv" in suffix:
            frame.to_csv(paths[name], index=False)
        else:
            frame.to_parquet(paths[name], index=False)

    loaded = load_crm_tables(**paths, now=NOW)
    expected = validate_crm_tables(**frames, now=NOW)

    for name in frames:
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(expected, name))
    assert loaded.leads["lead_id"].tolist() == ["000", "001", "002", "003"]  # leading zeros kept
    assert loaded.leads["phone"].iloc[0] == "0612345678"


def test_csv_problems_name_the_file_and_its_own_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    leads = make_leads().astype({"created_at": "str"})
    leads.loc[3, "created_at"] = "not a date"
    leads.to_csv(path, index=False)

    with pytest.raises(DataContractError) as excinfo:
        load_crm_tables(leads=path, now=NOW)

    problem = problems_of(excinfo)[0]
    assert (problem.table, problem.column, problem.rows, problem.count) == ("leads", "created_at", (3,), 1)
    assert problem.source == str(path) and problem.lines() == (5,)  # header is line 1, row 3 is line 5
    assert path.read_text().splitlines()[4].count("not a date") == 1
    message = str(excinfo.value)
    assert f"leads.created_at [{path}]" in message and "at line: 5" in message
    assert "line numbers are the file's own" in message


def test_csv_with_a_short_row_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "activities.csv"
    path.write_text("lead_id,timestamp,activity_type\n007,2024-03-01 10:00,page_view\n008,2024-03-02\n")

    frame = read_table(path)

    assert frame["lead_id"].tolist() == ["007", "008"]
    assert frame["activity_type"].isna().tolist() == [False, True]


@pytest.mark.parametrize("name", ["leads.xlsx", "leads.json", "leads", "leads.csv.zip"])
def test_unknown_file_suffix_is_rejected(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("lead_id\n1\n")

    with pytest.raises(ValueError, match=r"\.csv, \.csv\.gz, \.parquet or \.pq"):
        read_table(path)
    with pytest.raises(ValueError, match="unsupported file format"):
        load_crm_tables(leads=path)


# ----------------------------------------------------------------------------------------------- #
# Property: valid random tables never raise
# ----------------------------------------------------------------------------------------------- #

_TEXT = st.none() | st.text(max_size=8)
_AMOUNT = st.none() | st.floats(min_value=0, max_value=1e12, allow_nan=False)
_CREATED = st.datetimes(min_value=pd.Timestamp("2000-01-01"), max_value=pd.Timestamp("2025-01-01"))


@st.composite
def valid_tables(draw: st.DrawFn) -> dict[str, pd.DataFrame]:
    ids = draw(
        st.lists(st.text("abcXYZ0123456789-_", min_size=1, max_size=6), min_size=1, max_size=15, unique=True)
    )
    created = [pd.Timestamp(draw(_CREATED)) for _ in ids]
    leads = pd.DataFrame({"lead_id": ids, "created_at": created})
    for column in LeadsSchema.to_schema().columns:
        if column not in leads:
            strategy = _AMOUNT if column in ("employee_count", "annual_revenue") else _TEXT
            leads[column] = [draw(strategy) for _ in ids]
    events = draw(st.lists(st.tuples(st.integers(0, len(ids) - 1), st.integers(0, 10**8)), max_size=30))
    activities = pd.DataFrame(
        {
            "lead_id": [ids[i] for i, _ in events],
            "timestamp": [created[i] + timedelta(seconds=s) for i, s in events],
            "activity_type": [draw(st.sampled_from(list(ActivityType))).value for _ in events],
            "page_category": [draw(_TEXT) for _ in events],
            "campaign": [draw(_TEXT) for _ in events],
        },
        columns=list(ActivitiesSchema.to_schema().columns),
    )
    converted = draw(st.lists(st.integers(0, len(ids) - 1), unique=True, max_size=len(ids)))
    outcomes = pd.DataFrame(
        {
            "lead_id": [ids[i] for i in converted],
            "converted_at": [created[i] + timedelta(days=draw(st.integers(0, 300))) for i in converted],
            "opportunity_amount": [draw(_AMOUNT) for _ in converted],
        },
        columns=list(OutcomesSchema.to_schema().columns),
    )
    return {"leads": leads, "activities": activities, "outcomes": outcomes}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables=valid_tables())
def test_valid_random_tables_never_raise(tables: dict[str, pd.DataFrame]) -> None:
    result = validate_crm_tables(**tables, now=pd.Timestamp("2030-01-01"))

    assert result.leads["lead_id"].tolist() == tables["leads"]["lead_id"].tolist()
    assert len(result.activities) == len(tables["activities"])
    assert len(result.outcomes) == len(tables["outcomes"])


def test_optional_columns_may_be_absent_and_become_missing(caplog: pytest.LogCaptureFixture) -> None:
    leads = pd.DataFrame({"lead_id": ["a", "b"], "created_at": ["2024-01-01", "2024-01-02"]})
    activities = pd.DataFrame({"lead_id": ["a"], "timestamp": ["2024-01-03"], "activity_type": ["form_fill"]})
    with caplog.at_level(logging.INFO, logger="leadscore.features.loading"):
        tables = validate_crm_tables(leads=leads, activities=activities, now=pd.Timestamp("2025-01-01"))
    assert tables.leads["industry"].isna().all() and tables.leads["phone"].isna().all()
    assert tables.activities["page_category"].isna().all()
    assert "optional column(s)" in caplog.text and "industry" in caplog.text


def test_required_columns_are_still_required() -> None:
    with pytest.raises(DataContractError) as caught:
        validate_crm_tables(leads=pd.DataFrame({"lead_id": ["a"]}))
    assert [(p.table, p.column, p.problem) for p in caught.value.problems] == [
        ("leads", "created_at", "missing column")
    ]


@pytest.mark.parametrize(
    ("text", "ids", "row_lines", "unreadable"),
    [
        # extra fields on the first data line: set aside like any other line (pandas would make an index)
        (
            "id,x\n1,2,9\n3,4\n5,6\n",
            ["3", "5"],
            [3, 4],
            [(2, "unreadable line: expected 2 fields, saw more")],
        ),
        ("id,x\n1,2\n   \n3,4\n", ["1", "3"], [2, 4], []),  # a whitespace-only line is blank
        (
            "id,x\n1,2\n  \nid,x\n5,6\n",
            ["1", "5"],
            [2, 5],
            [(4, "unreadable line: the header repeated (files joined?)")],
        ),
        # CRLF, a blank line, a quoted line break, a line with a stray field
        (
            'id,x\r\n1,2\r\n\r\n"3\n",4\r\n5,6,7\r\n8,9\r\n',
            ["1", "3\n", "8"],
            [2, 4, 7],
            [(6, "unreadable line: expected 2 fields, saw 3")],
        ),
        ("id,x\n1,2\n3,4", ["1", "3"], None, []),  # one line per row: no map needed
        # Excel's "sep=;" first line names the separator; lines count from the file's first
        ("sep=;\nid;x\n1;2\n3;4\n", ["1", "3"], [3, 4], []),
        (
            "sep=;\nid;x\n1;2\n\n3;4;5\n6;7\n",
            ["1", "6"],
            [3, 6],
            [(5, "unreadable line: expected 2 fields, saw 3")],
        ),
    ],
)
def test_rows_keep_their_file_lines_and_unreadable_lines_are_set_aside(
    tmp_path: Path, text: str, ids: list[str], row_lines: list[int] | None, unreadable: list[tuple[int, str]]
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(text.encode())
    frame = read_export_file(path, text_columns=("id",))
    lines = export_lines(frame)
    assert frame["id"].tolist() == ids
    assert (lines.row_lines.tolist() if lines.row_lines is not None else None) == row_lines
    assert list(lines.unreadable) == unreadable
    assert len(pd.concat([frame, frame])) == 2 * len(ids)  # pandas compares attrs on concat
