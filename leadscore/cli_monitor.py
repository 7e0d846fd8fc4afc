"""``leadscore monitor``: is the model still right, before the labels arrive?

Label-free estimates (ROC AUC, precision at the SQL threshold, base rate) per cohort of the rows the
registered model never learnt from, realised values where labels matured, feature and score drift,
over the newest export's table and the score ledger. Writes an HTML report, logs it to MLflow and
exits 1 on an alert (a scheduler's signal). Registered in :mod:`leadscore.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from leadscore.settings import DEFAULT_MODEL_NAME, in_state_dir

console = Console()


def _fail(message: str) -> NoReturn:
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=2)


def monitor(
    model_name: Annotated[str, typer.Option(help="Registered model name.")] = DEFAULT_MODEL_NAME,
    alias: Annotated[
        str, typer.Option(help="Alias (champion, previous, ...) or version number.")
    ] = "champion",
    table: Annotated[Path, typer.Option(help="The newest export's training table (Parquet).")] = Path(
        ".leadscore/data/training_table.parquet"
    ),
    frequency: Annotated[str, typer.Option(help="Cohorts: M (month) or W (week).")] = "M",
    ledger: Annotated[
        bool, typer.Option("--ledger/--no-ledger", help="Also estimate over the scores in the score ledger.")
    ] = True,
    out: Annotated[Path, typer.Option(help="Folder for monitor.html, monitor.md and cohorts.csv.")] = Path(
        ".leadscore/reports/monitor"
    ),
) -> None:
    """Label-free monitoring of the registered model: estimates, realised values, drift; exit 1 on alert."""
    import mlflow
    import pandas as pd

    from leadscore.features.build import read_table_metadata_if_any
    from leadscore.model import store
    from leadscore.settings import apply_environment_defaults
    from leadscore.training.monitor import MonitorJob, write_report
    from leadscore.training.train import use_experiment

    if frequency not in {"M", "W"}:
        _fail(f"--frequency {frequency!r}: use M or W")
    apply_environment_defaults()
    table, out = in_state_dir(table), in_state_dir(out)
    version = store.resolve_version(model_name=model_name, alias_or_version=alias)
    if version is None:
        _fail(f"model '{model_name}' has no '{alias}' alias yet: run `leadscore promote`")
    model = store.load_scoring_model(model_name=model_name, version=version)
    try:
        rows = pd.read_parquet(table)
    except OSError as error:
        _fail(f"--table {table}: {error}")
    client = mlflow.MlflowClient()
    run_id = client.get_model_version(model_name, str(version)).run_id
    reference_auc = float(client.get_run(str(run_id)).data.metrics.get("roc_auc", float("nan")))
    scores = _ledger_scores(model_name) if ledger else None
    meta = read_table_metadata_if_any(table) or {}
    job = MonitorJob(
        model=model,
        table=rows,
        ages_days=(meta.get("snapshot_policy") or {}).get("ages_days"),
        reference_auc=reference_auc,
        frequency=frequency,
        ledger_scores=scores,
    )
    try:
        result = job.run()
    except ValueError as error:
        _fail(str(error))
    paths = write_report(result, out)
    use_experiment("leadscore")
    with mlflow.start_run(run_name="monitor"):
        mlflow.set_tags({"leadscore.stage": "monitor", "leadscore.model_version": str(version)})
        mlflow.log_metrics(
            {
                "alerts": float(len(result.alerts)),
                **({"score_psi": result.score_psi} if result.score_psi == result.score_psi else {}),
            }
        )
        for path in paths:
            mlflow.log_artifact(str(path), "monitor")
    console.print(result.report_markdown.split("\n## Feature drift")[0])
    console.print(f"report: {paths[0]}")
    if result.alerts:
        raise typer.Exit(code=1)


def _ledger_scores(model_name: str):  # type: ignore[no-untyped-def]
    """The ledger's scores of ``model_name``, or None when there is no ledger to read."""
    from leadscore.ledger.store import Ledger, LedgerError, LedgerUnavailable

    try:
        opened = Ledger.open()
    except (LedgerError, LedgerUnavailable) as error:
        console.print(f"score ledger not read ({error})")
        return None
    try:
        return opened.scores_frame(model_name=model_name)
    finally:
        opened.close()
