"""Bring your own CRM export: validated YAML mappings and the flat (pre-aggregated) transform.

Two kinds of mapping, told apart by the ``tables`` key:

* a **flat** mapping (:class:`ExportMapping`) for one row per lead with a label column: where the
  file is, which column is the lead id and which is the label (and its positive values), an
  optional created-at column (or an order column / "rows are in time order"), the role of every
  column (categorical or numeric feature, PII to drop, leaky/post-outcome to exclude, ignore), the
  values that mean "missing" (e.g. ``Select``), and for each feature its family and the human label
  and sentence used in reasons;
* an **event** mapping (:class:`EventMapping`, see :mod:`leadscore.features.events`) for separate
  leads, activities and outcomes/deals files: column renames per table, the label from dates, custom
  lead attributes and the export's own activity types.

Sentence templates take ``{value}`` (with a format, e.g. ``{value:.0f}``) and plural forms written
``[singular|plural]``: ``"Visited {value:.0f} [time|times]"`` reads "Visited 1 time" and "Visited 3
times" (singular when the value is 1). ``leadscore mapping-schema`` prints the JSON schema with a
description of every field.

:class:`FlatFeatureTransform` turns the export's own rows (its own column names) into model
features; it is carried inside the deployable model, so training, the pyfunc and the service
transform rows identically.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from leadscore.features.catalogue import Family, FeatureKind, FeatureSpec
from leadscore.features.vocabulary import DEFAULT_MISSING_TEXT, InputLayout
from leadscore.features.wording import choose_forms, is_one


def render_sentence(template: str, value: object, **fields: object) -> str:
    """Fill a reason template: ``{value}`` (formats allowed) and ``[singular|plural]`` forms."""
    return choose_forms(template.format(value=value, **fields), one=is_one(value))


class ReadOptions(BaseModel):
    """How to read a CSV export (ignored for Parquet, except ``format`` and ``missing_text``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = Field(
        default="auto", pattern="^(auto|csv|parquet)$", description="csv, parquet or auto (by file suffix)."
    )
    delimiter: str | None = Field(
        default=None,
        min_length=1,
        max_length=1,
        description="Field separator, e.g. ';'. Left out: sniffed from the header line (, ; tab |).",
    )
    encoding: str = Field(default="utf-8", description="Text encoding, e.g. utf-8, latin-1, cp1252.")
    decimal: str = Field(
        default=".",
        pattern="^[.,]$",
        description="Decimal mark of numbers: '.' or ',' (1,5 = one and a half).",
    )
    thousands: str | None = Field(
        default=None, max_length=1, description="Thousands separator inside numbers, e.g. '.' in 1.234,5."
    )
    date_format: str | None = Field(
        default=None,
        description="strftime format of dates, e.g. '%d/%m/%Y'. Left out: ISO 8601, else inferred.",
    )
    missing_text: tuple[str, ...] = Field(
        default=DEFAULT_MISSING_TEXT,
        description="Cell texts that mean 'no value' in every column of a CSV file, ids, dates and labels "
        "included (default: pandas' list, e.g. NA, NULL, nan, #N/A; an empty cell always counts). The "
        "service reads records the same way; in Parquet files they apply to the feature columns. Set [''] "
        "to keep e.g. 'NA' (Namibia) as text. Texts only: a numeric placeholder such as 999 goes in its "
        "column's missing_values.",
    )

    @field_validator("missing_text")
    @classmethod
    def _texts_and_blank(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        numbers = [v for v in value if v.strip() and parse_number_text(v) is not None]
        if numbers:
            raise ValueError(
                f"{numbers} read as numbers: pandas would take them as missing in every numeric column; "
                "give a numeric placeholder in its column's missing_values instead"
            )
        return tuple(dict.fromkeys(("", *value)))  # an empty cell is never a value

    def is_missing_text(self, value: object) -> bool:
        """Whether a cell a client sent reads as no value, as this file's reader would read it."""
        return value is None or str(value).strip() in {"", *self.missing_text}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Models pickled before a field existed load with its default (their reading is unchanged)."""
        values = state.get("__dict__", {})
        for name, info in type(self).model_fields.items():
            if name not in values and not info.is_required():
                values[name] = info.get_default(call_default_factory=True)
        super().__setstate__(state)


class ColumnRole(StrEnum):
    CATEGORICAL = "categorical"  # a categorical feature
    NUMERIC = "numeric"  # a numeric feature (a count, minutes, a size...)
    PII = "pii"  # identifies a person: never a feature, dropped on load
    LEAKY = "leaky"  # set after the outcome (status, sales notes, scores): excluded
    IGNORE = "ignore"  # not useful (ids, constants)


class ColumnMapping(BaseModel):
    """The role of one export column, and how a reason about it reads.

    ``role``: categorical or numeric (a feature), pii (dropped on load), leaky (recorded after the
    outcome: excluded), ignore (not useful). ``family``: fit (who the lead is), engagement (what it
    did) or sales (what the team did)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: ColumnRole = Field(
        description="categorical or numeric: a feature; pii: identifies a person, dropped on load; "
        "leaky: set after the outcome, excluded; ignore: not useful (a second id, a constant)."
    )
    family: Family = Field(
        default=Family.FIT,
        description="fit (who the lead is), engagement (what it did) or sales (what the team did): "
        "groups reasons and the fit/engagement grades.",
    )
    label: str | None = Field(default=None, description="Human name, e.g. 'Time on the website'.")
    sentence: str | None = Field(
        default=None,
        description="Reason text with {value} and [singular|plural] forms, e.g. "
        "'Spent {value:.0f} [minute|minutes] on the website'.",
    )
    sentences: dict[str, str] = Field(
        default_factory=dict,
        description="Reason text per category value, e.g. {'Yes': 'Asked not to be called'}.",
    )
    display_scale: float = Field(default=1.0, gt=0, description="Multiply the value before showing it.")
    missing_sentence: str | None = Field(default=None, description="Reason text when the value is missing.")
    missing_values: tuple[str, ...] = Field(
        default=(),
        description="Extra values meaning 'missing' in this column only, e.g. ['999'] for 'never contacted'.",
    )


class LabelMapping(BaseModel):
    """The label column of a flat export and the values that mean "converted"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str = Field(description="The column holding the outcome.")
    positive_values: tuple[str | int | float | bool, ...] = Field(
        default=(1,), description="Values meaning converted; numbers compare as numbers ('1.0' == 1)."
    )


class SourceMapping(BaseModel):
    """Where a flat export's file is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="File path; ${LEADSCORE_DATASETS_DIR} and other env vars are expanded.")
    format: str = Field(
        default="auto", pattern="^(auto|csv|parquet)$", description="csv, parquet or auto (by suffix)."
    )


class ExportMapping(BaseModel):
    """How one CRM export maps onto leadscore."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="A short name for the export (used in file and model names).")
    source: SourceMapping = Field(description="Where the export file is.")
    read: ReadOptions = Field(default_factory=ReadOptions, description="How to read the CSV file.")
    id_column: str | None = Field(
        default=None,
        description="The lead id column. Left out: synthetic ids 'row-<line>' from the file's line "
        "numbers (logged).",
    )
    label: LabelMapping = Field(description="The label column and its positive values.")
    created_at_column: str | None = Field(
        default=None, description="When the lead was created: enables the time-ordered split."
    )
    order_column: str | None = Field(
        default=None,
        description="Without dates: a column that orders leads in time (a sequence number, an "
        "increasing id); the split then trains on the earlier rows and tests on the later ones.",
    )
    rows_in_time_order: bool = Field(
        default=False, description="Without dates: the file's rows are in the order the leads arrived."
    )
    label_horizon_days: PositiveInt | None = Field(
        default=None,
        description="How many days after the lead's creation the label looks (e.g. 90): used by "
        "the split's purge and shown in the model card. Left out: unknown.",
    )
    missing_values: tuple[str, ...] = Field(
        default=("", "Select", "N/A", "NULL", "null"),
        description="Values meaning 'missing' in every column (a column may add its own).",
    )
    columns: dict[str, ColumnMapping] = Field(description="The role of every other column, by name.")
    audit_allow: tuple[str, ...] = Field(
        default=(), description="Feature columns the leakage audit may flag but a person has cleared."
    )
    max_reject_share: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Rows that break the contract go to a rejects file while their share stays at or "
        "under this; above it the build stops and lists every problem.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ExportMapping:
        special = {
            c
            for c in (self.id_column, self.label.column, self.created_at_column, self.order_column)
            if c is not None
        }
        clash = sorted(special & set(self.columns))
        if clash:
            raise ValueError(
                f"columns {clash} are id/label/created-at/order columns and cannot also have a role"
            )
        if not self.feature_columns:
            raise ValueError("no column has a feature role (categorical or numeric)")
        axes = [self.created_at_column is not None, self.order_column is not None, self.rows_in_time_order]
        if sum(axes) > 1:
            raise ValueError("give at most one of created_at_column, order_column, rows_in_time_order")
        return self

    @property
    def time_axis(self) -> str:
        """``timestamp``, ``row_order`` or ``none``: what orders this export's leads in time."""
        if self.created_at_column is not None:
            return "timestamp"
        return "row_order" if self.order_column is not None or self.rows_in_time_order else "none"

    def missing_for(self, column: str) -> set[str]:
        """The texts that mean "missing" in ``column``: the file's, the mapping's and the column's."""
        extra = self.columns[column].missing_values if column in self.columns else ()
        return {*self.read.missing_text, *self.missing_values, *extra}

    @property
    def feature_columns(self) -> tuple[str, ...]:
        return tuple(
            c for c, m in self.columns.items() if m.role in (ColumnRole.CATEGORICAL, ColumnRole.NUMERIC)
        )

    @property
    def text_columns(self) -> tuple[str, ...]:
        """Columns read as text: categorical features."""
        return self.columns_with(ColumnRole.CATEGORICAL)

    def columns_with(self, role: ColumnRole) -> tuple[str, ...]:
        return tuple(c for c, m in self.columns.items() if m.role is role)

    def source_path(self, *, base: Path | None = None) -> Path:
        from leadscore.settings import datasets_dir

        env = {**os.environ, "LEADSCORE_DATASETS_DIR": str(datasets_dir())}
        expanded = re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), m.group(0)), self.source.path)
        path = Path(expanded)
        return path if path.is_absolute() or base is None else (base / path)


