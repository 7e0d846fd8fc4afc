"""Bring your own CRM export: a validated YAML mapping and the flat (pre-aggregated) transform.

A mapping says, for one export: where the file is, which column is the lead id and which is the
label (and its positive values), an optional created-at column, the role of every column
(categorical or numeric feature, PII to drop, leaky/post-outcome to exclude, ignore), the values
that mean "missing" (e.g. ``Select``), and for each feature its family and the human label and
sentence used in reasons. ``leadscore mapping-schema`` prints its JSON schema.

:class:`FlatFeatureTransform` turns the export's own rows (its own column names) into model
features; it is carried inside the deployable model, so training, the pyfunc and the service
transform rows identically.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from leadscore.features.catalogue import Family, FeatureKind, FeatureSpec


class ColumnRole(StrEnum):
    CATEGORICAL = "categorical"  # a categorical feature
    NUMERIC = "numeric"  # a numeric feature (a count, minutes, a size...)
    PII = "pii"  # identifies a person: never a feature, dropped on load
    LEAKY = "leaky"  # set after the outcome (status, sales notes, scores): excluded
    IGNORE = "ignore"  # not useful (ids, constants)


class ColumnMapping(BaseModel):
    """The role of one export column, and how a reason about it reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: ColumnRole
    family: Family = Family.FIT
    label: str | None = Field(default=None, description="Human name, e.g. 'Time on the website'.")
    sentence: str | None = Field(
        default=None,
        description="Reason text with {value}, e.g. 'Spent {value:.0f} minutes on the website'.",
    )
    sentences: dict[str, str] = Field(
        default_factory=dict,
        description="Reason text per category value, e.g. {'Yes': 'Asked not to be called'}.",
    )
    display_scale: float = Field(default=1.0, gt=0, description="Multiply the value before showing it.")
    missing_sentence: str | None = Field(default=None, description="Reason text when the value is missing.")


class LabelMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    positive_values: tuple[str | int | float | bool, ...] = (1,)


class SourceMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="File path; ${LEADSCORE_DATASETS_DIR} and other env vars are expanded.")
    format: str = Field(default="auto", pattern="^(auto|csv|parquet)$")


class ExportMapping(BaseModel):
    """How one CRM export maps onto leadscore."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: SourceMapping
    id_column: str
    label: LabelMapping
    created_at_column: str | None = None
    missing_values: tuple[str, ...] = ("", "Select", "N/A", "NULL", "null")
    columns: dict[str, ColumnMapping]
    audit_allow: tuple[str, ...] = Field(
        default=(), description="Feature columns the leakage audit may flag but a person has cleared."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ExportMapping:
        special = {c for c in (self.id_column, self.label.column, self.created_at_column) if c is not None}
        clash = sorted(special & set(self.columns))
        if clash:
            raise ValueError(f"columns {clash} are id/label/created-at columns and cannot also have a role")
        if not self.feature_columns:
            raise ValueError("no column has a feature role (categorical or numeric)")
        return self

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


def load_mapping(path: Path) -> ExportMapping:
    """Read and validate a mapping YAML file (errors name the field)."""
    data = yaml.safe_load(Path(path).read_text())
    return ExportMapping.model_validate(data)


def mapping_json_schema() -> dict[str, Any]:
    return ExportMapping.model_json_schema()


def feature_name(column: str) -> str:
    """A column's feature name: lower snake case of the export's column name."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", column).strip("_").lower()
    return name if name and not name[0].isdigit() else f"f_{name}"


def read_export(
    path: Path, *, file_format: str = "auto", mapping: ExportMapping | None = None
) -> pd.DataFrame:
    """Read a flat export; with a mapping, the id and categorical columns are read as text, so
    ids keep leading zeros and a category "01" stays "01" (as it arrives at serving)."""
    kind = (
        file_format if file_format != "auto" else ("parquet" if path.suffix in (".parquet", ".pq") else "csv")
    )
    if kind == "parquet":
        return pd.read_parquet(path)
    text = {} if mapping is None else {c: str for c in (mapping.id_column, *mapping.text_columns)}
    return pd.read_csv(path, low_memory=False, dtype=text)


