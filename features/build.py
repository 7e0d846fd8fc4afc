"""The build-features job: CRM export -> validated tables -> point-in-time training table."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.features.loading import CrmTables, load_crm_tables
from leadscore.features.training_table import SnapshotPolicy, build_training_table, observed_until

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
            "raw_example": raw_lead_records(tables=tables, lead_ids=example_ids, as_of=pd.Timestamp(latest)),
        }
        self.output.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2, default=str))
        log.info("wrote %s (%d rows)", self.output, len(table))
        return BuildFeaturesResult(self.output, len(table), meta["fingerprint"]["positive_rate"])  # type: ignore[index]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, for data lineage."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
