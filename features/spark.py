"""Spark scale-out for the CRM pipeline: the same pandas code, run per bucket of whole leads.

No feature logic is written twice. Every table is partitioned by a hash of ``lead_id`` into
buckets (``pmod(xxhash64(lead_id), n)``); a bucket therefore holds *complete* leads, each with all
of its activities and outcomes, and the ordinary pandas functions run on it unchanged through
``groupBy(bucket).cogroup(...).applyInPandas``:

* :func:`~leadscore.features.loading.validate_crm_tables` (every data-contract check is per lead:
  duplicate ids, activities or outcomes of unknown leads and timestamps before creation all land
  in one bucket, so nothing is missed; row numbers in messages are positions within the bucket);
* :func:`~leadscore.features.training_table.build_training_table` with the export-wide
  ``observed_until`` computed once by Spark, so labels are the same as on one machine;
* the model's scoring (``leadscore.training.batch``).

Grouping by a bucket rather than by each ``lead_id`` is the same partition of the data into whole
leads, but calls the vectorised pandas code once per ~20,000 leads instead of once per lead.

Timestamps travel through Spark as int64 nanoseconds (missing = ``NaT``'s own int64 value) and are
turned back into ``datetime64[ns]`` inside the bucket, so the pandas code sees exactly what
``pandas.read_parquet`` gives: pyarrow writes nanosecond timestamps, which Spark cannot read as
timestamps (it reads them as longs), and Spark's own timestamps have only microseconds.

Local mode needs ``PYSPARK_PYTHON``: :func:`spark_session` points it at this interpreter, whose
environment has pyarrow and leadscore; on a cluster the executors need the same packages.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from leadscore.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES
from leadscore.features.training_table import SnapshotPolicy, build_training_table

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

DEFAULT_MASTER = "local[2]"
LEADS_PER_BUCKET = 20_000
BUCKET_COLUMN = "__bucket"
TABLE_COLUMN = "__table"
NAT_INT64 = np.iinfo(np.int64).min  # how pandas stores NaT
TIMESTAMP_COLUMNS: dict[str, tuple[str, ...]] = {
    "leads": ("created_at",),
    "activities": ("timestamp",),
    "outcomes": ("converted_at", "won_at"),
}
#: The columns whose latest value is the export's end (as ``observed_until``: a won date is not one).
OBSERVED_COLUMNS = ("created_at", "timestamp", "converted_at")
_PANDAS3_WARNING = "ignore:PySpark does not yet fully support pandas:FutureWarning"


def spark_session(
    master: str = DEFAULT_MASTER,
    *,
    app_name: str = "leadscore",
    driver_memory: str = "4g",
    shuffle_partitions: int | None = None,
    config: dict[str, str] | None = None,
) -> SparkSession:
    """A Spark session for the pipeline (local mode by default, UI off, UTC, loopback only).

    The Python workers run this interpreter (``PYSPARK_PYTHON`` unless already set), so they
    import the same pandas, pyarrow and leadscore as the driver.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    from pyspark.sql import SparkSession

    cores = _local_cores(master)
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.legacy.parquet.nanosAsLong", "true")  # pyarrow's ns timestamps -> int64
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions or max(4, 4 * cores)))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.executorEnv.PYTHONWARNINGS", _PANDAS3_WARNING)
        # one task per core already: LightGBM's OpenMP threads on top would oversubscribe the cores
        .config("spark.executorEnv.OMP_NUM_THREADS", "1")
        .config("spark.driver.memory", driver_memory)
    )
    if master.startswith("local"):
        builder = builder.config("spark.driver.host", "127.0.0.1").config(
            "spark.driver.bindAddress", "127.0.0.1"
        )
    for key, value in (config or {}).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _local_cores(master: str) -> int:
    if master.startswith("local["):
        inside = master[len("local[") :].split(",")[0].rstrip("]")
        return (os.cpu_count() or 2) if inside == "*" else max(1, int(inside))
    return 2 if master.startswith("local") else 8


# --------------------------------------------------------------------------------------------- #
# Reading the CRM export
# --------------------------------------------------------------------------------------------- #


@dataclass
class SparkCrm:
    """The CRM tables as Spark DataFrames, timestamps as int64 nanoseconds (or text from CSV)."""

    leads: DataFrame
    activities: DataFrame
    outcomes: DataFrame | None = None
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def table(self, name: str) -> DataFrame | None:
        return {"leads": self.leads, "activities": self.activities, "outcomes": self.outcomes}[name]