def _mapping_data(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a mapping is a YAML object (key: value lines)")
    return data


def is_event_mapping(path: Path) -> bool:
    """Whether a mapping file is an event mapping (it has ``tables``)."""
    return "tables" in _mapping_data(path)


def load_mapping(path: Path) -> ExportMapping:
    """Read and validate a flat mapping YAML file (errors name the field)."""
    data = _mapping_data(path)
    if "tables" in data:
        raise ValueError(f"{path} is an event mapping (it has 'tables'); this step takes a flat mapping")
    return ExportMapping.model_validate(data)


def _flatten(data: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, object] = {}
    for key, value in data.items():
        if key == "path":  # where the files are may differ between machines: not how they read
            continue
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def mapping_differences(trained: BaseModel, given: BaseModel) -> list[str]:
    """How a mapping file differs from the one a model was trained with, one line per field
    (file paths aside: they may differ between machines); empty when they read an export alike."""
    if type(trained) is not type(given):

        def kind(mapping: BaseModel) -> str:
            return "a flat mapping" if isinstance(mapping, ExportMapping) else "an event mapping"

        return [
            f"the model was trained with {kind(trained)} ('{getattr(trained, 'name', '')}'), "
            f"the file is {kind(given)}"
        ]
    model_fields = _flatten(trained.model_dump(mode="json"))
    file_fields = _flatten(given.model_dump(mode="json"))
    return [
        f"{name}: the model's mapping has {model_fields.get(name)!r}, the file {file_fields.get(name)!r}"
        for name in sorted(set(model_fields) | set(file_fields))
        if model_fields.get(name) != file_fields.get(name)
    ]


def mapping_json_schema() -> dict[str, Any]:
    """JSON schema of both mapping kinds, every field described."""
    from leadscore.features.events import EventMapping

    return {
        "title": "leadscore export mapping",
        "description": "A flat mapping (one row per lead, a label column) or an event mapping "
        "(leads, activities and outcomes/deals files; it has 'tables').",
        "anyOf": [ExportMapping.model_json_schema(), EventMapping.model_json_schema()],
    }


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_numbers(values: pd.Series, *, decimal: str = ".", thousands: str | None = None) -> pd.Series:
    """Numbers from export values (text or numbers); unparsable text becomes NaN (check it first
    with :func:`not_numbers`)."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype(float)
    text = values.astype("string").str.strip()
    if thousands:
        text = text.str.replace(thousands, "", regex=False)
    if decimal != ".":
        text = text.str.replace(decimal, ".", regex=False)
    parsed = pd.to_numeric(text, errors="coerce").astype(float)
    if values.dtype == object and (thousands or decimal != "."):
        # numbers already (a JSON record mixing 1.5 with "2,5"): never read their "." as a separator
        is_number = values.map(_is_number).to_numpy(dtype=bool)
        if is_number.any():
            parsed[is_number] = pd.to_numeric(values[is_number], errors="coerce").astype(float)
    return parsed


def parse_number_text(text: str, *, decimal: str = ".", thousands: str | None = None) -> float | None:
    """One value as :func:`parse_numbers` reads it (None where it reads NaN): the service checks a
    record's value with this, so it accepts exactly what training read as a number."""
    cleaned = text.strip()
    if thousands:
        cleaned = cleaned.replace(thousands, "")
    if decimal != ".":
        cleaned = cleaned.replace(decimal, ".")
    number = pd.to_numeric(pd.Series([cleaned], dtype="string"), errors="coerce").iloc[0]
    return None if pd.isna(number) else float(number)


def not_numbers(
    values: pd.Series, *, missing: set[str], decimal: str = ".", thousands: str | None = None
) -> np.ndarray:
    """Rows holding a value that is neither missing nor a finite number within float32 ("ten", "inf")."""
    text = values.astype("string").str.strip()
    present = (text.notna() & ~text.isin(list(missing))).to_numpy(dtype=bool)
    numbers = parse_numbers(values, decimal=decimal, thousands=thousands).to_numpy(dtype=float)
    with np.errstate(over="ignore"):  # beyond float32 (the features' type) is no number either
        finite = np.isfinite(numbers.astype(np.float32))
    return present & ~finite


_SEPARATOR_READINGS: tuple[tuple[str, str | None], ...] = ((".", ","), (",", "."), (",", None), (".", None))


def _separator_hint(text: str, *, decimal: str, thousands: str | None) -> str:
    """How a value that is no number as the mapping reads it would read with other separators ('' if none)."""
    for other_decimal, other_thousands in _SEPARATOR_READINGS:
        if (other_decimal, other_thousands) == (decimal, thousands):
            continue
        number = parse_number_text(text, decimal=other_decimal, thousands=other_thousands)
        if number is not None:
            settings = [f"read.decimal: '{other_decimal}'"] if other_decimal != decimal else []
            if other_thousands != thousands:
                settings.append(
                    f"read.thousands: '{other_thousands}'" if other_thousands else "no read.thousands"
                )
            return f" (with {' and '.join(settings)} it reads as {number:g}: set that in the mapping if so)"
    return ""


def number_problems(
    values: pd.Series, *, missing: set[str], decimal: str = ".", thousands: str | None = None
) -> list[tuple[str, np.ndarray]]:
    """The rows of a mapped numeric column that hold no number, grouped by what to tell the user.

    Each group is (problem, row mask): "not a number, got 'about 500'", or, for a value such as
    '1,200' that reads as a number with other separators, the same with the read options that would
    read it. Missing values are never a problem.
    """
    bad = not_numbers(values, missing=missing, decimal=decimal, thousands=thousands)
    if not bad.any():
        return []
    text = values.astype("string").str.strip().to_numpy(dtype=object, na_value=None)  # type: ignore[call-overload]  # stubs reject na_value=None
    groups: dict[str, list[int]] = {}
    examples: dict[str, str] = {}
    for row in np.flatnonzero(bad):
        hint = _separator_hint(str(text[row]), decimal=decimal, thousands=thousands)
        groups.setdefault(hint, []).append(int(row))
        examples.setdefault(hint, str(text[row]))
    out = []
    for hint, rows in groups.items():
        mask = np.zeros(len(values), dtype=bool)
        mask[rows] = True
        out.append((f"not a number, got {examples[hint]!r}{hint}", mask))
    return out


@dataclass(frozen=True)
class UnmatchedKey:
    """A mapping key (or listed value) that matches no row of the export."""

    field: str
    """Where it is in the mapping, e.g. ``tables.activities.types``."""
    key: str
    column: str
    """The export column it was looked up in, e.g. ``activities.What``."""
    nearest: tuple[str, ...]
    """The values seen in that column closest to it (or its most common values)."""

    def describe(self) -> str:
        seen = ", ".join(repr(v) for v in self.nearest) if self.nearest else "none"
        return f"{self.field}: {self.key!r} matches no value of {self.column}; nearest values seen: {seen}"


class MappingKeyError(ValueError):
    """Mapping keys that match nothing in the export (a typo loses every row they should map)."""

    def __init__(self, unmatched: list[UnmatchedKey]) -> None:
        self.unmatched = unmatched
        lines = "\n".join(f"  - {u.describe()}" for u in unmatched)
        super().__init__(
            f"{len(unmatched)} mapping key(s) match no row of the export: correct each to the value the "
            f"export writes (or remove it)\n{lines}"
        )


def unmatched_keys(
    keys: Iterable[str],
    *,
    values: pd.Series,
    covered: Collection[str],
    field: str,
    column: str,
    strict: Collection[str] = (),
) -> tuple[list[UnmatchedKey], list[UnmatchedKey]]:
    """Keys of a mapping field that match no value seen in ``values``: (errors, unused).

    A key is an error when it is in ``strict`` (e.g. a new activity type: its features would be
    always zero) or when the export holds values close to it that nothing else covers (a typo: those
    rows are lost or misread); otherwise it is only unused (a template key the export never writes).
    ``covered`` are the values the mapping already reads (its keys, built-in names).
    """
    counts = values.dropna().astype(str).str.strip().value_counts()
    seen = set(counts.index)
    uncovered = [v for v in counts.index if v not in covered]
    errors: list[UnmatchedKey] = []
    unused: list[UnmatchedKey] = []
    for key in keys:
        if key in seen:
            continue
        close = difflib.get_close_matches(key, uncovered, n=3, cutoff=0.6)
        if close or key in strict:
            nearest = close or difflib.get_close_matches(key, list(counts.index), n=3, cutoff=0.0)
            errors.append(UnmatchedKey(field, key, column, tuple(nearest or counts.index[:3])))
        else:
            unused.append(UnmatchedKey(field, key, column, ()))
    return errors, unused


def read_dates(values: pd.Series, *, date_format: str | None) -> pd.Series:
    """Dates of a mapped date column as naive UTC (unreadable values are NaT: check them first).

    With ``date_format`` values are read with it; without, ISO 8601 (with or without an offset)
    and then any other unambiguous form.
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        parsed = pd.to_datetime(values, utc=True)
    else:
        text = values.astype("string").str.strip()
        if date_format is not None:
            parsed = pd.to_datetime(text, format=date_format, errors="coerce", utc=True)
        else:
            parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)
            failed = parsed.isna() & text.notna()
            if failed.any():
                parsed[failed] = pd.to_datetime(text[failed], format="mixed", errors="coerce", utc=True)
    return parsed.dt.tz_convert("UTC").dt.tz_localize(None)


def not_dates(values: pd.Series, *, missing: set[str], date_format: str | None) -> np.ndarray:
    """Rows holding a value that is neither missing nor a date as :func:`read_dates` reads it."""
    text = values.astype("string").str.strip()
    present = (text.notna() & ~text.isin(list(missing))).to_numpy(dtype=bool)
    return present & read_dates(values, date_format=date_format).isna().to_numpy(dtype=bool)


def feature_name(column: str) -> str:
    """A column's feature name: lower snake case of the export's column name."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", column).strip("_").lower()
    return name if name and not name[0].isdigit() else f"f_{name}"


