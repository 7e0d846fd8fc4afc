"""Load and validate the three CRM tables, reporting every contract problem at once.

:func:`load_crm_tables` reads ``leads``, ``activities`` and ``outcomes`` files and
:func:`validate_crm_tables` checks data frames against :mod:`leadscore.features.contract`.
Every problem in every table (pandera checks run lazily, then cross-table checks) is collected
into one :class:`DataContractError` whose message says, in plain words, which table, column and
rows to fix. Row numbers are 0-based positions of the data rows (the header is not a row).

Normalisations, each logged with a count on the ``leadscore.features.loading`` logger:

* empty and whitespace-only strings become missing;
* timestamps are parsed (ISO 8601 fast; other formats as pandas reads them, month first);
  time-zone aware values are converted to UTC and made naive;
* non-text values in text columns (e.g. integer lead ids) are converted to text.

No row is ever dropped: a row that breaks the contract is an error, not a silent removal.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import pandera.pandas as pda
import pyarrow as pa
import pyarrow.compute as pc

from leadscore.features.contract import ActivitiesSchema, ActivityType, LeadsSchema, OutcomesSchema
from leadscore.features.vocabulary import DEFAULT_MISSING_TEXT

__all__ = [
    "ContractProblem",
    "CrmTables",
    "DataContractError",
    "empty_activities",
    "empty_outcomes",
    "load_crm_tables",
    "read_table",
    "validate_crm_tables",
]

logger = logging.getLogger("leadscore.features.loading")

TABLES: tuple[str, ...] = ("leads", "activities", "outcomes")
_SCHEMAS: dict[str, type[pda.DataFrameModel]] = {
    "leads": LeadsSchema,
    "activities": ActivitiesSchema,
    "outcomes": OutcomesSchema,
}
MAX_EXAMPLE_ROWS = 10
# Timestamps that match neither ISO 8601 nor the format inferred from the column are parsed one by
# one (slow); above this many such values they are reported as wrong types without trying.
_MIXED_PARSE_LIMIT = 100_000
_NS_MIN = pd.Timestamp.min.ceil("s")
_NS_MAX = pd.Timestamp.max.floor("s")
# A time of day followed by a UTC offset: "10:00Z", "10:00:00+02:00", "10:00:00.5 -0500".
_OFFSET_PATTERN = r"\d:\d\d(?::\d\d(?:[.,]\d+)?)?\s*(?:Z|UTC|GMT|[+-]\d\d(?::?\d\d)?)$"


@dataclass(frozen=True)
class ContractProblem:
    """One kind of contract violation in one column of one table."""

    table: str
    """``"leads"``, ``"activities"`` or ``"outcomes"``."""
    column: str | None
    """The column concerned; ``None`` for table-level problems."""
    problem: str
    """Plain-language description, e.g. ``"duplicate lead_id"``."""
    rows: tuple[int, ...]
    """0-based data-row numbers of the first (at most 10) offending rows."""
    count: int
    """How many rows have the problem (for a missing column: every row of the table)."""
    source: str | None = None
    """The file the table was read from, when it was read from a file."""
    first_line: int | None = None
    """The file's line number of data row 0 (2 for a CSV with a header); None: rows are 0-based."""
    all_rows: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    """Every offending 0-based row (``rows`` shows the first 10); None for table-level problems."""
    row_lines: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    """The file line each data row starts on, where rows and lines are not simply ``first_line``
    apart (blank or unreadable lines, quoted line breaks): see :func:`read_export_file`."""
    file_lines: tuple[int, ...] = ()
    """For lines that never became rows (unreadable): their line numbers in the file."""

    def line_of(self, row: int) -> int | None:
        """The file's line number of a 0-based data row (None when not from a CSV or not known)."""
        if self.row_lines is not None:
            line = int(self.row_lines[row]) if 0 <= row < len(self.row_lines) else -1
            return line if line >= 0 else None
        return None if self.first_line is None else row + self.first_line

    def lines(self) -> tuple[int, ...]:
        """The example rows as the file's own line numbers (0-based rows when not from a CSV)."""
        if self.first_line is None:
            return self.rows
        return tuple(line for r in self.rows if (line := self.line_of(r)) is not None)

    def describe(self) -> str:
        """One line naming table, column, problem, row count and example rows."""
        where = self.table if self.column is None else f"{self.table}.{self.column}"
        if self.source is not None:
            where = f"{where} [{self.source}]"
        if self.file_lines:
            shown_lines = ", ".join(str(line) if line >= 0 else "?" for line in self.file_lines[:10])
            noun = "line" if len(self.file_lines) == 1 else "lines"
            return f"{where}: {self.problem} ({len(self.file_lines)} {noun}: {shown_lines})"
        noun = "row" if self.count == 1 else "rows"
        at = "" if self.first_line is None else (" at line" if len(self.rows) == 1 else " at lines")
        shown = ", ".join(map(str, self.lines()))
        if self.problem == "missing column":
            detail = "required by the contract"
        elif not self.rows:
            detail = f"{self.count} {noun}"
        elif self.count > len(self.rows):
            detail = f"{self.count} {noun}, first {len(self.rows)}{at}: {shown}"
        else:
            detail = f"{self.count} {noun}{at}: {shown}"
        return f"{where}: {self.problem} ({detail})"


