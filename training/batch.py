"""Batch scoring of a whole CRM export: every lead's probability, score, tier, grade and reasons.

Two engines run the identical per-lead code (:func:`score_leads`: ``LeadScoringModel.features``
then ``score_features`` with explanations) and write the same Parquet schema:

* ``pandas`` (default): one process, the leads in chunks with a progress bar;
* ``spark``: ``pyspark`` (``local[2]`` by default, or any master), the export partitioned into
  buckets of whole leads (each lead with all of its activities) by
  :mod:`leadscore.features.spark`, and the model object broadcast to the workers.

Leads are scored as of one time (default: the end of the export, as ``leadscore explain`` does),
from their activities at or before it. Leads converted (outcomes), disqualified or not yet created
at that time get a ``status`` and a ``status_note`` instead of a score (null probability and score).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadscore.model.records import SCORED_LEAD_COLUMNS, scored_lead_arrow_schema, scored_lead_spark_ddl

if TYPE_CHECKING:  # heavy imports stay inside the functions: the CLI imports this module
    import pandas as pd
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from leadscore.features.loading import CrmTables
    from leadscore.model.scoring_model import LeadScoringModel

DEFAULT_CHUNK_LEADS = 50_000
PART_FILE = "part-00000.parquet"
#: The output columns and schema are the scored-lead record's (:class:`~leadscore.model.records.ScoredLead`)
RESULT_COLUMNS: tuple[str, ...] = SCORED_LEAD_COLUMNS


class Engine(StrEnum):
    """Where batch scoring runs."""

    PANDAS = "pandas"
    SPARK = "spark"


@dataclass(frozen=True)
class BatchResult:
    output: Path
    engine: Engine
    as_of: pd.Timestamp
    leads: int
    seconds: float
    tiers: dict[str, int] = field(default_factory=dict)


def score_leads(
    model: LeadScoringModel,
    *,
    leads: pd.DataFrame,
    activities: pd.DataFrame,
    as_of: pd.Timestamp,
    outcomes: pd.DataFrame | None = None,
    top_k: int = 5,
    model_name: str = "",
    model_version: str = "",
) -> pd.DataFrame:
    """Score validated leads (with their activities) as of one time: one row per lead, RESULT_COLUMNS.

    The unit both engines run: features use only activities at or before ``as_of``; open leads
    carry their score, interval and top reasons; leads converted by ``as_of`` (``outcomes``),
    disqualified or created after it carry their status instead of a score.
    """
    import pandas as pd

    from leadscore.model.scoring_model import lead_states

    model.require_native_layout(what="score-batch")
    when = pd.Timestamp(as_of)
    existing = leads.reset_index(drop=True)
    if existing.empty:
        return empty_result()
    states = lead_states(leads=existing, as_of=when, outcomes=outcomes)
    features = model.features(leads=existing, activities=activities, as_of=when)
    frame = pd.DataFrame(model.score_features(features, explain=True, top_k=top_k, states=states))
    frame["as_of"] = when
    frame["model_name"] = model_name
    frame["model_version"] = model_version
    return frame.loc[:, list(RESULT_COLUMNS)]


def empty_result() -> pd.DataFrame:
    return scored_lead_arrow_schema().empty_table().to_pandas()


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pandas(
        frame.loc[:, list(RESULT_COLUMNS)], schema=scored_lead_arrow_schema(), preserve_index=False
    )


def read_scores(path: Path) -> pd.DataFrame:
    """Batch scores (either engine's folder of part files) sorted by lead id."""
    import pandas as pd

    frame = pd.read_parquet(path)
    return frame.sort_values("lead_id", kind="stable").reset_index(drop=True)


def reasons_as_json(frame: pd.DataFrame) -> pd.DataFrame:
    """Reasons columns as JSON text (for CSV exports or CRMs that take one text field)."""
    out = frame.copy()
    for name in ("reasons_positive", "reasons_negative"):
        out[name] = [json.dumps([dict(r) for r in reasons]) for reasons in out[name]]
    return out


# --------------------------------------------------------------------------------------------- #
# Engines
# --------------------------------------------------------------------------------------------- #


def score_batch(
    *,
    model: LeadScoringModel,
    data_dir: Path,
    out: Path,
    engine: Engine | str = Engine.PANDAS,
    as_of: pd.Timestamp | str | None = None,
    top_k: int = 5,
    model_name: str = "",
    model_version: str = "",
    chunk_leads: int = DEFAULT_CHUNK_LEADS,
    progress: bool = False,
    spark: SparkSession | None = None,
    master: str = "local[2]",
    n_buckets: int | None = None,
    overwrite: bool = False,
    tables: CrmTables | None = None,
) -> BatchResult:
    """Score every lead of the export in ``data_dir`` (leads, activities, outcomes) into ``out``.

    ``out`` becomes a folder of Parquet part files (``pandas.read_parquet(out)`` reads it whole).
    ``tables``: the export already read and validated (a mapped export; pandas engine only).
    """
    import pandas as pd

    model.require_native_layout(what="score-batch")
    engine = Engine(engine)
    out = Path(out)
    if out.exists() and not overwrite and (out.is_file() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists: choose another output or overwrite it")
    when = None if as_of is None else pd.Timestamp(as_of)
    if when is not None and when.tzinfo is not None:
        when = when.tz_convert("UTC").tz_localize(None)
    started = time.perf_counter()
    options = {"top_k": top_k, "model_name": model_name, "model_version": model_version}
    if tables is not None and engine is not Engine.PANDAS:
        raise ValueError("an export read through a mapping is scored by the pandas engine (--engine pandas)")
    if engine is Engine.PANDAS:
        when, count = _score_pandas(
            model,
            data_dir=data_dir,
            tables=tables,
            out=out,
            as_of=when,
            chunk_leads=chunk_leads,
            progress=progress,
            **options,
        )
    else:
        when, count = _score_spark(
            model,
            data_dir=data_dir,
            out=out,
            as_of=when,
            spark=spark,
            master=master,
            n_buckets=n_buckets,
            **options,
        )
    seconds = time.perf_counter() - started
    tiers = pd.read_parquet(out, columns=["tier"])["tier"].value_counts().to_dict()
    return BatchResult(out, engine, when, count, seconds, {str(k): int(v) for k, v in tiers.items()})


def chunks_of_leads(
    leads: pd.DataFrame, activities: pd.DataFrame, chunk_leads: int
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """(leads, their activities) in chunks of ``chunk_leads`` leads; one sort, no per-chunk scan."""
    import numpy as np
    import pandas as pd

    n_chunks = max(1, -(-len(leads) // chunk_leads))
    position = pd.Index(leads["lead_id"].astype(str)).get_indexer(pd.Index(activities["lead_id"].astype(str)))
    chunk = np.where(position >= 0, position // chunk_leads, n_chunks)  # unknown leads: dropped
    order = np.argsort(chunk, kind="stable")
    bounds = np.searchsorted(chunk[order], np.arange(n_chunks + 1))
    for i in range(n_chunks):
        rows = order[bounds[i] : bounds[i + 1]]
        yield (
            leads.iloc[i * chunk_leads : (i + 1) * chunk_leads].reset_index(drop=True),
            activities.iloc[rows].reset_index(drop=True),
        )


def _score_pandas(
    model: LeadScoringModel,
    *,
    data_dir: Path,
    out: Path,
    as_of: pd.Timestamp | None,
    chunk_leads: int,
    progress: bool,
    tables: CrmTables | None = None,
    **options: Any,
) -> tuple[pd.Timestamp, int]:
    import pyarrow.parquet as pq

    from leadscore.features.loading import load_crm_tables
    from leadscore.features.spark import find_table
    from leadscore.features.training_table import observed_until

    if tables is None:
        leads_path = find_table(data_dir, "leads")
        if leads_path is None:
            raise FileNotFoundError(f"no leads.parquet or leads.csv in {data_dir}")
        tables = load_crm_tables(
            leads=leads_path,
            activities=find_table(data_dir, "activities"),
            outcomes=find_table(data_dir, "outcomes"),
        )
    when = as_of or observed_until(leads=tables.leads, activities=tables.activities, outcomes=tables.outcomes)
    _reset(out)
    count = 0
    with (
        pq.ParquetWriter(out / PART_FILE, scored_lead_arrow_schema()) as writer,
        _progress_bar(progress, total=len(tables.leads)) as advance,
    ):
        for leads, activities in chunks_of_leads(tables.leads, tables.activities, chunk_leads):
            mine = tables.outcomes[tables.outcomes["lead_id"].isin(set(leads["lead_id"]))]
            frame = score_leads(
                model, leads=leads, activities=activities, as_of=when, outcomes=mine, **options
            )
            writer.write_table(to_arrow(frame))
            count += len(frame)
            advance(len(leads))
    return when, count


def _score_spark(
    model: LeadScoringModel,
    *,
    data_dir: Path,
    out: Path,
    as_of: pd.Timestamp | None,
    spark: SparkSession | None,
    master: str,
    n_buckets: int | None,
    **options: Any,
) -> tuple[pd.Timestamp, int]:
    import pandas as pd
    import pyarrow.parquet as pq

    from leadscore.features import spark as sparkio
    from leadscore.features.loading import validate_crm_tables

    session = spark or sparkio.spark_session(master)
    crm = sparkio.read_crm_dir_spark(session, data_dir)
    when = as_of or sparkio.observed_until_spark(crm)
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    buckets = n_buckets or sparkio.default_buckets(session, crm.leads)
    shared = session.sparkContext.broadcast(model)
    columns = dict(crm.columns)

    def score(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
        leads, activities, outcomes = sparkio.split_bucket(left, right, columns)
        tables = validate_crm_tables(leads=leads, activities=activities, outcomes=outcomes, now=now)
        return score_leads(
            shared.value,
            leads=tables.leads,
            activities=tables.activities,
            as_of=when,
            outcomes=tables.outcomes,
            **options,
        )

    scored = sparkio.cogroup_by_lead(
        sparkio.leads_with_outcomes(crm), crm.activities, score, scored_lead_spark_ddl(), n_buckets=buckets
    )
    scored.write.mode("overwrite").parquet(str(out))
    shared.unpersist()
    count = int(pq.ParquetDataset(out).read(columns=["lead_id"]).num_rows)
    return when, count


def _reset(out: Path) -> None:
    import shutil

    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    out.mkdir(parents=True)


@contextmanager
def _progress_bar(enabled: bool, *, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over leads (or a no-op)."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("scoring leads"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task("score", total=total)
        yield lambda n: bar.advance(task, n)
