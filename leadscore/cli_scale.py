"""Team-and-scale commands: a shared MLflow tracking server on PostgreSQL, and batch scoring.

Plain typer-style functions, registered in :mod:`leadscore.cli` as ``leadscore tracking-server``
and ``leadscore score-batch``; ``python -m leadscore.cli_scale --help`` runs them on their own.

Training, promotion, evaluation and the BentoML service need no change to use a shared server:
``export MLFLOW_TRACKING_URI=http://127.0.0.1:5000`` is the only difference.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from leadscore.settings import DEFAULT_MODEL_NAME, apply_environment_defaults, crm_data_dir, state_dir
from leadscore.training.batch import DEFAULT_CHUNK_LEADS, Engine

if TYPE_CHECKING:  # heavy imports stay inside the functions: the CLI imports this module
    import pandas as pd

    from leadscore.features.loading import CrmTables
    from leadscore.model.scoring_model import LeadScoringModel

console = Console()
DEFAULT_TRACKING_PORT = 5000
BACKEND_URI_ENV = "LEADSCORE_TRACKING_BACKEND_URI"


class TrackingServerUnavailable(RuntimeError):
    """The MLflow tracking server does not answer."""


class DatabaseUnavailable(RuntimeError):
    """The tracking server's database cannot be reached."""


# --------------------------------------------------------------------------------------------- #
# Helpers (used by the commands and the tests)
# --------------------------------------------------------------------------------------------- #


def redact(uri: str) -> str:
    """The URI with any password replaced by ``***`` (safe to print or log)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def check_tracking_server(uri: str | None = None, *, timeout: float = 5.0) -> None:
    """Fail fast, in plain words, if an HTTP tracking server is down (no-op for sqlite/file stores).

    MLflow's own client retries a dead server for minutes with backoff; call this first (or set
    ``MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT``) to get an answer in
    seconds.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith(("http://", "https://")):
        return
    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout) as response:  # http(s) only, checked above
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        problem = f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        problem = str(getattr(error, "reason", error))
    raise TrackingServerUnavailable(
        f"the MLflow tracking server at {redact(uri)} does not answer ({problem}). Start it with "
        "`leadscore tracking-server --backend-store-uri postgresql://...`, or point MLFLOW_TRACKING_URI "
        "at a running one (unset it to use the local SQLite store)."
    )


def check_database(uri: str, *, timeout: float = 5.0) -> None:
    """Connect once to a PostgreSQL backend URI; raise :class:`DatabaseUnavailable` with the reason."""
    scheme = uri.split("://", 1)[0]
    if not scheme.startswith("postgresql"):
        return
    try:
        import psycopg2
    except ImportError as error:
        raise DatabaseUnavailable(
            "the PostgreSQL driver is missing: pip install psycopg2-binary (or leadscore[scale])"
        ) from error
    libpq_uri = "postgresql://" + uri.split("://", 1)[1]  # drop SQLAlchemy's "+psycopg2"
    try:
        psycopg2.connect(libpq_uri, connect_timeout=max(1, round(timeout))).close()
    except psycopg2.Error as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DatabaseUnavailable(
            f"cannot connect to {redact(uri)}: {reason}. Is PostgreSQL running, does the database "
            "exist (createdb), and is the password in PGPASSWORD or ~/.pgpass?"
        ) from error


def sqlalchemy_uri(uri: str) -> str:
    """Pin PostgreSQL URIs to the psycopg2 driver we ship (SQLAlchemy 2.1 defaults to psycopg 3)."""
    scheme, sep, rest = uri.partition("://")
    return f"postgresql+psycopg2://{rest}" if sep and scheme in ("postgresql", "postgres") else uri


def tracking_server_command(
    *,
    backend_store_uri: str,
    artifacts_destination: Path,
    host: str = "127.0.0.1",
    port: int = DEFAULT_TRACKING_PORT,
    workers: int = 2,
    allowed_hosts: str | None = None,
) -> list[str]:
    """The ``mlflow server`` command line: database backend, artifacts proxied to a local folder."""
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        sqlalchemy_uri(backend_store_uri),
        "--artifacts-destination",
        Path(artifacts_destination).resolve().as_uri(),
        "--serve-artifacts",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if allowed_hosts:
        command += ["--allowed-hosts", allowed_hosts]
    return command


def _fail(message: str) -> None:
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=2)


@dataclass(frozen=True, eq=False)
class MappedExport:
    """A mapped CRM export read for scoring: the model as it scores those tables, and the tables."""

    model: LeadScoringModel
    """The registered model, its own transform reading the export renamed onto the contract."""
    tables: CrmTables
    """The export's rows that keep to the contract, in leadscore's own names."""
    end: pd.Timestamp
    """The end of the export's data (the default scoring time)."""
    rejects: pd.DataFrame
    """The rows set aside: table, file, line, column, value, problem (as the build's rejects file)."""
    rejected_lead_ids: dict[str, list[str]]
    """Each rejected lead's id (the export's own) and its problems."""


