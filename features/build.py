"""The build-features job: CRM export -> validated tables -> point-in-time training table."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from leadscore.features.loading import CrmTables, load_crm_tables
from leadscore.features.training_table import SnapshotPolicy, build_training_table, observed_until

if TYPE_CHECKING:
    from leadscore.features.simulator import SimulatedCRM

log = logging.getLogger(__name__)
RAW_EXAMPLE_LEADS = 3


def raw_lead_records(
    *, tables: CrmTables, lead_ids: list[str], as_of: pd.Timestamp | None
) -> list[dict[str, Any]]:
    """Leads in the scoring API's raw format: contract columns plus their nested activities."""
    leads = tables.leads[tables.leads["lead_id"].isin(lead_ids)]
    activities = tables.activities[tables.activities["lead_id"].isin(lead_ids)]
    if as_of is not None:
        activities = activities[activities["timestamp"] <= as_of]
    records = []
    for lead in leads.to_dict(orient="records"):
        mine = activities[activities["lead_id"] == lead["lead_id"]].sort_values("timestamp")
        record = {
            k: (None if pd.isna(v) else v)
            for k, v in lead.items()
            if k
            in (
                "lead_id",
                "created_at",
                "channel",
                "job_title",
                "seniority",
                "department",
                "country",
                "industry",
                "company_type",
                "employee_count",
                "annual_revenue",
                "email",
            )
        }
        record["created_at"] = pd.Timestamp(lead["created_at"]).isoformat()
        record["activities"] = [
            {
                "timestamp": pd.Timestamp(a["timestamp"]).isoformat(),
                "activity_type": a["activity_type"],
                "page_category": None if pd.isna(a.get("page_category")) else a.get("page_category"),
            }
            for a in mine.to_dict(orient="records")
        ]
        if as_of is not None:
            record["as_of"] = as_of.isoformat()
        records.append(record)
    return records


