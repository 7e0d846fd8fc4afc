"""``leadscore why-changed`` on a fresh typer app: the change in three parts and the cool-down line."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from leadscore.cli_change import register
from leadscore.model import store

from .conftest import Trained

DAY = pd.Timedelta(days=1)


@pytest.fixture()
def app(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    """The command on a fresh app; the registry's champion (v2) and v1 are the fixture's two models."""
    versions = {"2": trained.result.model, "1": trained.result.evaluated}
    monkeypatch.setattr(store, "champion_version", lambda *, model_name: "2")
    monkeypatch.setattr(
        store,
        "resolve_version",
        lambda *, model_name, alias_or_version: alias_or_version if alias_or_version in versions else None,
    )
    monkeypatch.setattr(store, "load_scoring_model", lambda *, model_name, version: versions[version])
    fresh = typer.Typer()

    @fresh.callback()
    def main() -> None:  # a group: the command keeps its name, as in the leadscore CLI
        pass

    register(fresh)
    return fresh


@pytest.fixture()
def export(trained: Trained, tmp_path: Path) -> tuple[Path, str]:
    """A small export folder (40 leads) and a lead active in the 14 days before the end."""
    crm, end = trained.crm, pd.Timestamp(trained.crm.exported_at)
    acts = crm.activities
    converted = set(crm.outcomes["lead_id"])
    older = set(crm.leads.loc[crm.leads["created_at"] < end - 30 * DAY, "lead_id"])
    recent = acts[
        (acts["timestamp"] > end - 14 * DAY) & ~acts["lead_id"].isin(converted) & acts["lead_id"].isin(older)
    ]
    lead = str(recent["lead_id"].value_counts().index[0])
    ids = [lead, *crm.leads["lead_id"].head(39)]
    folder = tmp_path / "crm"
    folder.mkdir()
    crm.leads[crm.leads["lead_id"].isin(ids)].to_parquet(folder / "leads.parquet")
    acts[acts["lead_id"].isin(ids)].to_parquet(folder / "activities.parquet")
    crm.outcomes[crm.outcomes["lead_id"].isin(ids)].to_parquet(folder / "outcomes.parquet")
    return folder, lead


def test_why_changed_prints_three_parts_that_add_up(
    app: typer.Typer, export: tuple[Path, str], trained: Trained
) -> None:
    folder, lead = export
    end = pd.Timestamp(trained.crm.exported_at)
    since = (end - 14 * DAY).isoformat()
    args = [
        "why-changed",
        "--lead-id",
        lead,
        "--since",
        since,
        "--until",
        end.isoformat(),
        "--data-dir",
        str(folder),
    ]
    result = CliRunner().invoke(app, [*args, "--old-version", "1"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    head = re.search(r"score (\d+\.\d) .*-> (\d+\.\d) .*: ([+-]\d+\.\d|0\.0)", out)
    assert head, out
    previous, current, change = (float(x) for x in head.groups())
    assert round((current - previous) * 10) == round(change * 10)
    parts = re.findall(
        r"^│?\s*(model change|time passing \([^)]*\)|new activity)\s*│?\s*([+-]\d+\.\d)", out, re.M
    )
    assert [p[0].split(" (")[0] for p in parts] == ["model change", "time passing", "new activity"], out
    assert sum(round(float(p[1]) * 10) for p in parts) == round(change * 10)
    print(out)
    assert "v1" in out and "v2" in out
    assert "Cool-down:" in out
    # the same model: no model change, and it says why
    same = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert same.exit_code == 0, same.output
    assert "The same model gave both scores." in same.output


def test_why_changed_names_the_bad_option(
    app: typer.Typer, export: tuple[Path, str], trained: Trained
) -> None:
    folder, lead = export
    end = pd.Timestamp(trained.crm.exported_at)
    runner = CliRunner()
    base = ["why-changed", "--data-dir", str(folder)]
    cases = {
        "--until": [*base, "--lead-id", lead, "--since", end.isoformat(), "--until", (end - DAY).isoformat()],
        "--since": [*base, "--lead-id", lead, "--since", "not-a-date"],
        "--lead-id": [*base, "--lead-id", "nope", "--since", end.isoformat()],
        "--old-version": [*base, "--lead-id", lead, "--since", end.isoformat(), "--old-version", "7"],
    }
    for option, args in cases.items():
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 2, (option, result.output)
        assert "error:" in result.output and option in result.output, (option, result.output)
    missing = runner.invoke(
        app, ["why-changed", "--lead-id", lead, "--since", "2025-01-01", "--data-dir", str(folder / "none")]
    )
    assert missing.exit_code == 2 and "no leads.parquet or leads.csv" in missing.output
