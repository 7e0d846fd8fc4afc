"""`leadscore --help` as a newcomer meets it: commands grouped by the job they serve."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from leadscore.cli import DATA, MODEL, REPORTS, SERVING, START, app


def test_help_groups_every_command_under_a_job() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    panels = re.findall(r"╭─ (.+?) ─", result.output)
    assert {START, DATA, MODEL, REPORTS, SERVING} <= set(panels)
    assert "Commands" not in panels  # no command left ungrouped
    for command in ("demo", "build-features", "train", "promote", "explain", "serve", "score-batch"):
        assert re.search(rf"│ {command}\s+\S", result.output), command