def check_mapping_matches(model: LeadScoringModel, mapping: Path) -> None:
    """Raise ``ValueError`` when ``mapping`` does not read the export as the model's own mapping does.

    The registered model carries the transform it was trained with; the file says where the export
    is and how to read it, so they must agree on everything but the file paths.
    """
    from leadscore.features.events import load_event_mapping
    from leadscore.features.mapping import is_event_mapping, load_mapping, mapping_differences

    trained = getattr(model.transform, "mapping", None)
    if trained is None:
        raise ValueError(
            f"--mapping {mapping}: this model reads leadscore's own layout (lead_id, created_at, "
            "activity_type), not a mapped export; leave --mapping out"
        )
    given = load_event_mapping(mapping) if is_event_mapping(mapping) else load_mapping(mapping)
    differences = mapping_differences(trained, given)
    if differences:
        raise ValueError(
            f"--mapping {mapping} does not read the export as the model's mapping '{trained.name}' does "
            "(the model computes features with its own; give the mapping it was trained with):\n"
            + "\n".join(f"  - {line}" for line in differences)
        )


def read_mapped_export(*, model: LeadScoringModel, mapping: Path, data: Path | None) -> MappedExport:
    """Read an event export through ``mapping`` (checked against the model's) for scoring.

    The export's files are read, checked and validated as ``build-features --mapping`` reads them:
    rows that break the contract are set aside (``rejects``) and mapping keys that match nothing
    stop it. ``data`` is the folder holding the files (default: the mapping's paths).
    """
    import dataclasses

    import pandas as pd

    from leadscore.features.build import EventBuildJob
    from leadscore.features.events import ContractTablesView
    from leadscore.features.mapping import is_event_mapping
    from leadscore.features.training_table import observed_until

    check_mapping_matches(model, mapping)
    if not is_event_mapping(mapping):
        raise ValueError(
            f"--mapping {mapping} is a flat mapping: its rows carry no activities or dates to score "
            "as of a time; score them with POST /score-records or the MLflow pyfunc"
        )
    unused = state_dir() / "data" / f"{mapping.stem}.parquet"  # read() writes nothing there
    export = EventBuildJob(mapping_path=mapping, output=unused, data_dir=data).read()
    tables = export.tables
    id_column = export.mapping.tables.leads.id_column
    rejected: dict[str, list[str]] = {}
    lead_rejects = export.rejects[export.rejects["table"] == "leads"]
    if id_column is not None and len(lead_rejects):
        ids = export.raw["leads"][id_column].astype("string")
        for row, problem in zip(lead_rejects["row"], lead_rejects["problem"], strict=True):
            if not pd.isna(row):
                rejected.setdefault(str(ids.iloc[int(row)]), []).append(str(problem))
    return MappedExport(
        model=dataclasses.replace(model, transform=ContractTablesView(model.transform)),  # type: ignore[arg-type]
        tables=tables,
        end=observed_until(leads=tables.leads, activities=tables.activities, outcomes=tables.outcomes),
        rejects=export.rejects,
        rejected_lead_ids=rejected,
    )


def rejects_line(export: MappedExport) -> str | None:
    """One line on what reading the export set aside (None when nothing was)."""
    if export.rejects.empty:
        return None
    by_table = export.rejects.groupby("table").size()
    counts = ", ".join(f"{n:,} {table} row(s)" for table, n in by_table.items())
    return f"set aside as they break the data contract: {counts} (build-features --mapping lists each line)"


# --------------------------------------------------------------------------------------------- #
# Commands
# --------------------------------------------------------------------------------------------- #


