"""``leadscore history`` and ``leadscore forget`` (leadscore/cli_ledger.py) on a SQLite ledger."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from leadscore.cli_ledger import forget, history
from leadscore.ledger.store import Ledger
from tests.ledger.test_store import entry


def app() -> typer.Typer:
    cli = typer.Typer()
    cli.command("history")(history)
    cli.command("forget")(forget)
    return cli


def test_history_table_and_forget_count(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger.open(url)
    ledger.append([entry(score=40.0), entry(score=86.0, days=2), entry("other")])
    ledger.close()
    runner = CliRunner()
    shown = runner.invoke(app(), ["history", "--lead-id", "L-1", "--ledger-url", url], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "86.0" in shown.output and "+46.0" in shown.output and "improving" in shown.output
    erased = runner.invoke(app(), ["forget", "--lead-id", "L-1", "--ledger-url", url])
    assert erased.exit_code == 0 and "deleted 2 ledger row(s)" in erased.output
    empty = runner.invoke(app(), ["history", "--lead-id", "L-1", "--ledger-url", url])
    assert empty.exit_code == 0 and "no scores" in empty.output


def test_bad_url_is_one_line_naming_the_variable() -> None:
    result = CliRunner().invoke(app(), ["forget", "--lead-id", "x", "--ledger-url", "nonsense"])
    assert result.exit_code == 2 and "LEADSCORE_LEDGER_URL" in result.output
