"""The scoring engine behind the HTTP service: model holder with atomic hot swap, batched scoring.

The hot path of ``/score`` is one feature computation (``compute_features``, or its kernel on plain
arrays for leads the fast path reads, :mod:`leadscore.serving.fast`) and one LightGBM call
(``pred_contrib`` when explaining, raw scores otherwise) for the whole batch, through the parts of the
very :class:`~leadscore.model.scoring_model.LeadScoringModel` object the MLflow pyfunc carries;
nothing is loaded per request and no model call runs per lead.

Hot reload: :meth:`ModelHolder.reload` resolves the version (the champion alias, or the pinned
``LEADSCORE_MODEL_VERSION``), loads a new model *outside* any request, then replaces the holder's
single reference in one assignment. Requests read that reference once at their start, so a
request in flight finishes on the model it started with.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pandas as pd

from leadscore.features.events import EventFeatureTransform
from leadscore.features.mapping import FlatFeatureTransform, parse_number_text
from leadscore.features.vocabulary import ActivityType, InputLayout, LeadStatus
from leadscore.model import store
from leadscore.model.raw_leads import PreparedLeads, now_utc, prepare_leads
from leadscore.model.records import FLOAT32_MAX, Activity, Problem, RawLead
from leadscore.model.scoring_model import LeadScoringModel, lead_states
from leadscore.serving.errors import ModelUnavailable, PayloadTooLarge, RequestInvalid, lead_hash
from leadscore.serving.fast import FastScorer, OneLead, applies_to, prepare_one
from leadscore.serving.schemas import (
    ExplainRequest,
    ExplainResponse,
    RecordsRequest,
    ReloadResponse,
    ScoreRequest,
    ScoreResponse,
)
from leadscore.serving.settings import ServingSettings
from leadscore.serving.store import (
    Resolved,
    StoreUnavailable,
    _Bounded,
    check_store_exists,
    lookup_challenger,
    lookup_model,
    store_fingerprint,
)

logger = logging.getLogger("leadscore.serving")
T = TypeVar("T")
__all__ = ["LoadedModel", "ModelHolder", "ModelUnavailable", "explain_request", "lead_hash", "score_request"]


@dataclass(frozen=True)
class LoadedModel:
    model: LeadScoringModel
    name: str
    version: str
    loaded_at: float
    identity: str = ""  # the registered version's run and creation time: a replaced store shows here
    fast: FastScorer | None = None  # the single-lead fast path, for models on the native event features
    model_file: str = ""  # the local pickle it was read from (the batch process reads the same file)

    @property
    def horizon_days(self) -> int | None:
        return int(self.model.horizon_days) if self.model.horizon_days else None  # None: not declared


class ModelHolder:
    """Holds the serving model; :meth:`reload` swaps it atomically, off the request path.

    Readers take :attr:`current` once per request and never wait. Registry calls and loads run
    with a bounded wait (:class:`_Bounded`); when the store is down the current model keeps serving
    and :attr:`status` says so.
    """

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self._current: LoadedModel | None = None
        self._reload_lock = threading.Lock()  # one load at a time; readers never wait on it
        self._bounded = _Bounded(settings.load_timeout_seconds)
        self.store_reachable: bool | None = None
        self.store_checked_at: float | None = None
        self.problem: str | None = None
        self.uri = mlflow_tracking_uri()
        self._fingerprint = store_fingerprint(self.uri)
        #: the 'challenger' alias's model, scored in shadow (never returned); None without one
        self.shadow: LoadedModel | None = None

    @property
    def current(self) -> LoadedModel:
        loaded = self._current
        if loaded is None:
            raise ModelUnavailable(self.problem or "no model loaded")
        return loaded

    @property
    def ready(self) -> bool:
        return self._current is not None

    @property
    def pinned(self) -> bool:
        return self.settings.model_version is not None

    def status(self) -> dict[str, object]:
        """What ``/readyz`` reports: the live version and whether the store answered lately."""
        loaded = self._current
        return {
            "ready": loaded is not None,
            "model_name": self.settings.model_name,
            "model_version": loaded.version if loaded is not None else None,
            "model_loaded_at": loaded.loaded_at if loaded is not None else None,
            "pinned": self.pinned,
            "store_reachable": self.store_reachable,
            "store_checked_at": self.store_checked_at,
            "problem": self.problem,
        }

    def _note(self, *, reachable: bool, problem: str | None) -> None:
        self.store_reachable = reachable
        self.store_checked_at = time.time()
        self.problem = problem

    def resolve(self) -> Resolved:
        """The version to serve (champion alias or pinned) and its identity; bounded in time."""
        missing = check_store_exists(self.uri)
        if missing is not None:
            problem = f"{missing} (MLFLOW_TRACKING_URI / LEADSCORE_HOME): it is never created here"
            self._note(reachable=False, problem=problem)
            raise StoreUnavailable(problem)
        fingerprint = store_fingerprint(self.uri)
        if self._fingerprint is not None and fingerprint != self._fingerprint:
            logger.warning("the tracking store was replaced on disk; resolving the model again")
        self._fingerprint = fingerprint
        name, pinned = self.settings.model_name, self.settings.model_version

        def lookup() -> Resolved:
            return lookup_model(name=name, pinned=pinned)

        try:
            resolved = self._bounded(lookup, f"model '{name}'")
        except ModelUnavailable as error:
            self._note(reachable=not isinstance(error, StoreUnavailable), problem=str(error))
            raise
        except Exception as error:
            problem = f"model '{name}': the tracking store failed ({type(error).__name__})"
            self._note(reachable=False, problem=problem)
            raise StoreUnavailable(problem) from None
        self._note(reachable=True, problem=None)
        return resolved

    def resolve_version(self) -> str:
        return self.resolve().version

    def load(self, resolved: Resolved) -> LoadedModel:
        started = time.perf_counter()
        name = self.settings.model_name

        def fetch() -> tuple[LeadScoringModel, Path]:
            path = store.scoring_model_file(model_name=name, version=resolved.version)
            return store.read_registered_model(path, version=resolved.version), path

        model, path = self._bounded(fetch, f"model '{name}' version {resolved.version}")
        loaded = prepared_model(
            model, name=name, version=resolved.version, identity=resolved.identity, model_file=str(path)
        )
        logger.info(
            "loaded model %s version %s in %.2fs (single-lead fast path: %s)",
            loaded.name,
            resolved.version,
            time.perf_counter() - started,
            "on" if loaded.fast is not None else "off, features differ from the native event catalogue",
        )
        return loaded

    def reload(self) -> ReloadResponse:
        """Load the resolved version if it is not the one serving (or the store was replaced); swap.
        Then follow the ``challenger`` alias for shadow scoring."""
        outcome = self._reload_champion()
        if self.settings.shadow and self.settings.ledger:
            self.refresh_shadow()
        return outcome

    def refresh_shadow(self) -> None:
        """Load the ``challenger`` alias's model for shadow scoring, drop it when the alias is gone or
        names the champion; a failure keeps the shadow as it was (shadow scores are never served)."""
        name = self.settings.model_name
        try:
            resolved = self._bounded(lambda: lookup_challenger(name=name), f"model '{name}' challenger")
        except Exception as error:
            logger.warning("challenger lookup failed (%s); shadow scoring unchanged", type(error).__name__)
            return
        champion = self._current
        if resolved is None or (champion is not None and resolved.version == champion.version):
            if self.shadow is not None:
                logger.info("no challenger: shadow scoring off")
            self.shadow = None
            return
        shadow = self.shadow
        if shadow is not None and (shadow.version, shadow.identity) == (resolved.version, resolved.identity):
            return
        try:
            self.shadow = self.load(resolved)
        except Exception as error:
            logger.warning(
                "challenger v%s not loaded (%s); shadow scoring unchanged", resolved.version, error
            )
            return
        logger.info("scoring challenger version %s in shadow", resolved.version)

    def _reload_champion(self) -> ReloadResponse:
        with self._reload_lock:
            previous = self._current
            resolved = self.resolve()
            if previous is not None and (previous.version, previous.identity) == (
                resolved.version,
                resolved.identity,
            ):
                return ReloadResponse(
                    reloaded=False,
                    model_name=previous.name,
                    model_version=resolved.version,
                    previous_version=previous.version,
                    pinned=self.pinned,
                )
            loaded = self.load(resolved)
            self._current = loaded  # the swap: one reference assignment
            previous_version = previous.version if previous is not None else None
            del previous  # let the old model go before freezing, or it would be frozen with the rest
            freeze_long_lived_objects()
            if previous_version is not None:
                logger.info(
                    "now serving %s version %s (was %s)", loaded.name, loaded.version, previous_version
                )
            return ReloadResponse(
                reloaded=previous_version is not None,
                model_name=loaded.name,
                model_version=loaded.version,
                previous_version=previous_version or loaded.version,
                pinned=self.pinned,
            )


def prepared_model(
    model: LeadScoringModel, *, name: str, version: str, identity: str = "", model_file: str = ""
) -> LoadedModel:
    """``model`` warmed up and ready to serve, with its single-lead fast path where it applies."""
    _warm_up(model)
    return LoadedModel(
        model=model,
        name=name,
        version=version,
        loaded_at=time.time(),
        identity=identity,
        fast=FastScorer(model) if applies_to(model) else None,
        model_file=model_file,
    )


def mlflow_tracking_uri() -> str:
    """The tracking URI MLflow will use (the environment's, else MLflow's default)."""
    import os

    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if uri:
        return uri
    import mlflow

    return str(mlflow.get_tracking_uri())


def freeze_long_lived_objects() -> None:
    """Keep the garbage collector from re-scanning the model and imported libraries on every request.

    After start-up or a reload, the heap holds ~400K long-lived objects (the model, pandas, MLflow,
    BentoML); each full collection triggered by a request's allocations walks them all, ~20% of a
    100-lead ``/score`` request (49 -> 39 ms in-process). ``gc.freeze`` moves them out of the
    collector's reach; unfreezing first lets the previous model, now garbage, be collected. (The 49 ->
    39 ms figure is an ad-hoc in-process profile; ``bench_serving.py`` measures the effect over HTTP.)
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _warm_up(model: LeadScoringModel) -> None:
    """Score one synthetic lead so lazy initialisation does not land on the first request."""
    if isinstance(model.transform, FlatFeatureTransform):
        features = model.features_from_records(pd.DataFrame({model.transform.id_column: ["warm-up"]}))
        model.score_features(features, explain=True, top_k=5)
        model.score_features(features, explain=False)
        return
    now = now_utc()
    events = model.transform
    if isinstance(events, EventFeatureTransform):  # the export's own column names, as /score-records gets
        spec = events.mapping.tables.leads
        record: dict[str, object] = {spec.created_at_column: (now - pd.Timedelta(days=3)).isoformat()}
        if spec.id_column is not None:
            record[spec.id_column] = "warm-up"
        features = model.features_from_records(pd.DataFrame([record]))
        model.score_features(features, explain=True, top_k=5)
        model.score_features(features, explain=False)
        return
    lead = RawLead(
        lead_id="warm-up",
        created_at=(now - pd.Timedelta(days=3)).isoformat(),
        activities=[
            Activity(
                timestamp=(now - pd.Timedelta(days=1)).isoformat(), activity_type=ActivityType.PAGE_VIEW
            ),
        ],
    )
    prepared = prepare_leads([lead], as_of=None, now=now)
    features = model.features(leads=prepared.leads, activities=prepared.activities, as_of=prepared.as_of)
    model.score_features(features, explain=True, top_k=5)
    model.score_features(features, explain=False)