def read_export(
    path: Path, *, file_format: str = "auto", mapping: ExportMapping | None = None
) -> pd.DataFrame:
    """Read a flat export with the mapping's read options; with a mapping, the id and categorical
    columns are read as text, so ids keep leading zeros and a category "01" stays "01" (as it
    arrives at serving). Errors name the file (empty, header only, wrong separator, encoding)."""
    from leadscore.features.loading import read_export_file

    options = mapping.read if mapping is not None else ReadOptions()
    text = (
        ()
        if mapping is None
        else tuple(c for c in (mapping.id_column, *mapping.text_columns) if c is not None)
    )
    expected = () if mapping is None else (mapping.label.column, *mapping.feature_columns)
    return read_export_file(
        Path(path),
        file_format=file_format if file_format != "auto" else options.format,
        delimiter=options.delimiter,
        encoding=options.encoding,
        decimal=options.decimal,
        thousands=options.thousands,
        missing_text=options.missing_text,
        text_columns=text,
        expected_columns=expected,
    )


SYNTHETIC_ID_COLUMN = "__row_id__"


def synthetic_ids(n_rows: int, *, first_line: int = 2, lines: np.ndarray | None = None) -> np.ndarray:
    """Ids for an export without an id column: ``row-<the file's line number>``.

    ``lines`` (each row's file line, from the reader's line map) makes them the file's own numbers
    across blank and set-aside lines; without it, or where a line is not known, rows count from
    ``first_line``.
    """
    if lines is not None and len(lines) == n_rows and (np.asarray(lines) > 0).all():
        return np.array([f"row-{int(line)}" for line in lines], dtype=object)
    return np.array([f"row-{first_line + i}" for i in range(n_rows)], dtype=object)


