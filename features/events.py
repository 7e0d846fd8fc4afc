"""Event-level exports: leads, activities and outcomes/deals files mapped onto the data contract.

An :class:`EventMapping` (YAML, see ``examples/olist.yaml``) says for each file which columns are the
ids, dates and types, renames lead columns onto contract columns, declares custom lead attributes
that become features, and maps the export's own activity types onto known ones
(``"Page View": page_view``) or declares new ones (family, label, sentence, whether a rep can cause
them, the windows to count them over). The label comes from dates: an outcome within
``label.horizon_days`` of each snapshot, point-in-time as for the native contract.

:class:`EventFeatureTransform` is carried inside the deployable model: the same object renames the
export's rows, maps its activity types and calls the point-in-time
:func:`~leadscore.features.pipeline.compute_features` (with the declared types as extra signals)
at training, in batch, in the pyfunc and in the service.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from leadscore.features.catalogue import (
    FEATURES_BY_NAME,
    SIGNALS,
    WINDOWS_DAYS,
    Family,
    FeatureKind,
    FeatureSpec,
    days_since_name,
    total_count_name,
    window_count_name,
)
from leadscore.features.contract import ActivityType, PageCategory, mask_personal_data
from leadscore.features.mapping import (
    ColumnMapping,
    ColumnRole,
    ReadOptions,
    column_sentence,
    feature_name,
    parse_numbers,
    render_sentence,
    synthetic_ids,
)
from leadscore.features.pipeline import (
    ENGAGEMENT_SIGNALS,
    SALES_SIGNALS,
    ExtraSignal,
    compute_features,
    snapshots_as_of,
)
from leadscore.features.vocabulary import InputLayout
from leadscore.features.wording import count_phrase

log = logging.getLogger(__name__)


class ContractLeadColumn(StrEnum):
    """Contract lead columns an export column can be renamed onto (then a built-in feature)."""

    CHANNEL = "channel"
    JOB_TITLE = "job_title"
    SENIORITY = "seniority"
    DEPARTMENT = "department"
    COUNTRY = "country"
    INDUSTRY = "industry"
    EMPLOYEE_COUNT = "employee_count"
    ANNUAL_REVENUE = "annual_revenue"
    COMPANY_TYPE = "company_type"
    EMAIL = "email"
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    PHONE = "phone"


class OtherRole(StrEnum):
    """What to do with a non-feature column of the activities or outcomes file."""

    PII = "pii"
    LEAKY = "leaky"
    IGNORE = "ignore"


class TableSource(BaseModel):
    """Where one file of the export is and how to read it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="File path; ${LEADSCORE_DATASETS_DIR} and other env vars are expanded.")
    read: ReadOptions | None = Field(
        default=None, description="Read options for this file (default: the mapping's 'read')."
    )


class LeadsTable(TableSource):
    """The leads file: one row per lead."""

    id_column: str | None = Field(
        default=None,
        description="The lead id column. Left out: synthetic ids 'row-<line>' (logged); then the "
        "activities and outcomes files cannot refer to leads.",
    )
    created_at_column: str = Field(
        description="When the lead was created or first contacted: snapshots and labels count from it."
    )
    rename: dict[str, ContractLeadColumn] = Field(
        default_factory=dict,
        description="Export column -> contract column (channel, country, employee_count, email, ...): "
        "these become the built-in features (email only gives the e-mail domain type).",
    )
    attributes: dict[str, ColumnMapping] = Field(
        default_factory=dict,
        description="Every other lead column: a custom feature (role categorical or numeric, with "
        "family, label, sentence) or pii / leaky / ignore. Not point-in-time: the export's value is "
        "used at every snapshot age (the build warns when label.ages_days has several), so map only "
        "fields fixed at first contact; one that changes later (a stage, a score) leaks.",
    )