class DataContractError(ValueError):
    """The input tables break the data contract; ``problems`` lists every violation found."""

    def __init__(self, problems: Iterable[ContractProblem]) -> None:
        self.problems: list[ContractProblem] = list(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        n = len(self.problems)
        tables = sorted({p.table for p in self.problems}, key=_table_order)
        numbering = (
            "line numbers are the file's own"
            if all(p.first_line is not None for p in self.problems)
            else "row numbers are 0-based data rows"
        )
        head = (
            f"The CRM data does not meet the data contract: {n} problem{'s' if n != 1 else ''} "
            f"in {', '.join(tables)} ({numbering}):"
        )
        return "\n".join([head, *(f"  - {p.describe()}" for p in self.problems)])


@dataclass(frozen=True, eq=False)
class CrmTables:
    """The three validated tables (coerced dtypes, naive-UTC timestamps, extra columns kept)."""

    leads: pd.DataFrame
    """One row per lead; PII columns are still present (the feature pipeline drops them)."""
    activities: pd.DataFrame
    """One row per activity; an empty frame with the contract columns if none were given."""
    outcomes: pd.DataFrame
    """One row per converted lead; an empty frame with the contract columns if none were given."""


# --------------------------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------------------------- #


def read_table(path: Path) -> pd.DataFrame:
    """Read a ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file (chosen by suffix).

    CSV text columns of the contract (``lead_id``, ``phone``, ...) are read as text so that
    leading zeros survive. Raises ``ValueError`` for any other suffix.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return pd.read_parquet(path, engine="pyarrow")
    if name.endswith((".csv", ".csv.gz")):
        dtype = dict.fromkeys(_all_text_columns(), str)
        try:  # the pyarrow engine is several times faster on large files
            return pd.read_csv(path, dtype=dtype, engine="pyarrow")
        except (pa.ArrowException, ValueError):
            return pd.read_csv(path, dtype=dtype, low_memory=False)
    raise ValueError(f"unsupported file format for {path.name!r}: use .csv, .csv.gz, .parquet or .pq")


def load_crm_tables(
    *,
    leads: Path,
    activities: Path | None = None,
    outcomes: Path | None = None,
    now: pd.Timestamp | None = None,
) -> CrmTables:
    """Read the CRM files with :func:`read_table` and validate them with :func:`validate_crm_tables`.

    Problems name the file, and rows are the file's own line numbers for CSV files.
    """
    paths = {"leads": leads, "activities": activities, "outcomes": outcomes}
    try:
        return validate_crm_tables(
            leads=read_table(leads),
            activities=None if activities is None else read_table(activities),
            outcomes=None if outcomes is None else read_table(outcomes),
            now=now,
        )
    except DataContractError as error:
        sources = {t: Path(p) for t, p in paths.items() if p is not None}
        raise DataContractError(located(error.problems, sources)) from None


def located(problems: Iterable[ContractProblem], sources: dict[str, Path]) -> list[ContractProblem]:
    """Problems naming their file, with CSV rows as the file's line numbers (header = line 1)."""
    out = []
    for problem in problems:
        path = sources.get(problem.table)
        if path is None:
            out.append(problem)
            continue
        is_csv = not Path(path).name.lower().endswith((".parquet", ".pq"))
        out.append(dataclasses.replace(problem, source=str(path), first_line=2 if is_csv else None))
    return out


def validate_crm_tables(
    *,
    leads: pd.DataFrame,
    activities: pd.DataFrame | None = None,
    outcomes: pd.DataFrame | None = None,
    now: pd.Timestamp | None = None,
    activity_types: Iterable[str] | None = None,
) -> CrmTables:
    """Coerce and validate the tables against the contract, including cross-table consistency.

    ``now`` bounds timestamps ("in the future" means after it); it defaults to the current UTC
    time. ``activity_types`` replaces the allowed activity types (an event mapping's own, declared
    types next to the known ones). Raises :class:`DataContractError` listing every problem of every
    table.
    """
    cutoff = _naive_utc_now() if now is None else _to_naive_utc(pd.Timestamp(now))
    report = _Report()
    frames = {
        "leads": leads,
        "activities": empty_activities() if activities is None else activities,
        "outcomes": empty_outcomes() if outcomes is None else outcomes,
    }
    prepared = {table: _prepare(table, frame, report) for table, frame in frames.items()}
    schemas = {table: _schema(table) for table in TABLES}
    if activity_types is not None:
        allowed = sorted(set(activity_types))
        schemas["activities"] = schemas["activities"].update_column(
            "activity_type", checks=[pda.Check.isin(allowed)]
        )
    validated = {
        table: _run_schema(table, frame, report, schema=schemas[table]) for table, frame in prepared.items()
    }
    _cross_table_checks(prepared, cutoff, report)
    if report.problems:
        raise DataContractError(report.sorted_problems())
    return CrmTables(**validated)


def empty_activities() -> pd.DataFrame:
    """An empty activities table with the contract's columns and dtypes."""
    return _empty("activities")


def empty_outcomes() -> pd.DataFrame:
    """An empty outcomes table with the contract's columns and dtypes."""
    return _empty("outcomes")


# --------------------------------------------------------------------------------------------- #
# Problem collection
# --------------------------------------------------------------------------------------------- #


class _Report:
    """Collects problems; remembers rows already reported per column to avoid double reports."""

    def __init__(self) -> None:
        self.problems: list[ContractProblem] = []
        self.reported_rows: dict[tuple[str, str], np.ndarray] = {}

    def add(self, table: str, column: str | None, problem: str, rows: np.ndarray) -> None:
        """Record ``problem`` for the given 0-based row positions (ignored when there are none)."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        if rows.size == 0:
            return
        self.problems.append(
            ContractProblem(
                table=table,
                column=column,
                problem=problem,
                rows=tuple(int(r) for r in rows[:MAX_EXAMPLE_ROWS]),
                count=int(rows.size),
                all_rows=rows,
            )
        )

    def add_whole_column(self, table: str, column: str | None, problem: str, count: int) -> None:
        self.problems.append(ContractProblem(table, column, problem, rows=(), count=count))

    def mark(self, table: str, column: str, rows: np.ndarray) -> None:
        """Remember rows whose (unusable) value in ``column`` was already reported."""
        key = (table, column)
        previous = self.reported_rows.get(key, np.empty(0, dtype=np.int64))
        self.reported_rows[key] = np.union1d(previous, np.asarray(rows, dtype=np.int64))

    def sorted_problems(self) -> list[ContractProblem]:
        """By table, missing columns first, then in contract column order (stable otherwise)."""

        def key(p: ContractProblem) -> tuple[int, int, int]:
            columns = list(_schema(p.table).columns) if p.table in TABLES else []
            position = columns.index(p.column) if p.column in columns else len(columns)
            return (_table_order(p.table), 0 if p.problem == "missing column" else 1, position)

        return sorted(self.problems, key=key)


def _table_order(table: str) -> int:
    return TABLES.index(table) if table in TABLES else len(TABLES)


# --------------------------------------------------------------------------------------------- #
# Schema introspection
# --------------------------------------------------------------------------------------------- #


@cache
def _schema(table: str) -> pda.DataFrameSchema:
    return _SCHEMAS[table].to_schema()


def _columns(table: str, kind: str) -> tuple[str, ...]:
    """Contract columns of ``table`` whose dtype is ``kind`` ("datetime", "number" or "text")."""
    out = []
    for name, column in _schema(table).columns.items():
        dtype = column.dtype.type
        if pd.api.types.is_datetime64_dtype(dtype):
            col_kind = "datetime"
        elif pd.api.types.is_numeric_dtype(dtype):
            col_kind = "number"
        else:
            col_kind = "text"
        if col_kind == kind:
            out.append(name)
    return tuple(out)


@cache
def _all_text_columns() -> tuple[str, ...]:
    return tuple(dict.fromkeys(c for table in TABLES for c in _columns(table, "text")))


def _empty(table: str) -> pd.DataFrame:
    return pd.DataFrame(
        {name: pd.Series(dtype=column.dtype.type) for name, column in _schema(table).columns.items()}
    )


# --------------------------------------------------------------------------------------------- #
# Per-table coercion (vectorised); pandera then only checks
# --------------------------------------------------------------------------------------------- #


# Columns an export may leave out: they become all-missing (logged) instead of an error.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "leads": (
        "channel",
        "job_title",
        "seniority",
        "department",
        "country",
        "industry",
        "employee_count",
        "annual_revenue",
        "company_type",
        "email",
        "first_name",
        "last_name",
        "phone",
    ),
    "activities": ("page_category", "campaign"),
    "outcomes": ("opportunity_amount", "won_at", "won_amount"),
}
#: Columns that describe what happened after the label (the closed-won stage): a bad value there is set
#: to missing with a warning, never a problem that would reject the opportunity row and change its label.
SOFT_COLUMNS: dict[str, tuple[str, ...]] = {"outcomes": ("won_at", "won_amount")}


def _prepare(table: str, frame: pd.DataFrame, report: _Report) -> pd.DataFrame:
    """Positional index, blanks to missing, and timestamps / numbers / text coerced to contract dtypes."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{table} must be a pandas DataFrame, got {type(frame).__name__}")
    df = frame.reset_index(drop=True)
    duplicated = df.columns[df.columns.duplicated()]
    if len(duplicated):
        names = ", ".join(repr(str(c)) for c in dict.fromkeys(duplicated))
        report.add_whole_column(table, None, f"duplicate column names: {names}", len(df))
        df = df.loc[:, ~df.columns.duplicated()]
    absent = [name for name in OPTIONAL_COLUMNS[table] if name not in df.columns]
    if absent:
        logger.info(
            "%s: optional column(s) %s absent; treated as missing for all %d rows",
            table,
            ", ".join(absent),
            len(df),
        )
        for name in absent:
            df[name] = pd.Series([None] * len(df), dtype="object")
    for name in df.columns:
        if _is_text_like(df[name]):
            df[name] = _blank_to_missing(table, name, df[name])
    soft = SOFT_COLUMNS.get(table, ())
    for name in _columns(table, "datetime"):
        if name in df.columns:
            df[name] = (
                _soft(table, name, df[name], _coerce_timestamps)
                if name in soft
                else (_coerce_timestamps(table, name, df[name], report))
            )
    for name in _columns(table, "number"):
        if name in df.columns:
            df[name] = (
                _soft(table, name, df[name], _coerce_numbers)
                if name in soft
                else (_coerce_numbers(table, name, df[name], report))
            )
    for name in _columns(table, "text"):
        if name in df.columns:
            df[name] = _coerce_text(table, name, df[name])
    return df


