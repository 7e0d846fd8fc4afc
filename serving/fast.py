"""The fast path: valid leads scored without DataFrames, equal to the batch path.

:func:`prepare_one` reads one :class:`~leadscore.serving.schemas.RawLead` into the values of
:mod:`leadscore.features.single_lead` and checks it the way
:func:`~leadscore.model.raw_leads.prepare_leads` does; it returns ``None`` whenever the lead is
not certainly valid (a problem to report, a time stamp form it does not parse, full validation
asked for) and the caller takes the batch path, which then accepts or reports it. A lead is never
rejected here.

:class:`FastScorer` scores those values with the model's own parts (encoder categories, booster,
calibrator) on NumPy arrays instead of DataFrames, then hands the raw scores and contributions to
the model's own ``results_from_raw`` / ``reasons_from_contributions`` /
``actions_from_probabilities``, the code ``score_features`` and ``next_best_actions`` run: tiers,
grades, intervals, status and action filters cannot drift apart. One lead's features come from
:func:`~leadscore.features.single_lead.lead_features` (no array set-up: fastest for one); a batch's
from :func:`~leadscore.features.single_lead.leads_feature_columns`, ``compute_features``' own
kernel on plain arrays. The next best actions re-score modified copies of the row in one booster
call instead of re-running the pipeline per action. It applies only to models whose features are
exactly the native event catalogue's (:func:`applies_to`): flat-export models and models with their
own activity types or fields use the batch path. ``tests/serving/test_single_lead.py`` proves
features, probabilities, reasons and actions equal, for single leads and for batches.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.features.catalogue import FEATURE_NAMES
from leadscore.features.single_lead import (
    LeadValues,
    ceil_seconds,
    epoch_microseconds,
    isoformat_us,
    lead_features,
    leads_feature_columns,
    signal_of,
    spread_events,
)
from leadscore.features.vocabulary import InputLayout
from leadscore.model.cadence import ContactAdvice
from leadscore.model.explain import Reason, records_from_columns
from leadscore.model.linear import LinearScorer
from leadscore.model.scoring_model import ACTIONABLE_TYPES, LeadScoringModel, NextBestAction
from leadscore.serving.schemas import RawLead

_CATEGORICAL_INPUTS = ("channel", "seniority", "department", "country", "industry", "company_type")
_NUMERIC_INPUTS = ("employee_count", "annual_revenue")
_NATIVE = frozenset(FEATURE_NAMES)


@dataclass(frozen=True)
class OneLead:
    """A valid lead, read for the fast path."""

    lead_id: str
    lead: LeadValues
    as_of_us: int
    event_us: np.ndarray  # int64, every event (real and expanded counts)
    event_signals: np.ndarray  # int64

    @property
    def as_of_text(self) -> str:
        return isoformat_us(self.as_of_us)

    def features(self) -> dict[str, object]:
        return lead_features(
            lead=self.lead,
            as_of_us=self.as_of_us,
            event_seconds=ceil_seconds(self.event_us),
            event_signals=self.event_signals,
        )


def _text(value: str | None) -> str | None:
    return value if value is None or value.strip() else None


def prepare_one(
    raw: RawLead,
    *,
    request_as_of: str | None,
    now_us: int,
    clock_skew_seconds: float,
    full_validation: bool,
) -> OneLead | None:
    """The lead's values when it is certainly valid, else None (take the batch path)."""
    if full_validation or not raw.lead_id.strip() or raw.converted_at or raw.disqualified_at:
        return None  # a closed lead's status (or a bad state time) is the batch path's to say
    bound = now_us + round(clock_skew_seconds * 1_000_000)
    created = epoch_microseconds(raw.created_at)
    if created is None or created > bound:
        return None
    as_of = now_us
    if request_as_of is not None:
        parsed = epoch_microseconds(request_as_of)
        if parsed is None or parsed > bound:
            return None
        as_of = parsed
    if raw.as_of is not None:
        own = epoch_microseconds(raw.as_of)
        if own is None or own > bound:
            return None
        as_of = own
    if as_of < created:
        return None

    times: list[int] = []
    signals: list[int] = []
    for activity in raw.activities:
        when = epoch_microseconds(activity.timestamp)
        if when is None or when > bound or when < created:
            return None
        times.append(when)
        signals.append(signal_of(str(activity.activity_type), activity.page_category))
    event_us = np.array(times, dtype=np.int64)
    event_signals = np.array(signals, dtype=np.int64)
    if raw.engagement_counts:
        spread_times, spread_signals = [event_us], [event_signals]
        for entry in raw.engagement_counts:
            last = epoch_microseconds(entry.last_at)
            if last is None:
                return None
            start = created
            if entry.first_at is not None:
                first = epoch_microseconds(entry.first_at)
                if first is None:
                    return None
                start = first
            if entry.count == 0:
                continue
            if start > last:
                return None
            spread = spread_events(start_us=start, last_us=last, count=entry.count)
            if (spread > bound).any() or (spread < created).any():
                return None
            spread_times.append(spread)
            code = signal_of(str(entry.activity_type), entry.page_category)
            spread_signals.append(np.full(entry.count, code, dtype=np.int64))
        event_us = np.concatenate(spread_times)
        event_signals = np.concatenate(spread_signals)

    lead = LeadValues(
        created_us=created,
        categorical={name: _text(getattr(raw, name)) for name in _CATEGORICAL_INPUTS},
        employee_count=raw.employee_count,
        annual_revenue=raw.annual_revenue,
        email=_text(raw.email),
    )
    return OneLead(raw.lead_id, lead, as_of, event_us, event_signals)


