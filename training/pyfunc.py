"""MLflow pyfunc wrapper: raw leads (with nested activities) in, scores and reasons out.

The pyfunc carries the whole :class:`~leadscore.training.model.LeadScoringModel` (feature
transform + booster + calibrator + explainer), so ``mlflow.pyfunc.load_model`` and
``mlflow models serve`` score raw CRM leads with exactly the code used in training.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types.schema import (
    AnyType,
    Array,
    ColSpec,
    DataType,
    Object,
    ParamSchema,
    ParamSpec,
    Property,
    Schema,
    TensorSpec,
)

from leadscore.features.contract import CATEGORICAL_FIT_COLUMNS, NUMERIC_FIT_COLUMNS
from leadscore.features.mapping import FlatFeatureTransform
from leadscore.training.model import LeadScoringModel, lead_states

MODEL_ARTIFACT = "scoring_model"
LEAD_TEXT_COLUMNS: tuple[str, ...] = ("job_title", *CATEGORICAL_FIT_COLUMNS, "email")
#: Optional timestamps that close a lead: converted or disqualified leads get a status, not a score.
STATE_COLUMNS: tuple[str, ...] = ("converted_at", "disqualified_at")


def flat_input_signature(flat: FlatFeatureTransform) -> ModelSignature:
    """The input schema of a flat-export model: the export's own id and feature columns."""
    columns: list[ColSpec | TensorSpec] = (
        [] if flat.mapping.id_column is None else [ColSpec(DataType.string, flat.mapping.id_column)]
    )  # an export without ids gets synthetic ones
    for column, spec in zip(flat.columns, flat.catalogue, strict=True):
        # numbers arrive as ints or floats (JSON 674 vs 674.0); the transform coerces them itself
        kind = AnyType() if spec.kind.value == "numeric" else DataType.string
        columns.append(ColSpec(kind, column, required=False))
    params = ParamSchema([ParamSpec("explain", DataType.boolean, True), ParamSpec("top_k", DataType.long, 5)])
    return ModelSignature(inputs=Schema(columns), params=params)


def input_signature(flat: FlatFeatureTransform | None = None) -> ModelSignature:
    """The raw-lead input schema: contract lead columns, nested activities, optional as_of."""
    if flat is not None:
        return flat_input_signature(flat)
    activity = Object(
        [
            Property("timestamp", DataType.string),
            Property("activity_type", DataType.string),
            Property("page_category", DataType.string, required=False),
            Property("campaign", DataType.string, required=False),
        ]
    )
    inputs = Schema(
        [
            ColSpec(DataType.string, "lead_id"),
            ColSpec(DataType.string, "created_at"),
            *[ColSpec(DataType.string, name, required=False) for name in LEAD_TEXT_COLUMNS],
            *[ColSpec(DataType.double, name, required=False) for name in NUMERIC_FIT_COLUMNS],
            ColSpec(Array(activity), "activities", required=False),
            ColSpec(DataType.string, "as_of", required=False),
            *[ColSpec(DataType.string, name, required=False) for name in STATE_COLUMNS],
        ]
    )
    params = ParamSchema([ParamSpec("explain", DataType.boolean, True), ParamSpec("top_k", DataType.long, 5)])
    return ModelSignature(inputs=inputs, params=params)


def _utc_naive(values: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    return parsed.dt.tz_localize(None)


def split_raw_leads(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Split the nested input into contract tables (leads, activities) and each lead's ``as_of``."""
    leads = pd.DataFrame({"lead_id": raw["lead_id"].astype(str).to_numpy()})
    leads["created_at"] = _utc_naive(raw["created_at"]).to_numpy()
    for name in LEAD_TEXT_COLUMNS:  # blanks are missing, as the loaders and the service treat them
        text = raw[name].astype("string").str.strip() if name in raw else pd.Series([None] * len(raw))
        leads[name] = text.mask(text == "").to_numpy(dtype=object, na_value=None)  # type: ignore[call-overload]  # stubs reject na_value=None
    for name in NUMERIC_FIT_COLUMNS:
        leads[name] = (
            pd.to_numeric(raw[name], errors="coerce").to_numpy(dtype=float) if name in raw else np.nan
        )
    for name in STATE_COLUMNS:
        if name in raw:
            leads[name] = _utc_naive(raw[name].mask(raw[name].astype("string").str.strip() == "")).to_numpy()
    cells = raw["activities"] if "activities" in raw else pd.Series([None] * len(raw))
    lists = [
        list(cell) if cell is not None and not (isinstance(cell, float) and np.isnan(cell)) else []
        for cell in cells
    ]
    lengths = np.fromiter((len(items) for items in lists), dtype=np.int64, count=len(lists))
    records = [dict(item) for items in lists for item in items]
    activities = pd.DataFrame.from_records(
        records, columns=["timestamp", "activity_type", "page_category", "campaign"]
    )
    activities.insert(0, "lead_id", np.repeat(leads["lead_id"].to_numpy(), lengths))
    activities["timestamp"] = (
        _utc_naive(activities["timestamp"]) if len(activities) else pd.Series([], dtype="datetime64[us]")
    )
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    if "as_of" in raw:
        as_of = _utc_naive(raw["as_of"]).fillna(now)
    else:
        as_of = pd.Series(np.full(len(raw), np.datetime64(now)))
    return leads, activities, as_of.reset_index(drop=True)


class LeadScoringPyfunc(PythonModel):
    """Pyfunc around a pickled :class:`LeadScoringModel`."""

    def load_context(self, context: PythonModelContext) -> None:
        with open(context.artifacts[MODEL_ARTIFACT], "rb") as handle:
            self.model: LeadScoringModel = pickle.load(handle)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        params = params or {}
        states = None
        if self.model.flat is not None:
            features = self.model.features_from_export(model_input)
        elif getattr(self.model, "events", None) is not None:  # an event mapping's own names
            features = self.model.events.features_from_records(model_input)  # type: ignore[union-attr]
        else:
            leads, activities, as_of = split_raw_leads(model_input)
            features = self.model.features(leads=leads, activities=activities, as_of=as_of)
            states = lead_states(leads=leads, as_of=as_of)
        scored = self.model.score_features(
            features,
            explain=bool(params.get("explain", True)),
            top_k=int(params.get("top_k", 5)),
            states=states,
        )
        frame = pd.DataFrame(scored)
        frame["model_run_id"] = str(self.model.metadata.get("run_id", ""))
        return frame


def save_model_pickle(model: LeadScoringModel, path: Path) -> Path:
    with open(path, "wb") as handle:
        pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return path