def _soft(
    table: str, name: str, s: pd.Series, coerce: Callable[[str, str, pd.Series, _Report], pd.Series]
) -> pd.Series:
    """``coerce`` for a column in ``SOFT_COLUMNS``: unusable (or negative) values become missing, logged."""
    scratch = _Report()
    coerced = coerce(table, name, s, scratch)
    negative = (
        (coerced < 0).fillna(False).to_numpy(dtype=bool)
        if pd.api.types.is_numeric_dtype(coerced.dtype)
        else np.zeros(len(coerced), dtype=bool)
    )
    if negative.any():
        coerced = coerced.mask(negative)
    for problem in scratch.problems:
        logger.warning(
            "%s.%s: %s: %d value(s) set to missing (this column never rejects a row)",
            table,
            name,
            problem.problem,
            problem.count,
        )
    if negative.any():
        logger.warning("%s.%s: %d negative value(s) set to missing", table, name, int(negative.sum()))
    return coerced


def read_timestamps(values: pd.Series, *, table: str = "outcomes", name: str = "won_at") -> pd.Series:
    """Export timestamps read as the loader reads them (naive UTC ``datetime64[ns]``); unreadable or
    out-of-range values are missing, never an error."""
    return _coerce_timestamps(table, name, values.reset_index(drop=True), _Report()).set_axis(values.index)