def _as_of_text(values: pd.Series) -> list[str]:
    return [ts.isoformat() for ts in pd.to_datetime(values)]


def score_prepared(
    loaded: LoadedModel,
    prepared: PreparedLeads,
    *,
    explain: bool,
    top_k: int,
    features: pd.DataFrame | None = None,
) -> list[dict[str, object]]:
    """One feature computation and one model call for the whole batch."""
    model = loaded.model
    if features is None:
        features = model.features(leads=prepared.leads, activities=prepared.activities, as_of=prepared.as_of)
    states = lead_states(leads=prepared.leads, as_of=prepared.as_of)  # converted/disqualified: no score
    scored = model.score_features(features, explain=explain, top_k=top_k, states=states)
    as_of = _as_of_text(prepared.as_of)
    for i, result in enumerate(scored):
        result.setdefault("fit_points", None)
        result.setdefault("engagement_points", None)
        result.setdefault("base_score", None)
        result.setdefault("reasons_positive", [])
        result.setdefault("reasons_negative", [])
        result["as_of"] = as_of[i]
        result["model_name"] = loaded.name
        result["model_version"] = loaded.version
    return scored


def _require_activity_model(loaded: LoadedModel, field: str) -> None:
    events = loaded.model.transform
    if isinstance(events, EventFeatureTransform):  # its own names: /score's fields would be misread
        raise RequestInvalid(
            [
                Problem(
                    field=field,
                    problem=f"model {loaded.name} v{loaded.version} was trained on the event export "
                    f"'{events.mapping.name}' with its own column and activity names: send export records "
                    "(its lead columns with nested activities) to POST /score-records",
                )
            ]
        )
    if loaded.model.layout is InputLayout.FLAT_EXPORT:
        raise RequestInvalid(
            [
                Problem(
                    field=field,
                    problem=f"model {loaded.name} v{loaded.version} was trained on a flat export "
                    f"({loaded.model.transform.name}): send export rows to POST /score-records",
                )
            ]
        )