def applies_to(model: LeadScoringModel) -> bool:
    """Whether the fast path computes this model's features: the native event catalogue, nothing else."""
    if model.layout is not InputLayout.LEADSCORE:
        return False  # an export's own column and activity names: only its transform reads them
    names = tuple(model.feature_names)
    categories = getattr(model.encoder, "categories_", None)
    return (
        bool(names)
        and set(names) <= _NATIVE
        and isinstance(categories, dict)
        and set(categories) <= set(names)
        and type(model.encoder).__name__ == "CategoryCodeEncoder"
    )


logger = logging.getLogger(__name__)

_PREDICT_CONTRIB = 3  # LightGBM's C API: C_API_PREDICT_CONTRIB
_DTYPE_FLOAT64 = 1  # C_API_DTYPE_FLOAT64


class OneRowContributions:
    """``booster.predict(row, pred_contrib=True, num_threads=1)`` for one row in one C call, with
    the GIL held.

    LightGBM's Python predict makes four C calls per row, and ``ctypes`` lets go of the GIL for
    each: in a service whose batch threads hold the GIL, a single lead then waits up to one switch
    interval to get it back, four times. This calls LightGBM's own single-row fast API
    (``LGBM_BoosterPredictForMatSingleRowFast``) through the same library loaded as a
    :class:`ctypes.PyDLL` (calls keep the GIL; one row takes tens of microseconds). The values are
    LightGBM's own, bit for bit (``tests/serving/test_single_lead.py``). One call at a time.
    """

    def __init__(self, booster: object, n_features: int) -> None:
        import lightgbm.basic

        if booster.num_feature() != n_features:  # type: ignore[attr-defined]
            raise RuntimeError(f"the booster has {booster.num_feature()} features, not {n_features}")  # type: ignore[attr-defined]
        self._lib = ctypes.PyDLL(lightgbm.basic._LIB._name)
        self._lock = threading.Lock()
        self._n_features = n_features
        # every model of an iteration (one for binary) gets n_features + 1 values
        per_row = booster.num_model_per_iteration() * (n_features + 1)  # type: ignore[attr-defined]
        self._out = np.empty(per_row, dtype=np.float64)
        self._out_len = ctypes.c_int64()
        best = int(getattr(booster, "best_iteration", 0) or 0)
        self._config = ctypes.c_void_p()
        status = self._lib.LGBM_BoosterPredictForMatSingleRowFastInit(
            booster._handle,  # type: ignore[attr-defined]
            ctypes.c_int(_PREDICT_CONTRIB),
            ctypes.c_int(0),
            ctypes.c_int(best if best > 0 else -1),  # as Booster.predict: the best iteration if any
            ctypes.c_int(_DTYPE_FLOAT64),
            ctypes.c_int32(n_features),
            ctypes.c_char_p(b"num_threads=1"),
            ctypes.byref(self._config),
        )
        if status != 0:
            raise RuntimeError(lightgbm.basic._LIB.LGBM_GetLastError().decode())
        self._booster = booster  # the config points into it: keep it alive

    def __call__(self, row: np.ndarray) -> np.ndarray:
        data = np.ascontiguousarray(row, dtype=np.float64)
        if data.shape != (self._n_features,):
            raise ValueError(f"one row of {self._n_features} features expected, got shape {data.shape}")
        with self._lock:
            status = self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                self._config,
                data.ctypes.data_as(ctypes.c_void_p),
                ctypes.byref(self._out_len),
                self._out.ctypes.data_as(ctypes.c_void_p),
            )
            if status != 0 or self._out_len.value != len(self._out):
                import lightgbm.basic

                reason = lightgbm.basic._LIB.LGBM_GetLastError().decode()
                raise RuntimeError(f"LightGBM's single-row prediction failed: {reason}")
            return self._out.copy().reshape(1, -1)

    def __del__(self) -> None:
        config = getattr(self, "_config", None)
        if config is not None and config.value:
            self._lib.LGBM_FastConfigFree(config)


