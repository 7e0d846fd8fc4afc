"""The ``leadscore`` command line: one subcommand per stage, plus ``demo`` that chains them."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from leadscore.settings import (
    DEFAULT_MODEL_NAME,
    PROJECT_ROOT,
    apply_environment_defaults,
    crm_data_dir,
    in_state_dir,
    quiet_known_third_party_noise,
    state_dir,
)

app = typer.Typer(
    help="Calibrated, leakage-safe, explainable lead scoring.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
CONFIG_DIR = PROJECT_ROOT / "leadscore" / "configs"


# `leadscore --help` groups the commands by the job they serve
START = "Start here"
DATA = "Data: exports, mappings, training tables"
MODEL = "Model: train, compare, promote"
REPORTS = "Reports: leads, channels, touches"
SERVING = "Serving: the CRM's scores"
TEAM = "Team"


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    apply_environment_defaults()
    quiet_known_third_party_noise()
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise typer.BadParameter(f"'{pair}': expected key=value, e.g. booster.num_leaves=63")
        key, value = pair.split("=", 1)
        overrides[key] = json.loads(value) if value[:1] in '0123456789-[{tfn"' and _is_json(value) else value
    return overrides


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _config(model: Any, path: Path, overrides: list[str] | None) -> Any:
    """Load a job config; a bad file or override is reported by field, not as a traceback."""
    from pydantic import ValidationError

    from leadscore.training.config import load_config

    try:
        return load_config(model, path, _parse_overrides(overrides))
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        _fail(f"invalid config {path}: {problems}")
    except (OSError, ValueError) as error:
        _fail(f"cannot read config {path}: {error}")


def _fail(message: str) -> None:
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=2)


@app.command(rich_help_panel=DATA)
def simulate(
    leads: Annotated[int, typer.Option(help="Number of leads.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (default $LEADSCORE_HOME/data/crm, else .leadscore/data/crm)."),
    ] = None,
    file_format: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    shape: Annotated[
        str,
        typer.Option(
            help="native (the data contract), salesforce (Lead/Task/Opportunity) or hubspot "
            "(contacts/engagements/deals): the same leads in a real CRM's object, field and activity names."
        ),
    ] = "native",
    drift: Annotated[
        bool,
        typer.Option(
            "--drift",
            help="A drifting funnel: the base rate climbs, the channel mix shifts and a market index "
            "(written as market.<format>) leaves its earlier range.",
        ),
    ] = False,
) -> None:
    """Write a realistic simulated CRM export (leads, activities, outcomes, truth)."""
    from leadscore.features.crm_shapes import CrmShape, write_shape
    from leadscore.features.simulator import simulate_crm, write_crm

    if file_format not in ("parquet", "csv"):
        _fail(f"--format must be parquet or csv, got '{file_format}'")
    if shape not in [s.value for s in CrmShape]:
        _fail(f"--shape must be one of {', '.join(s.value for s in CrmShape)}, got '{shape}'")
    out = out or crm_data_dir()
    crm = simulate_crm(n_leads=leads, seed=seed, drift=drift, progress=True)
    if shape == CrmShape.NATIVE:
        paths = write_crm(crm, out_dir=out, file_format=file_format)  # type: ignore[arg-type]
    else:
        paths = write_shape(crm, shape=CrmShape(shape), out_dir=out, file_format=file_format, seed=seed)
    console.print(
        f"wrote {len(crm.leads):,} leads, {len(crm.activities):,} activities, "
        f"{len(crm.outcomes):,} outcomes to {out} ({', '.join(p.name for p in paths.values())})"
        + (f"; map it with examples/{shape}.yaml" if shape != CrmShape.NATIVE else "")
    )


@app.command("build-features", rich_help_panel=DATA)
def build_features(
    config: Annotated[Path | None, typer.Option(help="YAML job config.")] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(
            help="Mapping YAML of your own CRM export: flat (examples/xeducation.yaml) or event-level "
            "(leads + activities + deals files, examples/olist.yaml). Fields: `leadscore mapping-schema`."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="With --mapping: the export file (flat) or the folder holding its files (event mapping); "
            "default: the mapping's paths."
        ),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="With --mapping: where to write the table.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override, e.g. snapshots.horizon_days=60")
    ] = None,
) -> None:
    """Validate the CRM export and build the point-in-time training table (or a flat export's table)."""
    if mapping is not None:
        _build_flat(
            mapping=mapping, data=data, output=output or state_dir() / "data" / f"{mapping.stem}.parquet"
        )
        return
    from leadscore.features.build import BuildFeaturesJob
    from leadscore.features.loading import DataContractError
    from leadscore.training.config import BuildFeaturesConfig

    cfg = _config(BuildFeaturesConfig, config or CONFIG_DIR / "build_features.yaml", set_)
    job = BuildFeaturesJob(
        leads=cfg.leads,
        activities=cfg.activities,
        outcomes=cfg.outcomes,
        output=cfg.output,
        policy=cfg.snapshots,
    )
    try:
        result = job.run(progress=True)
    except DataContractError as error:
        _fail(str(error))
        return
    console.print(
        f"training table: {result.rows:,} snapshots, positive rate {result.positive_rate:.3f} "
        f"-> {result.output}"
    )


def _build_flat(*, mapping: Path, data: Path | None, output: Path) -> None:
    import yaml
    from pydantic import ValidationError

    from leadscore.features.build import EventBuildJob, FlatBuildJob
    from leadscore.features.loading import DataContractError
    from leadscore.features.mapping import is_event_mapping

    try:
        if is_event_mapping(mapping):
            result = EventBuildJob(mapping_path=mapping, output=output, data_dir=data).run()
            what = "snapshots"
        else:
            result = FlatBuildJob(mapping_path=mapping, output=output, data=data).run()
            what = "leads"
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        _fail(f"invalid mapping {mapping}: {problems}")
        return
    except (DataContractError, FileNotFoundError, OSError, ValueError, yaml.YAMLError) as error:
        _fail(str(error))
        return
    console.print(
        f"feature table: {result.rows:,} {what}, positive rate {result.positive_rate:.3f} -> {result.output}"
        f"\nleakage audit: {result.output.with_suffix('.audit.csv')}"
        + (
            f"\nrejected rows and unreadable lines: {result.rejected:,} -> {result.rejects_file}"
            if result.rejects_file is not None
            else ""
        )
    )


@app.command(rich_help_panel=DATA)
def audit(
    mapping: Annotated[Path, typer.Option(help="Mapping YAML of the export.")],
    data: Annotated[Path | None, typer.Option(help="The export file (default: the mapping's).")] = None,
    max_auc: Annotated[float, typer.Option(help="Flag columns whose AUC alone reaches this.")] = 0.85,
    max_missing_auc: Annotated[
        float, typer.Option(help="Flag columns whose missingness AUC reaches this.")
    ] = 0.6,
) -> None:
    """Leakage audit: how well each column alone predicts the label, and which look like hindsight."""
    from leadscore.features.audit import audit_columns
    from leadscore.features.mapping import (
        ColumnRole,
        is_event_mapping,
        label_values,
        load_mapping,
        read_export,
    )

    if is_event_mapping(mapping):
        _audit_events(mapping=mapping, data=data)
        return
    spec = load_mapping(mapping)
    source = data or spec.source_path(base=mapping.parent)
    if not source.exists():
        _fail(f"export not found: {source} (set LEADSCORE_DATASETS_DIR or pass --data)")
    frame = read_export(source, file_format=spec.source.format, mapping=spec)
    if spec.label.column not in frame.columns:
        _fail(f"label column '{spec.label.column}' is not in {source}")
    label = label_values(frame[spec.label.column], positive_values=spec.label.positive_values)
    frame, label = frame[label.notna()], label[label.notna()].astype(int)
    pii = list(spec.columns_with(ColumnRole.PII))
    report = audit_columns(
        frame.drop(columns=[spec.id_column, spec.label.column, *pii], errors="ignore"),
        label=label.to_numpy(),
        missing_values=spec.missing_values,
        max_auc=max_auc,
        max_missing_auc=max_missing_auc,
    )
    table = Table(title=f"leakage audit of {source.name} ({len(frame):,} rows)")
    for column in ("column", "role", "auc alone", "missing", "missingness auc", "tier", "flags"):
        table.add_column(column)
    warned = 0
    for row in report.to_dict(orient="records"):
        column = str(row["column"])
        role = spec.columns[column].role.value if column in spec.columns else "unmapped"
        is_feature = role in ("categorical", "numeric") and column not in spec.audit_allow
        style = "bold red" if row["flagged"] and is_feature else ("yellow" if row["flagged"] else "")
        warned += bool(row["flagged"] and is_feature)
        table.add_row(
            column,
            role,
            f"{row['auc_alone']:.3f}",
            f"{row['missing_share']:.0%}",
            f"{row['missingness_auc']:.3f}",
            {"flag": "FLAG", "confirm": "suspicious: confirm"}.get(str(row["tier"]), ""),
            str(row["flags"]),
            style=style,
        )
    console.print(table)
    console.print(
        f"{int(report['flagged'].sum())} columns flagged; {warned} of them are features the mapping "
        "has not cleared (red)."
        if warned
        else f"{int(report['flagged'].sum())} columns flagged; none is an uncleared feature."
    )


def _audit_events(*, mapping: Path, data: Path | None) -> None:
    import tempfile

    import pandas as pd

    from leadscore.features.build import EventBuildJob
    from leadscore.features.loading import DataContractError

    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "audit.parquet"
        try:
            EventBuildJob(mapping_path=mapping, output=output, data_dir=data).run()
        except (DataContractError, FileNotFoundError, ValueError) as error:
            _fail(str(error))
            return
        report = pd.read_csv(output.with_suffix(".audit.csv"))
    table = Table(
        title=f"leakage audit of {mapping.name} (lead and deal columns, label at the first snapshot)"
    )
    for column in ("column", "auc alone", "missing", "tier", "flags"):
        table.add_column(column)
    for row in report.fillna("").to_dict(orient="records"):
        style = "bold red" if row["tier"] == "flag" else ("yellow" if row["tier"] == "confirm" else "")
        table.add_row(
            str(row["column"]),
            f"{row['auc_alone']:.3f}",
            f"{row['missing_share']:.0%}",
            {"flag": "FLAG", "confirm": "suspicious: confirm"}.get(str(row["tier"]), ""),
            str(row["flags"]),
            style=style,
        )
    console.print(table)


@app.command("mapping-schema", rich_help_panel=DATA)
def mapping_schema(
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON schema instead.")] = False,
) -> None:
    """Document every field of export mapping files (flat and event mappings)."""
    from leadscore.features.mapping import mapping_field_docs, mapping_json_schema

    if as_json:
        console.print_json(json.dumps(mapping_json_schema()))
        return
    typer.echo(mapping_field_docs())


@app.command(rich_help_panel=MODEL)
def train(
    config: Annotated[Path | None, typer.Option(help="YAML job config.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override, e.g. booster.num_leaves=63")
    ] = None,
) -> None:
    """Train, calibrate, compare with baselines, log to MLflow and register the model."""
    from leadscore.training.config import TrainConfig
    from leadscore.training.train import TrainJob

    cfg = _config(TrainConfig, config or CONFIG_DIR / "train.yaml", set_)
    with console.status("training LightGBM, calibrating, evaluating, logging to MLflow"):
        result = TrainJob(cfg).run()
    table = Table(
        title=f"test period: run {result.run_id[:8]}, registered version {result.model_version}",
        box=box.SIMPLE_HEAD,
    )
    headers = {
        "model": "model",
        "roc_auc": "ROC AUC",
        "pr_auc": "PR AUC",
        "log_loss": "log loss",
        "brier": "Brier",
        "ece": "ECE",
        "lift_top10": "lift top 10%",
        "capture_top20": "found top 20%",
        "pipeline_capture_top20": "value top 20%",
    }
    columns = [c for c in headers if c in result.comparison.columns]
    for column in columns:
        if column == "model":
            table.add_column(headers[column], no_wrap=True, min_width=11)
        else:
            table.add_column(headers[column], justify="right")
    for values in result.comparison.to_dict(orient="records"):
        table.add_row(
            *(f"{values[c]:.3f}" if isinstance(values[c], float) else str(values[c]) for c in columns)
        )
    console.print(table)
    from rich.markup import escape

    console.print(f"learner: {escape(str(result.model.metadata.get('learner_choice', 'LightGBM')))}")
    contact = result.model.metadata.get("contact_effect")
    if contact:
        console.print(f"does contacting now help: {escape(str(contact))}")


@app.command(rich_help_panel=MODEL)
def retrain(
    config: Annotated[Path | None, typer.Option(help="YAML job config (the train job's).")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override, e.g. training_table=.leadscore/data/new.parquet"),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Allowed drop vs the champion (AUC, capture; added to the ECE slack).")
    ] = 0.0,
    force: Annotated[
        bool, typer.Option(help="Name it challenger even if a gate check fails (shadow scores decide later).")
    ] = False,
) -> None:
    """Retrain on the newest table, run the promotion gate and register a passing model as 'challenger'.

    The service scores the challenger in shadow beside the champion (logged in the score ledger, never
    returned); `leadscore shadow` compares them once outcomes mature, `leadscore promote` moves champion.
    Exit 1 when the gate fails (no challenger named): a scheduler's signal.
    """
    from leadscore.training import registry
    from leadscore.training.config import TrainConfig
    from leadscore.training.train import TrainJob

    cfg = _config(TrainConfig, config or CONFIG_DIR / "train.yaml", set_)
    with console.status("retraining: LightGBM, calibration, baselines, MLflow"):
        result = TrainJob(cfg).run()
    if result.model_version is None:
        _fail("the retrained model was not registered: nothing to name challenger")
    decision = registry.nominate_challenger(
        model_name=cfg.tracking.model_name,
        version=str(result.model_version),
        tolerance=tolerance,
        force=force,
    )
    for check in decision.checks:
        console.print(
            ("  " if check.passed else "  [bold red]") + check.line() + ("" if check.passed else "[/]")
        )
    if decision.promoted:
        console.print(
            f"version {result.model_version} is the challenger ({decision.reason}): the service scores it in "
            "shadow from its next reload"
        )
        return
    console.print(f"version {result.model_version} registered, not a challenger: {decision.reason}")
    raise typer.Exit(code=1)