def record_contract(flat: object) -> dict[str, str]:
    """The input contract of a flat-export model, from the model itself: feature column -> kind.

    Kinds are the catalogue's (``numeric`` or ``categorical``), as the model was trained; the
    service checks records against this and nothing stricter (negative numbers are numbers).
    """
    columns = flat.columns  # type: ignore[attr-defined]
    catalogue = flat.catalogue  # type: ignore[attr-defined]
    return {column: spec.kind.value for column, spec in zip(columns, catalogue, strict=True)}


def _record_value_problem(
    value: object,
    kind: str,
    missing_values: Collection[str],
    *,
    decimal: str = ".",
    thousands: str | None = None,
) -> str | None:
    """Why a record value does not fit its column's kind (None when it does).

    Numeric columns take what training reads as a number: finite numbers of any sign within float32
    (the features' type), numeric text as the mapping reads it (its decimal mark and thousands
    separator), and the column's missing placeholders or null; ``true`` is not a number.
    Categorical columns take any scalar.
    """
    if isinstance(value, list):
        return "expected one value, got a list (nested activities are for event-export models)"
    if value is None or kind != "numeric":
        return None
    if isinstance(value, bool):
        return "expected a number, got true/false"
    if isinstance(value, str):
        if value.strip() in missing_values or value.strip() == "":
            return None
        parsed = parse_number_text(value, decimal=decimal, thousands=thousands)
        if parsed is None:
            return "expected a number, got text"
        number = parsed
    elif isinstance(value, int | float):
        number = float(value)
    else:
        return f"expected a number, got a {type(value).__name__}"
    if not math.isfinite(number) or abs(number) > FLOAT32_MAX:
        return f"must be a finite number within +-{FLOAT32_MAX:g} (NaN and infinity are rejected)"
    return None