def tracking_server(
    backend_store_uri: Annotated[
        str | None,
        typer.Option(
            envvar=BACKEND_URI_ENV,
            help="Database for runs and the registry, e.g. postgresql://mlflow@127.0.0.1:5432/mlflow "
            "(keep the password in PGPASSWORD or ~/.pgpass, not on the command line).",
        ),
    ] = None,
    artifacts_destination: Annotated[
        Path | None,
        typer.Option(
            help="Folder the server stores artifacts in (default $LEADSCORE_HOME/mlflow-artifacts)."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind (loopback unless you mean otherwise).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port.")] = DEFAULT_TRACKING_PORT,
    workers: Annotated[int, typer.Option(help="Server worker processes.")] = 2,
    allowed_hosts: Annotated[
        str | None,
        typer.Option(help="Host headers to accept when not on loopback (MLflow's --allowed-hosts)."),
    ] = None,
    check_db: Annotated[bool, typer.Option(help="Connect to the database once before starting.")] = True,
) -> None:
    """Start a shared MLflow tracking server on PostgreSQL with a local artifact root."""
    apply_environment_defaults()
    if not backend_store_uri:
        _fail(f"give --backend-store-uri postgresql://user@host:5432/db (or set {BACKEND_URI_ENV})")
        return
    if check_db:
        try:
            check_database(backend_store_uri)
        except DatabaseUnavailable as error:
            _fail(str(error))
    destination = artifacts_destination or state_dir() / "mlflow-artifacts"
    destination.mkdir(parents=True, exist_ok=True)
    command = tracking_server_command(
        backend_store_uri=backend_store_uri,
        artifacts_destination=destination,
        host=host,
        port=port,
        workers=workers,
        allowed_hosts=allowed_hosts,
    )
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    console.print(
        f"MLflow tracking server on {redact(backend_store_uri)}, artifacts in {destination}\n"
        f"  export MLFLOW_TRACKING_URI=http://{shown}:{port}"
    )
    sys.stdout.flush()
    os.execv(command[0], command)


def score_batch(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder with the leads, activities and (optional) outcomes tables (default "
            "$LEADSCORE_HOME/data/crm, else .leadscore/data/crm); with --mapping, the folder of the "
            "export's files (default: the mapping's paths)."
        ),
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(
            help="Event mapping YAML the export is read with (a model trained on a mapped export carries "
            "its transform; this says where the files are and must read them as the model's mapping does)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder of Parquet files (default $LEADSCORE_HOME/scores).")
    ] = None,
    engine: Annotated[Engine, typer.Option(help="pandas (one process) or spark.")] = Engine.PANDAS,
    as_of: Annotated[
        str | None, typer.Option(help="Score as of this time (default: the end of the export).")
    ] = None,
    model_name: Annotated[str, typer.Option(help="Registered model name.")] = DEFAULT_MODEL_NAME,
    model_version: Annotated[
        str | None, typer.Option(help="Version to use (default: the champion alias).")
    ] = None,
    top_k: Annotated[int, typer.Option(help="Reasons per direction per lead.")] = 5,
    chunk_leads: Annotated[int, typer.Option(help="pandas engine: leads per chunk.")] = DEFAULT_CHUNK_LEADS,
    master: Annotated[str, typer.Option(help="spark engine: Spark master URL.")] = "local[2]",
    buckets: Annotated[
        int | None, typer.Option(help="spark engine: lead buckets (default ~20,000 leads each).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
) -> None:
    """Score every lead of a CRM export: probability, score, tier, grade and top reasons to Parquet."""
    import pandas as pd

    from leadscore.features.build import write_rejects
    from leadscore.features.loading import DataContractError
    from leadscore.model import store
    from leadscore.training.batch import score_batch as run_batch

    apply_environment_defaults()
    out = out or state_dir() / "scores"
    when = None
    if as_of:
        try:
            when = pd.Timestamp(as_of)
        except ValueError:
            _fail(f"--as-of: cannot read '{as_of}' as a time (e.g. 2025-06-30T12:00:00)")
    try:
        check_tracking_server()
    except TrackingServerUnavailable as error:
        _fail(str(error))
    version = model_version or store.champion_version(model_name=model_name)
    if version is None:
        _fail(f"model '{model_name}' has no champion yet: run `leadscore promote` or pass --model-version")
        return
    model = store.load_scoring_model(model_name=model_name, version=version)
    tables = None
    if mapping is not None:
        try:
            export = read_mapped_export(model=model, mapping=mapping, data=data_dir)
        except (DataContractError, FileNotFoundError, OSError, ValueError) as error:
            _fail(str(error))
            return
        model, tables = export.model, export.tables
        note = rejects_line(export)
        if note is not None:
            rejects_file = write_rejects(out, export.rejects)
            console.print(f"{note}: {rejects_file}")
    try:
        result = run_batch(
            model=model,
            tables=tables,
            data_dir=data_dir or crm_data_dir(),
            out=out,
            engine=engine,
            as_of=when,
            top_k=top_k,
            model_name=model_name,
            model_version=version,
            chunk_leads=chunk_leads,
            progress=True,
            master=master,
            n_buckets=buckets,
            overwrite=overwrite,
        )
    except (FileExistsError, FileNotFoundError, DataContractError, ValueError) as error:
        _fail(f"{error}" + (" (add --overwrite)" if isinstance(error, FileExistsError) else ""))
        return
    tiers = ", ".join(f"{tier} {count:,}" for tier, count in sorted(result.tiers.items()))
    console.print(
        f"scored {result.leads:,} leads as of {result.as_of} with {model_name} v{version} "
        f"({result.engine.value}, {result.seconds:.1f} s) -> {result.output}\n  {tiers}"
    )


app = typer.Typer(help=__doc__.splitlines()[0], no_args_is_help=True, pretty_exceptions_enable=False)
app.command("tracking-server")(tracking_server)
app.command("score-batch")(score_batch)

if __name__ == "__main__":  # pragma: no cover
    app()
