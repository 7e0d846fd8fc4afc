"""MLflow pyfunc wrapper: raw leads (with nested activities) in, scores and reasons out.

The pyfunc carries the whole :class:`~leadscore.model.scoring_model.LeadScoringModel` (feature
transform + booster + calibrator + explainer), so ``mlflow.pyfunc.load_model`` and
``mlflow models serve`` score raw CRM leads with exactly the code used in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

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
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from leadscore.features.mapping import FlatFeatureTransform
from leadscore.features.vocabulary import InputLayout
from leadscore.model.raw_leads import prepare_leads, raw_leads_from_frame
from leadscore.model.records import LeadScore, RawLead
from leadscore.model.scoring_model import LeadScoringModel, lead_states
from leadscore.model.store import MODEL_ARTIFACT, read_model_pickle

PARAMS = ParamSchema([ParamSpec("explain", DataType.boolean, True), ParamSpec("top_k", DataType.long, 5)])


def _mlflow_type(annotation: Any) -> DataType | Array | Object:
    """The MLflow schema type of a record field's annotation (optional fields are not required)."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        (inner,) = [arg for arg in get_args(annotation) if arg is not NoneType]
        return _mlflow_type(inner)
    if origin is Annotated:
        return _mlflow_type(get_args(annotation)[0])
    if origin is list:
        (item,) = get_args(annotation)
        return Array(_mlflow_type(item))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return Object(
            [
                Property(name, _mlflow_type(info.annotation), required=_required(info))
                for name, info in annotation.model_fields.items()
            ]
        )
    if annotation is bool:
        return DataType.boolean
    if annotation is float:
        return DataType.double
    if annotation is int:
        return DataType.long
    if isinstance(annotation, type) and issubclass(annotation, str):
        return DataType.string
    raise TypeError(f"no MLflow type for {annotation!r}")


def _required(info: FieldInfo) -> bool:
    """Required and never null: an optional or nullable field is not required in MLflow's terms."""
    nullable = get_origin(info.annotation) in (Union, UnionType) and NoneType in get_args(info.annotation)
    return info.is_required() and not nullable


def record_schema(record: type[BaseModel], *, extra: Sequence[ColSpec] = ()) -> Schema:
    """An MLflow column schema derived from a typed record (:class:`RawLead`, :class:`LeadScore`)."""
    columns: list[ColSpec | TensorSpec] = [
        ColSpec(_mlflow_type(info.annotation), name, required=_required(info))
        for name, info in record.model_fields.items()
    ]
    return Schema([*columns, *extra])


#: What the pyfunc returns: the model's :class:`LeadScore` per lead plus the run that trained it.
OUTPUT_SCHEMA = record_schema(LeadScore, extra=[ColSpec(DataType.string, "model_run_id")])


def flat_input_signature(flat: FlatFeatureTransform) -> ModelSignature:
    """The input schema of a flat-export model: the export's own id and feature columns."""
    columns: list[ColSpec | TensorSpec] = (
        [] if flat.mapping.id_column is None else [ColSpec(DataType.string, flat.mapping.id_column)]
    )  # an export without ids gets synthetic ones
    for column, spec in zip(flat.columns, flat.catalogue, strict=True):
        # numbers arrive as ints or floats (JSON 674 vs 674.0); the transform coerces them itself
        kind = AnyType() if spec.kind.value == "numeric" else DataType.string
        columns.append(ColSpec(kind, column, required=False))
    return ModelSignature(inputs=Schema(columns), outputs=OUTPUT_SCHEMA, params=PARAMS)


def event_input_signature(example: pd.DataFrame | None) -> ModelSignature | None:
    """The input schema of an event-export model: its example records' columns, each optional, and
    an optional ``as_of`` (the moment to score at; without it, now). None without an example."""
    if example is None:
        return None
    from mlflow.models import infer_signature

    inferred = infer_signature(example).inputs
    columns: list[ColSpec | TensorSpec] = [
        ColSpec(spec.type, spec.name, required=False)
        for spec in inferred.inputs
        if isinstance(spec, ColSpec) and spec.name != "as_of"
    ]
    columns.append(ColSpec(AnyType(), "as_of", required=False))  # a timestamp or its ISO text
    return ModelSignature(inputs=Schema(columns), outputs=OUTPUT_SCHEMA, params=PARAMS)


def input_signature(flat: FlatFeatureTransform | None = None) -> ModelSignature:
    """The input schema: the :class:`RawLead` record (lead columns, nested activities, optional
    as_of and state times), or a flat-export model's own columns."""
    if flat is not None:
        return flat_input_signature(flat)
    return ModelSignature(inputs=record_schema(RawLead), outputs=OUTPUT_SCHEMA, params=PARAMS)


class LeadScoringPyfunc(PythonModel):
    """Pyfunc around a pickled :class:`LeadScoringModel`."""

    def load_context(self, context: PythonModelContext) -> None:
        self.model: LeadScoringModel = read_model_pickle(context.artifacts[MODEL_ARTIFACT])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        params = params or {}
        states = None
        if self.model.layout is not InputLayout.LEADSCORE:  # an export's own rows and names
            features = self.model.features_from_records(model_input)
        else:  # the service's parser and checks: both accept and refuse the same leads
            prepared = prepare_leads(raw_leads_from_frame(model_input), as_of=None)
            features = self.model.features(
                leads=prepared.leads, activities=prepared.activities, as_of=prepared.as_of
            )
            states = lead_states(leads=prepared.leads, as_of=prepared.as_of)
        scored = self.model.score_features(
            features,
            explain=bool(params.get("explain", True)),
            top_k=int(params.get("top_k", 5)),
            states=states,
        )
        frame = pd.DataFrame(scored, columns=list(LeadScore.model_fields))  # the record's order
        frame["model_run_id"] = str(self.model.metadata.get("run_id", ""))
        return frame
