"""Score-ledger commands: a lead's score history, and erasure of a lead.

Plain typer-style functions, registered in :mod:`leadscore.cli` as ``leadscore history`` and
``leadscore forget``. The ledger is ``$LEADSCORE_LEDGER_URL``, else SQLite ``ledger.db`` under
``LEADSCORE_HOME`` (the service's default); ``--ledger-url`` overrides both.
"""

from __future__ import annotations

from typing import Annotated

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


if __name__ == "__main__":
    cli = typer.Typer(add_completion=False)
    cli.command("history")(history)
    cli.command("forget")(forget)
    cli()