@app.command(rich_help_panel=MODEL)
def tune(
    config: Annotated[Path | None, typer.Option(help="YAML train config to start from.")] = None,
    trials: Annotated[int, typer.Option(help="Optuna trials.")] = 30,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the best train config YAML.")] = None,
) -> None:
    """Tune LightGBM with Optuna (nested MLflow runs); writes a train config with the best params."""
    from leadscore.cli_tune import tune_command

    tune_command(config=config, trials=trials, timeout=timeout, out=out)


@app.command(rich_help_panel=MODEL)
def backtest(
    config: Annotated[
        Path | None, typer.Option(help="YAML train config (table, booster, calibration).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override, e.g. booster.num_leaves=63")
    ] = None,
    periods: Annotated[int, typer.Option(help="Retrain origins: the last K periods.")] = 6,
    frequency: Annotated[str, typer.Option(help="Period: M (month), W (week) or Q (quarter).")] = "M",
    window: Annotated[str, typer.Option(help="expanding, sliding or both.")] = "expanding",
    window_periods: Annotated[int, typer.Option(help="Periods a sliding window keeps.")] = 6,
    max_age: Annotated[int, typer.Option(help="Periods after training each model is also scored on.")] = 2,
) -> None:
    """Rolling-origin retraining for every candidate; recommends the candidate, window and cadence."""
    from rich.markup import escape

    from leadscore.training.backtest import BacktestJob, Window
    from leadscore.training.config import TrainConfig

    if frequency not in {"M", "W", "Q"}:
        _fail(f"--frequency {frequency!r}: use M, W or Q")
    if window not in {"expanding", "sliding", "both"}:
        _fail(f"--window {window!r}: use expanding, sliding or both")
    windows = tuple(Window) if window == "both" else (Window(window),)
    cfg = _config(TrainConfig, config or CONFIG_DIR / "train.yaml", set_)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("backtest"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)
        started = False

        def advance(description: str, total: int) -> None:
            nonlocal started
            bar.update(task, total=total, description=description, advance=1 if started else 0)
            started = True

        job = BacktestJob(
            cfg,
            periods=periods,
            frequency=frequency,
            windows=windows,
            window_periods=window_periods,
            max_age=max_age,
            progress=advance,
        )
        try:
            result = job.run()
        except (ValueError, FileNotFoundError) as error:
            bar.stop()
            _fail(str(error))
            return
    table = Table(
        title=f"backtest: mean over periods (MLflow run {str(result.run_id)[:8]})", box=box.SIMPLE_HEAD
    )
    headers = (
        "window",
        "candidate",
        "periods",
        "ROC AUC",
        "worst",
        "lift@20",
        "ECE",
        "pooled AUC",
        "pooled ECE",
    )
    for header in headers:
        table.add_column(header, justify="left" if header in {"window", "candidate"} else "right")
    for r in result.summary.itertuples(index=False):
        table.add_row(
            str(r.window),
            str(r.candidate),
            str(r.periods),
            f"{r.mean_roc_auc:.3f}",
            f"{r.worst_roc_auc:.3f}",
            f"{r.mean_lift_top20:.2f}",
            f"{r.mean_ece:.3f}",
            f"{getattr(r, 'pooled_roc_auc', float('nan')):.3f}",
            f"{getattr(r, 'pooled_ece', float('nan')):.3f}",
        )
    console.print(table)
    rec = result.recommendation
    console.print(f"recommended: {rec['candidate']} ({rec['window']} window), {rec['cadence']}")
    console.print(f"  why: {escape(rec['why'])}")
    console.print(f"  cadence: {escape(rec['cadence_why'])}")
    if "prior_adjustment" in rec:
        console.print(f"  level: {escape(rec['prior_adjustment'])}")
    for skipped in result.skipped:
        console.print(f"[yellow]skipped:[/] {escape(skipped)}")