class ActivityTypeSpec(BaseModel):
    """A new activity type of the export: counted per window like the built-in ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        default=None, description="Feature stem, e.g. 'trial_login' (default: from the export's name)."
    )
    family: Literal["engagement", "sales"] = Field(
        default="engagement", description="engagement (the lead did it) or sales (the team did it)."
    )
    label: str = Field(description="Plural noun phrase for reasons and the catalogue, e.g. 'trial logins'.")
    singular: str | None = Field(
        default=None,
        description="The label's singular, e.g. 'trial login' (default: the label's last word made "
        "singular; give it when the noun is not last, e.g. 'webinar attended').",
    )
    sentence: str | None = Field(
        default=None,
        description="Reason text; {value} is the count so far, {days_since} the days since the last "
        "one, plural forms as [singular|plural]: '{value:.0f} trial [login|logins]'.",
    )
    actionable: bool = Field(
        default=False,
        description="Recorded in the feature catalogue: whether a rep or marketer can cause it. A label "
        "only: next best actions vary the built-in rep actions (call, e-mail, meeting, send content, "
        "webinar invite), never a custom type.",
    )
    windows_days: tuple[PositiveInt, ...] = Field(
        default=WINDOWS_DAYS, description="Windows (days) to count it over, besides 'so far'."
    )


class ActivitiesTable(TableSource):
    """The activities file: one row per timestamped event."""

    lead_id_column: str = Field(description="The column naming the lead (the leads file's id).")
    timestamp_column: str = Field(description="When the activity happened.")
    type_column: str = Field(description="The activity's type, in the export's own words.")
    page_column: str | None = Field(
        default=None, description="For page views: the page's category or URL column."
    )
    page_values: dict[str, PageCategory] = Field(
        default_factory=dict,
        description="Page value -> pricing/product/docs/blog/careers/other; others count as 'other'.",
    )
    types: dict[str, ActivityType | ActivityTypeSpec] = Field(
        default_factory=dict,
        description="Export activity type -> a known type ('Page View': page_view) or a new type's "
        "declaration. A type equal to a known type's name maps to it by itself.",
    )
    unmapped_types: Literal["reject", "ignore"] = Field(
        default="reject",
        description="Rows of types not in 'types': reject them (listed with counts) or ignore them "
        "(counted and logged).",
    )
    columns: dict[str, OtherRole] = Field(
        default_factory=dict, description="Other columns: pii, leaky or ignore (listed in the log)."
    )


class ClosedWon(BaseModel):
    """Which deals were won, when and for how much: the funnel past the opportunity, to revenue.

    Never a feature or a label: the channel report counts won deals and revenue per channel from it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage_column: str | None = Field(default=None, description="The deal's stage column, e.g. StageName.")
    stage_values: tuple[str, ...] = Field(
        default=(), description="With stage_column: the stages that mean won, e.g. ['Closed Won']."
    )
    date_column: str | None = Field(
        default=None,
        description="When the deal was won (its close date). Without stage_column a deal is won when this "
        "has a date; a won deal without a readable one keeps the deal's own date_column as a stand-in.",
    )
    amount_column: str | None = Field(
        default=None, description="The won amount (revenue); default: the deals' amount_column."
    )

    @model_validator(mode="after")
    def _says_which(self) -> ClosedWon:
        if self.stage_column is None and self.date_column is None:
            raise ValueError("tables.outcomes.won: name a stage_column (with stage_values) or a date_column")
        if self.stage_column is not None and not self.stage_values:
            raise ValueError("tables.outcomes.won: stage_column needs stage_values, e.g. ['Closed Won']")
        return self


class OutcomesTable(TableSource):
    """The outcomes or deals file: a row per opportunity / closed deal."""

    lead_id_column: str = Field(description="The column naming the lead.")
    date_column: str = Field(description="When the outcome happened (deal won / opportunity created).")
    amount_column: str | None = Field(default=None, description="The deal amount, if any.")
    status_column: str | None = Field(
        default=None, description="A stage/status column; only rows with one of 'positive_values' count."
    )
    positive_values: tuple[str, ...] = Field(
        default=(), description="With status_column: the values that count as converted, e.g. ['Closed Won']."
    )
    won: ClosedWon | None = Field(
        default=None,
        description="Optional: which deals were won (closed-won), when, and the revenue; the channel report "
        "then follows each channel to won deals and revenue.",
    )
    columns: dict[str, OtherRole] = Field(
        default_factory=dict,
        description="Every other deal column: leaky (recorded during or after the sale), pii or ignore.",
    )


