"""The scoring engine behind the HTTP service: model holder with atomic hot swap, batched scoring.

The hot path of ``/score`` is one ``compute_features`` and one LightGBM call (``pred_contrib``
when explaining, raw scores otherwise) for the whole batch, through the very
:class:`~leadscore.training.model.LeadScoringModel` object the MLflow pyfunc carries; nothing is
loaded per request and no model call runs per lead.

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
from dataclasses import dataclass

import pandas as pd

from leadscore.features.vocabulary import ActivityType
from leadscore.serving.errors import ModelUnavailable, RequestInvalid, lead_hash
from leadscore.serving.payload import PreparedLeads, now_utc, prepare_leads
from leadscore.serving.schemas import (
    Activity,
    ExplainRequest,
    ExplainResponse,
    Problem,
    RawLead,
    RecordsRequest,
    ReloadResponse,
    ScoreRequest,
    ScoreResponse,
)
from leadscore.serving.settings import ServingSettings
from leadscore.training import registry
from leadscore.training.model import LeadScoringModel

logger = logging.getLogger("leadscore.serving")
__all__ = ["LoadedModel", "ModelHolder", "ModelUnavailable", "explain_request", "lead_hash", "score_request"]


@dataclass(frozen=True)
class LoadedModel:
    model: LeadScoringModel
    name: str
    version: str
    loaded_at: float

    @property
    def horizon_days(self) -> int:
        return int(self.model.horizon_days)


class ModelHolder:
    """Holds the serving model; :meth:`reload` swaps it atomically."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self._current: LoadedModel | None = None
        self._reload_lock = threading.Lock()  # one load at a time; readers never wait on it

    @property
    def current(self) -> LoadedModel:
        loaded = self._current
        if loaded is None:
            raise ModelUnavailable("no model loaded")
        return loaded

    @property
    def ready(self) -> bool:
        return self._current is not None

    @property
    def pinned(self) -> bool:
        return self.settings.model_version is not None

    def resolve_version(self) -> str:
        if self.settings.model_version is not None:
            return self.settings.model_version
        version = registry.champion_version(model_name=self.settings.model_name)
        if version is None:
            raise ModelUnavailable(
                f"model '{self.settings.model_name}' has no 'champion' alias: run `leadscore promote`, "
                "or pin a version with LEADSCORE_MODEL_VERSION"
            )
        return version

    def load(self, version: str) -> LoadedModel:
        started = time.perf_counter()
        model = registry.load_scoring_model(model_name=self.settings.model_name, version=version)
        loaded = LoadedModel(
            model=model, name=self.settings.model_name, version=version, loaded_at=time.time()
        )
        _warm_up(model)
        logger.info(
            "loaded model %s version %s in %.2fs", loaded.name, version, time.perf_counter() - started
        )
        return loaded

    def reload(self) -> ReloadResponse:
        """Load the resolved version if it is not the one serving; swap atomically."""
        with self._reload_lock:
            previous = self._current
            version = self.resolve_version()
            if previous is not None and previous.version == version:
                return ReloadResponse(
                    reloaded=False,
                    model_name=previous.name,
                    model_version=version,
                    previous_version=previous.version,
                    pinned=self.pinned,
                )
            loaded = self.load(version)
            self._current = loaded  # the swap: one reference assignment
            previous_version = previous.version if previous is not None else None
            del previous  # let the old model go before freezing, or it would be frozen with the rest
            freeze_long_lived_objects()
            if previous_version is not None:
                logger.info("now serving %s version %s (was %s)", loaded.name, version, previous_version)
            return ReloadResponse(
                reloaded=previous_version is not None,
                model_name=loaded.name,
                model_version=loaded.version,
                previous_version=previous_version or loaded.version,
                pinned=self.pinned,
            )


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
    if model.flat is not None:
        features = model.features_from_export(pd.DataFrame({model.flat.mapping.id_column: ["warm-up"]}))
        model.score_features(features, explain=True, top_k=5)
        model.score_features(features, explain=False)
        return
    now = now_utc()
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
    scored = model.score_features(features, explain=explain, top_k=top_k)
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
    if loaded.model.flat is not None:
        raise RequestInvalid(
            [
                Problem(
                    field=field,
                    problem=f"model {loaded.name} v{loaded.version} was trained on a flat export "
                    f"({loaded.model.flat.mapping.name}): send export rows to POST /score-records",
                )
            ]
        )


def score_records_request(loaded: LoadedModel, request: RecordsRequest) -> ScoreResponse:
    """Score rows of the flat export a flat model was trained on (raises ``RequestInvalid``)."""
    flat = loaded.model.flat
    if flat is None:
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
    numeric = [
        c for c, spec in zip(flat.columns, flat.catalogue, strict=True) if spec.kind.value == "numeric"
    ]
    problems: list[Problem] = []
    for index, record in enumerate(request.records):
        lead_id = record.get(id_column)
        if lead_id is None or str(lead_id).strip() == "":
            problems.append(
                Problem(field=f"records[{index}].{id_column}", problem="the id is missing", lead_index=index)
            )
            continue
        for column in numeric:
            value = record.get(column)
            if value is None or (isinstance(value, str) and value.strip() in flat.mapping.missing_values):
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                problem = f"expected a number, got a {type(value).__name__}"
            else:
                if math.isfinite(number) and number >= 0:
                    continue
                problem = "must be a finite number >= 0 (NaN, infinity and negative values are rejected)"
            problems.append(
                Problem(
                    field=f"records[{index}].{column}",
                    problem=problem,
                    lead_index=index,
                    lead_id=str(lead_id),
                )
            )
    if problems:
        raise RequestInvalid(problems)
    frame = pd.DataFrame.from_records(request.records)
    features = loaded.model.features_from_export(frame)
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


def score_request(
    loaded: LoadedModel, request: ScoreRequest, settings: ServingSettings, *, now: pd.Timestamp | None = None
) -> ScoreResponse:
    """Validate, convert and score a ``/score`` request (raises ``RequestInvalid``)."""
    _require_activity_model(loaded, "leads")
    prepared = prepare_leads(
        request.leads,
        as_of=request.as_of,
        now=now,
        clock_skew_seconds=settings.clock_skew_seconds,
        full_validation=settings.full_validation,
    )
    results = score_prepared(loaded, prepared, explain=request.explain, top_k=request.top_k)
    return ScoreResponse.model_validate(
        {
            "model_name": loaded.name,
            "model_version": loaded.version,
            "model_horizon_days": loaded.horizon_days,
            "results": results,
        }
    )


def explain_request(
    loaded: LoadedModel,
    request: ExplainRequest,
    settings: ServingSettings,
    *,
    now: pd.Timestamp | None = None,
) -> ExplainResponse:
    """Score one lead with every grouped contribution and the next best actions."""
    _require_activity_model(loaded, "lead")
    prepared = prepare_leads(
        [request.lead],
        as_of=request.as_of,
        now=now,
        clock_skew_seconds=settings.clock_skew_seconds,
        full_validation=settings.full_validation,
    )
    model = loaded.model
    features = model.features(leads=prepared.leads, activities=prepared.activities, as_of=prepared.as_of)
    scored = score_prepared(loaded, prepared, explain=True, top_k=5, features=features)[0]
    contributions = [reason.as_dict() for reason in model.all_reasons(features)[0]]
    actions = model.next_best_actions(
        leads=prepared.leads, activities=prepared.activities, as_of=prepared.as_of
    )[0]
    return ExplainResponse.model_validate(
        {
            "score": scored,
            "contributions": contributions,
            "next_best_actions": [action.as_dict() for action in actions],
        }
    )