def _is_text_like(s: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(s.dtype) or s.dtype == object


def _blank_to_missing(table: str, name: str, s: pd.Series) -> pd.Series:
    blank = _blank_mask(s)
    n_blank = int(blank.sum())
    if n_blank == 0:
        return s
    logger.info("%s.%s: %d empty or whitespace-only strings set to missing", table, name, n_blank)
    return s.mask(blank)


def _blank_mask(s: pd.Series) -> np.ndarray:
    if isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow":
        text = pa.array(s)
        blank = pc.or_(pc.equal(pc.binary_length(text), 0), pc.utf8_is_space(text))
        return np.asarray(pc.fill_null(blank, False).to_numpy(zero_copy_only=False), dtype=bool)
    try:
        return s.str.strip().eq("").fillna(False).to_numpy(dtype=bool)
    except AttributeError:  # an object column without any strings
        return np.zeros(len(s), dtype=bool)


def _example(value: object) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    return repr(value) if isinstance(value, int | float | bool) else repr(str(value))


def _report_bad_values(
    table: str, name: str, raw: pd.Series, bad: np.ndarray, problem: str, report: _Report
) -> None:
    rows = np.flatnonzero(bad)
    if rows.size:
        report.add(table, name, f"{problem}, got {_example(raw.iloc[rows[0]])}", rows)
        report.mark(table, name, rows)


def _coerce_timestamps(table: str, name: str, s: pd.Series, report: _Report) -> pd.Series:
    present = s.notna().to_numpy()
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        n_aware = int(present.sum())
        if n_aware:
            logger.info("%s.%s: %d time-zone aware timestamps converted to naive UTC", table, name, n_aware)
        parsed, out_of_range = _to_ns(s.dt.tz_convert("UTC").dt.tz_localize(None))
    elif pd.api.types.is_datetime64_dtype(s.dtype):
        parsed, out_of_range = _to_ns(s)
    elif _is_text_like(s):
        parsed, out_of_range = _parse_timestamp_text(table, name, s)
    else:  # numbers, booleans, ...: no unambiguous meaning as a point in time
        parsed = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
        out_of_range = np.zeros(len(s), dtype=bool)
    unparsed = present & parsed.isna().to_numpy() & ~out_of_range
    _report_bad_values(table, name, s, unparsed, "wrong type: expected datetime", report)
    span = f"{_NS_MIN:%Y-%m-%d} to {_NS_MAX:%Y-%m-%d}"
    _report_bad_values(table, name, s, out_of_range, f"timestamp out of range (supported: {span})", report)
    return parsed


def _to_ns(parsed: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Naive timestamps as ``datetime64[ns]``; values outside its range become NaT and are flagged."""
    out_of_range = ((parsed < _NS_MIN) | (parsed > _NS_MAX)).to_numpy(dtype=bool, copy=True)
    if out_of_range.any():
        parsed = parsed.mask(out_of_range)
    return parsed.astype("datetime64[ns]"), out_of_range


def _parse_timestamp_text(table: str, name: str, s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """ISO 8601 first (fast), then the column's inferred format, then value by value for the rest."""
    try:
        first = pd.to_datetime(s, format="ISO8601", errors="coerce")
        n_aware = int(first.notna().sum()) if isinstance(first.dtype, pd.DatetimeTZDtype) else 0
    except (ValueError, TypeError):  # mixed offsets, or naive values mixed with aware ones
        first = pd.to_datetime(s, format="ISO8601", errors="coerce", utc=True)
        n_aware = _count_offsets(s[first.notna().to_numpy()])
    if isinstance(first.dtype, pd.DatetimeTZDtype):
        first = first.dt.tz_convert("UTC").dt.tz_localize(None)
    parsed, out_of_range = _to_ns(first)
    values = parsed.to_numpy(copy=True)
    present = s.notna().to_numpy()
    for fmt in (None, "mixed"):
        failed = present & np.isnat(values) & ~out_of_range
        n_failed = int(failed.sum())
        if n_failed == 0 or (fmt == "mixed" and n_failed > _MIXED_PARSE_LIMIT):
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "could not infer format"
            retry = pd.to_datetime(s[failed], format=fmt, errors="coerce", utc=True)
        n_aware += _count_offsets(s[failed][retry.notna().to_numpy()])
        retry_ns, retry_out = _to_ns(retry.dt.tz_localize(None))
        values[failed] = retry_ns.to_numpy()
        out_of_range[failed] = retry_out
    if n_aware:
        logger.info("%s.%s: %d time-zone aware timestamps converted to naive UTC", table, name, n_aware)
    return pd.Series(values, index=s.index, name=s.name), out_of_range


def _count_offsets(s: pd.Series) -> int:
    """How many timestamp strings carry a UTC offset (``Z``, ``+02:00``, ...)."""
    if s.empty:
        return 0
    text = s.astype("str").str.strip()
    return int(text.str.contains(_OFFSET_PATTERN, case=False, regex=True).fillna(False).sum())


def _coerce_numbers(table: str, name: str, s: pd.Series, report: _Report) -> pd.Series:
    present = s.notna().to_numpy()
    if pd.api.types.is_bool_dtype(s.dtype) or not (
        pd.api.types.is_numeric_dtype(s.dtype) or _is_text_like(s)
    ):
        values = np.full(len(s), np.nan)
    else:
        numeric = pd.to_numeric(s, errors="coerce")
        values = numeric.to_numpy(dtype="float64", na_value=np.nan)
    bad = present & np.isnan(values)
    _report_bad_values(table, name, s, bad, "wrong type: expected number", report)
    return pd.Series(values, index=s.index, name=s.name)


def _coerce_text(table: str, name: str, s: pd.Series) -> pd.Series:
    original = s.dtype
    if original == "str":
        return s
    if s.dtype == object:
        if pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
            return s.astype("str")
        is_text = np.fromiter((isinstance(v, str) for v in s.to_numpy()), dtype=bool, count=len(s))
        n_changed = int((s.notna().to_numpy() & ~is_text).sum())
    elif pd.api.types.is_string_dtype(s.dtype) or (
        isinstance(s.dtype, pd.CategoricalDtype) and pd.api.types.is_string_dtype(s.dtype.categories)
    ):
        return s.astype("str")  # another string dtype (pd.NA semantics, categories): same values
    else:
        n_changed = int(s.notna().sum())
        if pd.api.types.is_float_dtype(s.dtype):
            whole = s.dropna().to_numpy(dtype="float64")
            if np.isfinite(whole).all() and (whole == np.round(whole)).all() and (abs(whole) < 2**53).all():
                s = s.astype("Int64")  # lead id 1.0 (a float column because of gaps) becomes "1"
    if n_changed:
        logger.info("%s.%s: %d non-text values (%s) converted to text", table, name, n_changed, original)
    return s.astype("str")


# --------------------------------------------------------------------------------------------- #
# pandera: lazy validation, failure cases translated into plain-language problems
# --------------------------------------------------------------------------------------------- #


def _run_schema(
    table: str, df: pd.DataFrame, report: _Report, *, schema: pda.DataFrameSchema | None = None
) -> pd.DataFrame:
    try:
        return (schema or _schema(table)).validate(df, lazy=True)
    except pda.errors.SchemaErrors as err:
        _translate_failures(table, err.failure_cases, report, n_rows=len(df))
        return df


def _translate_failures(table: str, cases: pd.DataFrame, report: _Report, *, n_rows: int) -> None:
    cases = cases.astype({"check": "str"})
    missing = cases[cases["check"] == "column_in_dataframe"]
    for column in dict.fromkeys(missing["failure_case"].astype("str")):
        report.add_whole_column(table, column, "missing column", n_rows)
    column_cases = cases[(cases["check"] != "column_in_dataframe") & cases["index"].notna()]
    for key, group in column_cases.groupby(["column", "check"], sort=False):
        column, check = (str(part) for part in cast("tuple[object, object]", key))
        rows = group["index"].to_numpy(dtype=np.int64)
        already = report.reported_rows.get((table, column))
        if already is not None:  # e.g. an unparsable timestamp, which pandera sees as missing
            rows = rows[~np.isin(rows, already)]
        report.add(table, column, _describe_check(column, check, group["failure_case"]), rows)
    unlocated = cases[(cases["check"] != "column_in_dataframe") & cases["index"].isna()]
    for key, _group in unlocated.groupby(["column", "check"], sort=False, dropna=False):
        column_label, check_name = cast("tuple[object, object]", key)
        column_name = None if pd.isna(cast("float | str | None", column_label)) else str(column_label)
        report.add_whole_column(table, column_name, f"failed check {check_name}", n_rows)


def _describe_check(column: str, check: str, values: pd.Series) -> str:
    if check == "not_nullable":
        return "missing value"
    if check == "field_uniqueness":
        return f"duplicate {column}"
    if check.startswith("greater_than_or_equal_to(0"):
        return "negative value"
    if check.startswith("isin("):
        counts = values.astype("str").value_counts()
        shown = ", ".join(f"{v!r} ({n})" for v, n in counts.head(5).items())
        more = f" and {len(counts) - 5} more" if len(counts) > 5 else ""
        expected = _expected_values(column)
        return f"unknown {column}: {shown}{more}; expected one of {expected}"
    if check.startswith(("dtype(", "coerce_dtype(")):
        expected = check.split("(", 1)[1].rstrip(")").strip("'")
        return f"wrong type: expected {expected}, got {_example(values.iloc[0])}"
    return f"failed check {check}"


def _expected_values(column: str) -> str:
    if column == "activity_type":
        known = ", ".join(t.value for t in ActivityType)
        return f"{known} (or map it in an event mapping's tables.activities.types)"
    return "the allowed values"


# --------------------------------------------------------------------------------------------- #
# Cross-table checks (vectorised with pyarrow hash lookups)
# --------------------------------------------------------------------------------------------- #


def _cross_table_checks(tables: dict[str, pd.DataFrame], now: pd.Timestamp, report: _Report) -> None:
    leads = tables["leads"]
    after = f"timestamp in the future (after {now:%Y-%m-%d %H:%M:%S})"
    for table, column in (("leads", "created_at"), ("activities", "timestamp"), ("outcomes", "converted_at")):
        if column in tables[table].columns:
            report.add(table, column, after, np.flatnonzero((tables[table][column] > now).to_numpy()))
    if "lead_id" not in leads.columns:
        return
    created = leads["created_at"].to_numpy() if "created_at" in leads.columns else None
    for table, column, noun, before in (
        ("activities", "timestamp", "activity", "activity before the lead was created"),
        ("outcomes", "converted_at", "outcome", "conversion before the lead was created"),
    ):
        frame = tables[table]
        if "lead_id" not in frame.columns or frame.empty:
            continue
        position = _positions(frame["lead_id"], leads["lead_id"])
        known = position >= 0
        unknown = frame["lead_id"].notna().to_numpy() & ~known
        report.add(table, "lead_id", f"{noun} for unknown lead", np.flatnonzero(unknown))
        if created is None or column not in frame.columns:
            continue
        when = frame[column].to_numpy()
        early = np.zeros(len(frame), dtype=bool)
        early[known] = when[known] < created[position[known]]  # NaT compares False
        report.add(table, column, before, np.flatnonzero(early))


def _positions(keys: pd.Series, values: pd.Series) -> np.ndarray:
    """Row position in ``values`` of each key (first match), -1 where absent or missing."""
    haystack = pa.array(values)
    if isinstance(haystack, pa.ChunkedArray):
        haystack = haystack.combine_chunks()
    needles = pa.array(keys)
    if needles.type != haystack.type:
        haystack = haystack.cast(needles.type)
    found = pc.fill_null(pc.index_in(needles, value_set=haystack), -1)
    return np.asarray(found.to_numpy(), dtype=np.int64)


# --------------------------------------------------------------------------------------------- #
# Time helpers
# --------------------------------------------------------------------------------------------- #


def _naive_utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


def _to_naive_utc(ts: pd.Timestamp) -> pd.Timestamp:
    return ts if ts.tzinfo is None else ts.tz_convert("UTC").tz_localize(None)


# --------------------------------------------------------------------------------------------- #
# Reading an export file as it comes: separator, encoding, decimal mark; errors that name the file
# --------------------------------------------------------------------------------------------- #

SEPARATORS: tuple[str, ...] = (",", ";", "\t", "|")
_SEPARATOR_NAMES = {",": "','", ";": "';'", "\t": "a tab ('\\t')", "|": "'|'"}


class ExportReadError(ValueError):
    """An export file cannot be read as configured; the message names the file and the fix."""


#: The ``DataFrame.attrs`` key under which :func:`read_export_file` leaves a CSV's :class:`ExportLines`.
EXPORT_LINES = "leadscore_export_lines"


@dataclass(frozen=True, eq=False)
class ExportLines:
    """Where a CSV's rows and set-aside lines are in the file (``frame.attrs[EXPORT_LINES]``).

    Compared by identity and never copied: pandas compares and deep-copies ``attrs`` on every
    derived frame, and an array would neither compare to a bool nor copy for free.
    """

    row_lines: np.ndarray | None
    """Each row's file line (-1: not known); None when rows are simply header + 1 + row."""
    unreadable: tuple[tuple[int, str], ...]
    """(line, problem) of each line set aside (line -1: not known)."""

    def __deepcopy__(self, memo: dict[int, object]) -> ExportLines:
        return self


def export_lines(frame: pd.DataFrame) -> ExportLines:
    """The line map :func:`read_export_file` left on ``frame`` (empty for other frames)."""
    found = frame.attrs.get(EXPORT_LINES)
    return found if isinstance(found, ExportLines) else ExportLines(None, ())


_EXCEL_SEPARATOR = re.compile(r"sep=(.)")  # Excel's first line naming the separator, e.g. "sep=;"
_BAD_LINE = re.compile(r"Skipping line (\d+): (expected \d+ fields, saw \d+)")


def _column_name(name: object) -> str:
    """A header cell without a UTF-8 byte order mark, whether decoded as one or as cp1252/latin-1 text."""
    return str(name).lstrip("\ufeff").removeprefix("\u00ef\u00bb\u00bf").strip()


FOOTER_LINE = "not data: a footer line after the table (fewer fields than the header)"
_FOOTER_MAX_LINES = 10


def _footer_rows(path: Path, frame: pd.DataFrame, *, encoding: str, sep: str) -> int:
    """How many of the last rows are a report's footer lines, not data (0 when none).

    A footer is a block of 2 to 10 lines at the very end of the file, each a note of at most 3
    fields in a table of at least 6 columns (pandas pads them with missing values), each matching its
    row (nothing beyond its own fields). One short last line is not a footer: it may be a record
    whose writer left its empty trailing fields out, and it stays a row (checked, maybe rejected).
    """
    width = len(frame.columns)
    if width < 6 or len(frame) < 3:
        return 0
    import csv

    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - (1 << 16)))
        tail = handle.read().decode(encoding, errors="replace")
    lines = [line for line in tail.splitlines() if line.strip()][-(_FOOTER_MAX_LINES + 1) :]
    footer = 0
    for line in reversed(lines):
        fields = next(csv.reader([line], delimiter=sep), [])
        row = len(frame) - 1 - footer
        if len(fields) > 3 or row < 1 or footer == _FOOTER_MAX_LINES:
            break
        if frame.iloc[row, len(fields) :].notna().any():  # the row holds more: a quoted line break
            break
        footer += 1
    return footer if footer >= 2 else 0