def find_table(data_dir: Path, stem: str) -> Path | None:
    """``<stem>.parquet`` (a file or a folder of part files), ``.pq``, ``.csv`` or ``.csv.gz``."""
    for suffix in (".parquet", ".pq", ".csv", ".csv.gz"):
        if (data_dir / f"{stem}{suffix}").exists():
            return data_dir / f"{stem}{suffix}"
    return None


def read_table_spark(spark: SparkSession, path: Path, *, table: str) -> DataFrame:
    """Read one CRM table; timestamp columns become int64 nanoseconds (text columns stay text).

    CSV is read as text, like :func:`~leadscore.features.loading.read_table` reads the contract's
    text columns; the loaders then parse it in each bucket.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, LongType, StringType, TimestampNTZType, TimestampType

    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return spark.read.option("header", True).option("inferSchema", False).csv(str(path))
    if not name.endswith((".parquet", ".pq")):
        raise ValueError(f"unsupported file format for {path.name!r}: use .csv, .csv.gz, .parquet or .pq")
    frame = spark.read.parquet(str(path))
    nanos = {
        f.name
        for f in pads.dataset(str(path), format="parquet").schema
        if pa.types.is_timestamp(f.type) and f.type.unit == "ns"
    }
    for column in frame.schema.fields:
        if column.name not in TIMESTAMP_COLUMNS.get(table, ()):
            continue
        col = F.col(f"`{column.name}`")
        if isinstance(column.dataType, LongType) and column.name in nanos:
            as_nanos = col
        elif isinstance(column.dataType, TimestampType | TimestampNTZType):
            as_nanos = F.unix_micros(col.cast("timestamp")) * F.lit(1000)
        elif isinstance(column.dataType, DateType):  # a day (a close date): its midnight, as pandas reads it
            as_nanos = F.unix_date(col).cast("long") * F.lit(86_400 * 10**9)
        elif isinstance(column.dataType, StringType):
            continue
        else:
            raise ValueError(f"{table}.{column.name}: unsupported timestamp type {column.dataType}")
        frame = frame.withColumn(column.name, F.coalesce(as_nanos, F.lit(int(NAT_INT64))))
    return frame


def read_crm_spark(
    spark: SparkSession,
    *,
    leads: Path,
    activities: Path | None,
    outcomes: Path | None = None,
) -> SparkCrm:
    """Read the CRM export for Spark (missing activities = none; outcomes optional)."""
    crm_leads = read_table_spark(spark, leads, table="leads")
    if activities is None:
        schema = "lead_id string, timestamp long, activity_type string, page_category string"
        crm_activities = spark.createDataFrame([], schema)
    else:
        crm_activities = read_table_spark(spark, activities, table="activities")
    crm_outcomes = None if outcomes is None else read_table_spark(spark, outcomes, table="outcomes")
    columns = {"leads": tuple(crm_leads.columns), "activities": tuple(crm_activities.columns)}
    if crm_outcomes is not None:
        columns["outcomes"] = tuple(crm_outcomes.columns)
    return SparkCrm(crm_leads, crm_activities, crm_outcomes, columns)


def read_crm_dir_spark(spark: SparkSession, data_dir: Path) -> SparkCrm:
    """Read ``leads``, ``activities`` and (if present) ``outcomes`` from one folder."""
    leads = find_table(data_dir, "leads")
    if leads is None:
        raise FileNotFoundError(f"no leads.parquet or leads.csv in {data_dir}")
    return read_crm_spark(
        spark,
        leads=leads,
        activities=find_table(data_dir, "activities"),
        outcomes=find_table(data_dir, "outcomes"),
    )


def observed_until_spark(crm: SparkCrm) -> pd.Timestamp:
    """The latest timestamp in the export (one Spark aggregation), exact to the nanosecond."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    maxima: list[DataFrame] = []
    for table, columns in TIMESTAMP_COLUMNS.items():
        frame = crm.table(table)
        if frame is None:
            continue
        for name in columns:
            if name not in frame.columns or name not in OBSERVED_COLUMNS:
                continue
            column = frame.schema[name]
            if isinstance(column.dataType, StringType):  # CSV text: Spark parses ISO 8601
                parsed = F.unix_micros(F.try_to_timestamp(F.col(name))) * F.lit(1000)
            else:
                parsed = F.when(F.col(name) != F.lit(int(NAT_INT64)), F.col(name))
            maxima.append(frame.agg(F.max(parsed).cast("long").alias("m")))
    if not maxima:
        raise ValueError("the export has no timestamp columns")
    stacked = maxima[0]
    for other in maxima[1:]:
        stacked = stacked.unionByName(other)
    row = stacked.agg(F.max("m").alias("m")).first()  # one Spark job for all tables
    if row is None or row["m"] is None:
        raise ValueError("the export has no timestamps")
    return pd.Timestamp(int(row["m"]), unit="ns")