def label_values(series: pd.Series, *, positive_values: tuple[object, ...]) -> pd.Series:
    """1/0 labels (missing stays missing): numbers compare as numbers ("1.0" == 1), text as text."""
    missing = series.isna()
    numeric_positives = [v for v in positive_values if isinstance(v, int | float) and not isinstance(v, bool)]
    as_numbers = pd.to_numeric(series, errors="coerce")
    if numeric_positives and as_numbers[~missing].notna().all():
        positive = as_numbers.isin(numeric_positives)
    else:
        positive = series.astype("string").str.strip().isin([str(v) for v in positive_values])
    return positive.astype("Int8").mask(missing)


class FlatFeatureTransform:
    """Export rows (the export's own column names) -> model features, per an :class:`ExportMapping`."""

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

    def missing_columns(self, frame: pd.DataFrame) -> list[str]:
        wanted = (
            self.mapping.id_column,
            *self.columns,
            *([self.mapping.created_at_column] if self.mapping.created_at_column else []),
        )
        return [c for c in wanted if c not in frame.columns]

    def features(self, frame: pd.DataFrame, *, as_of: pd.Series | pd.Timestamp | None = None) -> pd.DataFrame:
        """Feature rows (lead_id, as_of, features) for export rows; PII and leaky columns are never read."""
        missing = [c for c in self.columns if c not in frame.columns]
        if self.mapping.id_column not in frame.columns:
            raise KeyError(f"the id column '{self.mapping.id_column}' is missing")
        placeholders = set(self.mapping.missing_values)
        out: dict[str, Any] = {"lead_id": frame[self.mapping.id_column].astype(str).to_numpy()}
        if isinstance(as_of, pd.Series):
            out["as_of"] = pd.to_datetime(as_of).to_numpy()
        elif as_of is not None:
            out["as_of"] = np.full(len(frame), np.datetime64(pd.Timestamp(as_of)))
        elif self.mapping.created_at_column and self.mapping.created_at_column in frame.columns:
            out["as_of"] = pd.to_datetime(frame[self.mapping.created_at_column], utc=True).dt.tz_localize(
                None
            )
        else:
            out["as_of"] = np.full(len(frame), np.datetime64("NaT"), dtype="datetime64[us]")
        for column, name in zip(self.columns, self.feature_names, strict=True):
            values = (
                frame[column] if column not in missing else pd.Series([None] * len(frame), index=frame.index)
            )
            text = values.astype("string").str.strip()
            is_missing = text.isna() | text.isin(placeholders)
            if self.mapping.columns[column].role is ColumnRole.CATEGORICAL:
                out[name] = pd.Categorical(
                    text.where(~is_missing).to_numpy(dtype=object, na_value=None)  # type: ignore[call-overload]  # stubs reject na_value=None
                )
            else:
                numbers = pd.to_numeric(text.where(~is_missing), errors="coerce")
                out[name] = numbers.to_numpy(dtype=np.float32, na_value=np.nan)
        return pd.DataFrame(out)

    def sentence(self, concept: str, row: Mapping[str, object]) -> str:
        """The reason text for one feature of one lead, from the mapping's templates."""
        column = self._by_feature[concept]
        m = self.mapping.columns[column]
        label = m.label or column
        value = row.get(concept)
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return m.missing_sentence or f"{label}: not given"
        if m.role is ColumnRole.CATEGORICAL:
            text = str(value)
            if text in m.sentences:
                return m.sentences[text]
            return (m.sentence or f"{label}: {{value}}").format(value=text)
        number = float(value) * m.display_scale  # type: ignore[arg-type]
        if m.sentence:
            return m.sentence.format(value=number)
        return f"{label}: {number:,.4g}"

    def raw_records(self, frame: pd.DataFrame, *, n: int) -> list[dict[str, Any]]:
        """A few export rows (id + feature columns only) as API/pyfunc examples."""
        keep = [self.mapping.id_column, *[c for c in self.columns if c in frame.columns]]
        sample = frame.loc[:, keep].head(n).copy()
        for column in keep[1:]:
            if self.mapping.columns[column].role is ColumnRole.NUMERIC:
                sample[column] = pd.to_numeric(sample[column], errors="coerce").astype(float)
        return [
            {
                str(k): (None if pd.isna(v) else (v.item() if hasattr(v, "item") else v))
                for k, v in row.items()
            }
            for row in sample.to_dict(orient="records")
        ]
