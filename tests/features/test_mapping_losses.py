"""No silent loss in mappings: unreadable mapped values are reject rows, keys matching nothing are named."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from leadscore.features.build import EventBuildJob, FlatBuildJob
from leadscore.features.mapping import MappingKeyError
from tests.features.test_events import make_event_export, write_mapping


def test_text_in_a_mapped_number_column_is_a_reject_row_naming_the_value(tmp_path: Path) -> None:
    paths = make_event_export(tmp_path)
    leads = pd.read_csv(paths["leads"], sep=";", dtype=str)
    leads["Employees"] = "250"
    leads.loc[4, "Employees"] = "about 500"
    leads.loc[7, "Employees"] = "1,200"
    leads.to_csv(paths["leads"], sep=";", index=False)
    mapping = write_mapping(
        tmp_path, **{"tables.leads.rename": {"Lead Source": "channel", "Employees": "employee_count"}}
    )
    result = EventBuildJob(mapping_path=mapping, output=tmp_path / "t.parquet").run()
    rejects = pd.read_csv(result.rejects_file)
    lead_rows = rejects[rejects["table"] == "leads"].sort_values("line")
    assert lead_rows["line"].tolist() == [6, 9]  # header on line 1: row 4 is line 6
    about, thousands = lead_rows["problem"].tolist()
    assert "not a number, got 'about 500'" in about and "read." not in about
    assert "got '1,200'" in thousands and "read.thousands: ','" in thousands and "1200" in thousands
    kept = set(pd.read_parquet(result.output)["lead_id"])
    assert leads.loc[4, "Contact"] not in kept and leads.loc[7, "Contact"] not in kept
    assert leads.loc[5, "Contact"] in kept


def test_a_typo_in_a_custom_activity_key_is_an_error_naming_the_key_and_the_nearest_value(
    tmp_path: Path,
) -> None:
    make_event_export(tmp_path)
    trial = {
        "name": "trial_login",
        "label": "trial logins",
        "sentence": "Logged in to the trial {value:.0f} [time|times]",
        "actionable": False,
    }
    mapping = write_mapping(
        tmp_path, **{"tables.activities.types": {"Page View": "page_view", "Trial Logn": trial}}
    )
    with pytest.raises(MappingKeyError) as excinfo:
        EventBuildJob(mapping_path=mapping, output=tmp_path / "t.parquet").run()
    message = str(excinfo.value)
    assert "tables.activities.types: 'Trial Logn' matches no value of activities.What" in message
    assert "nearest values seen: 'Trial Login'" in message
    assert not (tmp_path / "t.parquet").exists()  # nothing half-built


def test_a_positive_value_no_deal_has_is_an_error_not_an_export_without_conversions(tmp_path: Path) -> None:
    make_event_export(tmp_path)
    mapping = write_mapping(tmp_path, **{"tables.outcomes.positive_values": ["Closed-Won"]})
    with pytest.raises(MappingKeyError, match=r"'Closed-Won'.*nearest values seen: 'Closed Won'"):
        EventBuildJob(mapping_path=mapping, output=tmp_path / "t.parquet").run()


def test_flat_export_dates_and_numbers_that_cannot_be_read_are_reject_rows(tmp_path: Path) -> None:
    import yaml

    rows = 400
    frame = pd.DataFrame(
        {
            "Id": [f"L{i}" for i in range(rows)],
            "Created": pd.date_range("2024-01-01", periods=rows, freq="D").strftime("%d.%m.%Y"),
            "Visits": [str(i % 7) for i in range(rows)],
            "Source": ["web", "ads"] * (rows // 2),
            "Converted": [str(int(i % 5 == 0)) for i in range(rows)],
        }
    )
    frame.loc[10, "Visits"] = "several"
    frame.loc[20, "Created"] = "31.02.2024"  # no such day
    export = tmp_path / "leads.csv"
    frame.to_csv(export, index=False)
    mapping = tmp_path / "flat.yaml"
    mapping.write_text(
        yaml.safe_dump(
            {
                "name": "flat",
                "source": {"path": str(export)},
                "read": {"date_format": "%d.%m.%Y"},
                "id_column": "Id",
                "created_at_column": "Created",
                "label": {"column": "Converted", "positive_values": [1]},
                "columns": {"Visits": {"role": "numeric"}, "Source": {"role": "categorical"}},
            }
        )
    )
    result = FlatBuildJob(mapping_path=mapping, output=tmp_path / "t.parquet").run()
    rejects = pd.read_csv(result.rejects_file)
    by_line = dict(zip(rejects["line"], rejects["problem"], strict=True))
    assert "not a number, got 'several'" in by_line[12]
    assert "not a date as %d.%m.%Y, got '31.02.2024'" in by_line[22]
    assert len(pd.read_parquet(result.output)) == rows - 2
