"""``leadscore why-changed``: why one lead's score changed between two times, and when it cools down.

The change is split exactly into (a) model change, (b) time passing and (c) new activity
(:func:`leadscore.model.score_change.explain_score_change`); the cool-down forecast re-scores the
lead at daily future as-of times without new activity. Registered in :mod:`leadscore.cli` with
:func:`register`; ``python -m leadscore.cli_change --help`` runs it on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from leadscore.settings import DEFAULT_MODEL_NAME, crm_data_dir

if TYPE_CHECKING:  # heavy imports stay inside the command: the CLI imports this module
    import pandas as pd

    from leadscore.model.score_change import ChangePart

console = Console()

__all__ = ["register", "why_changed"]


def register(app: typer.Typer, *, panel: str | None = None) -> None:
    """Add ``why-changed`` to ``app`` (the ``leadscore`` CLI, or a fresh one in tests) under ``panel``."""
    app.command("why-changed", rich_help_panel=panel)(why_changed)


def _fail(message: str) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=2)


def _when(value: str, option: str) -> pd.Timestamp:
    import pandas as pd

    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        _fail(f"{option} '{value}' is not a date or time (e.g. 2024-06-30 or 2024-06-30T12:00)")
    if pd.isna(stamp):
        _fail(f"{option} is empty: give a date or time (e.g. 2024-06-30)")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def _load_tables(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None, pd.Timestamp]:
    """Validated leads, activities and outcomes of an export folder, and the end of its data
    (as ``leadscore explain`` reads it)."""
    from leadscore.features.loading import DataContractError, load_crm_tables
    from leadscore.features.spark import find_table  # pyspark itself is imported only to run Spark
    from leadscore.features.training_table import observed_until

    def first(stem: str) -> Path | None:
        return find_table(data_dir, stem)

    leads_path = first("leads")
    if leads_path is None:
        _fail(f"--data-dir: no leads.parquet or leads.csv in {data_dir}")
    try:
        tables = load_crm_tables(leads=leads_path, activities=first("activities"), outcomes=first("outcomes"))
    except (DataContractError, OSError, ValueError) as error:
        _fail(f"--data-dir {data_dir}: {error}")
    end = observed_until(leads=tables.leads, activities=tables.activities, outcomes=tables.outcomes)
    return tables.leads, tables.activities, tables.outcomes, end


def _part_rows(table: Table, part: ChangePart, *, top: int) -> None:
    colour = "green" if part.points > 0 else ("red" if part.points < 0 else "dim")
    table.add_row(f"[bold]{escape(part.label)}[/]", f"[bold {colour}]{part.points:+.1f}[/]")
    shown = part.reasons[:top]
    for reason in shown:
        table.add_row(f"  {escape(reason.sentence)}", f"{reason.points:+.1f}")
    rest = round(part.points - sum(r.points for r in shown), 1)
    if len(part.reasons) > top and rest != 0:
        table.add_row(f"  other factors ({len(part.reasons) - top})", f"{rest:+.1f}")
    if part.note:
        table.add_row(f"  [dim]{escape(part.note)}[/]", "")


def why_changed(
    lead_id: Annotated[str, typer.Option("--lead-id", help="The lead whose score changed.")],
    since: Annotated[
        str,
        typer.Option("--since", help="When the previous score was taken (date or time, UTC unless it says)."),
    ],
    until: Annotated[
        str | None, typer.Option("--until", help="When the new score is taken (default: end of the data).")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Folder with leads/activities(/outcomes) tables (default $LEADSCORE_HOME/data/crm, else "
            ".leadscore/data/crm).",
        ),
    ] = None,
    model_name: Annotated[
        str, typer.Option("--model-name", help="Registered model name.")
    ] = DEFAULT_MODEL_NAME,
    old_version: Annotated[
        str | None,
        typer.Option(
            "--old-version",
            help="The model version (or alias) that gave the previous score (default: the champion, "
            "so no model change).",
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Reasons listed per part.")] = 3,
    forecast_days: Annotated[
        int, typer.Option("--forecast-days", min=1, max=3650, help="Days ahead the cool-down forecast looks.")
    ] = 90,
) -> None:
    """Why a lead's score changed between --since and --until: model change, time passing, new activity.

    The three parts add up to the change shown (in 0.1 points) and each part's reasons add up to it;
    the points are the model's attributions (TreeSHAP), not causes. Ends with when, without new
    activity, the lead falls below sales-ready / MQL.
    """
    import pandas as pd

    from leadscore.features.vocabulary import InputLayout
    from leadscore.model import store
    from leadscore.model.score_change import LeadAtTime, cool_down_forecast, explain_score_change, lead_record

    previous_at = _when(since, "--since")
    version = store.champion_version(model_name=model_name)
    if version is None:
        _fail(f"model '{model_name}' has no champion yet: run `leadscore promote`")
    model = store.load_scoring_model(model_name=model_name, version=version)
    if model.layout is not InputLayout.LEADSCORE:
        _fail(
            f"model '{model_name}' v{version} reads the export '{model.transform.name}': why-changed reads "
            "leadscore's own export folder only (mapped exports are not supported yet)"
        )
    old_model, old_label = model, version
    if old_version is not None:
        resolved = store.resolve_version(model_name=model_name, alias_or_version=old_version)
        if resolved is None:
            _fail(f"--old-version: model '{model_name}' has no version or alias '{old_version}'")
        if resolved != version:
            try:
                old_model = store.load_scoring_model(model_name=model_name, version=resolved)
            except Exception as error:  # MLflow raises its own types for a missing version
                _fail(f"--old-version: cannot load model '{model_name}' v{resolved}: {error}")
            old_label = resolved
    leads, activities, outcomes, end = _load_tables(data_dir or crm_data_dir())
    current_at = _when(until, "--until") if until else end
    try:
        record = lead_record(leads, activities, lead_id, outcomes=outcomes)
        change = explain_score_change(
            previous=LeadAtTime(old_model, record, previous_at, old_label),
            current=LeadAtTime(model, record, current_at, version),
        )
        forecast = cool_down_forecast(LeadAtTime(model, record, current_at, version), days=forecast_days)
    except ValueError as error:
        message = str(error)
        for field, option in (
            ("previous.as_of", "--since"),
            ("current.as_of", "--until"),
            ("lead_id", "--lead-id"),
        ):
            message = message.replace(field, option)
        _fail(message)

    colour = "green" if change.change > 0 else ("red" if change.change < 0 else "white")
    console.print(
        f"[bold]Lead {escape(lead_id)}[/]: score {change.previous_score:.1f} "
        f"({previous_at:%Y-%m-%d %H:%M}, v{escape(old_label)}) -> {change.current_score:.1f} "
        f"({current_at:%Y-%m-%d %H:%M}, v{escape(version)}): "
        f"[bold {colour}]{change.change:+.1f}[/]"
    )
    table = Table(show_header=True, header_style="bold")
    table.add_column("why it changed", ratio=5)
    table.add_column("points", justify="right")
    for part in change.parts:
        _part_rows(table, part, top=top)
    table.add_row("[bold]change[/]", f"[bold {colour}]{change.change:+.1f}[/]")
    console.print(table)
    console.print(f"[dim]{escape(change.note)}[/]")
    console.print(f"[bold]Cool-down:[/] {escape(forecast.text)}")
    if forecast.note:
        console.print(f"[yellow]note:[/] {escape(forecast.note)}")
    if record.converted_at is not None and pd.Timestamp(record.converted_at) <= current_at:
        console.print(
            f"[yellow]note:[/] the lead converted on {escape(record.converted_at[:10])}: work the "
            "opportunity; the scores above are what the model would have said"
        )


if __name__ == "__main__":
    standalone = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    register(standalone)
    standalone()