class LabelFromDates(BaseModel):
    """The label: an outcome within the horizon after each snapshot (point-in-time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    horizon_days: PositiveInt = Field(default=90, description="Days after each snapshot the label looks.")
    ages_days: tuple[int, ...] = Field(
        default=(0,),
        description="Snapshot ages in days after creation: 0 scores the lead at creation / first contact.",
    )
    keep_incomplete_horizon: bool = Field(
        default=False, description="Keep snapshots whose horizon is not fully observed (label missing)."
    )
    older_ages_per_lead: int = Field(
        default=2,
        ge=0,
        le=20,
        description=(
            "Extra snapshots per lead at older ages (log-uniform up to the oldest age the export can "
            "label), so that open leads of any age are scored from old leads' outcomes; 0: only ages_days."
        ),
    )

    @property
    def several_ages(self) -> bool:
        """Whether leads are snapshotted at more than one age (then lead age is a feature)."""
        return len(self.ages_days) > 1 or getattr(self, "older_ages_per_lead", 0) > 0

    @field_validator("ages_days")
    @classmethod
    def _ages(cls, ages: tuple[int, ...]) -> tuple[int, ...]:
        if not ages or any(a < 0 for a in ages) or len(set(ages)) != len(ages):
            raise ValueError("ages_days must be distinct non-negative whole days, at least one")
        return tuple(sorted(ages))


class EventTables(BaseModel):
    """The export's files: leads (required), activities (optional), outcomes/deals (required)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    leads: LeadsTable = Field(description="The leads file.")
    activities: ActivitiesTable | None = Field(default=None, description="The activities file, if any.")
    outcomes: OutcomesTable = Field(description="The outcomes / deals file.")