def label_values(
    series: pd.Series, *, positive_values: tuple[object, ...], missing_values: Collection[str] = ()
) -> pd.Series:
    """1/0 labels (missing stays missing): numbers compare as numbers ("1.0" == 1), text as text.

    Blank cells and ``missing_values`` (the mapping's placeholders, e.g. "N/A") are missing, never a 0.
    """
    text = series.astype("string").str.strip()
    missing = series.isna() | text.isin(["", *missing_values]).fillna(False).to_numpy(dtype=bool)
    series = series.mask(missing)
    numeric_positives = [v for v in positive_values if isinstance(v, int | float) and not isinstance(v, bool)]
    as_numbers = pd.to_numeric(series, errors="coerce")
    if numeric_positives and as_numbers[~missing].notna().all():
        positive = as_numbers.isin(numeric_positives)
    else:
        positive = series.astype("string").str.strip().isin([str(v) for v in positive_values])
    return positive.astype("Int8").mask(missing)


class FlatFeatureTransform:
    """Export rows (the export's own column names) -> model features, per an :class:`ExportMapping`.

    A :class:`~leadscore.model.transforms.FeatureTransform` for flat exports.
    """

    layout = InputLayout.FLAT_EXPORT

    def __init__(self, mapping: ExportMapping) -> None:
        self.mapping = mapping
        self.columns = mapping.feature_columns
        self.feature_names = tuple(feature_name(c) for c in self.columns)
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError("two feature columns map to the same feature name; rename one in the export")
        self.categorical_features = tuple(
            feature_name(c) for c in self.columns if mapping.columns[c].role is ColumnRole.CATEGORICAL
        )
        self.catalogue = tuple(self._spec(c) for c in self.columns)
        self._by_feature = {feature_name(c): c for c in self.columns}

    def _spec(self, column: str) -> FeatureSpec:
        m = self.mapping.columns[column]
        label = m.label or column
        kind = FeatureKind.CATEGORICAL if m.role is ColumnRole.CATEGORICAL else FeatureKind.NUMERIC
        return FeatureSpec(feature_name(column), m.family, kind, feature_name(column), label, label)

    @property
    def id_column(self) -> str:
        """The id column (a synthetic one, added on read, when the export has none)."""
        return self.mapping.id_column or SYNTHETIC_ID_COLUMN

    def missing_columns(self, frame: pd.DataFrame) -> list[str]:
        wanted = (
            self.id_column,
            *self.columns,
            *([self.mapping.created_at_column] if self.mapping.created_at_column else []),
        )
        return [c for c in wanted if c not in frame.columns]

    def features(self, frame: pd.DataFrame, *, as_of: pd.Series | pd.Timestamp | None = None) -> pd.DataFrame:
        """Feature rows (lead_id, as_of, features) for export rows; PII and leaky columns are never read."""
        missing = [c for c in self.columns if c not in frame.columns]
        if self.id_column in frame.columns:
            ids = frame[self.id_column].astype(str).to_numpy()
        elif self.mapping.id_column is None:
            ids = synthetic_ids(len(frame))
        else:
            raise KeyError(f"the id column '{self.mapping.id_column}' is missing")
        out: dict[str, Any] = {"lead_id": ids}
        if isinstance(as_of, pd.Series):
            out["as_of"] = pd.to_datetime(as_of).to_numpy()
        elif as_of is not None:
            out["as_of"] = np.full(len(frame), np.datetime64(pd.Timestamp(as_of)))
        elif self.mapping.created_at_column and self.mapping.created_at_column in frame.columns:
            out["as_of"] = read_dates(
                frame[self.mapping.created_at_column], date_format=self.mapping.read.date_format
            ).to_numpy()
        else:
            out["as_of"] = np.full(len(frame), np.datetime64("NaT"), dtype="datetime64[us]")
        for column, name in zip(self.columns, self.feature_names, strict=True):
            values = (
                frame[column] if column not in missing else pd.Series([None] * len(frame), index=frame.index)
            )
            text = values.astype("string").str.strip()
            is_missing = text.isna() | text.isin(list(self.mapping.missing_for(column)))
            if self.mapping.columns[column].role is ColumnRole.CATEGORICAL:
                out[name] = pd.Categorical(
                    text.where(~is_missing).to_numpy(dtype=object, na_value=None)  # type: ignore[call-overload]  # stubs reject na_value=None
                )
            else:
                numbers = parse_numbers(
                    values.where(~is_missing.to_numpy(dtype=bool)),
                    decimal=self.mapping.read.decimal,
                    thousands=self.mapping.read.thousands,
                )
                out[name] = numbers.to_numpy(dtype=np.float32, na_value=np.nan)
        return pd.DataFrame(out)

    @property
    def name(self) -> str:
        """The export this transform reads (the mapping's name)."""
        return self.mapping.name

    def features_from_records(self, records: pd.DataFrame) -> pd.DataFrame:
        """Feature rows for export rows as a client sends them (the same as :meth:`features`)."""
        return self.features(records)

    def sentence(self, concept: str, row: Mapping[str, object]) -> str:
        """The reason text for one feature of one lead, from the mapping's templates."""
        column = self._by_feature[concept]
        return column_sentence(column, self.mapping.columns[column], row.get(concept))

    def raw_records(self, frame: pd.DataFrame, *, n: int) -> list[dict[str, Any]]:
        """A few export rows (id + feature columns only) as API/pyfunc examples."""
        keep = [self.id_column, *[c for c in self.columns if c in frame.columns]]
        sample = frame.loc[:, keep].head(n).copy()
        for column in keep[1:]:
            if self.mapping.columns[column].role is ColumnRole.NUMERIC:
                sample[column] = parse_numbers(
                    sample[column], decimal=self.mapping.read.decimal, thousands=self.mapping.read.thousands
                )
        return [
            {
                str(k): (None if pd.isna(v) else (v.item() if hasattr(v, "item") else v))
                for k, v in row.items()
            }
            for row in sample.to_dict(orient="records")
        ]


