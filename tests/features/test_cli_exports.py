"""The CLI side of exports: mapping-schema documents every field, errors name the file, shapes write."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.features.events import EventMapping
from leadscore.features.mapping import ExportMapping
from leadscore.settings import PROJECT_ROOT


def test_mapping_schema_describes_every_field() -> None:
    result = CliRunner().invoke(app, ["mapping-schema"])
    assert result.exit_code == 0, result.output
    for model in (ExportMapping, EventMapping):
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name}"
            assert f"  {name} (" in result.output
    assert "Days after each snapshot the label looks." in result.output
    assert "[singular|plural]" in result.output
    as_json = CliRunner().invoke(app, ["mapping-schema", "--json"])
    assert as_json.exit_code == 0 and "anyOf" in json.loads(as_json.output)


def test_build_features_error_names_the_file_without_a_traceback(tmp_path: Path) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text("mql_id;first_contact_date;landing_page_id;origin\na;2018-01-01;p;web\n")
    deals = tmp_path / "deals.csv"
    deals.write_text("mql_id,won_date\na,2018-01-05\n")
    mapping = (PROJECT_ROOT / "examples" / "olist.yaml").read_text()
    mapping = mapping.replace(
        "${LEADSCORE_DATASETS_DIR}/olist/olist_marketing_qualified_leads_dataset.csv", str(leads)
    ).replace("${LEADSCORE_DATASETS_DIR}/olist/olist_closed_deals_dataset.csv", str(deals))
    mapping = mapping.replace("name: olist", 'name: olist\nread: {delimiter: ","}')
    path = tmp_path / "mapping.yaml"
    path.write_text(mapping)
    result = CliRunner().invoke(
        app, ["build-features", "--mapping", str(path), "--output", str(tmp_path / "t.parquet")]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert str(leads) in text and "set read.delimiter: ';'" in text


def test_simulate_writes_a_crm_shape(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["simulate", "--leads", "300", "--shape", "salesforce", "--format", "csv", "--out", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in tmp_path.iterdir()} == {"Lead.csv", "Task.csv", "Opportunity.csv"}
    assert len(pd.read_csv(tmp_path / "Lead.csv")) == 300
    wrong = CliRunner().invoke(app, ["simulate", "--shape", "pipedrive", "--out", str(tmp_path)])
    assert wrong.exit_code == 2 and "salesforce" in wrong.output
