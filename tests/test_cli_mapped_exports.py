"""A model trained on a mapped event export is explained, batch-scored and served through its mapping."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.settings import crm_data_dir
from tests.features.test_events import make_event_export, write_mapping


@dataclass(frozen=True)
class MappedModel:
    folder: Path
    mapping: Path
    dirty_lead: str
    open_lead: str


def invoke(*arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(arguments), env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def mapped_model(
    tmp_path_factory: pytest.TempPathFactory, mlflow_store_template: Path
) -> Iterator[MappedModel]:
    folder = tmp_path_factory.mktemp("mapped-export")
    home = folder / "home"
    home.mkdir()
    shutil.copyfile(mlflow_store_template, home / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADSCORE_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        paths = make_event_export(folder)
        leads = pd.read_csv(paths["leads"], sep=";", dtype=str)
        leads.loc[12, "Seats"] = "a dozen"  # a dirty row: set aside, never scored as if it were clean
        leads.to_csv(paths["leads"], sep=";", index=False)
        mapping = write_mapping(folder)
        table = folder / "t.parquet"
        code, output = invoke("build-features", "--mapping", str(mapping), "--output", str(table))
        assert code == 0, output
        code, output = invoke(
            "train",
            "--set",
            f"training_table={table}",
            "--set",
            "tracking.model_name=trial",
            "--set",
            "booster.max_rounds=60",
        )
        assert code == 0, output
        code, output = invoke("promote", "--model-name", "trial", "--force")
        assert code == 0, output
        deals = set(pd.read_csv(paths["outcomes"], sep=";", dtype=str)["Contact"])
        open_lead = next(c for c in leads["Contact"].iloc[13:] if c not in deals)
        yield MappedModel(
            folder=folder, mapping=mapping, dirty_lead=str(leads.loc[12, "Contact"]), open_lead=str(open_lead)
        )


def test_explain_with_the_mapping_prints_a_card_for_a_lead_of_the_export(mapped_model: MappedModel) -> None:
    code, output = invoke(
        "explain",
        "--model-name",
        "trial",
        "--mapping",
        str(mapped_model.mapping),
        "--lead-id",
        mapped_model.open_lead,
    )
    assert code == 0, output
    assert (
        f"Lead {mapped_model.open_lead} as of 2024-" in output and "Tier:" in output and "model v1" in output
    )
    assert "chance of an opportunity within 60 days" in output
    # the score is in the ledger, as the service's are: history shows it, forget erases it
    from leadscore.ledger.store import Ledger

    ledger = Ledger.open()
    try:
        rows = ledger.history(lead_id=mapped_model.open_lead)
        assert rows and rows[-1].as_dict()["model_name"] == "trial"
        shown_code, shown = invoke("history", "--lead-id", mapped_model.open_lead)
        assert shown_code == 0 and mapped_model.open_lead in shown, shown
        erased_code, erased = invoke("forget", "--lead-id", mapped_model.open_lead)
        assert erased_code == 0 and "deleted 1 ledger row(s)" in erased, erased
        assert ledger.history(lead_id=mapped_model.open_lead) == []
    finally:
        ledger.close()
    assert "set aside as they break the data contract: 4 activities row(s), 1 leads row(s)" in " ".join(
        output.split()
    )


def test_a_lead_set_aside_is_named_with_its_problem_not_scored(mapped_model: MappedModel) -> None:
    lead = mapped_model.dirty_lead
    code, output = invoke(
        "explain", "--model-name", "trial", "--mapping", str(mapped_model.mapping), "--lead-id", lead
    )
    text = " ".join(output.split())
    assert code == 2 and "Traceback" not in output
    assert f"lead {lead} was set aside" in text and "not a number, got 'a dozen'" in text


def test_score_batch_with_the_mapping_scores_every_kept_lead(mapped_model: MappedModel) -> None:
    out = mapped_model.folder / "scores"
    code, output = invoke(
        "score-batch", "--model-name", "trial", "--mapping", str(mapped_model.mapping), "--out", str(out)
    )
    assert code == 0, output
    scored = pd.read_parquet(out)
    leads = pd.read_csv(mapped_model.folder / "leads.csv", sep=";", dtype=str)
    assert set(scored["lead_id"]) == set(leads["Contact"]) - {mapped_model.dirty_lead}
    assert scored.loc[scored["status"] == "open", "probability"].between(0, 1).all()


def test_serve_refuses_a_mapping_that_reads_the_export_differently(mapped_model: MappedModel) -> None:
    changed = yaml.safe_load(mapped_model.mapping.read_text())
    changed["label"]["horizon_days"] = 30
    other = mapped_model.folder / "other.yaml"
    other.write_text(yaml.safe_dump(changed))
    code, output = invoke("serve", "--model-name", "trial", "--mapping", str(other))
    text = " ".join(output.split())
    assert code == 2 and "Traceback" not in output
    assert "label.horizon_days" in text and "60" in text and "30" in text


def test_every_command_reads_one_default_export_folder(isolated_state: Path) -> None:
    code, output = invoke("simulate", "--leads", "200")
    assert code == 0, output
    assert crm_data_dir() == isolated_state / "data" / "crm"
    assert {p.stem for p in crm_data_dir().iterdir()} >= {"leads", "activities", "outcomes"}
    code, output = invoke("build-features")  # the default config's .leadscore/ paths: $LEADSCORE_HOME's
    assert code == 0, output
    assert (isolated_state / "data" / "training_table.parquet").is_file()