def column_sentence(column: str, m: ColumnMapping, value: object) -> str:
    """The reason text for one column's value, from its mapping's templates."""
    label = m.label or column
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return m.missing_sentence or f"{label}: not given"
    if m.role is ColumnRole.CATEGORICAL:
        text = str(value)
        if text in m.sentences:
            return m.sentences[text]
        return render_sentence(m.sentence or f"{label}: {{value}}", text)
    number = float(value) * m.display_scale  # type: ignore[arg-type]
    if m.sentence:
        return render_sentence(m.sentence, number)
    return f"{label}: {number:,.4g}"


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "")
    for prefix in (
        "leadscore.features.mapping.",
        "leadscore.features.events.",
        "leadscore.features.catalogue.",
    ):
        text = text.replace(prefix, "")
    return re.sub(r"<(?:class|enum) '([^']+)'>", r"\1", text)


def _field_lines(model: type[BaseModel], indent: str, seen: set[str]) -> list[str]:
    from enum import Enum

    lines: list[str] = []
    for name, info in model.model_fields.items():
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        shown = "the fields below" if isinstance(default, BaseModel) else repr(default)
        required = "required" if info.is_required() else f"default {shown}"
        lines.append(f"{indent}{name} ({_type_name(info.annotation)}; {required})")
        description = info.description or (
            info.annotation.__doc__ if isinstance(info.annotation, type) else None
        )
        if not description:
            raise ValueError(f"{model.__name__}.{name} has no description")  # every field is documented
        lines.append(f"{indent}    {' '.join(description.split())}")
        for inner in _nested_models(info.annotation):
            if issubclass(inner, Enum):
                lines.append(f"{indent}    values: {', '.join(str(v.value) for v in inner)}")
            elif inner.__name__ not in seen:
                seen.add(inner.__name__)
                doc = " ".join((inner.__doc__ or "").split())
                lines.append(f"{indent}    {inner.__name__}: {doc}")
                lines += _field_lines(inner, indent + "    ", seen)  # type: ignore[arg-type]
    return lines


def _nested_models(annotation: Any) -> list[type]:
    from enum import Enum
    from typing import get_args

    found: list[type] = []
    stack = [annotation]
    while stack:
        item = stack.pop()
        if isinstance(item, type) and (issubclass(item, BaseModel) or issubclass(item, Enum)):
            found.append(item)
        stack.extend(get_args(item))
    return found


def mapping_field_docs() -> str:
    """Every field of both mapping kinds with its type, default and description (plain text)."""
    from leadscore.features.events import EventMapping

    parts = []
    for title, model in (
        ("FLAT MAPPING: one row per lead with a label column (examples/xeducation.yaml)", ExportMapping),
        (
            "EVENT MAPPING (it has 'tables'): leads, activities, outcomes/deals files (examples/olist.yaml)",
            EventMapping,
        ),
    ):
        parts.append(title)
        parts += _field_lines(model, "  ", set())
        parts.append("")
    parts.append(
        "Sentence templates: {value} with an optional format ({value:.0f}); plural forms as "
        "[singular|plural], chosen by whether the value is 1: 'Visited {value:.0f} [time|times]'."
    )
    return "\n".join(parts)
