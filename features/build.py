"""The build-features job: CRM export -> validated tables -> point-in-time training table."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from leadscore.features.contact_units import write_contact_units
from leadscore.features.contract import mask_personal_data
from leadscore.features.loading import (
    FOOTER_LINE,
    ContractProblem,
    CrmTables,
    DataContractError,
    load_crm_tables,
)
from leadscore.features.pipeline import compute_features
from leadscore.features.training_table import (
    SnapshotPolicy,
    build_training_table,
    first_campaigns,
    lead_ledger,
    observed_until,
    sales_touches_at_outcome,
    write_lead_ledger,
    write_open_leads,
)

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


# --------------------------------------------------------------------------------------------- #
# The table's metadata sidecar: one typed model, written and read through one pair of functions
# --------------------------------------------------------------------------------------------- #


class SnapshotMeta(BaseModel):
    """How snapshots were taken and how far the label looks."""

    model_config = ConfigDict(extra="allow")

    horizon_days: PositiveInt | None = Field(
        description="Days after each snapshot the label looks; null when the export does not say."
    )
    ages_days: tuple[int, ...] = Field(default=(0,), description="Snapshot ages after creation.")
    older_ages_per_lead: int = Field(
        default=0, ge=0, description="Extra snapshots per lead at older ages (0 in tables built before)."
    )


class TableMetadata(BaseModel):
    """The sidecar ``<table>.meta.json`` of a built table (other keys are kept as they are)."""

    model_config = ConfigDict(extra="allow")

    mode: str = Field(default="native", pattern="^(native|flat|events)$")
    time_axis: str = Field(
        pattern="^(timestamp|row_order|none)$",
        description="timestamp: as_of orders rows; row_order: the integer column row_order does; none.",
    )
    has_time: bool = True
    snapshot_policy: SnapshotMeta

    @model_validator(mode="after")
    def _consistent(self) -> TableMetadata:
        if self.has_time != (self.time_axis == "timestamp"):
            raise ValueError(f"has_time={self.has_time} contradicts time_axis={self.time_axis!r}")
        return self


def table_metadata_path(table_path: Path) -> Path:
    return Path(table_path).with_suffix(".meta.json")


def write_table_metadata(table_path: Path, meta: TableMetadata, *, table: pd.DataFrame) -> Path:
    """Validate ``meta`` against the table it describes and write the sidecar."""
    if meta.time_axis == "row_order" and not (
        "row_order" in table.columns and pd.api.types.is_integer_dtype(table["row_order"].dtype)
    ):
        raise ValueError("time_axis 'row_order' needs an integer column 'row_order' in the table")
    path = table_metadata_path(table_path)
    path.write_text(json.dumps(meta.model_dump(mode="json"), indent=2, default=str))
    return path


def read_table_metadata_model(table_path: Path) -> TableMetadata:
    """The validated sidecar of a built table (tables built before time_axis existed are read too)."""
    data = json.loads(table_metadata_path(table_path).read_text())
    if "time_axis" not in data:  # written before time_axis: derive it
        data["time_axis"] = "timestamp" if data.get("has_time", True) else "none"
        policy = dict(data.get("snapshot_policy") or {})
        policy["horizon_days"] = policy.get("horizon_days") or None
        data["snapshot_policy"] = policy
    return TableMetadata.model_validate(data)


# --------------------------------------------------------------------------------------------- #
# Dirty rows: rejected with reason and line number while few, the build stops when many
# --------------------------------------------------------------------------------------------- #


class TooManyRejects(DataContractError):
    """More rows break the contract than the mapping's ``max_reject_share`` allows."""

    def __init__(self, problems: list[ContractProblem], *, shares: dict[str, float], limit: float) -> None:
        super().__init__(problems)
        self.shares = shares
        self.limit = limit

    def __str__(self) -> str:
        over = ", ".join(f"{t} {share:.1%}" for t, share in self.shares.items() if share > self.limit)
        head = (
            f"Too many rows break the data contract ({over}; the mapping allows {self.limit:.1%} per file "
            f"in max_reject_share), or a problem concerns a whole column. Every problem:"
        )
        return "\n".join([head, *(f"  - {p.describe()}" for p in self.problems)])


REPEATED_ROW = "repeats an earlier row exactly (the first copy is kept)"


def rejected_rows(
    problems: list[ContractProblem], *, sizes: dict[str, int], max_share: float
) -> dict[str, np.ndarray]:
    """0-based rows to reject per table; raises :class:`TooManyRejects` (listing every problem)
    when a table-level problem exists or a file's rejected share exceeds ``max_share``."""
    rows: dict[str, np.ndarray] = {t: np.empty(0, dtype=np.int64) for t in sizes}
    whole = [p for p in problems if p.all_rows is None]
    for p in problems:
        if p.all_rows is not None:
            rows[p.table] = np.union1d(rows.get(p.table, np.empty(0, dtype=np.int64)), p.all_rows)
    lost = {  # unreadable lines (a report's footer lines hold no data: not counted)
        t: sum(len(p.file_lines) for p in problems if p.table == t and p.problem != FOOTER_LINE) for t in rows
    }
    # a row repeated cell for cell loses nothing (its first copy is kept): not counted against the share
    repeated = [p for p in problems if p.problem == REPEATED_ROW and p.all_rows is not None]
    repeats = {
        t: np.unique(
            np.concatenate([np.empty(0, dtype=np.int64), *(p.all_rows for p in repeated if p.table == t)])
        )
        for t in rows
    }
    counted = {t: np.setdiff1d(r, repeats[t]) for t, r in rows.items()}
    shares = {
        t: ((len(r) + lost[t]) / (sizes.get(t, 0) + lost[t]) if sizes.get(t, 0) + lost[t] else 0.0)
        for t, r in counted.items()
    }
    if whole or any(share > max_share for share in shares.values()):
        raise TooManyRejects(problems, shares=shares, limit=max_share)
    return rows