def score_records_request(
    loaded: LoadedModel, request: RecordsRequest, settings: ServingSettings | None = None
) -> ScoreResponse:
    """Score export rows of the export the model was trained on (raises ``RequestInvalid``, and
    ``PayloadTooLarge`` when nested activities pass ``settings``' event limits)."""
    if isinstance(loaded.model.transform, EventFeatureTransform):
        if settings is not None:
            check_record_event_limits(request, settings)
        return _score_event_records(loaded, request)
    flat = loaded.model.transform
    if not isinstance(flat, FlatFeatureTransform):
        raise RequestInvalid(
            [
                Problem(
                    field="records",
                    problem=f"model {loaded.name} v{loaded.version} scores leads with activities: "
                    "use POST /score",
                )
            ]
        )
    id_column = flat.id_column  # the export's id column (a synthetic name when it has none)
    has_ids = flat.mapping.id_column is not None  # without one, records get synthetic row ids
    contract = record_contract(flat)
    problems: list[Problem] = []
    for index, record in enumerate(request.records):
        lead_id = record.get(id_column)
        if has_ids and flat.mapping.read.is_missing_text(lead_id):
            problems.append(
                Problem(field=f"records[{index}].{id_column}", problem="the id is missing", lead_index=index)
            )
            continue
        for column, kind in contract.items():
            problem = _record_value_problem(
                record.get(column),
                kind,
                flat.mapping.missing_for(column),
                decimal=flat.mapping.read.decimal,
                thousands=flat.mapping.read.thousands,
            )
            if problem is not None:
                problems.append(
                    Problem(
                        field=f"records[{index}].{column}",
                        problem=problem,
                        lead_index=index,
                        lead_id=None if lead_id is None else str(lead_id),
                    )
                )
    if problems:
        raise RequestInvalid(problems)
    frame = pd.DataFrame.from_records(request.records)
    features = loaded.model.features_from_records(frame)
    return _records_response(loaded, features, request)


