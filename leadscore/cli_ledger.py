"""Score-ledger commands: a lead's score history, erasure of a lead, reps' feedback against outcomes.

Plain typer-style functions, registered in :mod:`leadscore.cli` as ``leadscore history``,
``leadscore forget`` and ``leadscore feedback``. The ledger is ``$LEADSCORE_LEDGER_URL``, else SQLite
``ledger.db`` under ``LEADSCORE_HOME`` (the service's default); ``--ledger-url`` overrides both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()

LeadIdOption = Annotated[str, typer.Option("--lead-id", help="The CRM lead id, as the service was sent it.")]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--ledger-url", help="SQLAlchemy URL of the ledger (default: $LEADSCORE_LEDGER_URL, else SQLite)."
    ),
]
_ARROWS = {"improving": "[green]↑ improving[/]", "steady": "→ steady", "declining": "[red]↓ declining[/]"}


def _open(url: str | None):  # type: ignore[no-untyped-def]
    from leadscore.ledger.store import Ledger, LedgerError, LedgerUnavailable
    from leadscore.settings import apply_environment_defaults

    apply_environment_defaults()
    try:
        return Ledger.open(url)
    except (LedgerError, LedgerUnavailable) as error:
        console.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(2) from None


def history(
    lead_id: LeadIdOption,
    ledger_url: UrlOption = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Show the newest N scores only.")] = None,
) -> None:
    """Show a lead's scores in time order, each with the change since the previous one and the trend."""
    ledger = _open(ledger_url)
    try:
        entries = ledger.history(lead_id=lead_id, limit=limit)
    finally:
        ledger.close()
    if not entries:
        console.print(f"no scores in the ledger for lead {lead_id!r}")
        return
    table = Table(title=f"Score history of lead {lead_id}")
    for column in (
        "as of",
        "scored at",
        "model",
        "score",
        "range",
        "tier",
        "grade",
        "change",
        "trend",
        "source",
    ):
        table.add_column(column, justify="right" if column in ("score", "change") else "left")
    for item in entries:
        entry = item.entry
        low, high = entry.probability_low, entry.probability_high
        span = f"{100 * low:.0f}-{100 * high:.0f}%" if low is not None and high is not None else ""
        table.add_row(
            entry.as_of.strftime("%Y-%m-%d %H:%M"),
            entry.scored_at.strftime("%Y-%m-%d %H:%M"),
            f"{entry.model_name} v{entry.model_version}",
            f"{entry.score:.1f}",
            span,
            entry.tier or "",
            entry.grade or "",
            "" if item.change is None else f"{item.change:+.1f}",
            _ARROWS.get(item.trend or "", "first score"),
            entry.source,
        )
    console.print(table)


def forget(lead_id: LeadIdOption, ledger_url: UrlOption = None) -> None:
    """Erase every ledger row of a lead and print how many were deleted."""
    ledger = _open(ledger_url)
    try:
        deleted = ledger.forget(lead_id=lead_id)
    finally:
        ledger.close()
    console.print(f"deleted {deleted} ledger row(s) of lead {lead_id!r}")


def _outcomes(table: Path) -> tuple[Any, Any, int]:
    """The lead ledger beside ``table`` (lead_id, converted_at), the export's last date and its horizon."""
    import pandas as pd

    from leadscore.features.build import read_table_metadata_if_any
    from leadscore.features.training_table import lead_ledger_path

    path = lead_ledger_path(table)
    if not path.exists():
        console.print(
            f"[bold red]error:[/] no lead ledger beside {table}: rebuild it with `leadscore build-features`"
        )
        raise typer.Exit(2)
    meta = read_table_metadata_if_any(table) or {}
    horizon = int((meta.get("snapshot_policy") or {}).get("horizon_days") or 90)
    until = pd.Timestamp(meta["observed_until"]) if meta.get("observed_until") else pd.Timestamp.now()
    return pd.read_parquet(path, columns=["lead_id", "converted_at"]), until, horizon


def feedback(
    table: Annotated[
        Path, typer.Option(help="The newest export's training table (Parquet); its lead ledger is beside it.")
    ] = Path(".leadscore/data/training_table.parquet"),
    ledger_url: UrlOption = None,
    model_name: Annotated[str | None, typer.Option(help="Only feedback on this model's scores.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for feedback.md and feedback.csv.")] = Path(
        ".leadscore/reports/feedback"
    ),
) -> None:
    """When reps were right and when the model was: their verdicts against outcomes that have matured."""

    from leadscore.settings import in_state_dir
    from leadscore.training.feedback import feedback_report

    out = in_state_dir(out)
    leads, until, horizon = _outcomes(in_state_dir(table))
    ledger = _open(ledger_url)
    try:
        verdicts = ledger.feedback_frame(model_name=model_name)
    finally:
        ledger.close()
    try:
        report = feedback_report(verdicts, ledger=leads, until=until, horizon_days=horizon)
    except ValueError as error:
        console.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(2) from None
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback.md").write_text(report.markdown(), encoding="utf-8")
    report.table.to_csv(out / "feedback.csv", index=False)
    console.print(report.markdown())
    console.print(f"report: {out / 'feedback.md'}")


def shadow(
    table: Annotated[
        Path, typer.Option(help="The newest export's training table (Parquet); its lead ledger is beside it.")
    ] = Path(".leadscore/data/training_table.parquet"),
    ledger_url: UrlOption = None,
    model_name: Annotated[str, typer.Option(help="Registered model name.")] = "leadscore",
    tolerance: Annotated[float, typer.Option(help="Allowed drop vs the champion (as in promote).")] = 0.0,
) -> None:
    """Challenger vs champion on live traffic: their paired ledger scores against matured outcomes.

    Exit 0 when every check passes (promote with `leadscore promote --version N`), 1 when one fails or
    too few outcomes have matured.
    """

    from leadscore.settings import in_state_dir
    from leadscore.training.shadow import shadow_comparison

    leads, until, horizon = _outcomes(in_state_dir(table))
    ledger = _open(ledger_url)
    try:
        scores = ledger.scores_frame(model_name=model_name, include_shadow=True)
    finally:
        ledger.close()
    try:
        result = shadow_comparison(
            scores,
            ledger=leads,
            until=until,
            horizon_days=horizon,
            tolerance=tolerance,
        )
    except ValueError as error:
        console.print(f"[bold red]error:[/] {error}")
        raise typer.Exit(2) from None
    console.print(result.note)
    for check in result.checks:
        console.print(
            ("  " if check.passed else "  [bold red]") + check.line() + ("" if check.passed else "[/]")
        )
    if result.supports_promotion:
        console.print(f"the live evidence supports promoting v{result.challenger_version}")
        return
    raise typer.Exit(code=1)


if __name__ == "__main__":
    cli = typer.Typer(add_completion=False)
    cli.command("history")(history)
    cli.command("forget")(forget)
    cli()