@app.command(rich_help_panel=MODEL)
def promote(
    model_name: Annotated[str, typer.Option(help="Registered model name.")] = DEFAULT_MODEL_NAME,
    version: Annotated[str | None, typer.Option(help="Version to promote (default: latest).")] = None,
    force: Annotated[
        bool, typer.Option(help="Promote even if a gate check fails or the champion is not comparable.")
    ] = False,
    tolerance: Annotated[
        float, typer.Option(help="Allowed drop vs the champion (AUC, capture; added to the ECE slack).")
    ] = 0.0,
    rollback: Annotated[bool, typer.Option(help="Point champion back at the previous champion.")] = False,
) -> None:
    """Move 'champion' to a candidate that beats both baselines and is not worse than the champion.

    Judged on the candidate's held-out test period by paired bootstrap 95% intervals on ROC AUC,
    ECE and the (pipeline) capture of the top 20%; every check is printed.
    """
    from leadscore.training import registry

    if rollback:
        console.print(f"champion is now version {registry.rollback(model_name=model_name)}")
        return
    decision = registry.promote(model_name=model_name, version=version, force=force, tolerance=tolerance)
    verb = "promoted" if decision.promoted else "kept champion; not promoted"
    for check in decision.checks:
        console.print(
            ("  " if check.passed else "  [bold red]") + check.line() + ("" if check.passed else "[/]")
        )
    console.print(f"{verb}: version {decision.candidate_version} ({decision.reason})")
    if not decision.promoted and decision.reason != "already the champion":
        raise typer.Exit(code=1)