def _repeated_header_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose every cell is its column's name (a header line inside the data)."""
    if frame.empty or len(frame.columns) == 0:
        return np.zeros(len(frame), dtype=bool)
    names = [str(c) for c in frame.columns]
    candidate = (frame.iloc[:, 0].astype("string").str.strip() == names[0]).fillna(False).to_numpy(dtype=bool)
    for position, name in enumerate(names[1:], start=1):
        if not candidate.any():
            break
        cells = frame.iloc[:, position].astype("string").str.strip()
        candidate &= (cells == name).fillna(False).to_numpy(dtype=bool)
    return candidate


def csv_row_lines(
    path: Path, *, encoding: str, sep: str, n_rows: int, n_unreadable: int, gzipped: bool, preamble: int = 0
) -> tuple[np.ndarray | None, list[int] | None]:
    """The file line each data row starts on, and the lines set aside, as the file counts them.

    A file with one physical line per record needs no map (the common case, found by counting line
    breaks): ``(None, None)``, rows are ``row + 2``. Otherwise (blank lines, unreadable lines, quoted
    line breaks) the file is read again with Python's csv reader, keeping records as pandas does:
    blank lines skipped, lines with more fields than the header set aside (their start lines are
    the second value). When the counts differ from pandas' (``n_rows``, ``n_unreadable``), the rows'
    lines are all -1 (not known: the rejects leave ``line`` empty rather than guess) and the second
    value is None.
    """
    opener = gzip.open if gzipped else open
    breaks, tail = 0, b""
    with opener(path, "rb") as handle:
        while block := handle.read(1 << 24):
            breaks += block.count(b"\n")
            tail = (tail + block)[-256:]
    content = tail.rstrip(b"\r\n")  # blank lines at the very end hold no rows: not counted
    physical = breaks - tail[len(content) :].count(b"\n") + (1 if content else 0)
    if physical == preamble + n_rows + 1 and n_unreadable == 0:
        # one line per row: rows and lines are 2 apart (plus a "sep=" line before the header)
        return (None if preamble == 0 else np.arange(n_rows, dtype=np.int64) + 2 + preamble), None
    import csv

    starts: list[int] = []
    unreadable: list[int] = []
    unknown = np.full(n_rows, -1, dtype=np.int64)
    try:
        with opener(path, "rt", encoding=encoding, newline="") as text:
            for _ in range(preamble):
                text.readline()
            reader = csv.reader(text, delimiter=sep)
            header = next(reader, None)
            if header is None:
                return unknown, None
            consumed = preamble + reader.line_num
            for record in reader:
                start, consumed = consumed + 1, preamble + reader.line_num
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue  # a blank (or whitespace-only) line: pandas skips it too
                (unreadable if len(record) > len(header) else starts).append(start)
    except (csv.Error, UnicodeDecodeError):
        return unknown, None
    if len(starts) != n_rows or len(unreadable) != n_unreadable:
        return unknown, None
    return np.asarray(starts, dtype=np.int64), unreadable