def _score_event_records(loaded: LoadedModel, request: RecordsRequest) -> ScoreResponse:
    """Score an event-mapping model's export records: lead columns plus nested ``activities``.

    The same reading as the MLflow pyfunc (``EventFeatureTransform.features_from_records``).
    """
    events = loaded.model.transform
    assert isinstance(events, EventFeatureTransform)
    spec = events.mapping.tables.leads
    is_missing = events.mapping.read_options("leads").is_missing_text  # as the file's reader
    problems: list[Problem] = []
    for index, record in enumerate(request.records):
        if spec.id_column is not None:
            lead_id = record.get(spec.id_column)
            if is_missing(lead_id):
                problems.append(
                    Problem(
                        field=f"records[{index}].{spec.id_column}",
                        problem="the id is missing",
                        lead_index=index,
                    )
                )
        if is_missing(record.get(spec.created_at_column)):
            problems.append(
                Problem(
                    field=f"records[{index}].{spec.created_at_column}",
                    problem="the creation time is missing",
                    lead_index=index,
                )
            )
        nested = record.get("activities")
        if nested is not None and not (
            isinstance(nested, list) and all(isinstance(item, dict) for item in nested)
        ):
            problems.append(
                Problem(
                    field=f"records[{index}].activities",
                    problem="expected a list of activity objects (the export's activity columns)",
                    lead_index=index,
                )
            )
    if problems:
        raise RequestInvalid(problems)
    try:
        features = loaded.model.features_from_records(pd.DataFrame.from_records(request.records))
    except (ValueError, TypeError, KeyError) as error:
        raise RequestInvalid(
            [Problem(field="records", problem=f"could not read the records: {error}")]
        ) from None
    return _records_response(loaded, features, request)


def _records_response(loaded: LoadedModel, features: pd.DataFrame, request: RecordsRequest) -> ScoreResponse:
    scored = loaded.model.score_features(features, explain=request.explain, top_k=request.top_k)
    now = now_utc().isoformat()
    for result in scored:
        for key in ("fit_points", "engagement_points", "base_score"):
            result.setdefault(key, None)
        result.setdefault("reasons_positive", [])
        result.setdefault("reasons_negative", [])
        result.update(as_of=now, model_name=loaded.name, model_version=loaded.version)
    return ScoreResponse.model_validate(
        {
            "model_name": loaded.name,
            "model_version": loaded.version,
            "model_horizon_days": loaded.horizon_days,
            "results": scored,
        }
    )


def check_event_limits(leads: Sequence[RawLead], settings: ServingSettings, *, field: str) -> None:
    """Events a request would make (activities plus expanded counts), per lead and in all: 413 above.

    Counted before anything is expanded: a few bytes of ``engagement_counts`` can ask for millions
    of synthetic events.
    """
    problems: list[Problem] = []
    total = 0
    for index, lead in enumerate(leads):
        counted = sum(entry.count for entry in lead.engagement_counts)
        events = len(lead.activities) + counted
        total += events
        if events > settings.max_events_per_lead:
            where = f"{field}[{index}]" if field == "leads" else field
            name = "engagement_counts" if counted >= len(lead.activities) else "activities"
            problems.append(
                Problem(
                    field=f"{where}.{name}",
                    problem=f"{events:,} events ({len(lead.activities):,} activities + {counted:,} from "
                    f"engagement_counts); the limit is {settings.max_events_per_lead:,} per lead "
                    "(LEADSCORE_MAX_EVENTS_PER_LEAD)",
                    lead_index=index,
                    lead_id=lead.lead_id,
                )
            )
            if len(problems) >= 20:
                break
    if not problems and total > settings.max_events:
        problems.append(
            Problem(
                field=field,
                problem=f"{total:,} events in the request (activities + engagement_counts); the limit is "
                f"{settings.max_events:,} (LEADSCORE_MAX_EVENTS_PER_REQUEST): split the batch",
            )
        )
    if problems:
        raise PayloadTooLarge(problems)