@app.command(rich_help_panel=MODEL)
def evaluate(
    model_name: Annotated[str, typer.Option(help="Registered model name.")] = DEFAULT_MODEL_NAME,
    alias: Annotated[
        str, typer.Option(help="Alias (champion, previous, ...) or version number.")
    ] = "champion",
    table: Annotated[Path, typer.Option(help="Training table (Parquet) to evaluate on.")] = Path(
        ".leadscore/data/training_table.parquet"
    ),
    bootstrap: Annotated[int, typer.Option(min=20, help="Bootstrap resamples for the 95% intervals.")] = 200,
) -> None:
    """Metrics of a registered model on rows it never learnt from, with 95% intervals and drift.

    Rows of the table newer than the model's data when there are enough; otherwise the held-out
    test-period scores logged when it was trained (the pre-test refit of the same recipe), said so.
    """
    table = in_state_dir(table)
    import mlflow
    import pandas as pd
    from rich.markup import escape

    from leadscore.model import store

    version = store.resolve_version(model_name=model_name, alias_or_version=alias)
    if version is None:
        _fail(f"model '{model_name}' has no '{alias}' alias yet: run `leadscore promote`")
        return
    from leadscore.features.build import read_table_metadata_if_any
    from leadscore.training.drift import drift_report
    from leadscore.training.honest import NoHeldOutRows, evaluate_registered
    from leadscore.training.registry import logged_held_out_scores
    from leadscore.training.split import TimeAxis, labelled_rows
    from leadscore.training.train import lead_flow_mask, table_time_axis

    model = store.load_scoring_model(model_name=model_name, version=version)
    try:
        full = labelled_rows(pd.read_parquet(table))
    except OSError as error:
        _fail(f"--table {table}: {error}")
        return
    client = mlflow.MlflowClient()
    run_id = client.get_model_version(model_name, str(version)).run_id
    logged = logged_held_out_scores(client=client, run_id=str(run_id)) if run_id else None
    try:
        result = evaluate_registered(model=model, table=full, logged_scores=logged, n_boot=bootstrap)
    except NoHeldOutRows as error:
        _fail(str(error))
        return
    console.print(f"{model_name} version {version}: {escape(result.source)}")
    console.print(
        f"{result.rows:,} rows, {result.positives:,} converted; 95% bootstrap intervals "
        f"({bootstrap} resamples)"
    )
    for key, value in result.metrics.items():
        low, high = result.intervals.get(key, (float("nan"), float("nan")))
        console.print(f"{key:>24}: {value:.4f}  [{low:.4f}, {high:.4f}]")
    meta = read_table_metadata_if_any(table) or {}
    axis = table_time_axis(meta)
    columns_there = axis.column in result.frame.columns and axis.column in full.columns
    if axis is not TimeAxis.NONE and columns_there:
        # the lead flow at the configured ages: older-age snapshots fill late periods by their mix alone
        ages = (meta.get("snapshot_policy") or {}).get("ages_days")
        flow = full[lead_flow_mask(full, ages_days=ages)]
        start = result.frame[axis.column].min()
        older, current = flow[flow[axis.column] < start], flow[flow[axis.column] >= start]
        if len(older) and len(current):
            categorical = set(model.encoder.columns or ())
            report = drift_report(
                reference=older,
                current=current,
                numeric_features=[n for n in model.feature_names if n not in categorical],
                categorical_features=[n for n in model.feature_names if n in categorical],
                time_axis=axis,
            )
            console.print(
                f"base rate: {report.reference_rate:.1%} before, {report.current_rate:.1%} evaluated"
            )
            for warning in report.warnings:
                console.print(f"[yellow]drift warning:[/] {escape(warning)}")


