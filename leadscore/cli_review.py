"""``leadscore review``: the monthly review marketing and sales hold together.

Funnel per channel, campaign and month (MQLs and SQLs at the thresholds of the time where the score
ledger has them), time to opportunity with censoring handled, why conversion moved between two
periods, and the expected pipeline of the leads still open; one HTML report, CSV and Parquet tables,
logged to MLflow. Registered in :mod:`leadscore.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from leadscore.settings import DEFAULT_MODEL_NAME, in_state_dir

if TYPE_CHECKING:
    import pandas as pd

console = Console()


def _fail(message: str) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=2)


def review(
    table: Annotated[
        Path, typer.Option(help="The export's training table (Parquet); its lead ledger is beside it.")
    ] = Path(".leadscore/data/training_table.parquet"),
    campaign_column: Annotated[
        str, typer.Option(help="Lead-ledger column holding each lead's campaign (Olist: landing_page_id).")
    ] = "campaign",
    period: Annotated[str, typer.Option(help="Cohorts: M (month) or W (week).")] = "M",
    before: Annotated[str | None, typer.Option(help="Cohort to compare from, e.g. 2025-09.")] = None,
    after: Annotated[str | None, typer.Option(help="Cohort to compare to, e.g. 2025-10.")] = None,
    model_name: Annotated[str, typer.Option(help="Registered model name.")] = DEFAULT_MODEL_NAME,
    alias: Annotated[str, typer.Option(help="Alias (champion, ...) or version number.")] = "champion",
    model: Annotated[
        bool,
        typer.Option("--model/--no-model", help="Read tiers, lead quality and open leads' scores from it."),
    ] = True,
    ledger: Annotated[
        bool,
        typer.Option(
            "--ledger/--no-ledger", help="Read MQL/SQL tiers from the score ledger when it has them."
        ),
    ] = True,
    out: Annotated[Path, typer.Option(help="Folder for review.html and the tables.")] = Path(
        ".leadscore/reports/review"
    ),
) -> None:
    """The monthly review: funnel, time to opportunity, why conversion moved, expected pipeline."""
    import mlflow
    import pandas as pd

    from leadscore.features.build import read_table_metadata_if_any
    from leadscore.features.training_table import lead_ledger_path, open_leads_path
    from leadscore.settings import apply_environment_defaults
    from leadscore.training.review import CohortPeriod, monthly_review, review_frame, write_review
    from leadscore.training.train import use_experiment

    try:
        cohort_period = CohortPeriod(period)
    except ValueError:
        _fail(f"--period {period!r}: use M or W")
    if (before is None) != (after is None):
        _fail("--before and --after go together")
    apply_environment_defaults()
    table, out = in_state_dir(table), in_state_dir(out)
    path = lead_ledger_path(table)
    if not path.exists():
        _fail(
            f"no lead ledger beside {table} ({path.name}): rebuild the table with `leadscore build-features`"
        )
    meta = read_table_metadata_if_any(table) or {}
    lead_ledger = pd.read_parquet(path)
    until = pd.Timestamp(meta["observed_until"]) if meta.get("observed_until") else None
    if until is None:
        until = pd.to_datetime(lead_ledger["created_at"]).max()
    try:
        frame = review_frame(lead_ledger, until=until, period=cohort_period, campaign_column=campaign_column)
    except ValueError as error:
        _fail(str(error))
    tiers = quality = open_probability = None
    tiers_source = ""
    version: str | None = None
    if model:
        loaded, version = _registered(model_name, alias)
        if loaded is not None:
            quality, tiers, tiers_source = _model_view(loaded, table=table, frame=frame)
            open_path = open_leads_path(table)
            if open_path.exists():
                open_rows = pd.read_parquet(open_path)
                open_probability = pd.Series(
                    loaded.predict_proba_features(open_rows),
                    index=open_rows["lead_id"].astype(str).to_numpy(),
                )
    if ledger and version is not None:
        ledger_tiers = _ledger_tiers(model_name)
        covered = (
            0.0 if ledger_tiers is None else float(frame["lead_id"].isin(set(ledger_tiers["lead_id"])).mean())
        )
        if ledger_tiers is not None and covered >= 0.5:
            tiers = ledger_tiers
            tiers_source = (
                "the score ledger's tiers, at the thresholds in force when each score was made "
                f"({100 * covered:.0f}% of the leads were scored)"
            )
        elif ledger_tiers is not None:
            tiers_source += (
                f" (the score ledger holds {100 * covered:.0f}% of the leads: too few to count from)"
            )
    try:
        report = monthly_review(
            frame,
            tiers=tiers,
            tiers_source=tiers_source,
            quality=quality,
            open_probability=open_probability,
            periods=(before, after) if before and after else None,
        )
    except ValueError as error:
        _fail(str(error))
    paths = write_review(report, out)
    use_experiment("leadscore")
    with mlflow.start_run(run_name="review"):
        mlflow.set_tags({"leadscore.stage": "review", "leadscore.model_version": str(version or "")})
        metrics = {"leads": float(len(frame)), "channels": float(len(report.channels))}
        if report.change is not None:
            metrics |= {
                "rate_change": report.change.change,
                "mix": report.change.mix,
                "within": report.change.within,
            }
        mlflow.log_metrics(metrics)
        for artifact in paths:
            mlflow.log_artifact(str(artifact), "review")
    for note in report.notes:
        console.print(escape(note))
    if report.change is not None:
        console.print(escape(report.change.sentence()))
    console.print(f"report: {paths[0]}")


def _registered(model_name: str, alias: str) -> tuple[Any, str | None]:
    """The registered model and its version, or (None, None) with a line saying why."""
    from mlflow.exceptions import MlflowException

    from leadscore.model import store

    try:
        version = store.resolve_version(model_name=model_name, alias_or_version=alias)
    except MlflowException as error:  # no registry yet: the review runs without a model
        console.print(f"no model read ({escape(str(error))}): the review runs without scores")
        return None, None
    if version is None:
        console.print(
            f"model '{escape(model_name)}' has no '{escape(alias)}' alias: the review runs without scores"
        )
        return None, None
    return store.load_scoring_model(model_name=model_name, version=version), version


def _model_view(model: Any, *, table: Path, frame: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame, str]:
    """Per lead (aligned with ``frame``): the model's probability at its first snapshot, and its tiers."""
    import pandas as pd

    from leadscore.training.channels import lead_rows

    first = lead_rows(pd.read_parquet(table))
    probability = pd.Series(
        model.predict_proba_features(first), index=first["lead_id"].astype(str).to_numpy()
    )
    quality = pd.Series(frame["lead_id"].map(probability).to_numpy(dtype=float), index=frame.index)
    thresholds = model.thresholds
    tiers = pd.DataFrame(
        {
            "lead_id": probability.index,
            "reached_mql": probability.to_numpy() >= thresholds.mql,
            "reached_sql": probability.to_numpy() >= thresholds.sql,
        }
    )
    source = (
        "the model's score of each lead's first snapshot at today's thresholds "
        f"(MQL >= {thresholds.mql:.3f}, SQL >= {thresholds.sql:.3f}); no score ledger of the time was read"
    )
    return quality, tiers, source


def _ledger_tiers(model_name: str) -> pd.DataFrame | None:
    """Per lead, whether any score in the ledger put it at MQL or SQL (None without ledger scores)."""
    import pandas as pd

    from leadscore.ledger.store import Ledger, LedgerError, LedgerUnavailable

    try:
        opened = Ledger.open()
    except (LedgerError, LedgerUnavailable):
        return None
    try:
        scores = opened.scores_frame(model_name=model_name)
    finally:
        opened.close()
    if scores.empty:
        return None
    tier = scores["tier"].astype(str)
    grouped = scores.assign(
        mql=tier.isin({"marketing_qualified", "sales_ready"}), sql=tier == "sales_ready"
    ).groupby("lead_id")
    return pd.DataFrame(
        {
            "lead_id": grouped.size().index.astype(str),
            "reached_mql": grouped["mql"].any().to_numpy(),
            "reached_sql": grouped["sql"].any().to_numpy(),
        }
    )