def check_record_event_limits(request: RecordsRequest, settings: ServingSettings) -> None:
    """Nested activities of export records, per lead and in all, against the event limits: 413 above."""
    problems: list[Problem] = []
    total = 0
    for index, record in enumerate(request.records):
        nested = record.get("activities")
        events = len(nested) if isinstance(nested, list) else 0
        total += events
        if events > settings.max_events_per_lead and len(problems) < 20:
            problems.append(
                Problem(
                    field=f"records[{index}].activities",
                    problem=f"{events:,} activities; the limit is {settings.max_events_per_lead:,} per lead "
                    "(LEADSCORE_MAX_EVENTS_PER_LEAD)",
                    lead_index=index,
                )
            )
    if not problems and total > settings.max_events:
        problems.append(
            Problem(
                field="records",
                problem=f"{total:,} activities in the request; the limit is {settings.max_events:,} "
                "(LEADSCORE_MAX_EVENTS_PER_REQUEST): split the batch",
            )
        )
    if problems:
        raise PayloadTooLarge(problems)


def _now_us(now: pd.Timestamp | None) -> int:
    return int((now_utc() if now is None else now).value // 1000)


def _fast_one(
    loaded: LoadedModel,
    lead: RawLead,
    *,
    as_of: str | None,
    settings: ServingSettings,
    now: pd.Timestamp | None,
) -> OneLead | None:
    if loaded.fast is None:
        return None
    return prepare_one(
        lead,
        request_as_of=as_of,
        now_us=_now_us(now),
        clock_skew_seconds=settings.clock_skew_seconds,
        full_validation=settings.full_validation,
    )


def _response(loaded: LoadedModel, results: list[dict[str, object]]) -> ScoreResponse:
    return ScoreResponse.model_validate(
        {
            "model_name": loaded.name,
            "model_version": loaded.version,
            "model_horizon_days": loaded.horizon_days,
            "results": results,
        }
    )


def score_one_fast(loaded: LoadedModel, one: OneLead, *, explain: bool, top_k: int) -> dict[str, object]:
    """The single-lead fast path: the same dict ``score_prepared`` gives for a batch of one."""
    assert loaded.fast is not None
    result, _ = loaded.fast.score(one.features(), lead_id=one.lead_id, explain=explain, top_k=top_k)
    return _finish(loaded, result, one)


def score_many_fast(
    loaded: LoadedModel, leads: Sequence[OneLead], *, explain: bool, top_k: int
) -> list[dict[str, object]]:
    """The fast path for a batch: ``score_prepared``'s dicts from one feature pass and one model call."""
    assert loaded.fast is not None
    results = loaded.fast.score_many(leads, explain=explain, top_k=top_k)
    return [_finish(loaded, result, one) for result, one in zip(results, leads, strict=True)]


def _finish(loaded: LoadedModel, result: dict[str, object], one: OneLead) -> dict[str, object]:
    """A fast-path result completed as ``score_prepared`` completes a batch's."""
    for key in ("fit_points", "engagement_points", "base_score"):
        result.setdefault(key, None)
    result.setdefault("reasons_positive", [])
    result.setdefault("reasons_negative", [])
    result.update(as_of=one.as_of_text, model_name=loaded.name, model_version=loaded.version)
    return result


def _fast_many(
    loaded: LoadedModel,
    leads: Sequence[RawLead],
    *,
    as_of: str | None,
    settings: ServingSettings,
    now: pd.Timestamp | None,
) -> list[OneLead] | None:
    """Every lead read for the fast path, or None when any lead is not certainly valid (or ids repeat):
    then the batch path checks the whole request and names each problem."""
    now_us = _now_us(now)
    ready: list[OneLead] = []
    seen: set[str] = set()
    for raw in leads:
        one = prepare_one(
            raw,
            request_as_of=as_of,
            now_us=now_us,
            clock_skew_seconds=settings.clock_skew_seconds,
            full_validation=settings.full_validation,
        )
        if one is None or one.lead_id in seen:
            return None
        seen.add(one.lead_id)
        ready.append(one)
    return ready


def score_request(
    loaded: LoadedModel,
    request: ScoreRequest,
    settings: ServingSettings,
    *,
    now: pd.Timestamp | None = None,
    fast: bool = True,
) -> ScoreResponse:
    """Validate, convert and score a ``/score`` request (raises ``RequestInvalid``, ``PayloadTooLarge``).

    Leads take the fast path when it applies to the model and every lead is certainly valid
    (``fast=False`` forces the batch path, which also names every problem of an invalid request).
    """
    _require_activity_model(loaded, "leads")
    check_event_limits(request.leads, settings, field="leads")
    if len(request.leads) == 1 and fast:
        one = _fast_one(loaded, request.leads[0], as_of=request.as_of, settings=settings, now=now)
        if one is not None:
            return _response(
                loaded, [score_one_fast(loaded, one, explain=request.explain, top_k=request.top_k)]
            )
    elif fast and loaded.fast is not None:
        many = _fast_many(loaded, request.leads, as_of=request.as_of, settings=settings, now=now)
        if many is not None:
            return _response(
                loaded, score_many_fast(loaded, many, explain=request.explain, top_k=request.top_k)
            )
    prepared = prepare_leads(
        request.leads,
        as_of=request.as_of,
        now=now,
        clock_skew_seconds=settings.clock_skew_seconds,
        full_validation=settings.full_validation,
    )
    results = score_prepared(loaded, prepared, explain=request.explain, top_k=request.top_k)
    return _response(loaded, results)


def single_lead_fast_path(loaded: LoadedModel, request: ScoreRequest, settings: ServingSettings) -> bool:
    """Whether ``score_request`` would take the fast path (cheap enough to run on the event loop)."""
    return (
        loaded.fast is not None
        and len(request.leads) == 1
        and len(request.leads[0].activities) + sum(c.count for c in request.leads[0].engagement_counts)
        <= min(settings.max_events_per_lead, INLINE_EVENTS)
    )


INLINE_EVENTS = 2_000  # above this many events one lead is scored on the batch threads


def explain_request(
    loaded: LoadedModel,
    request: ExplainRequest,
    settings: ServingSettings,
    *,
    now: pd.Timestamp | None = None,
    fast: bool = True,
) -> ExplainResponse:
    """Score one lead with every grouped contribution and the next best actions.

    The fast path when it applies (``fast=False`` forces the batch path); problems name ``lead``.
    """
    _require_activity_model(loaded, "lead")
    check_event_limits([request.lead], settings, field="lead")
    one = _fast_one(loaded, request.lead, as_of=request.as_of, settings=settings, now=now) if fast else None
    if one is not None and loaded.fast is not None:
        row = one.features()
        scored, contributions = loaded.fast.score(row, lead_id=one.lead_id, explain=True, top_k=5)
        assert contributions is not None
        scored.update(as_of=one.as_of_text, model_name=loaded.name, model_version=loaded.version)
        return ExplainResponse.model_validate(
            {
                "score": scored,
                "contributions": [r.as_dict() for r in loaded.fast.all_reasons(row, contributions)],
                "next_best_actions": [a.as_dict() for a in loaded.fast.next_best_actions(one)],
            }
        )
    try:
        prepared = prepare_leads(
            [request.lead],
            as_of=request.as_of,
            now=now,
            clock_skew_seconds=settings.clock_skew_seconds,
            full_validation=settings.full_validation,
        )
    except RequestInvalid as invalid:  # one lead: its fields are lead.*, not leads[0].*
        raise RequestInvalid(
            [problem.model_copy(update={"field": _lead_field(problem.field)}) for problem in invalid.problems]
        ) from None
    model = loaded.model
    features = model.features(leads=prepared.leads, activities=prepared.activities, as_of=prepared.as_of)
    scored = score_prepared(loaded, prepared, explain=True, top_k=5, features=features)[0]
    is_open = scored["status"] == LeadStatus.OPEN.value  # a closed lead has a status, nothing to explain
    reasons = [reason.as_dict() for reason in model.all_reasons(features)[0]] if is_open else []
    actions = model.next_best_actions(
        leads=prepared.leads,
        activities=prepared.activities,
        as_of=prepared.as_of,
        states=lead_states(leads=prepared.leads, as_of=prepared.as_of),
    )[0]
    return ExplainResponse.model_validate(
        {
            "score": scored,
            "contributions": reasons,
            "next_best_actions": [action.as_dict() for action in actions],
        }
    )


def _lead_field(field: str) -> str:
    if field.startswith("leads[0]"):
        return "lead" + field.removeprefix("leads[0]")
    if field.startswith("leads[]"):
        return "lead" + field.removeprefix("leads[]")
    return field