@app.command(rich_help_panel=REPORTS)
def channels(
    table: Annotated[Path, typer.Option(help="Training table (Parquet) built from the export.")] = Path(
        ".leadscore/data/training_table.parquet"
    ),
    channel: Annotated[
        str, typer.Option(help="The table's lead-source column, e.g. channel, origin, lead_source.")
    ] = "channel",
    spend: Annotated[
        Path | None, typer.Option(help="CSV of channel,spend or channel,month,spend (month as YYYY-MM).")
    ] = None,
    model_name: Annotated[
        str | None, typer.Option(help="Registered model whose expected opportunities to add per channel.")
    ] = None,
    alias: Annotated[str, typer.Option(help="Alias or version of --model-name.")] = "champion",
    output: Annotated[
        Path, typer.Option(help="Folder for channels.csv, channel_months.csv, channels.png.")
    ] = Path(".leadscore/reports"),
) -> None:
    """Each lead source from lead to opportunity to pipeline value, and its return on spend."""
    table, output = in_state_dir(table), in_state_dir(output)
    import pandas as pd
    from rich.markup import escape

    from leadscore.features.build import read_table_metadata_if_any
    from leadscore.features.training_table import lead_ledger_path
    from leadscore.training.channels import SpendFileError, channel_plot, channel_report, read_spend
    from leadscore.training.train import table_time_axis

    if not table.exists():
        _fail(f"--table {table}: no such file; build it with `leadscore build-features`")
    model = None
    if model_name is not None:
        from leadscore.model import store

        version = store.resolve_version(model_name=model_name, alias_or_version=alias)
        if version is None:
            _fail(f"model '{model_name}' has no '{alias}' alias yet: run `leadscore promote`")
            return
        model = store.load_scoring_model(model_name=model_name, version=version)
    try:
        spend_frame = None if spend is None else read_spend(spend)
        ledger_file = lead_ledger_path(table)
        report = channel_report(
            table=pd.read_parquet(table),
            ledger=pd.read_parquet(ledger_file) if ledger_file.exists() else None,
            channel_column=channel,
            time_axis=table_time_axis(read_table_metadata_if_any(table) or {}),
            spend=spend_frame,
            model=model,
        )
    except (SpendFileError, ValueError) as error:
        _fail(str(error))
        return
    output.mkdir(parents=True, exist_ok=True)
    report.channels.to_csv(output / "channels.csv", index=False)
    if not report.months.empty:
        report.months.assign(month=report.months["month"].astype(str)).to_csv(
            output / "channel_months.csv", index=False
        )
    channel_plot(report).savefig(output / "channels.png")
    views = [
        (
            f"channels ({channel}) of {table.name}: opportunities within the horizon",
            [
                ("leads", "leads", "{:,.0f}"),
                ("known", "outcome_known", "{:,.0f}"),
                ("opps", "opportunities", "{:,.0f}"),
                ("rate % (95% interval)", "opportunity_rate", ""),
                ("share", "share_of_opportunities", "{:.0%}"),
            ],
        ),
        (
            "value and spend",
            [
                ("pipeline", "pipeline_value", "{:,.0f}"),
                ("per lead", "value_per_lead", "{:,.0f}"),
                ("spend", "spend", "{:,.0f}"),
                ("cost/lead", "cost_per_lead", "{:,.2f}"),
                ("cost/opp", "cost_per_opportunity", "{:,.0f}"),
                ("pipe/spend", "pipeline_per_spend", "{:.2f}"),
            ],
        ),
        (
            "won deals and revenue",
            [
                ("won", "won", "{:,.0f}"),
                ("win rate % (95% interval)", "win_rate", ""),
                ("revenue", "revenue", "{:,.0f}"),
                ("cost/won", "cost_per_win", "{:,.0f}"),
                ("revenue/spend", "revenue_per_spend", "{:.2f}"),
            ],
        ),
        (
            f"the model's view ({model_name} {alias}), at each lead's first snapshot",
            [
                ("scored", "scored_leads", "{:,.0f}"),
                ("opps", "scored_opportunities", "{:,.0f}"),
                ("expected", "expected_opportunities", "{:,.1f}"),
                ("obs/exp", "observed_to_expected", "{:.2f}"),
                ("from open", "expected_from_open", "{:,.1f}"),
                ("at SQL", "sql_share", "{:.0%}"),
                ("at MQL", "mql_share", "{:.0%}"),
                ("SQL precision", "sql_precision", "{:.0%}"),
            ],
        ),
    ]
    for title, columns in views:
        shown = [(h, c, f) for h, c, f in columns if c in report.channels.columns]
        if not shown or (title == "value and spend" and len(shown) == 1 and spend is None):
            continue
        view = Table(title=title, box=box.SIMPLE_HEAD)
        view.add_column("channel", overflow="fold")
        for header, _, _ in shown:
            view.add_column(header, justify="right")
        for record in report.channels.to_dict("records"):
            cells = []
            for _, column, form in shown:
                value = record[column]
                if pd.isna(value):
                    cells.append("-")
                elif column in ("opportunity_rate", "win_rate"):
                    low, high = (
                        ("rate_low", "rate_high") if column == "opportunity_rate" else ("win_low", "win_high")
                    )
                    cells.append(f"{100 * value:.1f} ({100 * record[low]:.1f}-{100 * record[high]:.1f})")
                else:
                    cells.append(form.format(value))
            view.add_row(escape(str(record["channel"])), *cells)
        console.print(view)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    written = [output / "channels.csv", output / "channels.png"]
    if not report.months.empty:
        written.insert(1, output / "channel_months.csv")
    console.print("written: " + ", ".join(str(path) for path in written))