def sniff_separator(header: str) -> str | None:
    """The separator that splits a header line into the most fields (None when none does)."""
    counts = {sep: header.count(sep) for sep in SEPARATORS}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] > 0 else None


def read_export_file(
    path: Path,
    *,
    file_format: str = "auto",
    delimiter: str | None = None,
    encoding: str = "utf-8",
    decimal: str = ".",
    thousands: str | None = None,
    missing_text: Iterable[str] | None = None,
    text_columns: Iterable[str] = (),
    expected_columns: Iterable[str] = (),
) -> pd.DataFrame:
    """Read one CSV or Parquet export; ``delimiter=None`` sniffs it from the header line.

    ``text_columns`` are read as text (ids keep leading zeros); everything else as pandas infers
    it with the given decimal mark. Cells whose text is in ``missing_text`` (default: the mapping's
    default list, pandas' own) are read as missing, and nothing else is. Raises
    :class:`ExportReadError` naming the file for an empty file, a header-only file, bad encoding, or
    a separator that leaves expected columns unsplit.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"export not found: {path} (set LEADSCORE_DATASETS_DIR or pass --data)")
    kind = file_format
    if kind == "auto":
        kind = "parquet" if path.name.lower().endswith((".parquet", ".pq")) else "csv"
    if kind == "parquet":
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError, pa.ArrowException) as error:
            raise ExportReadError(f"{path}: cannot read as Parquet ({error})") from None
        if frame.empty:
            raise ExportReadError(f"{path} has a header but no data rows")
        return frame
    compression = "gzip" if path.name.lower().endswith(".gz") else None
    with gzip.open(path, "rb") if compression else open(path, "rb") as handle:
        head = handle.read(1 << 16)
    try:
        text = head.decode(encoding)
    except UnicodeDecodeError as error:
        if len(head) == 1 << 16 and error.start >= len(head) - 4:  # a character cut at the block end
            text = head[: error.start].decode(encoding)
        else:
            raise ExportReadError(
                f"{path} is not valid {encoding} (byte {error.start}); set read.encoding, "
                "e.g. 'latin-1' or 'cp1252' for exports from Excel"
            ) from None
    except LookupError:
        raise ExportReadError(f"{path}: unknown encoding '{encoding}' in read.encoding") from None
    if not text.strip():
        raise ExportReadError(f"{path} is empty: no header and no data rows")
    first_lines = text.lstrip("\ufeff").splitlines()
    excel = _EXCEL_SEPARATOR.fullmatch(first_lines[0].strip())
    preamble = 1 if excel else 0  # Excel's "sep=;" line names the separator; the header follows it
    header = first_lines[preamble] if len(first_lines) > preamble else ""
    sniffed = sniff_separator(header)
    sep = delimiter or (excel.group(1) if excel else None) or sniffed or ","
    expected = list(expected_columns)
    if sep not in header and sniffed is not None and sniffed != sep:
        raise ExportReadError(
            f"{path} reads as one column with the separator {_SEPARATOR_NAMES.get(sep, repr(sep))}: its "
            f"header is split by {_SEPARATOR_NAMES[sniffed]}; set read.delimiter: {sniffed!r} in the mapping"
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                sep=sep,
                encoding=encoding,
                decimal=decimal,
                thousands=thousands,
                dtype=dict.fromkeys(text_columns, str),
                low_memory=False,
                encoding_errors="strict",
                skiprows=preamble,
                keep_default_na=False,  # exactly the missing text the service also applies
                na_values=list(DEFAULT_MISSING_TEXT if missing_text is None else missing_text),
                on_bad_lines="warn",  # a line with too many fields is set aside, not the whole file
                index_col=False,  # extra fields on the first data line never become an index
            )
    except pd.errors.EmptyDataError:
        raise ExportReadError(f"{path} is empty: no header and no data rows") from None
    except UnicodeDecodeError as error:
        raise ExportReadError(
            f"{path} is not valid {encoding} (byte {error.start}); set read.encoding, e.g. 'latin-1'"
        ) from None
    except pd.errors.ParserError as error:
        raise ExportReadError(f"{path}: cannot parse as CSV with separator {sep!r} ({error})") from None
    unreadable: list[tuple[int, str]] = []
    first_line_too_long = False
    for warning in caught:
        found = _BAD_LINE.findall(str(warning.message))
        if "Length of header or names does not match length of data" in str(warning.message):
            first_line_too_long = True  # pandas cut the first data line's extra fields off
        elif found:
            unreadable += [(int(line), f"unreadable line: {detail}") for line, detail in found]
        else:  # not ours to interpret: pass it on
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    # a UTF-8 byte order mark, whether decoded as such or as cp1252/latin-1 text
    frame.columns = [_column_name(c) for c in frame.columns]
    if first_line_too_long:  # set aside like every other line with too many fields
        frame = frame.iloc[1:].reset_index(drop=True)
        unreadable.insert(0, (2, f"unreadable line: expected {len(frame.columns)} fields, saw more"))
    gzipped = compression is not None
    row_lines, unreadable_lines = csv_row_lines(
        path,
        encoding=encoding,
        sep=sep,
        n_rows=len(frame),
        n_unreadable=len(unreadable),
        gzipped=gzipped,
        preamble=preamble,
    )
    if unreadable_lines is not None:  # pandas numbers lines its own way around quoted line breaks
        pairs = zip(unreadable_lines, unreadable, strict=True)
        unreadable = [(line, problem) for line, (_, problem) in pairs]
    repeated = _repeated_header_rows(frame)
    if repeated.any():  # exports joined one after another: each header line again, as a data row
        lines = row_lines if row_lines is not None else np.arange(len(frame), dtype=np.int64) + 2
        problem = "unreadable line: the header repeated (files joined?)"
        unreadable += [(int(line), problem) for line in lines[repeated]]
        frame = frame.loc[~repeated].reset_index(drop=True)
        row_lines = lines[~repeated]
    footer = 0 if gzipped else _footer_rows(path, frame, encoding=encoding, sep=sep)
    if footer:  # report exports end with "Generated by", "Grand Totals", a copyright line
        lines = row_lines if row_lines is not None else np.arange(len(frame), dtype=np.int64) + 2
        unreadable += [(int(line), FOOTER_LINE) for line in lines[-footer:]]
        frame = frame.iloc[:-footer].reset_index(drop=True)
        row_lines = lines[:-footer] if row_lines is not None else None
    frame.attrs[EXPORT_LINES] = ExportLines(row_lines, tuple(sorted(unreadable)))
    missing = [c for c in expected if c not in frame.columns]
    if missing and len(frame.columns) == 1 and sniffed not in (None, sep):
        raise ExportReadError(
            f"{path} reads as one column with the separator {sep!r}; its header looks "
            f"{_SEPARATOR_NAMES[sniffed]}-separated: set read.delimiter: {sniffed!r}"
        )
    if frame.empty:
        raise ExportReadError(f"{path} has a header but no data rows")
    return frame