def decode_timestamps(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Inside a bucket: int64-nanosecond columns back to ``datetime64[ns]`` (text is left to the loaders)."""
    for name in TIMESTAMP_COLUMNS.get(table, ()):
        if name in frame.columns and pd.api.types.is_integer_dtype(frame[name].dtype):
            frame[name] = pd.Series(
                frame[name].to_numpy(dtype=np.int64).view("datetime64[ns]"), index=frame.index
            )
    return frame


# --------------------------------------------------------------------------------------------- #
# Buckets of whole leads
# --------------------------------------------------------------------------------------------- #


def bucket_of(lead_id: Column, n_buckets: int) -> Column:
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64(lead_id.cast("string")), F.lit(n_buckets))


def default_buckets(spark: SparkSession, leads: DataFrame, leads_per_bucket: int = LEADS_PER_BUCKET) -> int:
    """Enough buckets to keep both cores busy and each bucket around ``leads_per_bucket`` leads."""
    parallelism = spark.sparkContext.defaultParallelism
    return max(2 * parallelism, math.ceil(leads.count() / leads_per_bucket))


def cogroup_by_lead(
    left: DataFrame,
    right: DataFrame,
    fn: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame],
    schema: StructType | str,
    *,
    n_buckets: int,
) -> DataFrame:
    """Apply ``fn(left_rows, right_rows)`` to each bucket of whole leads of two tables."""
    from pyspark.sql import functions as F

    def bucketed(frame: DataFrame) -> DataFrame:
        return frame.withColumn(BUCKET_COLUMN, bucket_of(F.col("lead_id"), n_buckets))

    def run(left_rows: pd.DataFrame, right_rows: pd.DataFrame) -> pd.DataFrame:
        return fn(
            left_rows.drop(columns=[BUCKET_COLUMN], errors="ignore"),
            right_rows.drop(columns=[BUCKET_COLUMN], errors="ignore"),
        )

    return (
        bucketed(left)
        .groupBy(BUCKET_COLUMN)
        .cogroup(bucketed(right).groupBy(BUCKET_COLUMN))
        .applyInPandas(run, schema)
    )


def leads_with_outcomes(crm: SparkCrm) -> DataFrame:
    """Leads and outcomes stacked into one table (a ``__table`` column says which) for a cogroup.

    Timestamp columns that a table lacks are filled with NaT's int64 rather than null, so pandas
    keeps them int64 (a null would make them float64 and lose nanoseconds).
    """
    from pyspark.sql import functions as F

    leads = crm.leads.withColumn(TABLE_COLUMN, F.lit("leads"))
    if crm.outcomes is None:
        return leads
    stacked = leads.unionByName(
        crm.outcomes.withColumn(TABLE_COLUMN, F.lit("outcomes")), allowMissingColumns=True
    )
    for table in ("leads", "outcomes"):
        for name in TIMESTAMP_COLUMNS[table]:
            if dict(stacked.dtypes).get(name) == "bigint":
                stacked = stacked.withColumn(name, F.coalesce(F.col(name), F.lit(int(NAT_INT64))))
    return stacked


def split_bucket(
    left: pd.DataFrame, right: pd.DataFrame, columns: dict[str, tuple[str, ...]]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """A bucket's rows back into the contract tables (leads, activities, outcomes)."""
    if TABLE_COLUMN in left.columns:
        which = left[TABLE_COLUMN].astype(str)
        leads = left.loc[which == "leads", list(columns["leads"])].reset_index(drop=True)
        outcomes = (
            left.loc[which == "outcomes", list(columns["outcomes"])].reset_index(drop=True)
            if "outcomes" in columns
            else None
        )
    else:
        leads, outcomes = left.loc[:, list(columns["leads"])].reset_index(drop=True), None
    activities = right.loc[:, list(columns["activities"])].reset_index(drop=True)
    return (
        decode_timestamps(leads, "leads"),
        decode_timestamps(activities, "activities"),
        None if outcomes is None else decode_timestamps(outcomes, "outcomes"),
    )


# --------------------------------------------------------------------------------------------- #
# The training table on Spark
# --------------------------------------------------------------------------------------------- #


def training_table_schema() -> StructType:
    """Spark schema of the training table: keys, catalogue features, snapshot age and label."""
    from pyspark.sql.types import (
        BooleanType,
        ByteType,
        DoubleType,
        FloatType,
        ShortType,
        StringType,
        StructField,
        StructType,
        TimestampNTZType,
    )

    fields = [StructField("lead_id", StringType()), StructField("as_of", TimestampNTZType())]
    fields += [
        StructField(name, StringType() if name in CATEGORICAL_FEATURES else FloatType())
        for name in FEATURE_NAMES
    ]
    fields += [
        StructField("snapshot_age_days", ShortType()),
        StructField("label", ByteType()),
        StructField("label_amount", DoubleType()),
        StructField("horizon_complete", BooleanType()),
    ]
    return StructType(fields)


def arrow_friendly(table: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as text (each bucket has its own categories; Spark has no categorical type)."""
    out = table.copy()
    for name in out.columns:
        if isinstance(out[name].dtype, pd.CategoricalDtype):
            out[name] = out[name].astype(object).where(out[name].notna(), None)
    return out


def build_training_table_spark(
    crm: SparkCrm,
    *,
    policy: SnapshotPolicy | None = None,
    until: pd.Timestamp | None = None,
    now: pd.Timestamp | None = None,
    n_buckets: int | None = None,
    validate: bool = True,
) -> DataFrame:
    """The training table as a Spark DataFrame, built by the pandas code on buckets of whole leads.

    ``until`` defaults to the export's end (:func:`observed_until_spark`), exactly as
    ``leadscore build-features`` uses it; ``now`` bounds "timestamps in the future" for the
    contract checks (default: the driver's current UTC time, the same for every bucket).
    Row order is not defined; sort by ``lead_id, as_of`` when it matters.
    """
    from leadscore.features.loading import empty_outcomes, validate_crm_tables

    if crm.outcomes is None:
        raise ValueError("the training table needs the outcomes table")
    policy = policy or SnapshotPolicy()
    until = pd.Timestamp(until) if until is not None else observed_until_spark(crm)
    now = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
    spark = crm.leads.sparkSession
    buckets = n_buckets or default_buckets(spark, crm.leads)
    columns = dict(crm.columns)
    schema = training_table_schema()
    names = [f.name for f in schema.fields]

    def build(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
        leads, activities, found = split_bucket(left, right, columns)
        outcomes = found if found is not None else empty_outcomes()
        if validate:
            tables = validate_crm_tables(leads=leads, activities=activities, outcomes=outcomes, now=now)
            leads, activities, outcomes = tables.leads, tables.activities, tables.outcomes
        table = build_training_table(
            leads=leads, activities=activities, outcomes=outcomes, policy=policy, until=until
        )
        return arrow_friendly(table).loc[:, names]

    return cogroup_by_lead(leads_with_outcomes(crm), crm.activities, build, schema, n_buckets=buckets)


def training_table_to_pandas(frame: DataFrame | pd.DataFrame) -> pd.DataFrame:
    """A Spark-built training table as pandas, in the pandas builder's dtypes, sorted by lead and time."""
    table = frame.toPandas() if not isinstance(frame, pd.DataFrame) else frame.copy()
    for name in CATEGORICAL_FEATURES:
        table[name] = table[name].astype("category")
    table["lead_id"] = table["lead_id"].astype(object)
    table["as_of"] = pd.to_datetime(table["as_of"])
    table["snapshot_age_days"] = table["snapshot_age_days"].astype(np.int16)
    table["label"] = table["label"].astype("Int8")
    table["label_amount"] = table["label_amount"].astype(float)
    table["horizon_complete"] = table["horizon_complete"].astype(bool)
    return table.sort_values(["lead_id", "as_of"], kind="stable").reset_index(drop=True)