@app.command(rich_help_panel=REPORTS)
def touches(
    table: Annotated[
        Path, typer.Option(help="Training table (Parquet) built from an export with activities.")
    ] = Path(".leadscore/data/training_table.parquet"),
    output: Annotated[
        Path, typer.Option(help="Folder for touches.csv, touches_after.csv, touches.png.")
    ] = Path(".leadscore/reports"),
) -> None:
    """How many sales touches the export's leads had before becoming opportunities, and what came after k."""
    table, output = in_state_dir(table), in_state_dir(output)
    import numpy as np
    import pandas as pd
    from rich.markup import escape

    from leadscore.features.training_table import lead_ledger_path
    from leadscore.training.touches import touch_plot, touch_report

    ledger_file = lead_ledger_path(table)
    if not table.exists():
        _fail(f"--table {table}: no such file; build it with `leadscore build-features`")
    if not ledger_file.exists():
        from leadscore.features.build import read_table_metadata_if_any

        if (read_table_metadata_if_any(table) or {}).get("mode") == "flat":
            _fail(
                f"{table.name} is a flat export (one row per lead, no activity history): no touches to count"
            )
        _fail(
            f"no lead ledger {ledger_file.name} beside {table.name}: it was built before the build wrote "
            "one; rebuild it with `leadscore build-features`"
        )
    from pyarrow import ArrowException

    try:
        report = touch_report(pd.read_parquet(ledger_file))
    except (OSError, ArrowException) as error:
        _fail(f"{ledger_file}: cannot be read as Parquet ({error}); rebuild the table")
        return
    except ValueError as error:
        _fail(str(error))
        return
    output.mkdir(parents=True, exist_ok=True)
    report.distribution.to_csv(output / "touches.csv", index=False)
    report.after.to_csv(output / "touches_after.csv", index=False)
    touch_plot(report).savefig(output / "touches.png")
    view = Table(title=f"sales touches of {table.name}: leads with a known outcome", box=box.SIMPLE_HEAD)
    for header in (
        "touches",
        "opps with exactly k",
        "cumulative (touched)",
        "leads with >= k",
        "opps among them",
        "rate %",
    ):
        view.add_column(header, justify="right")
    exactly = report.distribution["opportunities"].to_numpy(dtype=int)
    cumulative = report.distribution["cumulative_share_touched"].to_numpy(dtype=float)
    after = {c: report.after[c].to_numpy(dtype=float) for c in report.after.columns}
    percent = {c: 100 * after[c] for c in ("rate", "rate_low", "rate_high")}
    for i, k in enumerate(report.after["touches"].to_numpy(dtype=int)):
        view.add_row(
            str(k),
            f"{exactly[k]:,}",
            "-" if np.isnan(cumulative[k]) else f"{cumulative[k]:.0%}",
            f"{after['leads_reaching'][i]:,.0f}",
            f"{after['opportunities'][i]:,.0f}",
            f"{percent['rate'][i]:.1f} ({percent['rate_low'][i]:.1f}-{percent['rate_high'][i]:.1f})",
        )
    console.print(view)
    if report.cadence is not None:
        c = report.cadence
        console.print(
            f"learned range: [bold]{c.span}[/] sales touches (of {c.opportunities:,} opportunities touched "
            f"before converting, at least 80% had {c.fewest} or more, at least 90% had {c.most} or fewer); "
            "training puts it into the model's follow-up advice"
        )
    else:
        console.print(
            f"[yellow]no range learned:[/] {escape(str(report.not_learned))}; the advice keeps 5-10"
        )
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(
        "written: "
        + ", ".join(str(output / name) for name in ("touches.csv", "touches_after.csv", "touches.png"))
    )


def _load_lead_data(data_dir: Path) -> tuple[Any, Any, Any]:
    leads, activities, _, end = _load_crm(data_dir)
    return leads, activities, end


def _load_crm(data_dir: Path) -> tuple[Any, Any, Any, Any]:
    """Validated leads, activities and outcomes of an export folder, and the end of its data."""
    from leadscore.features.loading import load_crm_tables
    from leadscore.features.spark import find_table  # pyspark itself is imported only to run Spark
    from leadscore.features.training_table import observed_until

    def first(stem: str) -> Path | None:
        return find_table(data_dir, stem)

    leads_path = first("leads")
    if leads_path is None:
        _fail(f"no leads.parquet or leads.csv in {data_dir}")
    tables = load_crm_tables(leads=leads_path, activities=first("activities"), outcomes=first("outcomes"))  # type: ignore[arg-type]
    return (
        tables.leads,
        tables.activities,
        tables.outcomes,
        observed_until(leads=tables.leads, activities=tables.activities, outcomes=tables.outcomes),
    )


def _load_mapped(model: Any, mapping: Path, data_dir: Path | None) -> tuple[Any, Any, Any, Any, Any, Any]:
    """A mapped export read for ``explain``: the model as it scores it, the tables, their end, and
    the leads set aside with their problems."""
    from leadscore.cli_scale import read_mapped_export, rejects_line
    from leadscore.features.loading import DataContractError

    try:
        export = read_mapped_export(model=model, mapping=mapping, data=data_dir)
    except (DataContractError, FileNotFoundError, OSError, ValueError) as error:
        _fail(str(error))
        raise  # _fail exits
    note = rejects_line(export)
    if note is not None:
        console.print(note)
    tables = export.tables
    return (
        export.model,
        tables.leads,
        tables.activities,
        tables.outcomes,
        export.end,
        export.rejected_lead_ids,
    )


