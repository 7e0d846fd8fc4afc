"""The feature transform a model carries: what it reads, and how it turns that into feature rows.

Three implementations, one per :class:`~leadscore.features.vocabulary.InputLayout`:
:class:`ContractFeatureTransform` (leads and activities in leadscore's own contract),
:class:`~leadscore.features.events.EventFeatureTransform` (an export's own lead and activity
rows, per an event mapping) and :class:`~leadscore.features.mapping.FlatFeatureTransform` (one
pre-aggregated export row per lead). The model object never branches on which one it holds
beyond asking for its ``layout``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import pandas as pd

from leadscore.features.catalogue import FEATURE_CATALOGUE, FeatureSpec
from leadscore.features.pipeline import compute_features, snapshots_as_of
from leadscore.features.vocabulary import InputLayout
from leadscore.model.raw_leads import prepare_leads, raw_leads_from_frame


class FeatureTransform(Protocol):
    """Turns the leads a model reads into its feature rows (``lead_id``, ``as_of``, features)."""

    @property
    def layout(self) -> InputLayout:
        """What it reads."""
        ...

    @property
    def name(self) -> str:
        """The export (mapping) it reads, in words."""
        ...

    @property
    def catalogue(self) -> tuple[FeatureSpec, ...]:
        """Its features: family, kind, direction and wording of each."""
        ...

    def features_from_records(self, records: pd.DataFrame) -> pd.DataFrame:
        """Feature rows for leads as a client sends them (one record per lead, activities nested)."""
        ...

    def sentence(self, concept: str, row: Mapping[str, object]) -> str | None:
        """A reason in its own words for one of its concepts, or None to use the built-in wording."""
        ...


class ActivityFeatureTransform(FeatureTransform, Protocol):
    """A transform that reads timestamped activities: features as of any time, never after it."""

    def features(
        self,
        *,
        leads: pd.DataFrame,
        activities: pd.DataFrame,
        as_of: pd.Series | pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Point-in-time feature rows for each lead as of ``as_of`` (default: now, UTC)."""
        ...


class ContractFeatureTransform:
    """Leads and activities in leadscore's own contract -> the built-in feature catalogue."""

    layout = InputLayout.LEADSCORE
    name = "leadscore contract"
    catalogue: tuple[FeatureSpec, ...] = FEATURE_CATALOGUE

    def features(
        self,
        *,
        leads: pd.DataFrame,
        activities: pd.DataFrame,
        as_of: pd.Series | pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Point-in-time feature rows for each lead as of ``as_of`` (default: now, UTC)."""
        return compute_features(
            leads=leads, activities=activities, snapshots=snapshots_as_of(leads["lead_id"], as_of)
        )

    def features_from_records(self, records: pd.DataFrame) -> pd.DataFrame:
        """Feature rows for :class:`~leadscore.model.records.RawLead` records, checked as the service
        checks them."""
        prepared = prepare_leads(raw_leads_from_frame(records), as_of=None)
        return self.features(leads=prepared.leads, activities=prepared.activities, as_of=prepared.as_of)

    def sentence(self, concept: str, row: Mapping[str, object]) -> str | None:
        """None: the built-in concepts use the model's own wording."""
        return None

    def __eq__(self, other: object) -> bool:
        return type(other) is ContractFeatureTransform

    def __hash__(self) -> int:
        return hash(type(self))