def without_personal_data(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Example records safe to store (sidecar, MLflow input example): e-mail addresses keep only the
    domain, which the model reads (its type), behind a placeholder mailbox."""
    return [
        {**r, "email": f"someone@{str(r['email']).rsplit('@', 1)[-1]}"} if r.get("email") else r
        for r in records
    ]


@dataclass(frozen=True)
class BuildFeaturesResult:
    output: Path
    rows: int
    positive_rate: float


class BuildFeaturesJob:
    """Load and validate the export, build snapshots, features and labels, write Parquet + sidecar."""

    def __init__(
        self,
        *,
        leads: Path,
        activities: Path | None,
        outcomes: Path | None,
        output: Path,
        policy: SnapshotPolicy,
    ) -> None:
        self.leads = leads
        self.activities = activities
        self.outcomes = outcomes
        self.output = output
        self.policy = policy

    def run(self, *, progress: bool = False) -> BuildFeaturesResult:
        tables = load_crm_tables(leads=self.leads, activities=self.activities, outcomes=self.outcomes)
        until = observed_until(leads=tables.leads, activities=tables.activities, outcomes=tables.outcomes)
        table = build_training_table(
            leads=tables.leads,
            activities=tables.activities,
            outcomes=tables.outcomes,
            policy=self.policy,
            until=until,
            progress=progress,
        )
        self.output.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(self.output, index=False)
        example_ids = table.sort_values("as_of")["lead_id"].drop_duplicates().tail(RAW_EXAMPLE_LEADS).tolist()
        latest = table["as_of"].max()
        meta = {
            "source": {
                "leads": str(self.leads),
                "activities": str(self.activities),
                "outcomes": str(self.outcomes),
            },
            "snapshot_policy": self.policy.model_dump(mode="json"),
            "observed_until": str(until),
            "fingerprint": {
                "leads": len(tables.leads),
                "activities": len(tables.activities),
                "outcomes": len(tables.outcomes),
                "snapshots": len(table),
                "positive_rate": float(table["label"].astype("Float64").mean()),
                "as_of_min": str(table["as_of"].min()),
                "as_of_max": str(latest),
                "leads_sha256": file_sha256(self.leads),
            },
            "raw_example": without_personal_data(
                raw_lead_records(tables=tables, lead_ids=example_ids, as_of=pd.Timestamp(latest))
            ),
        }
        self.output.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2, default=str))
        log.info("wrote %s (%d rows)", self.output, len(table))
        return BuildFeaturesResult(self.output, len(table), meta["fingerprint"]["positive_rate"])  # type: ignore[index]


@dataclass(frozen=True)
class SimulatedExport:
    """A simulated CRM export written to disk and the point-in-time training table built from it."""

    crm: SimulatedCRM
    paths: dict[str, Path]
    """``leads``, ``activities``, ``outcomes`` and ``truth`` Parquet files."""
    training_table: Path


def simulate_and_build(
    *, n_leads: int, seed: int, out_dir: Path, policy: SnapshotPolicy | None = None
) -> SimulatedExport:
    """Simulate ``n_leads`` leads into ``out_dir/crm`` and build ``out_dir/training_table.parquet``.

    The table comes with the sidecar ``TrainJob`` reads, exactly as ``leadscore simulate`` followed by
    ``leadscore build-features`` would write it.
    """
    from leadscore.features.simulator import simulate_crm, write_crm

    crm = simulate_crm(n_leads=n_leads, seed=seed)
    paths = write_crm(crm, out_dir=out_dir / "crm")
    table = out_dir / "training_table.parquet"
    BuildFeaturesJob(
        leads=paths["leads"],
        activities=paths["activities"],
        outcomes=paths["outcomes"],
        output=table,
        policy=policy or SnapshotPolicy(),
    ).run()
    return SimulatedExport(crm=crm, paths=paths, training_table=table)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, for data lineage."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FlatBuildJob:
    """A flat export + its mapping -> audited, labelled feature table (one row per lead) + sidecar."""

    def __init__(self, *, mapping_path: Path, output: Path, data: Path | None = None) -> None:
        self.mapping_path = mapping_path
        self.output = output
        self.data = data

    def run(self) -> BuildFeaturesResult:
        from leadscore.features.audit import audit_columns
        from leadscore.features.loading import ContractProblem, DataContractError
        from leadscore.features.mapping import (
            ColumnRole,
            FlatFeatureTransform,
            label_values,
            load_mapping,
            read_export,
        )

        mapping = load_mapping(self.mapping_path)
        source = self.data or mapping.source_path(base=self.mapping_path.parent)
        if not source.exists():
            raise FileNotFoundError(f"export not found: {source} (set LEADSCORE_DATASETS_DIR or pass --data)")
        frame = read_export(source, file_format=mapping.source.format, mapping=mapping)
        transform = FlatFeatureTransform(mapping)
        problems = [
            ContractProblem("export", column, "missing column (named in the mapping)", (), len(frame))
            for column in (
                *transform.missing_columns(frame),
                *[mapping.label.column] * (mapping.label.column not in frame.columns),
            )
        ]
        if mapping.id_column in frame.columns:
            duplicated = frame[mapping.id_column].duplicated(keep=False).to_numpy()
            if duplicated.any():
                rows = tuple(int(i) for i in np.flatnonzero(duplicated)[:10])
                problems.append(
                    ContractProblem("export", mapping.id_column, "duplicate id", rows, int(duplicated.sum()))
                )
        if mapping.label.column in frame.columns:
            label = label_values(frame[mapping.label.column], positive_values=mapping.label.positive_values)
            unlabelled = label.isna().to_numpy()
            if unlabelled.any():
                rows = tuple(int(i) for i in np.flatnonzero(unlabelled)[:10])
                problems.append(
                    ContractProblem(
                        "export", mapping.label.column, "missing label", rows, int(unlabelled.sum())
                    )
                )
        if problems:
            raise DataContractError(problems)
        pii = [c for c in mapping.columns_with(ColumnRole.PII) if c in frame.columns]
        log.info(
            "dropped %d PII and %d leaky columns before feature computation",
            len(pii),
            len(mapping.columns_with(ColumnRole.LEAKY)),
        )
        table = transform.features(frame.drop(columns=list(pii)))
        table["label"] = label.to_numpy()
        table["horizon_complete"] = True
        audit_frame = frame.drop(columns=[mapping.id_column, mapping.label.column, *pii])
        audit = audit_columns(audit_frame, label=label.to_numpy(), missing_values=mapping.missing_values)
        features = set(transform.columns)
        audit["role"] = [
            mapping.columns[c].role.value if c in mapping.columns else "unmapped" for c in audit["column"]
        ]
        suspicious = [
            c for c in audit.loc[audit["flagged"], "column"] if c in features and c not in mapping.audit_allow
        ]
        for column in suspicious:
            log.warning(
                "leakage audit flags feature column '%s': review it or list it in audit_allow", column
            )
        self.output.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(self.output, index=False)
        audit.to_csv(self.output.with_suffix(".audit.csv"), index=False)
        has_time = mapping.created_at_column is not None
        meta = {
            "mode": "flat",
            "source": {"export": str(source), "mapping": str(self.mapping_path)},
            "mapping": mapping.model_dump(mode="json"),
            "has_time": has_time,
            "feature_names": list(transform.feature_names),
            "categorical_features": list(transform.categorical_features),
            "snapshot_policy": {"horizon_days": 0, "ages_days": [0]},
            "audit_flagged_features": suspicious,
            "fingerprint": {
                "rows": len(table),
                "positive_rate": float(label.astype(float).mean()),
                "export_sha256": file_sha256(source),
            },
            "raw_example": transform.raw_records(frame, n=RAW_EXAMPLE_LEADS),
        }
        self.output.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2, default=str))
        return BuildFeaturesResult(self.output, len(table), float(label.astype(float).mean()))


def read_table_metadata_if_any(table_path: Path) -> dict[str, Any] | None:
    """The sidecar of a built table, or None when there is none."""
    sidecar = table_path.with_suffix(".meta.json")
    return json.loads(sidecar.read_text()) if sidecar.exists() else None