@app.command(rich_help_panel=REPORTS)
def explain(
    lead_id: Annotated[list[str], typer.Option("--lead-id", help="Lead(s) to explain.")],
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder with leads/activities tables (default $LEADSCORE_HOME/data/crm, else "
            ".leadscore/data/crm); with --mapping, the folder of the export's files (default: the "
            "mapping's paths)."
        ),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(
            help="Event mapping YAML the export is read with, for a model trained on a mapped export "
            "(examples/olist.yaml): lead ids are the export's own."
        ),
    ] = None,
    model_name: Annotated[str, typer.Option(help="Registered model name.")] = DEFAULT_MODEL_NAME,
    as_of: Annotated[
        str | None, typer.Option(help="Score as of this time (default: end of the data).")
    ] = None,
    html: Annotated[
        Path | None, typer.Option(help="Also write an HTML card per lead into this folder.")
    ] = None,
) -> None:
    """Print a reason card per lead: who, status or score with its range, tier, reasons, next best actions.

    Leads converted, disqualified or not yet created at the as-of time get their status, not a score.
    """
    import pandas as pd

    from leadscore.model import store
    from leadscore.training.cards import explain_leads, print_card, write_html_card

    version = store.champion_version(model_name=model_name)
    if version is None:
        _fail(f"model '{model_name}' has no champion yet: run `leadscore promote`")
    model = store.load_scoring_model(model_name=model_name, version=version)  # type: ignore[arg-type]
    if mapping is None:
        leads, activities, outcomes, end = _load_crm(data_dir or crm_data_dir())
        set_aside: dict[str, list[str]] = {}
    else:
        model, leads, activities, outcomes, end, set_aside = _load_mapped(model, mapping, data_dir)
    for lead in lead_id:
        if lead in set_aside:
            _fail(f"lead {lead} was set aside as it breaks the data contract: {'; '.join(set_aside[lead])}")
    unknown = sorted(set(lead_id) - set(leads["lead_id"]))
    if unknown:
        _fail(f"unknown lead id(s): {', '.join(unknown)}")
    chosen = leads[leads["lead_id"].isin(lead_id)].reset_index(drop=True)
    try:
        when = pd.Timestamp(as_of) if as_of else end
    except ValueError:
        _fail(f"--as-of '{as_of}' is not a date or time (e.g. 2024-06-30 or 2024-06-30T12:00)")
        return
    if when.tzinfo is not None:
        when = when.tz_convert("UTC").tz_localize(None)
    cards = explain_leads(model=model, leads=chosen, activities=activities, as_of=when, outcomes=outcomes)
    for card in cards:
        print_card(card, console=console)
        if html is not None:
            path = write_html_card(card, out_dir=html)
            console.print(f"HTML card: {path}")
    _record_cards(cards, model_name=model_name, leads=chosen, activities=activities, as_of=when)