class EventMapping(BaseModel):
    """How an event-level CRM export (leads, activities, outcomes files) maps onto leadscore."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="A short name for the export.")
    read: ReadOptions = Field(default_factory=ReadOptions, description="Default read options of every file.")
    missing_values: tuple[str, ...] = Field(
        default=("", "N/A", "NULL", "null"), description="Values meaning 'missing' in every column."
    )
    tables: EventTables = Field(description="The export's files.")
    label: LabelFromDates = Field(default_factory=LabelFromDates, description="The label from dates.")
    audit_allow: tuple[str, ...] = Field(
        default=(), description="Feature columns the leakage audit may flag but a person has cleared."
    )
    max_reject_share: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Rows breaking the contract go to a rejects file while their share of each file stays "
        "at or under this; above it the build stops and lists every problem.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> EventMapping:
        leads = self.tables.leads
        special = {leads.created_at_column, *([leads.id_column] if leads.id_column else [])}
        clash = sorted(special & ({*leads.rename} | {*leads.attributes}))
        if clash:
            raise ValueError(
                f"tables.leads: {clash} are id/created-at columns and cannot be renamed or mapped"
            )
        both = sorted(set(leads.rename) & set(leads.attributes))
        if both:
            raise ValueError(f"tables.leads: {both} are both renamed and attributes; choose one")
        targets = list(leads.rename.values())
        if len(set(targets)) != len(targets):
            raise ValueError("tables.leads.rename: two columns renamed onto the same contract column")
        names = [feature_name(c) for c, m in leads.attributes.items() if m.role in _FEATURE_ROLES]
        taken = sorted(set(names) & (set(FEATURES_BY_NAME) | {"lead_id", "as_of", "label"}))
        if taken or len(set(names)) != len(names):
            raise ValueError(f"tables.leads.attributes: feature names clash ({taken or names}); rename one")
        if leads.id_column is None and self.tables.activities is not None:
            raise ValueError("tables.leads.id_column is needed when there is an activities file")
        activities = self.tables.activities
        if activities is not None:
            stems = [s.name for s in SIGNALS] + [t.value for t in ActivityType]
            new = [_stem(k, v) for k, v in activities.types.items() if isinstance(v, ActivityTypeSpec)]
            if len(set(new)) != len(new) or set(new) & set(stems):
                raise ValueError(f"tables.activities.types: new type names clash ({new}); give each a 'name'")
        outcomes = self.tables.outcomes
        if outcomes.status_column and not outcomes.positive_values:
            raise ValueError("tables.outcomes: status_column needs positive_values")
        return self

    def source_path(self, table: str, *, base: Path | None = None) -> Path:
        from leadscore.settings import datasets_dir

        spec = getattr(self.tables, table)
        env = {**os.environ, "LEADSCORE_DATASETS_DIR": str(datasets_dir())}
        expanded = re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), m.group(0)), spec.path)
        path = Path(expanded)
        return path if path.is_absolute() or base is None else (base / path)

    def read_options(self, table: str) -> ReadOptions:
        spec = getattr(self.tables, table)
        return spec.read or self.read


_FEATURE_ROLES = (ColumnRole.CATEGORICAL, ColumnRole.NUMERIC)


def _stem(export_type: str, spec: ActivityTypeSpec) -> str:
    return spec.name or feature_name(export_type)


def load_event_mapping(path: Path) -> EventMapping:
    import yaml

    return EventMapping.model_validate(yaml.safe_load(Path(path).read_text()))


class EventFeatureTransform:
    """Export rows (its own column and activity names) -> point-in-time features, per a mapping.

    An :class:`~leadscore.model.transforms.ActivityFeatureTransform` for event exports.
    """

    layout = InputLayout.EVENT_EXPORT

    def __init__(self, mapping: EventMapping) -> None:
        self.mapping = mapping
        leads = mapping.tables.leads
        activities = mapping.tables.activities
        self.attributes = tuple(c for c, m in leads.attributes.items() if m.role in _FEATURE_ROLES)
        self.type_map: dict[str, str] = {}
        extra: list[ExtraSignal] = []
        self.new_types: dict[str, ActivityTypeSpec] = {}
        if activities is not None:
            for export_type, target in activities.types.items():
                if isinstance(target, ActivityTypeSpec):
                    stem = _stem(export_type, target)
                    self.type_map[export_type] = stem
                    self.new_types[stem] = target
                    extra.append(ExtraSignal(stem, stem, tuple(target.windows_days), Family(target.family)))
                else:
                    self.type_map[export_type] = target.value
        self.extra_signals = tuple(extra)
        self.catalogue = self._catalogue()
        self.feature_names = tuple(f.name for f in self.catalogue)
        self.categorical_features = tuple(f.name for f in self.catalogue if f.kind is FeatureKind.CATEGORICAL)
        self._by_feature = {feature_name(c): c for c in self.attributes}

    # --- the catalogue -------------------------------------------------------------------------
    def known_types(self) -> set[str]:
        """Contract activity types in use (mapped, or named like a known type)."""
        return {v for v in self.type_map.values() if v in {t.value for t in ActivityType}}

    def _catalogue(self) -> tuple[FeatureSpec, ...]:
        leads = self.mapping.tables.leads
        renamed = {c.value for c in leads.rename.values()}
        names: list[str] = [
            c
            for c in ("channel", "seniority", "department", "country", "industry", "company_type")
            if c in renamed
        ]
        if "email" in renamed:
            names.append("email_domain_type")
        names += [c for c in ("employee_count", "annual_revenue") if c in renamed]
        if self.mapping.label.several_ages:  # models saved before older ages: as they were
            names.append("lead_age_days")
        activities = self.mapping.tables.activities
        used: list[str] = []
        if activities is not None:
            known = self.known_types() | {t.value for t in ActivityType}  # same-named types map to themselves
            for signal in SIGNALS:
                if signal.activity_type.value not in known:
                    continue
                no_pages = signal.page_category is not None and activities.page_column is None
                if no_pages and signal.name != "page_other":
                    continue
                used.append(signal.name)
            families = {spec.family for spec in self.new_types.values()}
            if any(s in ENGAGEMENT_SIGNALS for s in used) or "engagement" in families:
                names += ["engagement_events_30d", "engagement_trend_30d", "days_since_last_activity"]
            if any(s in SALES_SIGNALS for s in used) or "sales" in families:
                names += ["sales_touches_total", "days_since_last_sales_touch"]
            for signal_name in used:
                names += [window_count_name(signal_name, d) for d in WINDOWS_DAYS]
                names += [total_count_name(signal_name), days_since_name(signal_name)]
        order = {name: i for i, name in enumerate(FEATURES_BY_NAME)}
        specs = [FEATURES_BY_NAME[n] for n in sorted(set(names), key=order.__getitem__)]  # catalogue order
        for stem, spec in self.new_types.items():
            family = Family(spec.family)
            concept_label = spec.label[:1].upper() + spec.label[1:]
            common: dict[str, Any] = {"signal": stem, "actionable": spec.actionable}
            for days in spec.windows_days:
                specs.append(
                    FeatureSpec(
                        window_count_name(stem, days),
                        family,
                        FeatureKind.WINDOW_COUNT,
                        stem,
                        concept_label,
                        f"{concept_label} in the last {days} days",
                        window_days=days,
                        **common,
                    )
                )
            specs.append(
                FeatureSpec(
                    total_count_name(stem),
                    family,
                    FeatureKind.TOTAL_COUNT,
                    stem,
                    concept_label,
                    f"{concept_label} so far",
                    **common,
                )
            )
            specs.append(
                FeatureSpec(
                    days_since_name(stem),
                    family,
                    FeatureKind.DAYS_SINCE,
                    stem,
                    concept_label,
                    f"Days since the last of the {spec.label}",
                    **common,
                )
            )
        for column in self.attributes:
            m = leads.attributes[column]
            kind = FeatureKind.CATEGORICAL if m.role is ColumnRole.CATEGORICAL else FeatureKind.NUMERIC
            label = m.label or column
            specs.append(
                FeatureSpec(feature_name(column), m.family, kind, feature_name(column), label, label)
            )
        if not specs:
            raise ValueError(
                "the mapping gives no features: rename lead columns onto contract columns, declare "
                "attributes with role categorical/numeric, or add activities"
            )
        return tuple(specs)

    # --- export rows -> contract rows ----------------------------------------------------------
    def missing_for(self, column: str, *, table: str = "leads") -> set[str]:
        """The texts that mean "missing" in a column: the file's, the mapping's and the attribute's."""
        m = self.mapping.tables.leads.attributes.get(column) if table == "leads" else None
        return {
            *self.mapping.read_options(table).missing_text,
            *self.mapping.missing_values,
            *(m.missing_values if m is not None else ()),
        }

    def contract_leads(self, raw: pd.DataFrame, *, ids: np.ndarray | None = None) -> pd.DataFrame:
        """Leads with contract column names (custom attributes keep their export names, cleaned)."""
        spec = self.mapping.tables.leads
        options = self.mapping.read_options("leads")
        out = pd.DataFrame(index=raw.index)
        if ids is not None:
            out["lead_id"] = ids
        elif spec.id_column is not None and spec.id_column in raw.columns:
            out["lead_id"] = raw[spec.id_column]
        else:
            out["lead_id"] = synthetic_ids(len(raw))
        out["created_at"] = parse_dates_text(raw.get(spec.created_at_column), options, len(raw), raw.index)
        for column, target in spec.rename.items():
            values = raw[column] if column in raw.columns else pd.Series([None] * len(raw), index=raw.index)
            out[target.value] = _clean(values, self.missing_for(column))
        for column in self.attributes:
            values = raw[column] if column in raw.columns else pd.Series([None] * len(raw), index=raw.index)
            cleaned = _clean(values, self.missing_for(column))
            if spec.attributes[column].role is ColumnRole.NUMERIC:
                cleaned = parse_numbers(cleaned, decimal=options.decimal, thousands=options.thousands)
            out[column] = cleaned
        for name in ("employee_count", "annual_revenue"):
            if name in out.columns:
                out[name] = parse_numbers(out[name], decimal=options.decimal, thousands=options.thousands)
        return out

    def contract_activities(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Activities with contract names; types mapped (unmapped ones keep their export name)."""
        spec = self.mapping.tables.activities
        if spec is None or raw is None or raw.empty:
            return pd.DataFrame(
                {
                    "lead_id": pd.Series([], dtype=object),
                    "timestamp": pd.Series([], dtype="datetime64[ns]"),
                    "activity_type": pd.Series([], dtype=object),
                    "page_category": pd.Series([], dtype=object),
                }
            )
        options = self.mapping.read_options("activities")
        out = pd.DataFrame(index=raw.index)
        out["lead_id"] = raw[spec.lead_id_column] if spec.lead_id_column in raw.columns else None
        out["timestamp"] = parse_dates_text(raw.get(spec.timestamp_column), options, len(raw), raw.index)
        types = _clean(
            raw.get(spec.type_column, pd.Series([None] * len(raw), index=raw.index)),
            set(options.missing_text),
        )
        out["activity_type"] = types.map(lambda t: self.type_map.get(t, t) if isinstance(t, str) else t)
        if spec.page_column is not None and spec.page_column in raw.columns:
            page = _clean(raw[spec.page_column], self.missing_for(spec.page_column, table="activities"))
            known = {p.value for p in PageCategory}
            out["page_category"] = page.map(
                lambda v: (
                    None
                    if not isinstance(v, str)
                    else spec.page_values[v].value
                    if v in spec.page_values
                    else (v if v in known else PageCategory.OTHER.value)
                )
            )
        else:
            out["page_category"] = None
        return out

    def allowed_types(self) -> set[str]:
        return {t.value for t in ActivityType} | set(self.new_types)

    # --- features ------------------------------------------------------------------------------
    def features_from_contract(
        self, *, leads: pd.DataFrame, activities: pd.DataFrame, snapshots: pd.DataFrame
    ) -> pd.DataFrame:
        """``lead_id``, ``as_of`` and this mapping's features, point-in-time, one row per snapshot."""
        full = leads.copy()
        for column in ("channel", "seniority", "department", "country", "industry", "company_type", "email"):
            if column not in full.columns:
                full[column] = pd.Series([None] * len(full), index=full.index, dtype=object)
        for column in ("employee_count", "annual_revenue"):
            if column not in full.columns:
                full[column] = np.nan
        allowed = self.allowed_types()
        usable = (
            activities[activities["activity_type"].isin(list(allowed))] if len(activities) else activities
        )
        features = compute_features(
            leads=full, activities=usable, snapshots=snapshots, extra_signals=self.extra_signals
        )
        position = pd.Index(full["lead_id"].astype(str)).get_indexer(
            pd.Index(snapshots["lead_id"].astype(str))
        )
        for column in self.attributes:
            values = full[column].to_numpy()[position]
            name = feature_name(column)
            if self.mapping.tables.leads.attributes[column].role is ColumnRole.CATEGORICAL:
                features[name] = pd.Categorical(
                    [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]
                )
            else:
                features[name] = np.asarray(values, dtype=np.float32)
        return features.loc[:, ["lead_id", "as_of", *self.feature_names]]

    def features(
        self,
        *,
        leads: pd.DataFrame,
        activities: pd.DataFrame | None,
        as_of: pd.Series | pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Features of export rows (its own column and activity names) as of ``as_of`` (default now)."""
        contract = self.contract_leads(leads)
        acts = self.contract_activities(activities if activities is not None else pd.DataFrame())
        if len(acts):
            acts = acts.assign(timestamp=naive_utc(acts["timestamp"]))
            acts = acts[acts["timestamp"].notna() & acts["lead_id"].notna()]
            acts = acts.assign(lead_id=acts["lead_id"].astype(str))
        contract = contract.assign(
            lead_id=contract["lead_id"].astype(str), created_at=naive_utc(contract["created_at"])
        )
        snapshots = snapshots_as_of(contract["lead_id"], as_of)
        return self.features_from_contract(leads=contract, activities=acts, snapshots=snapshots)

    def split_records(self, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series | None]:
        """Nested records (lead columns, ``activities`` list, optional ``as_of``) -> the three parts."""
        leads = raw.drop(columns=[c for c in ("activities", "as_of") if c in raw.columns]).reset_index(
            drop=True
        )
        spec = self.mapping.tables.activities
        rows: list[dict[str, Any]] = []
        if spec is not None and "activities" in raw.columns:
            id_column = self.mapping.tables.leads.id_column
            has_ids = id_column is not None and id_column in leads.columns  # else as contract_leads
            ids = leads[id_column].tolist() if has_ids else synthetic_ids(len(leads)).tolist()
            for lead_id, cell in zip(ids, raw["activities"], strict=True):
                if isinstance(cell, list | tuple | np.ndarray):
                    rows += [{**dict(item), spec.lead_id_column: lead_id} for item in cell]
        activities = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
        as_of = None
        if "as_of" in raw.columns:
            parsed = pd.to_datetime(raw["as_of"], utc=True, format="ISO8601").dt.tz_localize(None)
            as_of = parsed.fillna(pd.Timestamp.now(tz="UTC").tz_localize(None)).reset_index(drop=True)
        return leads, activities, as_of

    @property
    def name(self) -> str:
        """The export this transform reads (the mapping's name)."""
        return self.mapping.name

    def features_from_records(self, records: pd.DataFrame) -> pd.DataFrame:
        """Feature rows for nested export records (lead columns, ``activities``, optional ``as_of``)."""
        leads, activities, as_of = self.split_records(records)
        return self.features(leads=leads, activities=activities, as_of=as_of)

    # --- reasons -------------------------------------------------------------------------------
    def sentence(self, concept: str, row: Mapping[str, object]) -> str | None:
        """The reason text for one of this export's own concepts (attributes, new activity types), or
        None for a built-in concept."""
        if concept in self._by_feature:
            column = self._by_feature[concept]
            return column_sentence(column, self.mapping.tables.leads.attributes[column], row.get(concept))
        if concept in self.new_types:
            spec = self.new_types[concept]
            total = row.get(total_count_name(concept))
            count = 0.0 if total is None or (isinstance(total, float) and np.isnan(total)) else float(total)  # type: ignore[arg-type]
            since = row.get(days_since_name(concept))
            if count == 0 and spec.sentence is None:
                return f"No {spec.label} yet"
            if spec.sentence is None:
                return f"{count_phrase(count, spec.label, singular=spec.singular)} so far"
            return render_sentence(spec.sentence, count, days_since=since)
        return None  # a built-in concept: the model's own sentences say it

    def raw_records(
        self, *, leads: pd.DataFrame, activities: pd.DataFrame | None, n: int
    ) -> list[dict[str, Any]]:
        """A few leads as scoring input: the export's own lead columns plus nested activities."""
        spec = self.mapping.tables.leads
        keep = [
            c
            for c in (spec.id_column, spec.created_at_column, *spec.rename, *self.attributes)
            if c and c in leads.columns
        ]
        sample = leads.loc[:, keep].tail(n)
        records = []
        act_spec = self.mapping.tables.activities
        renames = {column: target.value for column, target in spec.rename.items()}
        for row in sample.to_dict(orient="records"):
            record = mask_personal_data({str(k): _plain(v) for k, v in row.items()}, renames=renames)
            if act_spec is not None and activities is not None and spec.id_column:
                mine = activities[activities[act_spec.lead_id_column].astype(str) == str(row[spec.id_column])]
                cols = [
                    c for c in (act_spec.timestamp_column, act_spec.type_column, act_spec.page_column) if c
                ]
                record["activities"] = [
                    {str(k): _plain(v) for k, v in a.items()}
                    for a in mine.loc[:, cols].to_dict(orient="records")
                ]
            records.append(record)
        return records


def _plain(value: object) -> object:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def _clean(values: pd.Series, missing: set[str]) -> pd.Series:
    """Text stripped; blanks and placeholders become missing (numbers pass through)."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    text = values.astype("string").str.strip()
    drop = text.isna() | text.isin([*missing, ""])
    kept: np.ndarray = text.where(~drop).to_numpy(dtype=object, na_value=None)  # type: ignore[call-overload]  # stubs reject na_value=None
    return pd.Series(kept, index=values.index, dtype="object")


def naive_utc(values: pd.Series) -> pd.Series:
    """Timestamps as naive UTC, as the loader reads them (ISO 8601 with or without an offset)."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        parsed = pd.to_datetime(values)
    else:
        text = values.astype("string")
        parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        failed = parsed.isna() & text.notna()
        if failed.any():
            parsed[failed] = pd.to_datetime(text[failed], utc=True, format="mixed", errors="coerce")
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def parse_dates_text(values: pd.Series | None, options: ReadOptions, n: int, index: pd.Index) -> pd.Series:
    """Dates as the loader expects them: with a ``date_format``, parsed values become ISO text and
    unparsable ones stay as they are (so the contract reports them with the value)."""
    if values is None:
        return pd.Series([None] * n, index=index, dtype="object")
    if options.date_format is None or pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values
    text = values.astype("string").str.strip()
    parsed = pd.to_datetime(text, format=options.date_format, errors="coerce")
    iso = parsed.dt.strftime("%Y-%m-%dT%H:%M:%S")
    original: np.ndarray = text.to_numpy(dtype=object, na_value=None)  # type: ignore[call-overload]  # stubs reject na_value=None
    return pd.Series(np.where(parsed.notna(), iso, original), index=index, dtype="object")


class ContractTablesView:
    """An event mapping's transform reading its export already renamed onto the contract.

    The tables :meth:`~leadscore.features.build.EventBuildJob.read` returns (validated, the
    export's dirty rows set aside) have contract column and activity names; this view computes the
    features from them with the same :meth:`EventFeatureTransform.features_from_contract` the build
    used, so ``leadscore explain`` and ``score-batch`` can score a mapped export in leadscore's own
    layout. It is never saved with a model: the model keeps its :class:`EventFeatureTransform`.
    """

    layout = InputLayout.LEADSCORE

    def __init__(self, transform: EventFeatureTransform) -> None:
        self.transform = transform
        self.catalogue = transform.catalogue
        self.feature_names = transform.feature_names
        self.categorical_features = transform.categorical_features

    @property
    def name(self) -> str:
        """The export the view reads (the mapping's name)."""
        return self.transform.name

    def features(
        self,
        *,
        leads: pd.DataFrame,
        activities: pd.DataFrame,
        as_of: pd.Series | pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Point-in-time feature rows for contract leads and activities as of ``as_of`` (default now)."""
        mine = activities.assign(lead_id=activities["lead_id"].astype(str))
        return self.transform.features_from_contract(
            leads=leads.assign(lead_id=leads["lead_id"].astype(str)),
            activities=mine,
            snapshots=snapshots_as_of(leads["lead_id"], as_of),
        )

    def features_from_records(self, records: pd.DataFrame) -> pd.DataFrame:
        """Export records as a client sends them: the mapping's own transform reads those."""
        return self.transform.features_from_records(records)

    def sentence(self, concept: str, row: Mapping[str, object]) -> str | None:
        """The export's own wording of its concepts (attributes, new activity types)."""
        return self.transform.sentence(concept, row)