def rejects_frame(problems: list[ContractProblem], *, values: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One line per rejected row and reason: table, file, line (the file's own), column, value, problem.

    Lines that never became rows (unreadable) have no row; a row whose line is not known has no line.
    """
    from leadscore.features.loading import export_lines

    records = []
    for p in problems:
        for line in p.file_lines:  # lines that never became rows
            records.append(
                {
                    "table": p.table,
                    "file": p.source,
                    "line": line if line >= 0 else None,
                    "row": None,
                    "column": None,
                    "value": None,
                    "problem": p.problem,
                }
            )
        rows = p.all_rows
        if rows is None:
            continue
        raw = values.get(p.table)
        if p.row_lines is None and raw is not None and export_lines(raw).row_lines is not None:
            p = dataclasses.replace(p, row_lines=export_lines(raw).row_lines)  # e.g. a cascade added later
        for row in rows:
            value = None
            if raw is not None and p.column is not None and p.column in raw.columns:
                cell = raw[p.column].iloc[int(row)]
                value = None if pd.isna(cell) else str(cell)
            records.append(
                {
                    "table": p.table,
                    "file": p.source,
                    "line": p.line_of(int(row)),
                    "row": int(row),
                    "column": p.column,
                    "value": value,
                    "problem": p.problem,
                }
            )
    columns = ["table", "file", "line", "row", "column", "value", "problem"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    frame["line"] = frame["line"].astype("Int64")  # empty where the file's line is not known
    frame["row"] = frame["row"].astype("Int64")  # empty for lines that never became rows
    return frame.sort_values(["table", "line", "row"], kind="stable", na_position="last")


def with_file_lines(
    problems: list[ContractProblem], frames: dict[str, pd.DataFrame], sources: dict[str, Path]
) -> list[ContractProblem]:
    """The problems with each CSV table's row -> line map and its unreadable lines added.

    ``frames`` are the tables as :func:`~leadscore.features.loading.read_export_file` read them.
    """
    from leadscore.features.loading import export_lines

    out = [
        dataclasses.replace(p, row_lines=export_lines(frames[p.table]).row_lines)
        if p.table in frames and export_lines(frames[p.table]).row_lines is not None
        else p
        for p in problems
    ]
    for table, frame in frames.items():
        by_problem: dict[str, list[int]] = {}
        for line, problem in export_lines(frame).unreadable:
            by_problem.setdefault(problem, []).append(line)
        for problem, lines in by_problem.items():
            out.append(
                ContractProblem(
                    table,
                    None,
                    problem,
                    (),
                    len(lines),
                    source=str(sources[table]),
                    first_line=2,
                    all_rows=np.empty(0, dtype=np.int64),
                    file_lines=tuple(lines),
                )
            )
    return out


def write_rejects(output: Path, frame: pd.DataFrame) -> Path | None:
    """Write ``<table>.rejects.csv`` beside the table (removing a stale one when nothing is rejected)."""
    path = output.with_suffix(".rejects.csv")
    if frame.empty:
        path.unlink(missing_ok=True)
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    by_problem = frame.groupby(["table", "problem"], sort=False).size()
    for key, n in by_problem.items():
        pair: tuple[str, str] = key  # type: ignore[assignment]  # a (table, problem) pair
        log.warning("rejected %d %s row(s): %s (see %s)", n, pair[0], pair[1], path)
    return path


def row_problem(
    table: str, column: str | None, problem: str, mask: np.ndarray, *, source: Path
) -> ContractProblem | None:
    """A row-level problem for the rows where ``mask`` is true (None when there are none)."""
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        return None
    is_csv = not source.name.lower().endswith((".parquet", ".pq"))
    return ContractProblem(
        table,
        column,
        problem,
        tuple(int(r) for r in rows[:10]),
        int(rows.size),
        source=str(source),
        first_line=2 if is_csv else None,
        all_rows=rows,
    )


def without_personal_data(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Example records safe to store (sidecar, MLflow input example): see
    :func:`~leadscore.features.contract.mask_personal_data`."""
    return [mask_personal_data(r) for r in records]


@dataclass(frozen=True)
class BuildFeaturesResult:
    output: Path
    rows: int
    positive_rate: float
    rejected: int = 0
    rejects_file: Path | None = None


def write_sidecars(
    output: Path,
    *,
    tables: CrmTables,
    policy: SnapshotPolicy,
    until: pd.Timestamp,
    features_at: Callable[[pd.DataFrame], pd.DataFrame],
) -> None:
    """Beside the table: the lead ledger (with sales touches and first-touch campaigns), the open leads'
    features at the export's end, and the hand-raise units the follow-up effect is learned from.

    ``features_at`` is the build's own point-in-time feature code, so every side table reads the
    features the table does.
    """
    touches = sales_touches_at_outcome(
        leads=tables.leads, outcomes=tables.outcomes, policy=policy, until=until, features_at=features_at
    )
    write_lead_ledger(
        output,
        lead_ledger(
            leads=tables.leads,
            outcomes=tables.outcomes,
            policy=policy,
            until=until,
            sales_touches=touches,
            campaigns=first_campaigns(leads=tables.leads, activities=tables.activities),
        ),
    )
    write_open_leads(
        output, leads=tables.leads, outcomes=tables.outcomes, until=until, features_at=features_at
    )
    write_contact_units(
        output,
        leads=tables.leads,
        activities=tables.activities,
        outcomes=tables.outcomes,
        horizon_days=policy.horizon_days,
        until=until,
        features_at=features_at,
    )


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
        max_reject_share: float = 0.01,
    ) -> None:
        self.leads = leads
        self.activities = activities
        self.outcomes = outcomes
        self.output = output
        self.policy = policy
        self.max_reject_share = max_reject_share

    def load(self) -> CrmTables:
        """The validated tables; rows breaking the contract go to the rejects file while they stay
        at or under ``max_reject_share`` of each file (a rejected lead takes its events along)."""
        from leadscore.features.loading import read_table, validate_crm_tables

        try:
            tables = load_crm_tables(leads=self.leads, activities=self.activities, outcomes=self.outcomes)
            write_rejects(self.output, rejects_frame([], values={}))
            return tables
        except DataContractError as error:
            problems = error.problems
        paths = {"leads": self.leads, "activities": self.activities, "outcomes": self.outcomes}
        raw = {t: read_table(p) for t, p in paths.items() if p is not None}
        rejected = rejected_rows(
            problems, sizes={t: len(f) for t, f in raw.items()}, max_share=self.max_reject_share
        )
        gone = set(raw["leads"]["lead_id"].astype("string").iloc[rejected["leads"]].dropna())
        for table in ("activities", "outcomes"):
            if table not in raw or not gone:
                continue
            mask = raw[table]["lead_id"].astype("string").isin(list(gone)).fillna(False).to_numpy(copy=True)
            mask[rejected[table]] = False
            cascade = row_problem(
                table,
                "lead_id",
                "its lead was rejected (see the leads rows)",
                mask,
                source=Path(paths[table]),  # type: ignore[arg-type]
            )
            if cascade is not None and cascade.all_rows is not None:
                problems = [*problems, cascade]
                rejected[table] = np.union1d(rejected[table], cascade.all_rows)
        write_rejects(self.output, rejects_frame(problems, values=raw))
        kept = {t: f.drop(index=f.index[rejected[t]]).reset_index(drop=True) for t, f in raw.items()}
        return validate_crm_tables(
            leads=kept["leads"], activities=kept.get("activities"), outcomes=kept.get("outcomes")
        )

    def run(self, *, progress: bool = False) -> BuildFeaturesResult:
        tables = self.load()
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
        write_sidecars(
            self.output,
            tables=tables,
            policy=self.policy,
            until=until,
            features_at=lambda snapshots: compute_features(
                leads=tables.leads, activities=tables.activities, snapshots=snapshots
            ),
        )
        example_ids = table.sort_values("as_of")["lead_id"].drop_duplicates().tail(RAW_EXAMPLE_LEADS).tolist()
        latest = table["as_of"].max()
        meta = {
            "mode": "native",
            "time_axis": "timestamp",
            "has_time": True,
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
        write_table_metadata(self.output, TableMetadata.model_validate(meta), table=table)
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
        from leadscore.features.loading import export_lines
        from leadscore.features.mapping import (
            SYNTHETIC_ID_COLUMN,
            ColumnRole,
            FlatFeatureTransform,
            MappingKeyError,
            label_values,
            load_mapping,
            not_dates,
            number_problems,
            read_export,
            synthetic_ids,
            unmatched_keys,
        )

        mapping = load_mapping(self.mapping_path)
        source = self.data or mapping.source_path(base=self.mapping_path.parent)
        if not source.exists():
            raise FileNotFoundError(f"export not found: {source} (set LEADSCORE_DATASETS_DIR or pass --data)")
        frame = read_export(source, file_format=mapping.source.format, mapping=mapping)
        if mapping.id_column is None:
            line_ids = synthetic_ids(len(frame), lines=export_lines(frame).row_lines)
            frame[SYNTHETIC_ID_COLUMN] = line_ids
            log.warning(
                "%s has no id column in the mapping: synthetic ids %s..%s from its line numbers",
                source,
                line_ids[0] if len(line_ids) else "-",
                line_ids[-1] if len(line_ids) else "-",
            )
        transform = FlatFeatureTransform(mapping)
        is_csv = not source.name.lower().endswith((".parquet", ".pq"))
        special = [mapping.label.column, mapping.order_column, mapping.created_at_column]
        problems = [
            ContractProblem(
                "export",
                column,
                "missing column (named in the mapping)",
                (),
                len(frame),
                source=str(source),
                first_line=2 if is_csv else None,
            )
            for column in dict.fromkeys(
                [*transform.missing_columns(frame), *[c for c in special if c and c not in frame.columns]]
            )
        ]
        unmapped = [
            c for c in frame.columns if c not in mapping.columns and c not in {*special, transform.id_column}
        ]
        if unmapped:
            log.warning(
                "%d column(s) of %s are not in the mapping and were not used (not features, not audited "
                "as features): %s",
                len(unmapped),
                source.name,
                ", ".join(unmapped),
            )
        candidates: list[ContractProblem | None] = []
        if transform.id_column in frame.columns:
            ids = frame[transform.id_column]
            # a row repeated cell for cell (an export run twice, files joined): one copy is kept
            repeats = frame.duplicated(keep="first").to_numpy(dtype=bool)
            candidates.append(row_problem("export", None, REPEATED_ROW, repeats, source=source))
            candidates.append(
                row_problem("export", transform.id_column, "missing id", ids.isna().to_numpy(), source=source)
            )
            clashing = np.zeros(len(frame), dtype=bool)
            clashing[~repeats] = (ids[~repeats].duplicated(keep=False) & ids[~repeats].notna()).to_numpy()
            candidates.append(
                row_problem(
                    "export",
                    transform.id_column,
                    "duplicate id (rows that differ: which one is right is for you to say)",
                    clashing,
                    source=source,
                )
            )
        label = None
        if mapping.label.column in frame.columns:
            label = label_values(
                frame[mapping.label.column],
                positive_values=mapping.label.positive_values,
                missing_values=mapping.missing_values,
            )
            candidates.append(
                row_problem(
                    "export", mapping.label.column, "missing label", label.isna().to_numpy(), source=source
                )
            )
        for column in mapping.columns_with(ColumnRole.NUMERIC):
            if column in frame.columns:
                candidates += [
                    row_problem("export", column, problem, bad, source=source)
                    for problem, bad in number_problems(
                        frame[column],
                        missing=mapping.missing_for(column),
                        decimal=mapping.read.decimal,
                        thousands=mapping.read.thousands,
                    )
                ]
        created = mapping.created_at_column
        if created is not None and created in frame.columns:
            bad = not_dates(
                frame[created], missing=mapping.missing_for(created), date_format=mapping.read.date_format
            )
            example = repr(str(frame[created][bad].iloc[0]).strip()) if bad.any() else ""
            expected = f" as {mapping.read.date_format}" if mapping.read.date_format else ""
            candidates.append(
                row_problem("export", created, f"not a date{expected}, got {example}", bad, source=source)
            )
        if mapping.label.column in frame.columns:
            unmatched, _ = unmatched_keys(
                [_as_label_text(v) for v in mapping.label.positive_values],
                values=frame[mapping.label.column].map(_as_label_text, na_action="ignore"),
                covered=(),
                field="label.positive_values",
                column=f"{source.name}.{mapping.label.column}",
                strict=[_as_label_text(v) for v in mapping.label.positive_values],
            )
            if len(unmatched) == len(mapping.label.positive_values):  # no row is a conversion
                raise MappingKeyError(unmatched)
        problems += [p for p in candidates if p is not None]
        problems = with_file_lines(problems, {"export": frame}, {"export": source})
        rejected = rejected_rows(problems, sizes={"export": len(frame)}, max_share=mapping.max_reject_share)
        rejects = rejects_frame(problems, values={"export": frame})
        rejects_file = write_rejects(self.output, rejects)
        keep = np.ones(len(frame), dtype=bool)
        keep[rejected["export"]] = False
        row_position = np.flatnonzero(keep)
        frame = frame.loc[keep].reset_index(drop=True)
        assert label is not None  # a missing label column is a whole-column problem above
        label = label[keep].reset_index(drop=True)
        pii = [c for c in mapping.columns_with(ColumnRole.PII) if c in frame.columns]
        log.info(
            "dropped %d PII and %d leaky columns before feature computation",
            len(pii),
            len(mapping.columns_with(ColumnRole.LEAKY)),
        )
        table = transform.features(frame.drop(columns=list(pii)))
        table["label"] = label.to_numpy()
        table["horizon_complete"] = True
        if mapping.time_axis == "row_order":
            if mapping.order_column is not None:
                order_values = frame[mapping.order_column]
                numbers = pd.to_numeric(order_values, errors="coerce")
                key = numbers if numbers.notna().all() else order_values.astype(str)
                ranks = np.empty(len(frame), dtype=np.int64)
                ranks[np.argsort(key.to_numpy(), kind="stable")] = np.arange(len(frame))
                table["row_order"] = ranks
            else:
                table["row_order"] = row_position.astype(np.int64)
        audit_frame = frame.drop(
            columns=[c for c in (transform.id_column, mapping.label.column, *pii) if c in frame.columns]
        )
        audit = audit_export(audit_frame, label=label.to_numpy(), missing_values=mapping.missing_values)
        features = set(transform.columns)
        audit["role"] = [
            mapping.columns[c].role.value if c in mapping.columns else "unmapped" for c in audit["column"]
        ]
        suspicious, to_confirm = audited_features(audit, features=features, allow=mapping.audit_allow)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(self.output, index=False)
        audit.to_csv(self.output.with_suffix(".audit.csv"), index=False)
        has_time = mapping.created_at_column is not None
        positive_rate = float(label.astype(float).mean())
        meta = TableMetadata.model_validate(
            dict(
                mode="flat",
                time_axis=mapping.time_axis,
                has_time=has_time,
                snapshot_policy=SnapshotMeta(horizon_days=mapping.label_horizon_days, ages_days=(0,)),
                source={"export": str(source), "mapping": str(self.mapping_path)},
                mapping=mapping.model_dump(mode="json"),
                feature_names=list(transform.feature_names),
                categorical_features=list(transform.categorical_features),
                audit_flagged_features=suspicious,
                audit_to_confirm=to_confirm,
                unmapped_columns=unmapped,
                rejected_rows=int((~keep).sum()),
                fingerprint={
                    "rows": len(table),
                    "positive_rate": positive_rate,
                    "export_sha256": file_sha256(source),
                },
                raw_example=transform.raw_records(frame, n=RAW_EXAMPLE_LEADS),
            )
        )
        write_table_metadata(self.output, meta, table=table)
        return BuildFeaturesResult(
            self.output,
            len(table),
            positive_rate,
            rejected=int((~keep).sum()) + sum(len(p.file_lines) for p in problems),
            rejects_file=rejects_file,
        )


@dataclass(frozen=True, eq=False)
class MappedEventExport:
    """An event export read through its mapping: validated contract tables and what was set aside."""

    mapping: Any  # an EventMapping
    transform: Any  # its EventFeatureTransform
    paths: dict[str, Path]
    raw: dict[str, pd.DataFrame]
    """Each file as read (the export's own column names)."""
    tables: CrmTables
    """The rows kept, renamed onto the contract and validated (an outcome per converted lead)."""
    problems: list[ContractProblem]
    rejects: pd.DataFrame
    """One line per rejected row and reason (see :func:`rejects_frame`)."""
    rejected: dict[str, np.ndarray]
    keep: dict[str, np.ndarray]
    contract_leads: pd.DataFrame
    columns_report: list[dict[str, str]]
    ignored_types: pd.Series


class EventBuildJob:
    """An event export (leads, activities, outcomes files) + its mapping -> point-in-time table.

    Checklist: read each file (named in every error), list unmapped columns and what was done with
    them, rename onto the contract, validate, send dirty rows to a rejects file (stop above the
    mapping's share), snapshot and label from dates, compute features with the mapping's transform
    (the one the deployable model carries), audit for leakage, write the table and its sidecar.
    """

    def __init__(self, *, mapping_path: Path, output: Path, data_dir: Path | None = None) -> None:
        self.mapping_path = mapping_path
        self.output = output
        self.data_dir = data_dir

    def source(self, mapping: Any, table: str) -> Path:
        path = mapping.source_path(table, base=self.mapping_path.parent)
        return self.data_dir / path.name if self.data_dir is not None else path

    def read(self) -> MappedEventExport:
        """Read, check and validate the export's files (no snapshots): rows breaking the contract are
        set aside with their line and problem; keys matching nothing stop it (:class:`MappingKeyError`)."""
        from leadscore.features.events import EventFeatureTransform, load_event_mapping, parse_dates_text
        from leadscore.features.loading import located, read_export_file, validate_crm_tables
        from leadscore.features.mapping import parse_numbers

        mapping = load_event_mapping(self.mapping_path)
        transform = EventFeatureTransform(mapping)
        spec = mapping.tables
        tables = ["leads", "outcomes"] + (["activities"] if spec.activities is not None else [])
        paths = {t: self.source(mapping, t) for t in tables}
        raw: dict[str, pd.DataFrame] = {}
        for name in tables:
            options = mapping.read_options(name)
            raw[name] = read_export_file(
                paths[name],
                file_format=options.format,
                delimiter=options.delimiter,
                encoding=options.encoding,
                decimal=options.decimal,
                thousands=options.thousands,
                missing_text=options.missing_text,
                text_columns=self._text_columns(mapping, name),
                expected_columns=self._used_columns(mapping, name),
            )
        columns_report = self._column_report(mapping, raw)
        for row in columns_report:
            if row["mapping"] == "unmapped":
                log.warning("%s.%s: not in the mapping; %s", row["table"], row["column"], row["action"])
        problems: list[ContractProblem] = []
        for name in tables:
            absent = [c for c in self._used_columns(mapping, name) if c not in raw[name].columns]
            problems += [
                ContractProblem(
                    name,
                    c,
                    "missing column (named in the mapping)",
                    (),
                    len(raw[name]),
                    source=str(paths[name]),
                )
                for c in absent
            ]
        if problems:
            raise DataContractError(problems)
        self._check_keys(mapping, raw, paths)
        # -- onto the contract -------------------------------------------------------------------
        leads = transform.contract_leads(raw["leads"])
        if spec.leads.id_column is None:
            log.warning(
                "%s has no id column in the mapping: synthetic ids row-2..row-%d from its line numbers",
                paths["leads"],
                len(leads) + 1,
            )
        activities = transform.contract_activities(raw["activities"]) if "activities" in raw else None
        ignored_types = pd.Series(dtype=int)
        keep_activity = None
        if activities is not None and spec.activities is not None:
            unknown = (
                ~activities["activity_type"].isin(list(transform.allowed_types()))
                & activities["activity_type"].notna()
            )
            if spec.activities.unmapped_types == "ignore" and unknown.any():
                ignored_types = activities.loc[unknown, "activity_type"].value_counts()
                for kind, n in ignored_types.items():
                    log.warning("activities: %d rows of unmapped type %r ignored (map it in types)", n, kind)
                keep_activity = ~unknown.to_numpy()
        outcomes_spec = spec.outcomes
        out_raw = raw["outcomes"]
        is_outcome = np.ones(len(out_raw), dtype=bool)
        if outcomes_spec.status_column is not None:
            status = out_raw[outcomes_spec.status_column].astype("string").str.strip()
            is_outcome = status.isin(list(outcomes_spec.positive_values)).fillna(False).to_numpy(dtype=bool)
            log.info("outcomes: %d of %d rows have a positive status", int(is_outcome.sum()), len(out_raw))
        opts = mapping.read_options("outcomes")
        outcomes = pd.DataFrame(
            {
                "lead_id": out_raw[outcomes_spec.lead_id_column],
                "converted_at": parse_dates_text(
                    out_raw[outcomes_spec.date_column], opts, len(out_raw), out_raw.index
                ),
            }
        )
        if outcomes_spec.amount_column is not None:
            outcomes["opportunity_amount"] = parse_numbers(
                out_raw[outcomes_spec.amount_column], decimal=opts.decimal, thousands=opts.thousands
            )
        if outcomes_spec.won is not None:
            outcomes["won_at"], outcomes["won_amount"] = closed_won(
                out_raw, spec=outcomes_spec, deal_date=outcomes["converted_at"], options=opts
            )
        # -- rows that break the contract ---------------------------------------------------------
        extra = self._number_problems(mapping, transform, raw, paths, is_outcome=is_outcome)
        problems = list(extra)
        contract_frames = {"leads": leads, "activities": activities, "outcomes": outcomes}
        problems += self._contract_problems(
            contract_frames,
            transform=transform,
            keep_activity=keep_activity,
            is_outcome=is_outcome,
            validate=validate_crm_tables,
        )
        problems = located(problems, paths)
        problems = [p if p.column is None else _renamed_back(p, mapping) for p in problems]
        problems = with_file_lines(problems, raw, paths)
        sizes = {t: len(raw[t]) for t in tables}
        rejected = rejected_rows(problems, sizes=sizes, max_share=mapping.max_reject_share)
        # a rejected lead takes its activities and outcomes with it (said in the rejects file)
        lead_ids = leads["lead_id"].astype("string")
        gone = set(lead_ids.iloc[rejected["leads"]].dropna())
        for dependent, frame in (("activities", activities), ("outcomes", outcomes)):
            if frame is None or not gone:
                continue
            mask = (
                frame["lead_id"]
                .astype("string")
                .isin(list(gone))
                .fillna(False)
                .to_numpy(dtype=bool, copy=True)
            )
            mask[rejected[dependent]] = False
            cascade = row_problem(
                dependent,
                "lead_id",
                "its lead was rejected (see the leads rows)",
                mask,
                source=paths[dependent],
            )
            if cascade is not None:
                problems.append(cascade)
                rejected[dependent] = np.union1d(rejected[dependent], cascade.all_rows)  # type: ignore[arg-type]
        # -- clean tables, validated --------------------------------------------------------------
        keep = {t: np.ones(sizes[t], dtype=bool) for t in tables}
        for t in tables:
            keep[t][rejected[t]] = False
        if keep_activity is not None:
            keep["activities"] &= keep_activity
        keep["outcomes"] &= is_outcome
        clean = validate_crm_tables(
            leads=leads[keep["leads"]],
            activities=None if activities is None else activities[keep["activities"]],
            outcomes=self._first_outcome(outcomes[keep["outcomes"]]),
            activity_types=transform.allowed_types(),
        )
        rejects = rejects_frame(problems, values=raw)
        return MappedEventExport(
            mapping=mapping,
            transform=transform,
            paths=paths,
            raw=raw,
            tables=clean,
            problems=problems,
            rejects=rejects,
            rejected=rejected,
            keep=keep,
            contract_leads=leads,
            columns_report=columns_report,
            ignored_types=ignored_types,
        )

    def run(self) -> BuildFeaturesResult:
        export = self.read()
        mapping, transform, paths, raw = export.mapping, export.transform, export.paths, export.raw
        spec = mapping.tables
        tables = list(raw)
        clean, problems, rejected, keep = export.tables, export.problems, export.rejected, export.keep
        leads, columns_report, ignored_types = (
            export.contract_leads,
            export.columns_report,
            export.ignored_types,
        )
        rejects_file = write_rejects(self.output, export.rejects)
        # -- snapshots, labels, features -------------------------------------------------------------
        from leadscore.features.training_table import label_snapshots, make_snapshots

        policy = SnapshotPolicy(
            ages_days=mapping.label.ages_days,
            horizon_days=mapping.label.horizon_days,
            keep_incomplete_horizon=mapping.label.keep_incomplete_horizon,
            older_ages_per_lead=mapping.label.older_ages_per_lead,
        )
        until = observed_until(leads=clean.leads, activities=clean.activities, outcomes=clean.outcomes)
        snapshots = make_snapshots(leads=clean.leads, outcomes=clean.outcomes, policy=policy, until=until)
        labelled = label_snapshots(
            snapshots=snapshots, leads=clean.leads, outcomes=clean.outcomes, policy=policy, until=until
        )
        incomplete = int((~labelled["horizon_complete"]).sum())
        if incomplete and not policy.keep_incomplete_horizon:
            log.warning(
                "excluded %d snapshots whose %d-day horizon ends after the export's last date %s",
                incomplete,
                policy.horizon_days,
                until,
            )
            labelled = labelled[labelled["horizon_complete"]].reset_index(drop=True)
        if mapping.label.several_ages and transform.attributes:
            log.warning(
                "tables.leads.attributes %s are not point-in-time: each lead's value in the export is "
                "used at every snapshot age %s; a CRM field that changed after first contact (a stage, "
                "a score, a field filled in by sales) can leak later knowledge into earlier snapshots",
                list(transform.attributes),
                list(mapping.label.ages_days),
            )
        features = transform.features_from_contract(
            leads=clean.leads, activities=clean.activities, snapshots=labelled
        )
        table = pd.concat(
            [
                features,
                labelled[["snapshot_age_days", "label", "label_amount", "horizon_complete"]].reset_index(
                    drop=True
                ),
            ],
            axis=1,
        )
        if table.empty:
            raise DataContractError(
                [
                    ContractProblem(
                        "leads", None, f"no snapshot has a complete {policy.horizon_days}-day horizon", (), 0
                    )
                ]
            )
        # -- leakage audit: lead columns plus every deal column joined to its lead -----------------
        audit = self._audit(mapping, raw, leads, keep, clean, table)
        feature_columns = set(transform.attributes) | {
            c for c, t in spec.leads.rename.items() if t.value in transform.feature_names
        }
        flagged, to_confirm = audited_features(audit, features=feature_columns, allow=mapping.audit_allow)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(self.output, index=False)
        write_sidecars(
            self.output,
            tables=clean,
            policy=policy,
            until=until,
            features_at=lambda snapshots: transform.features_from_contract(
                leads=clean.leads, activities=clean.activities, snapshots=snapshots
            ),
        )
        audit.to_csv(self.output.with_suffix(".audit.csv"), index=False)
        positive_rate = float(table["label"].astype("Float64").mean())
        example_ids = set(table.sort_values("as_of")["lead_id"].drop_duplicates().tail(RAW_EXAMPLE_LEADS))
        id_col = spec.leads.id_column
        example_leads = (
            raw["leads"][raw["leads"][id_col].astype(str).isin(example_ids)]
            if id_col
            else raw["leads"].tail(RAW_EXAMPLE_LEADS)
        )
        meta = TableMetadata.model_validate(
            dict(
                mode="events",
                time_axis="timestamp",
                has_time=True,
                snapshot_policy=SnapshotMeta(**policy.model_dump(mode="json")),
                source={"mapping": str(self.mapping_path), **{t: str(p) for t, p in paths.items()}},
                mapping=mapping.model_dump(mode="json"),
                feature_names=list(transform.feature_names),
                categorical_features=list(transform.categorical_features),
                audit_flagged_features=flagged,
                audit_to_confirm=to_confirm,
                columns=columns_report,
                ignored_activity_types={str(k): int(v) for k, v in ignored_types.items()},
                rejected_rows={t: len(rejected[t]) for t in tables},
                observed_until=str(until),
                fingerprint={
                    **{t: len(raw[t]) for t in tables},
                    "snapshots": len(table),
                    "positive_rate": positive_rate,
                    "as_of_min": str(table["as_of"].min()),
                    "as_of_max": str(table["as_of"].max()),
                    "leads_sha256": file_sha256(paths["leads"]),
                },
                raw_example=transform.raw_records(
                    leads=example_leads, activities=raw.get("activities"), n=RAW_EXAMPLE_LEADS
                ),
            )
        )
        write_table_metadata(self.output, meta, table=table)
        log.info("wrote %s (%d rows)", self.output, len(table))
        return BuildFeaturesResult(
            self.output,
            len(table),
            positive_rate,
            rejected=sum(len(r) for r in rejected.values()) + sum(len(p.file_lines) for p in problems),
            rejects_file=rejects_file,
        )

    # --- steps -----------------------------------------------------------------------------------
    @staticmethod
    def _number_problems(
        mapping: Any,
        transform: Any,
        raw: dict[str, pd.DataFrame],
        paths: dict[str, Path],
        *,
        is_outcome: np.ndarray,
    ) -> list[ContractProblem]:
        """Rows of every mapped numeric column (numeric attributes, columns renamed onto
        employee_count / annual_revenue, the deals' amount) holding a value that is no number."""
        from leadscore.features.mapping import ColumnRole, number_problems

        spec = mapping.tables
        numeric = {"employee_count", "annual_revenue"}
        leads_columns = [
            *[c for c in transform.attributes if spec.leads.attributes[c].role is ColumnRole.NUMERIC],
            *[c for c, target in spec.leads.rename.items() if target.value in numeric],
        ]
        checks: list[tuple[str, str, set[str], np.ndarray | None]] = [
            ("leads", column, transform.missing_for(column), None) for column in leads_columns
        ]
        if spec.outcomes.amount_column is not None:  # only rows that are outcomes are read
            missing = {*mapping.read_options("outcomes").missing_text, *mapping.missing_values}
            checks.append(("outcomes", spec.outcomes.amount_column, missing, is_outcome))
        found: list[ContractProblem] = []
        for table, column, missing, rows in checks:
            options = mapping.read_options(table)
            for problem, bad in number_problems(
                raw[table][column], missing=missing, decimal=options.decimal, thousands=options.thousands
            ):
                found += [
                    p
                    for p in [
                        row_problem(
                            table, column, problem, bad if rows is None else bad & rows, source=paths[table]
                        )
                    ]
                    if p is not None
                ]
        return found

    @staticmethod
    def _check_keys(mapping: Any, raw: dict[str, pd.DataFrame], paths: dict[str, Path]) -> None:
        """Raise :class:`MappingKeyError` for mapping keys that match nothing but look like a value the
        export writes (a typo), new activity types no row has, and value lists none of whose values
        occur; keys that are merely unused (a template's) are logged."""
        from leadscore.features.contract import ActivityType, PageCategory
        from leadscore.features.events import ActivityTypeSpec
        from leadscore.features.mapping import MappingKeyError, unmatched_keys

        spec = mapping.tables
        checks: list[tuple[str, list[str], pd.Series, set[str], list[str], str]] = []
        acts = spec.activities
        if acts is not None:
            types = list(acts.types)
            custom = [k for k, v in acts.types.items() if isinstance(v, ActivityTypeSpec)]
            known = {t.value for t in ActivityType}
            checks.append(
                ("types", types, raw["activities"][acts.type_column], {*types, *known}, custom, "activities")
            )
            if acts.page_column is not None and acts.page_values:
                pages = list(acts.page_values)
                categories = {c.value for c in PageCategory}
                checks.append(
                    (
                        "page_values",
                        pages,
                        raw["activities"][acts.page_column],
                        {*pages, *categories},
                        [],
                        "activities",
                    )
                )
        outcomes = spec.outcomes
        lists = [("positive_values", outcomes.status_column, list(outcomes.positive_values))]
        if outcomes.won is not None:
            lists.append(("won.stage_values", outcomes.won.stage_column, list(outcomes.won.stage_values)))
        for name, column, values in lists:
            if column is not None and values:
                seen = set(raw["outcomes"][column].dropna().astype(str).str.strip())
                sole = values if not seen & set(values) else []  # none occurs: no deal would count
                checks.append((name, values, raw["outcomes"][column], set(values), sole, "outcomes"))
        errors = []
        for name, keys, series, covered, strict, table in checks:
            wrong, unused = unmatched_keys(
                keys,
                values=series,
                covered=covered,
                field=f"tables.{table}.{name}",
                column=f"{table}.{series.name} ({paths[table]})",
                strict=strict,
            )
            errors += wrong
            for key in unused:
                log.warning(
                    "%s: %r matches no row of %s (nothing lost: no similar value there)",
                    key.field,
                    key.key,
                    key.column,
                )
        if errors:
            raise MappingKeyError(errors)

    @staticmethod
    def _used_columns(mapping: Any, table: str) -> list[str]:
        spec = getattr(mapping.tables, table)
        if table == "leads":
            return [c for c in (spec.id_column, spec.created_at_column, *spec.rename, *spec.attributes) if c]
        if table == "activities":
            return [
                c
                for c in (spec.lead_id_column, spec.timestamp_column, spec.type_column, spec.page_column)
                if c
            ]
        won = spec.won
        won_columns = () if won is None else (won.stage_column, won.date_column, won.amount_column)
        return [
            c
            for c in (
                spec.lead_id_column,
                spec.date_column,
                spec.amount_column,
                spec.status_column,
                *won_columns,
            )
            if c
        ]

    @staticmethod
    def _text_columns(mapping: Any, table: str) -> list[str]:
        from leadscore.features.mapping import ColumnRole

        spec = getattr(mapping.tables, table)
        if table == "leads":
            numeric = {"employee_count", "annual_revenue"}
            return [
                *([spec.id_column] if spec.id_column else []),
                *[c for c, t in spec.rename.items() if t.value not in numeric],
                *[c for c, m in spec.attributes.items() if m.role is not ColumnRole.NUMERIC],
            ]
        if table == "outcomes":  # stage codes compare as the export writes them ("123", not 123.0)
            stages = [spec.status_column, spec.won.stage_column if spec.won is not None else None]
            return [spec.lead_id_column, *[c for c in stages if c]]
        return [spec.lead_id_column]

    @staticmethod
    def _column_report(mapping: Any, raw: dict[str, pd.DataFrame]) -> list[dict[str, str]]:
        """Every column of every file, with its mapping and what was done with it."""
        report = []
        for table, frame in raw.items():
            spec = getattr(mapping.tables, table)
            used = set(EventBuildJob._used_columns(mapping, table))
            for column in frame.columns:
                if table == "leads" and column in spec.rename:
                    what, action = (
                        f"renamed to {spec.rename[column].value}",
                        "a built-in feature"
                        if spec.rename[column].value
                        not in ("email", "first_name", "last_name", "phone", "job_title")
                        else "not a feature (PII / free text; email gives the domain type)",
                    )
                elif table == "leads" and column in spec.attributes:
                    role = spec.attributes[column].role.value
                    what = role
                    action = (
                        "a feature"
                        if role in ("categorical", "numeric")
                        else ("dropped" if role == "pii" else "excluded from features, audited")
                    )
                elif (
                    table == "outcomes"
                    and spec.won is not None
                    and column
                    in (
                        spec.won.stage_column,
                        spec.won.date_column,
                        spec.won.amount_column,
                    )
                ):
                    what, action = (
                        "closed-won",
                        "won deals and revenue for the channel report; never a feature",
                    )
                elif column in used:
                    what, action = "key", "used as id / date / type"
                elif table != "leads" and column in spec.columns:
                    role = spec.columns[column].value
                    what, action = role, "dropped" if role == "pii" else "excluded from features, audited"
                else:
                    what, action = (
                        "unmapped",
                        "not used: not a feature (audited; give it a role to silence this)",
                    )
                report.append({"table": table, "column": str(column), "mapping": what, "action": action})
        return report

    @staticmethod
    def _contract_problems(
        frames: dict[str, pd.DataFrame | None],
        *,
        transform: Any,
        keep_activity: np.ndarray | None,
        is_outcome: np.ndarray,
        validate: Any,
    ) -> list[ContractProblem]:
        """Contract problems of the renamed tables (row numbers of the files), without raising."""
        activities = frames["activities"]
        outcomes = frames["outcomes"]
        assert outcomes is not None
        if activities is not None and keep_activity is not None:
            activities = activities.copy()
            activities.loc[~keep_activity, "activity_type"] = "page_view"  # ignored rows: not checked
        # rows that are not outcomes (other statuses) are left out of the check: placeholder rows
        # of an existing outcome would otherwise read as duplicates
        positions = np.flatnonzero(is_outcome)
        try:
            validate(
                leads=frames["leads"],
                activities=activities,
                outcomes=outcomes.iloc[positions].reset_index(drop=True),
                activity_types=transform.allowed_types(),
            )
        except DataContractError as error:
            fixed = []
            for p in error.problems:
                if p.table == "outcomes" and p.all_rows is not None:
                    rows = positions[p.all_rows]
                    p = ContractProblem(
                        p.table, p.column, p.problem, tuple(int(r) for r in rows[:10]), p.count, all_rows=rows
                    )
                fixed.append(p)
            return [p for p in fixed if not (p.table == "outcomes" and p.problem == "duplicate lead_id")]
        return []

    @staticmethod
    def _first_outcome(outcomes: pd.DataFrame) -> pd.DataFrame:
        """The earliest outcome per lead (a lead with several deals converted at the first)."""
        ordered = outcomes.assign(
            _t=pd.to_datetime(outcomes["converted_at"], errors="coerce", format="mixed")
        )
        first = ordered.sort_values("_t", kind="stable").drop_duplicates("lead_id", keep="first")
        n = len(outcomes) - len(first)
        if n:
            log.info("outcomes: %d later outcomes of leads that already had one are not labels", n)
        return first.drop(columns="_t").sort_index()

    @staticmethod
    def _audit(
        mapping: Any,
        raw: dict[str, pd.DataFrame],
        leads: pd.DataFrame,
        keep: dict[str, np.ndarray],
        clean: CrmTables,
        table: pd.DataFrame,
    ) -> pd.DataFrame:
        """Audit every lead and deal column against the first snapshot's label."""
        from leadscore.features.mapping import ColumnRole

        spec = mapping.tables
        first_age = min(mapping.label.ages_days)
        first = table[table["snapshot_age_days"] == first_age]
        label = pd.Series(
            first["label"].astype("Float64").to_numpy(), index=first["lead_id"].astype(str).to_numpy()
        )
        lead_raw = raw["leads"][keep["leads"]].reset_index(drop=True)
        ids = leads.loc[keep["leads"], "lead_id"].astype(str).to_numpy()
        pii = {c for c, m in spec.leads.attributes.items() if m.role is ColumnRole.PII}
        pii |= {
            c
            for c, t in spec.leads.rename.items()
            if t.value in ("email", "first_name", "last_name", "phone")
        }
        drop = {spec.leads.id_column, *pii}
        frame = lead_raw.drop(columns=[c for c in lead_raw.columns if c in drop])
        frame.index = ids
        deals = raw["outcomes"]
        deal_spec = spec.outcomes
        deal_pii = {c for c, r in deal_spec.columns.items() if r.value == "pii"}
        deal_cols = [c for c in deals.columns if c not in (deal_spec.lead_id_column, *deal_pii)]
        by_lead = deals.drop_duplicates(deal_spec.lead_id_column).set_index(
            deals.drop_duplicates(deal_spec.lead_id_column)[deal_spec.lead_id_column].astype(str)
        )[deal_cols]
        by_lead.columns = [f"{c}" if c not in frame.columns else f"outcomes.{c}" for c in by_lead.columns]
        frame = frame.join(by_lead, how="left")
        in_label = frame.index.isin(label.index)
        frame = frame[in_label]
        y = label.reindex(frame.index)
        known = y.notna().to_numpy()
        outcome_at = clean.outcomes.set_index(clean.outcomes["lead_id"].astype(str))["converted_at"]
        created = clean.leads.set_index(clean.leads["lead_id"].astype(str))["created_at"]
        return audit_export(
            frame[known].reset_index(drop=True),
            label=y[known].astype(int).to_numpy(),
            missing_values=mapping.missing_values,
            outcome_at=outcome_at.reindex(frame.index[known]).to_numpy(),
            created_at=created.reindex(frame.index[known]).to_numpy(),
        )


def _as_label_text(value: object) -> str:
    """A label value as text, numbers as numbers ("1.0" and 1 both read "1"), as the mapping lists them."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else str(number)


def _renamed_back(problem: ContractProblem, mapping: Any) -> ContractProblem:
    """A problem about a contract column named by the export's own column name."""
    import dataclasses

    spec = getattr(mapping.tables, problem.table, None)
    if spec is None or problem.column is None:
        return problem
    names: dict[str, str] = {}
    if problem.table == "leads":
        names = {t.value: c for c, t in spec.rename.items()}
        names["created_at"] = spec.created_at_column
        if spec.id_column:
            names["lead_id"] = spec.id_column
    elif problem.table == "activities":
        names = {
            "lead_id": spec.lead_id_column,
            "timestamp": spec.timestamp_column,
            "activity_type": spec.type_column,
        }
        if spec.page_column:
            names["page_category"] = spec.page_column
    else:
        names = {"lead_id": spec.lead_id_column, "converted_at": spec.date_column}
        if spec.amount_column:
            names["opportunity_amount"] = spec.amount_column
    column = names.get(problem.column, problem.column)
    text = problem.problem.replace(problem.column, column, 1) if problem.column != column else problem.problem
    return dataclasses.replace(problem, column=column, problem=text)


def closed_won(
    raw: pd.DataFrame, *, spec: Any, deal_date: pd.Series, options: Any
) -> tuple[pd.Series, pd.Series]:
    """``won_at`` and ``won_amount`` of each deal row from the mapping's ``won`` block.

    A deal is won when its stage is one of ``stage_values`` (or, without a stage column, when its won
    date is present). A won deal whose won date is missing or unreadable keeps its own deal date as a
    stand-in, and an unreadable or negative amount is left missing: both are logged, and no deal or label is
    dropped for them.
    """
    from leadscore.features.events import parse_dates_text
    from leadscore.features.loading import read_timestamps
    from leadscore.features.mapping import parse_numbers

    won = spec.won
    close = (
        read_timestamps(parse_dates_text(raw[won.date_column], options, len(raw), raw.index))
        if won.date_column
        else pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
    )
    if won.stage_column is not None:
        stage = raw[won.stage_column].astype("string").str.strip()
        is_won = stage.isin(list(won.stage_values)).fillna(False).to_numpy(dtype=bool)
    else:
        is_won = close.notna().to_numpy()
    stand_in = is_won & close.isna().to_numpy()
    if stand_in.any():  # expected without a won date column; worth a warning when it is unreadable
        (log.warning if won.date_column else log.info)(
            "outcomes: %d won deals have no readable %s: their deal date (%s) stands in as the won date",
            int(stand_in.sum()),
            won.date_column or "won date (no won.date_column)",
            spec.date_column,
        )
    won_at = close.where(~stand_in, read_timestamps(deal_date)).where(is_won)
    amount_column = won.amount_column or spec.amount_column
    if amount_column is None:
        return won_at, pd.Series(np.nan, index=raw.index)
    amount = parse_numbers(raw[amount_column], decimal=options.decimal, thousands=options.thousands)
    unusable = is_won & raw[amount_column].notna().to_numpy() & ~(amount >= 0).to_numpy()
    if unusable.any():
        log.warning(
            "outcomes: %d won deals' %s is unreadable or negative: left missing",
            int(unusable.sum()),
            amount_column,
        )
    return won_at, amount.where(is_won & (amount >= 0))


def audited_features(
    audit: pd.DataFrame, *, features: set[str], allow: tuple[str, ...]
) -> tuple[list[str], list[str]]:
    """Feature columns the audit flags (hard tier) and those it asks to confirm, each warned about."""
    flagged, to_confirm = [], []
    for row in audit[audit["flagged"]].to_dict(orient="records"):
        column = str(row["column"])
        if column not in features or column in allow:
            continue
        if row["tier"] == "flag":
            flagged.append(column)
            log.warning(
                "leakage audit FLAGS feature column '%s' (%s): review it, mark it leaky, or list it in "
                "audit_allow",
                column,
                row["flags"],
            )
        else:
            to_confirm.append(column)
            log.warning(
                "leakage audit, suspicious: confirm feature column '%s' (%s); list it in audit_allow once "
                "checked",
                column,
                row["flags"],
            )
    return flagged, to_confirm


def audit_export(
    frame: pd.DataFrame, *, label: np.ndarray, missing_values: tuple[str, ...], **kwargs: Any
) -> pd.DataFrame:
    from leadscore.features.audit import audit_columns

    return audit_columns(frame, label=label, missing_values=missing_values, **kwargs)


def read_table_metadata_if_any(table_path: Path) -> dict[str, Any] | None:
    """The sidecar of a built table, or None when there is none."""
    sidecar = table_path.with_suffix(".meta.json")
    return json.loads(sidecar.read_text()) if sidecar.exists() else None