class FastScorer:
    """Scores one feature row with a native model's parts, exactly as ``score_features`` would."""

    def __init__(self, model: LeadScoringModel) -> None:
        if not applies_to(model):
            raise ValueError("the fast path applies only to models on the native event features")
        self.model = model
        self.names = tuple(model.feature_names)
        self._one_row: OneRowContributions | None = None
        try:
            if not isinstance(model.booster, LinearScorer):  # a linear model answers one row in Python
                self._one_row = OneRowContributions(model.booster, len(self.names))
        except (OSError, AttributeError, RuntimeError) as error:  # another LightGBM build: its own predict
            logger.warning("single-row contributions through LightGBM's Python predict (%s)", error)
            self._one_row = None
        categories: dict[str, tuple[str, ...]] = model.encoder.categories_
        self.codes: dict[str, tuple[dict[str, float], float]] = {
            name: ({value: float(i) for i, value in enumerate(known)}, float(len(known) - 1))
            for name, known in categories.items()
        }

    # --- rows ------------------------------------------------------------------------------------
    def encode(self, rows: Sequence[Mapping[str, object]]) -> np.ndarray:
        """Encoded rows for the booster (the encoder's codes; numbers as float64)."""
        out = np.empty((len(rows), len(self.names)), dtype=np.float64)
        for r, row in enumerate(rows):
            for c, name in enumerate(self.names):
                value = row[name]
                coding = self.codes.get(name)
                if coding is None:
                    out[r, c] = value  # type: ignore[call-overload]  # floats (NaN when missing)
                elif value is None:
                    out[r, c] = np.nan
                else:
                    known, other = coding
                    out[r, c] = known.get(str(value), other)
        return out

    def encode_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Encoded rows for the booster from feature columns (``leads_feature_columns``), column by column."""
        n = len(next(iter(columns.values()))) if columns else 0
        out = np.empty((n, len(self.names)), dtype=np.float64)
        for c, name in enumerate(self.names):
            coding = self.codes.get(name)
            if coding is None:
                out[:, c] = columns[name]
            else:
                known, other = coding
                out[:, c] = [np.nan if v is None else known.get(str(v), other) for v in columns[name]]
        return out

    # A handful of rows: one thread. LightGBM's OpenMP team costs more than the trees for one row
    # (tens of milliseconds on a busy machine); each row's result does not depend on threads.
    def contributions(self, encoded: np.ndarray) -> np.ndarray:
        if len(encoded) == 1 and self._one_row is not None:
            return self._one_row(encoded[0])
        return np.asarray(
            self.model.booster.predict(encoded, pred_contrib=True, num_threads=1), dtype=np.float64
        )

    def raw_scores(self, encoded: np.ndarray) -> np.ndarray:
        return np.asarray(
            self.model.booster.predict(encoded, raw_score=True, num_threads=1), dtype=np.float64
        )

    # --- scoring ---------------------------------------------------------------------------------
    def score(
        self, row: Mapping[str, object], *, lead_id: str, explain: bool, top_k: int
    ) -> tuple[dict[str, object], np.ndarray | None]:
        """One scored lead (the dict ``score_features`` returns) and its contributions when explained.

        Everything after the booster is ``LeadScoringModel.results_from_raw``, the code
        ``score_features`` runs.
        """
        encoded = self.encode([row])
        contributions = self.contributions(encoded) if explain else None
        raw = contributions.sum(axis=1) if contributions is not None else self.raw_scores(encoded)
        result = self.model.results_from_raw(
            raw=raw,
            contributions=contributions,
            records=[_Record(row)] if explain else None,
            column=_row_column(row),
            contributions_of=lambda rows: self.contributions(encoded[rows]),
            lead_ids=[lead_id],
            top_k=top_k,
            contact=self.contact_advice_rows([row]),
        )[0]
        return result, contributions

    def contact_advice_rows(self, rows: Sequence[Mapping[str, object]]) -> Sequence[ContactAdvice | None]:
        """The model's own :meth:`~LeadScoringModel.contact_advice` on feature rows (no frame when it has
        no effect to read)."""
        effect = self.model.contact_effect
        if effect is None or not any(effect.row_applies(row) for row in rows):
            return [None] * len(rows)
        return self.model.contact_advice(pd.DataFrame.from_records(list(rows), columns=list(self.names)))

    def score_many(self, leads: Sequence[OneLead], *, explain: bool, top_k: int) -> list[dict[str, object]]:
        """Scored leads (the dicts ``score_features`` returns), all in one feature pass and one model call.

        The features come from ``compute_features``' own kernel on plain arrays (no DataFrames);
        everything after the booster is ``LeadScoringModel.results_from_raw``.
        """
        columns = leads_feature_columns(
            leads=[one.lead for one in leads],
            as_of_us=np.array([one.as_of_us for one in leads], dtype=np.int64),
            event_seconds=[ceil_seconds(one.event_us) for one in leads],
            event_signals=[one.event_signals for one in leads],
        )
        encoded = self.encode_columns(columns)
        booster = self.model.booster
        contributions = (
            np.asarray(booster.predict(encoded, pred_contrib=True), dtype=np.float64) if explain else None
        )
        raw = (
            contributions.sum(axis=1)
            if contributions is not None
            else np.asarray(booster.predict(encoded, raw_score=True), dtype=np.float64)
        )
        used = {name: columns[name] for name in self.names}

        def column(name: str) -> np.ndarray | None:
            values = columns.get(name)
            if values is None or values.dtype == object:
                return None
            return values.astype(np.float64)

        return self.model.results_from_raw(
            raw=raw,
            contributions=contributions,
            records=records_from_columns(used) if explain else None,
            column=column,
            contributions_of=lambda rows: np.asarray(
                booster.predict(encoded[rows], pred_contrib=True), dtype=np.float64
            ),
            lead_ids=[one.lead_id for one in leads],
            top_k=top_k,
            contact=(
                self.model.contact_advice(pd.DataFrame(used))
                if self.model.contact_effect is not None
                else None
            ),
        )

    def all_reasons(self, row: Mapping[str, object], contributions: np.ndarray) -> list[Reason]:
        """Every grouped contribution, strongest first (``LeadScoringModel.all_reasons`` for one row)."""
        return self.model.reasons_from_contributions(contributions, [_Record(row)])[0]

    def next_best_actions(self, one: OneLead) -> list[NextBestAction]:
        """One more of each actionable activity at the snapshot's second, all re-scored in one call.

        The batch path adds the event at ``as_of`` cut to whole seconds and scores the variant as
        of that second; the rows here are built the same way from the lead's own events. The
        filters (just done, material uplift) and wording are ``LeadScoringModel``'s own.
        """
        base_row = one.features()
        second_us = (one.as_of_us // 1_000_000) * 1_000_000
        seconds = ceil_seconds(one.event_us)
        rows: list[Mapping[str, object]] = [base_row]
        for action in ACTIONABLE_TYPES:
            rows.append(
                lead_features(
                    lead=one.lead,
                    as_of_us=second_us,
                    event_seconds=np.append(seconds, second_us // 1_000_000),
                    event_signals=np.append(one.event_signals, signal_of(action, None)),
                )
            )
        probability = self.model.calibrate(self.raw_scores(self.encode(rows)))
        return self.model.actions_from_probabilities(
            base=probability[:1],
            after=probability[1:].reshape(len(ACTIONABLE_TYPES), 1),
            column=_row_column(base_row),
            open_leads=np.ones(1, dtype=bool),
            contact=self.contact_advice_rows([base_row]),
        )[0]


def _row_column(row: Mapping[str, object]) -> Callable[[str], np.ndarray | None]:
    """One feature of one row as a one-element float array (None when the row has no such feature)."""

    def column(name: str) -> np.ndarray | None:
        if name not in row:
            return None
        value = row[name]
        return np.array([np.nan if value is None else float(value)])  # type: ignore[arg-type]

    return column


class _Record(Mapping[str, object]):
    """A feature row as reasons read it: missing values (NaN) as None, like ``rows_as_records``."""

    __slots__ = ("_row",)

    def __init__(self, row: Mapping[str, object]) -> None:
        self._row = row

    def __getitem__(self, name: str) -> object:
        value = self._row[name]
        if isinstance(value, float) and value != value:
            return None
        return value

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)