def _record_cards(cards: list[Any], *, model_name: str, leads: Any, activities: Any, as_of: Any) -> None:
    """Append the scored cards to the score ledger (source ``cli``); a ledger that cannot be reached
    is said in one line and never fails the command. ``LEADSCORE_LEDGER=false`` turns it off."""
    from leadscore.serving.settings import LEDGER_ENV

    if os.environ.get(LEDGER_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return
    from datetime import UTC, datetime

    from leadscore.ledger.store import Ledger, LedgerError, ScoreEntry, feature_hash, utc_naive

    entries = []
    for card in cards:
        scored = card.scored
        if scored.score is None or scored.probability is None:
            continue  # converted, disqualified or not created yet: nothing was scored
        mine = (
            activities[activities["lead_id"].astype(str) == card.lead_id] if activities is not None else None
        )
        seen = mine[mine["timestamp"] <= as_of] if mine is not None and "timestamp" in mine else None
        lead_row = leads[leads["lead_id"].astype(str) == card.lead_id].to_dict(orient="records")
        entries.append(
            ScoreEntry(
                lead_id=card.lead_id,
                as_of=utc_naive(str(card.as_of), field_name="as_of"),
                scored_at=datetime.now(UTC),
                model_name=model_name,
                model_version=str(card.model_version),
                probability=float(scored.probability),
                probability_low=scored.probability_low,
                probability_high=scored.probability_high,
                score=float(scored.score),
                tier=str(scored.tier) if scored.tier is not None else None,
                grade=scored.grade,
                reasons=[r.model_dump() for r in (*scored.reasons_positive, *scored.reasons_negative)],
                # what was scored: the lead's export row, as of when, and the activities it had by then
                feature_hash=feature_hash(
                    {
                        "lead": lead_row,
                        "as_of": str(card.as_of),
                        "activities": 0 if seen is None else len(seen),
                        "last_activity": None if seen is None or seen.empty else str(seen["timestamp"].max()),
                    }
                ),
                source="cli",
            )
        )
    if not entries:
        return
    try:
        ledger = Ledger.open()
        try:
            ledger.append(entries)
        finally:
            ledger.close()
    except (LedgerError, OSError, RuntimeError, ValueError) as error:
        console.print(f"score ledger not written ({error}); the cards above are unaffected")
    except Exception as error:  # a database driver's own errors: never fail a card
        console.print(f"score ledger not written ({type(error).__name__}); the cards above are unaffected")


@app.command(rich_help_panel=SERVING)
def serve(
    host: Annotated[
        str | None,
        typer.Option(help="Interface to bind [env LEADSCORE_HOST; default 127.0.0.1, loopback only]."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port [env LEADSCORE_PORT; default 3000].")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes [env LEADSCORE_WORKERS; default 1].")
    ] = None,
    model_name: Annotated[
        str | None,
        typer.Option(help=f"Registered model name [env LEADSCORE_MODEL_NAME; default {DEFAULT_MODEL_NAME}]."),
    ] = None,
    model_version: Annotated[
        str | None, typer.Option(help="Pin a version instead of @champion [env LEADSCORE_MODEL_VERSION].")
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(
            help="The mapping YAML of the export the CRM sends (model trained on a mapped export): checked "
            "against the model's own before serving; the service reads records with the model's."
        ),
    ] = None,
) -> None:
    """Start the BentoML scoring service (needs LEADSCORE_API_KEYS or LEADSCORE_API_KEYS_FILE).

    A flag wins over its environment variable; without either the default applies. The server
    checks the model before binding the port and exits non-zero, naming the model, if it cannot serve.
    """
    from leadscore.serving.launch import serve as launch
    from leadscore.serving.settings import ConfigurationError

    if mapping is not None:
        _check_serving_mapping(mapping=mapping, model_name=model_name, model_version=model_version)

    try:
        launch(host=host, port=port, workers=workers, model_name=model_name, model_version=model_version)
    except ConfigurationError as error:
        _fail(str(error))


def _check_serving_mapping(*, mapping: Path, model_name: str | None, model_version: str | None) -> None:
    """Fail, naming each difference, unless ``mapping`` reads the export as the served model's does."""
    from leadscore.cli_scale import check_mapping_matches
    from leadscore.model import store
    from leadscore.serving.settings import MODEL_NAME_ENV, MODEL_VERSION_ENV

    name = model_name or os.environ.get(MODEL_NAME_ENV, "").strip() or DEFAULT_MODEL_NAME
    version = model_version or os.environ.get(MODEL_VERSION_ENV, "").strip() or None
    version = version or store.champion_version(model_name=name)
    if version is None:
        _fail(f"model '{name}' has no champion yet: run `leadscore promote` or pass --model-version")
        return
    model = store.load_scoring_model(model_name=name, version=version)
    try:
        check_mapping_matches(model, mapping)
    except (OSError, ValueError) as error:
        _fail(str(error))
    console.print(
        f"--mapping {mapping} reads the export as {name} v{version}'s own mapping does: the CRM sends "
        "its rows (an event export's lead rows with their activities nested) to POST /score-records"
    )


@app.command(rich_help_panel=START)
def demo(
    leads: Annotated[int, typer.Option(help="Simulated leads.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """The main job end to end: simulate -> build features -> train -> promote -> explain a lead."""
    import pandas as pd

    data_dir = crm_data_dir()
    simulate(leads=leads, seed=seed, out=data_dir, file_format="parquet")
    build_features(
        config=None,
        set_=[
            f"leads={data_dir / 'leads.parquet'}",
            f"activities={data_dir / 'activities.parquet'}",
            f"outcomes={data_dir / 'outcomes.parquet'}",
            f"output={state_dir() / 'data' / 'training_table.parquet'}",
        ],
    )
    train(config=None, set_=[f"training_table={state_dir() / 'data' / 'training_table.parquet'}"])
    try:
        promote(model_name=DEFAULT_MODEL_NAME, version=None, force=False, tolerance=0.0, rollback=False)
    except typer.Exit:
        console.print("demo: the promotion gate refused this model (checks above); explaining it unpromoted")
    from leadscore.model import store

    # show the hottest open lead at the end of the data: the one a rep should call first
    champion = store.load_scoring_model(
        model_name=DEFAULT_MODEL_NAME, version=store.champion_version(model_name=DEFAULT_MODEL_NAME) or "1"
    )
    leads_table, activities, end = _load_lead_data(data_dir)
    converted = set(pd.read_parquet(data_dir / "outcomes.parquet", columns=["lead_id"])["lead_id"])
    open_leads = leads_table[~leads_table["lead_id"].isin(converted)].tail(3000).reset_index(drop=True)
    scores = champion.predict_proba_features(
        champion.features(leads=open_leads, activities=activities, as_of=end)
    )
    newest = open_leads["lead_id"].iloc[int(scores.argmax())]
    explain(
        lead_id=[newest],
        data_dir=data_dir,
        model_name=DEFAULT_MODEL_NAME,
        as_of=None,
        html=state_dir() / "cards",
    )
    console.print(f"MLflow UI: mlflow ui --backend-store-uri {os.environ['MLFLOW_TRACKING_URI']}")


from leadscore.cli_scale import score_batch, tracking_server  # noqa: E402  (cheap: no pyspark import)

app.command("tracking-server", rich_help_panel=TEAM)(tracking_server)
app.command("score-batch", rich_help_panel=SERVING)(score_batch)

from leadscore.cli_change import register as register_why_changed  # noqa: E402  (the model loads inside)

register_why_changed(app, panel=REPORTS)

from leadscore.cli_ledger import (  # noqa: E402  (cheap: SQLAlchemy imported when run)
    feedback,
    forget,
    history,
    shadow,
)

app.command("history", rich_help_panel=REPORTS)(history)
app.command("feedback", rich_help_panel=REPORTS)(feedback)
app.command("shadow", rich_help_panel=MODEL)(shadow)

from leadscore.cli_monitor import monitor  # noqa: E402  (cheap: the model and pandas load when run)

app.command("monitor", rich_help_panel=MODEL)(monitor)

from leadscore.cli_review import review  # noqa: E402  (cheap: pandas and MLflow load when run)

app.command("review", rich_help_panel=REPORTS)(review)
app.command("forget", rich_help_panel=TEAM)(forget)


def run() -> None:
    """Console entry point: known failures become one actionable line, not a traceback."""
    import warnings

    # pandera imports pyspark.pandas when pyspark is installed, which warns about pandas 3 on every command
    warnings.filterwarnings(
        "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
    )
    import yaml
    from mlflow.exceptions import MlflowException
    from pydantic import ValidationError

    from leadscore.features.loading import DataContractError

    try:
        app()
    except DataContractError as error:
        console.print(f"[bold red]error:[/] {error}")
        raise SystemExit(2) from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        console.print(f"[bold red]error:[/] invalid {error.title}: {problems}")
        raise SystemExit(2) from None
    except (FileNotFoundError, ValueError, KeyError, yaml.YAMLError, MlflowException) as error:
        console.print(f"[bold red]error:[/] {type(error).__name__}: {error}")
        console.print("(run with LEADSCORE_DEBUG=1 for the full traceback)")
        if os.environ.get("LEADSCORE_DEBUG"):
            raise
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    run()
