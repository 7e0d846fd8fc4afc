"""The deployable scoring model: feature transform + booster + calibration + explanation.

One object, pickled into the MLflow pyfunc, so training, batch scoring, ``mlflow models serve``
and the BentoML service all run the identical code path:
``compute_features`` -> ``CategoryCodeEncoder`` -> LightGBM -> isotonic calibration ->
TreeSHAP (LightGBM ``pred_contrib``) grouped into reasons.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from leadscore.features.catalogue import (
    SIGNALS,
    Family,
    total_count_name,
    window_count_name,
)
from leadscore.features.vocabulary import InputLayout, LeadStatus, Tier
from leadscore.model.cadence import (
    ContactAdvice,
    ContactEffect,
    ContactVerdict,
    TouchCadence,
    advice_for,
    follow_up,
)
from leadscore.model.calibration import IsotonicCalibrator, PlattCalibrator
from leadscore.model.encoding import CategoryCodeEncoder
from leadscore.model.explain import (
    Concept,
    Reason,
    concept_sentence,
    concepts_for,
    points_from_contributions,
    rows_as_records,
    top_reasons,
)
from leadscore.model.linear import LinearScorer
from leadscore.model.transforms import ActivityFeatureTransform, ContractFeatureTransform, FeatureTransform
from leadscore.model.uncertainty import ScoreUncertainty

PROBABILITY_FLOOR = 1e-4  # isotonic steps can reach 0 or 1; no lead is ever certain


@dataclass(frozen=True)
class TierThresholds:
    """MQL/SQL thresholds on the calibrated probability, agreed by marketing and sales."""

    mql: float
    sql: float
    rule: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.mql <= self.sql <= 1.0:
            raise ValueError(f"need 0 <= mql ({self.mql}) <= sql ({self.sql}) <= 1")


@dataclass(frozen=True)
class GradeCutoffs:
    """Quartile cut-offs (log-odds) of the fit and engagement parts on the training data."""

    fit: tuple[float, float, float]
    engagement: tuple[float, float, float]


@dataclass(frozen=True)
class NextBestAction:
    """A rep action and what the model associates with it: an association in past data, not an effect."""

    action: str  # the activity type the rep's action leads to
    label: str  # the rep's action: "Call the lead"
    probability_after: float  # the model's probability for this lead with one more such activity now
    uplift: float  # probability_after - probability (association, not a causal effect)
    evidence: str = ""  # the association in words: "The model scores leads like this higher with ..."

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "label": self.label,
            "probability_after": round(self.probability_after, 4),
            "uplift": round(self.uplift, 4),
            "evidence": self.evidence,
            "kind": "association",
        }


#: What a rep does (catalogue ``rep_action`` of a sales touch: call, e-mail, meeting): the only
#: next-best-action candidates. Content downloads and webinar registrations are the lead's own acts,
#: so their what-if is not a rep's action.
REP_SIGNALS = tuple(s for s in SIGNALS if s.rep_controllable and s.family is Family.SALES)
ACTION_LABELS: dict[str, str] = {s.activity_type.value: str(s.rep_action) for s in REP_SIGNALS}
ACTIONABLE_TYPES: tuple[str, ...] = tuple(ACTION_LABELS)
#: The varied activity in words ("the model scores leads like this higher with one more ...").
ASSOCIATION_PHRASES: dict[str, str] = {
    "sales_call": "one more sales call",
    "sales_email": "one more personal sales e-mail",
    "sales_meeting": "one more sales meeting",
}
#: An action the lead had in this many days is "just done": not suggested again.
JUST_DONE_DAYS = 7
#: Actions associated with less than this many probability points are not suggested.
MATERIAL_UPLIFT = 0.01


@dataclass(frozen=True)
class LeadState:
    """Where a lead stands before any score, with a sentence for the rep."""

    status: LeadStatus
    note: str = ""


OPEN = LeadState(LeadStatus.OPEN)


def lead_states(
    *, leads: pd.DataFrame, as_of: pd.Series | pd.Timestamp, outcomes: pd.DataFrame | None = None
) -> list[LeadState]:
    """Each lead's state as of ``as_of``: converted (outcomes), disqualified, not yet created, or open.

    Disqualification is read from an optional ``disqualified_at`` column of ``leads``; conversion
    from ``outcomes.converted_at`` (or a ``converted_at`` column of ``leads``); creation from
    ``created_at``. Only what had happened at ``as_of`` counts.
    """
    n = len(leads)
    when = (
        pd.to_datetime(as_of).to_numpy(dtype="datetime64[us]")
        if isinstance(as_of, pd.Series)
        else np.full(n, pd.Timestamp(as_of).to_datetime64().astype("datetime64[us]"))
    )
    ids = leads["lead_id"].astype(str)

    def times(values: object) -> np.ndarray:
        return pd.to_datetime(pd.Series(values), errors="coerce").to_numpy(dtype="datetime64[us]")

    created = times(leads["created_at"].to_numpy())
    converted = (
        times(leads["converted_at"].to_numpy())
        if "converted_at" in leads
        else np.full(n, np.datetime64("NaT"))
    )
    if outcomes is not None and len(outcomes):
        by_lead = pd.Series(
            pd.to_datetime(outcomes["converted_at"]).to_numpy(), index=outcomes["lead_id"].astype(str)
        )
        by_lead = by_lead[~by_lead.index.duplicated(keep="first")]
        from_outcomes = by_lead.reindex(ids).to_numpy(dtype="datetime64[us]")
        converted = np.where(np.isnat(converted), from_outcomes, converted)
    disqualified = (
        times(leads["disqualified_at"].to_numpy())
        if "disqualified_at" in leads
        else np.full(n, np.datetime64("NaT"))
    )
    states: list[LeadState] = []
    for i in range(n):
        if created[i] > when[i]:
            states.append(
                LeadState(
                    LeadStatus.NOT_YET_CREATED,
                    f"Not created yet on {_day(when[i])} (created {_day(created[i])}): nothing to score.",
                )
            )
        elif converted[i] <= when[i]:
            states.append(
                LeadState(
                    LeadStatus.CONVERTED,
                    f"Converted to an opportunity on {_day(converted[i])}: "
                    "work the opportunity; no lead score.",
                )
            )
        elif disqualified[i] <= when[i]:
            states.append(
                LeadState(
                    LeadStatus.DISQUALIFIED,
                    f"Disqualified on {_day(disqualified[i])}: not scored. "
                    "Reopen it in the CRM to score it again.",
                )
            )
        else:
            states.append(OPEN)
    return states


def _day(value: np.datetime64) -> str:
    return str(np.datetime_as_string(value, unit="D"))


@dataclass
class LeadScoringModel:
    """A trained, calibrated, explainable lead-scoring model."""

    encoder: CategoryCodeEncoder
    booster: lgb.Booster | LinearScorer  # the learner the validation period picked (metadata["learner"])
    calibrator: IsotonicCalibrator | PlattCalibrator | IsotonicRegression  # the last: models saved earlier
    feature_names: tuple[str, ...]
    thresholds: TierThresholds
    grade_cutoffs: GradeCutoffs
    horizon_days: int | None  # None: the export declared no label horizon
    metadata: dict[str, object] = field(default_factory=dict)
    #: what the model reads: leadscore's contract, an event export or a flat export
    transform: FeatureTransform = field(default_factory=ContractFeatureTransform)
    uncertainty: ScoreUncertainty | None = None  # from the calibration set: per-lead intervals
    #: sales touches the export's opportunities had (None: the 5-10 rule of thumb), for the follow-up advice
    touch_cadence: TouchCadence | None = None
    #: the oldest lead age (days) the model learnt from: older leads get an age note and a wider range
    trained_lead_age_days: float | None = None
    #: mean grouped contribution (log-odds) per concept over the lead flow at the configured ages: reasons
    #: and grades are read against the average lead a rep meets, not the average training row (older-age
    #: snapshots of silent old leads would make "the lead is young" every young lead's reason)
    reason_baseline: np.ndarray | None = None
    #: the learned effect of following up a hand-raise (None: not learned), for the follow-up advice
    contact_effect: ContactEffect | None = None

    def __post_init__(self) -> None:
        self._prepare()

    def __setstate__(self, state: dict[str, object]) -> None:
        if "transform" not in state:  # models saved before the transform interface: a flag per kind
            flat, events = state.pop("flat", None), state.pop("events", None)
            state["transform"] = flat or events or ContractFeatureTransform()
        self.__dict__.update(state)
        self.__dict__.setdefault("uncertainty", None)  # models saved before it existed
        self.__dict__.setdefault("touch_cadence", None)
        self.__dict__.setdefault("trained_lead_age_days", None)
        self.__dict__.setdefault("reason_baseline", None)
        self.__dict__.setdefault("contact_effect", None)
        self._prepare()

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def _prepare(self) -> None:
        """Load-time work, kept off the request path."""
        own_sentence = self.transform.sentence  # the export's own concepts in its words
        self._sentence = lambda concept, row: own_sentence(concept, row) or concept_sentence(concept, row)
        self._concepts, self._grouping = concepts_for(self.feature_names, self.transform.catalogue)
        families = np.array([c.family for c in self._concepts])
        self._fit_concepts = families == Family.FIT
        self._context_concepts = families == Family.CONTEXT  # market conditions: no part of the grade
        self._engagement_concepts = ~self._fit_concepts & ~self._context_concepts
        self._hand_raise = total_count_name("demo_request") in self.feature_names

    @property
    def concepts(self) -> tuple[Concept, ...]:
        return self._concepts

    # --- scoring -------------------------------------------------------------------------------
    def encode(self, features: pd.DataFrame) -> pd.DataFrame:
        # the encoder is configured for pandas output; sklearn's set_output typing says "or ndarray"
        return cast(pd.DataFrame, self.encoder.transform(features.loc[:, list(self.feature_names)]))

    def raw_scores(self, features: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.booster.predict(self.encode(features), raw_score=True), dtype=np.float64)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        return np.clip(self.calibrator.predict(raw), PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)

    def predict_proba_features(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of an opportunity within the horizon, from feature rows."""
        return self.calibrate(self.raw_scores(features))

    def features(
        self, *, leads: pd.DataFrame, activities: pd.DataFrame, as_of: pd.Series | pd.Timestamp | None = None
    ) -> pd.DataFrame:
        """Feature rows for each lead as of ``as_of`` (default: now, UTC), from its activities."""
        if self.layout is InputLayout.FLAT_EXPORT:
            raise ValueError(
                f"this model scores rows of the flat export '{self.transform.name}': "
                "use features_from_records()"
            )
        reader = cast(ActivityFeatureTransform, self.transform)
        return reader.features(leads=leads, activities=activities, as_of=as_of)

    @property
    def layout(self) -> InputLayout:
        """What the model reads (its transform's layout)."""
        return self.transform.layout

    def require_native_layout(self, *, what: str) -> None:
        """Raise a ``ValueError`` naming the alternative when ``what`` needs leads in the native layout.

        Event-mapping models read the export's own column and activity names and flat models read
        export rows; tables with ``lead_id``/``created_at``/``activity_type`` would be misread.
        """
        if self.layout is InputLayout.EVENT_EXPORT:
            raise ValueError(
                f"{what} reads leads in leadscore's own layout (lead_id, created_at, activity_type), "
                f"but this model was trained on the event export '{self.transform.name}' with its "
                "own column and activity names: score its export records (lead columns with nested "
                "activities) with POST /score-records or the MLflow pyfunc (mlflow models predict/serve)"
            )
        if self.layout is InputLayout.FLAT_EXPORT:
            raise ValueError(
                f"{what} reads leads with activities, but this model was trained on the flat export "
                f"'{self.transform.name}': score its rows with POST /score-records or the MLflow pyfunc"
            )

    def features_from_records(self, records: pd.DataFrame) -> pd.DataFrame:
        """Feature rows for leads as a client sends them, one record per lead: the export's own rows
        (flat or event models, activities nested) or raw leads in leadscore's contract."""
        return self.transform.features_from_records(records)

    def contributions(self, features: pd.DataFrame) -> np.ndarray:
        """TreeSHAP contributions (log-odds) per feature, last column the expected value."""
        return np.asarray(self.booster.predict(self.encode(features), pred_contrib=True), dtype=np.float64)

    def score_features(
        self,
        features: pd.DataFrame,
        *,
        explain: bool = True,
        top_k: int = 5,
        states: list[LeadState] | None = None,
    ) -> list[dict[str, object]]:
        """Score feature rows: status, probability with its interval, 0-100 score, tier, grade, reasons.

        Leads that are not open (``states``: converted, disqualified; rows whose ``lead_age_days``
        is negative are not created yet) get their status and a note instead of a score.
        """
        states = self._states(features, states)
        open_rows = np.array([state.status is LeadStatus.OPEN for state in states], dtype=bool)
        scored = (
            self._score_open(features.loc[open_rows], explain=explain, top_k=top_k) if open_rows.any() else []
        )
        results: list[dict[str, object]] = []
        scored_iter = iter(scored)
        for i, state in enumerate(states):
            if state.status is LeadStatus.OPEN:
                results.append(next(scored_iter))
            else:
                results.append(self._unscored(features, i, state))
        return results

    def _states(self, features: pd.DataFrame, states: list[LeadState] | None) -> list[LeadState]:
        if states is not None:
            if len(states) != len(features):
                raise ValueError(f"{len(states)} lead states for {len(features)} feature rows")
            given = list(states)
        else:
            given = [OPEN] * len(features)
        if "lead_age_days" in features.columns:  # as_of before the lead existed: never scored
            age = features["lead_age_days"].to_numpy(dtype=float)
            for i in np.flatnonzero(age < 0):
                if given[i].status is LeadStatus.OPEN:
                    given[i] = LeadState(
                        LeadStatus.NOT_YET_CREATED,
                        f"Not created yet at this time (created {abs(float(age[i])):.0f} days later): "
                        "nothing to score.",
                    )
        return given

    @staticmethod
    def _unscored(features: pd.DataFrame, index: int, state: LeadState) -> dict[str, object]:
        return {
            "lead_id": str(features["lead_id"].iat[index]) if "lead_id" in features else None,
            "status": state.status.value,
            "status_note": state.note,
            "probability": None,
            "probability_low": None,
            "probability_high": None,
            "low_confidence": None,
            "score": None,
            "tier": None,
            "grade": None,
            "fit_points": None,
            "engagement_points": None,
            "context_points": None,
            "base_score": None,
            "reasons_positive": [],
            "reasons_negative": [],
            "follow_up": None,
            "age_note": None,
        }

    def _score_open(self, features: pd.DataFrame, *, explain: bool, top_k: int) -> list[dict[str, object]]:
        contributions = self.contributions(features) if explain else None
        raw = contributions.sum(axis=1) if contributions is not None else self.raw_scores(features)
        return self.results_from_raw(
            raw=raw,
            contributions=contributions,
            records=rows_as_records(features.loc[:, list(self.feature_names)]) if explain else None,
            column=_frame_column(features),
            contributions_of=lambda rows: self.contributions(features.iloc[rows]),
            lead_ids=(
                features["lead_id"].astype(str).tolist() if "lead_id" in features else [None] * len(features)
            ),
            top_k=top_k,
            contact=self.contact_advice(features),
        )

    def contact_advice(self, features: pd.DataFrame) -> Sequence[ContactAdvice | None]:
        """Per lead, the estimated effect of contacting it now where one applies (None elsewhere)."""
        return advice_for(self.contact_effect, features)

    def results_from_raw(
        self,
        *,
        raw: np.ndarray,
        contributions: np.ndarray | None,
        records: Sequence[Mapping[str, object]] | None,
        column: Callable[[str], np.ndarray | None],
        contributions_of: Callable[[np.ndarray], np.ndarray],
        lead_ids: Sequence[str | None],
        top_k: int,
        contact: Sequence[ContactAdvice | None] | None = None,
    ) -> list[dict[str, object]]:
        """Open leads' results from raw scores: probability, interval, tier, grade, points, reasons.

        Everything after the booster, on NumPy arrays, shared by :meth:`score_features` and the
        service's single-lead fast path so they cannot drift apart. ``contributions`` (with
        ``records``, the feature rows reasons read) when explained; ``column(name)`` a feature as
        floats (None when the model has none); ``contributions_of(rows)`` the contributions of some
        rows (the grades behind "not a fit" when not explained); ``contact`` the estimated effect of
        contacting each lead now (:meth:`contact_advice`; None: no estimate), read by the follow-up line.
        """
        n = len(raw)
        contact = contact if contact is not None else [None] * n
        probability = self.calibrate(raw)
        scores = 100.0 * probability
        if self.uncertainty is not None:
            bounds = self.uncertainty.intervals(raw=raw, probability=probability)
            low, high, thin = bounds.low, bounds.high, bounds.low_confidence
        else:  # models trained before intervals existed: say nothing rather than guess
            low = high = np.full(n, np.nan)
            thin = np.zeros(n, dtype=bool)
        beyond, low, thin = self._beyond_trained_ages(column("lead_age_days"), low=low, thin=thin)
        demo = column(total_count_name("demo_request")) if self._hand_raise else None
        hand_raised = demo > 0 if demo is not None else np.zeros(n, dtype=bool)
        sales_touches = column("sales_touches_total")
        touches = sales_touches if sales_touches is not None else np.full(n, np.nan)
        results: list[dict[str, object]] = []
        if contributions is not None:
            grouped, base_raw = self.grouped_contributions(contributions)
            fit_part = grouped[:, self._fit_concepts].sum(axis=1)
            engagement_part = grouped[:, self._engagement_concepts].sum(axis=1)
            base_score = 100.0 * float(self.calibrate(np.array([base_raw]))[0])
            slope = 100.0 * probability * (1.0 - probability)
            points = points_from_contributions(
                grouped=grouped, scores=scores, base_score=base_score, slope=slope
            )
            if records is None:
                raise ValueError("explained results need the feature rows (records)")
        else:
            fit_part = engagement_part = None
            # "not a fit" needs the grades: explain only the rows below the MQL threshold
            below = np.flatnonzero(probability < self.thresholds.mql)
            grades: dict[int, tuple[str, str]] = {}
            if len(below):
                partial, _ = self.grouped_contributions(contributions_of(below))
                fits = partial[:, self._fit_concepts].sum(axis=1)
                engagements = partial[:, self._engagement_concepts].sum(axis=1)
                for row, fit, engagement in zip(below, fits, engagements, strict=True):
                    grades[int(row)] = (self.fit_grade(float(fit)), self.engagement_grade(float(engagement)))
        for i in range(n):
            result: dict[str, object] = {
                "lead_id": lead_ids[i],
                "status": LeadStatus.OPEN.value,
                "status_note": "",
                "probability": float(probability[i]),
                # 4 decimals, rounded outwards: the range always contains the probability
                "probability_low": None if np.isnan(low[i]) else math.floor(float(low[i]) * 1e4) / 1e4,
                "probability_high": None if np.isnan(high[i]) else math.ceil(float(high[i]) * 1e4) / 1e4,
                "low_confidence": bool(thin[i]),
                "score": round(float(scores[i]), 1),
                "age_note": self._age_note(beyond[i]),
            }
            if fit_part is not None and engagement_part is not None and records is not None:
                fit_grade = self.fit_grade(float(fit_part[i]))
                engagement_grade = self.engagement_grade(float(engagement_part[i]))
                positive, negative = top_reasons(
                    concepts=self._concepts,
                    points_row=points[i],
                    feature_row=records[i],
                    top_positive=top_k,
                    top_negative=top_k,
                    sentence=self._sentence,
                )
                result.update(
                    tier=self.tier(
                        float(probability[i]),
                        fit_grade=fit_grade,
                        engagement_grade=engagement_grade,
                        hand_raised=bool(hand_raised[i]),
                    ).value,
                    grade=f"{fit_grade}{engagement_grade}",
                    fit_points=round(float(points[i, self._fit_concepts].sum()), 2),
                    engagement_points=round(float(points[i, self._engagement_concepts].sum()), 2),
                    context_points=round(float(points[i, self._context_concepts].sum()), 2),
                    base_score=round(base_score, 2),
                    reasons_positive=[r.as_dict() for r in positive],
                    reasons_negative=[r.as_dict() for r in negative],
                )
            else:
                grade_pair = grades.get(i)
                result.update(
                    tier=self.tier(
                        float(probability[i]),
                        fit_grade=grade_pair[0] if grade_pair else None,
                        engagement_grade=grade_pair[1] if grade_pair else None,
                        hand_raised=bool(hand_raised[i]),
                    ).value,
                    grade=None,
                    fit_points=None,
                    engagement_points=None,
                    context_points=None,
                    base_score=None,
                    reasons_positive=[],
                    reasons_negative=[],
                )
            result["follow_up"] = follow_up(
                tier=Tier(str(result["tier"])),
                sales_touches=float(touches[i]),
                cadence=self.touch_cadence,
                contact=contact[i],
            )
            results.append(result)
        return results

    def _beyond_trained_ages(
        self, age: np.ndarray | None, *, low: np.ndarray, thin: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Leads older than any the model learnt from: their range reaches down to 0, low confidence.

        The booster reads such a lead as if it were as old as the oldest training snapshot, so the
        probability cannot have learnt how much more it fell since; the range says so instead of
        guessing a number. Returns the age in days where beyond (NaN elsewhere), the range's low ends
        and the low-confidence flags.
        """
        oldest = self.trained_lead_age_days
        if oldest is None or age is None:
            return np.full(len(low), np.nan), low, thin
        age = np.asarray(age, dtype=float)
        beyond = age > oldest + 1.0  # NaN compares False
        if not beyond.any():
            return np.full(len(low), np.nan), low, thin
        low = np.where(beyond & ~np.isnan(low), 0.0, low)
        return np.where(beyond, age, np.nan), low, thin | beyond

    def _age_note(self, age: float) -> str | None:
        if age != age:  # NaN: within the trained ages
            return None
        return (
            f"{age:.0f} days old: older than any lead the model learnt from (oldest "
            f"{self.trained_lead_age_days:.0f} days), so it is scored as if it were that old and its "
            "range reaches down to 0%."
        )

    def grouped_contributions(self, contributions: np.ndarray) -> tuple[np.ndarray, float]:
        """Contributions grouped per concept and the base raw score they are measured from.

        Both are read against :attr:`reason_baseline` (the lead flow's average lead) when the model
        has one: each concept's mean is moved into the base, so the parts still add up to the raw score.
        """
        grouped = contributions[:, :-1] @ self._grouping
        base_raw = float(contributions[0, -1]) if len(contributions) else 0.0
        baseline = self.reason_baseline
        if baseline is not None:
            grouped = grouped - baseline
            base_raw += float(baseline.sum())
        return grouped, base_raw

    def lead_flow_baseline(self, features: pd.DataFrame) -> np.ndarray:
        """:attr:`reason_baseline` from feature rows of the lead flow (a sample of the training rows)."""
        return np.asarray(
            (self.contributions(features)[:, :-1] @ self._grouping).mean(axis=0), dtype=np.float64
        )

    def all_reasons(self, features: pd.DataFrame) -> list[list[Reason]]:
        """Every grouped contribution of each lead, strongest first."""
        return self.reasons_from_contributions(
            self.contributions(features), rows_as_records(features.loc[:, list(self.feature_names)])
        )

    def reasons_from_contributions(
        self, contributions: np.ndarray, records: Sequence[Mapping[str, object]]
    ) -> list[list[Reason]]:
        """Every grouped contribution of each row, strongest first (context concepts included)."""
        grouped, base_raw = self.grouped_contributions(contributions)
        probability = self.calibrate(contributions.sum(axis=1))
        base_score = 100.0 * float(self.calibrate(np.array([base_raw]))[0])
        points = points_from_contributions(
            grouped=grouped,
            scores=100.0 * probability,
            base_score=base_score,
            slope=100.0 * probability * (1.0 - probability),
        )
        out = []
        for i in range(len(contributions)):
            positive, negative = top_reasons(
                concepts=self._concepts,
                points_row=points[i],
                feature_row=records[i],
                top_positive=len(self._concepts),
                top_negative=len(self._concepts),
                min_abs_points=0.0,
                sentence=self._sentence,
                per_lead_only=False,
            )
            out.append(sorted(positive + negative, key=lambda r: -abs(r.impact)))
        return out

    def fit_grade(self, fit_part: float) -> str:
        """A (best fit) .. D from the fit part's training quartiles."""
        return "DCBA"[int(np.searchsorted(self.grade_cutoffs.fit, fit_part, side="right"))]

    def engagement_grade(self, engagement_part: float) -> str:
        """1 (most engaged) .. 4 from the engagement part's training quartiles."""
        return "4321"[int(np.searchsorted(self.grade_cutoffs.engagement, engagement_part, side="right"))]

    def tier(
        self,
        probability: float,
        *,
        fit_grade: str | None,
        engagement_grade: str | None = None,
        hand_raised: bool = False,
    ) -> Tier:
        """Sales-ready / MQL by probability; below MQL, fit grade D is "not a fit" only when not engaged.

        A lead outside the ideal profile that is highly engaged (engagement grade 1, or a demo
        request) is for a person to review, never dismissed as "not a fit".
        """
        if probability >= self.thresholds.sql:
            return Tier.SALES_READY
        if probability >= self.thresholds.mql:
            return Tier.MARKETING_QUALIFIED
        if fit_grade == "D":
            if engagement_grade == "1" or hand_raised:
                return Tier.REVIEW_OUTSIDE_PROFILE
            return Tier.NOT_A_FIT
        return Tier.NURTURE

    # --- what-if -------------------------------------------------------------------------------
    def next_best_actions(
        self,
        *,
        leads: pd.DataFrame,
        activities: pd.DataFrame,
        as_of: pd.Series | pd.Timestamp | None = None,
        states: list[LeadState] | None = None,
    ) -> list[list[NextBestAction]]:
        """For each open lead, the rep actions the model associates with a higher score, best first.

        Only rep-controllable activities (catalogue ``rep_action``: call, e-mail, meeting, send
        content, invite to a webinar) are varied, never what the lead must do (a demo request, a
        form fill) and never an action the lead had in the last ``JUST_DONE_DAYS`` days. The lead is
        re-scored through the same pipeline with one more such activity now: the difference is what
        the model associates with that activity ("the model scores leads like this higher with one
        more sales call"), not a measured effect of the rep's action. Actions below ``MATERIAL_UPLIFT`` are
        left out; leads that are not open get none.
        """
        if self.layout is InputLayout.FLAT_EXPORT:  # pre-aggregated exports have no activities to add
            return [[] for _ in range(len(leads))]
        when = pd.Timestamp.now(tz="UTC").tz_localize(None) if as_of is None else as_of
        states = states if states is not None else lead_states(leads=leads, as_of=when)
        as_of_values = (
            pd.to_datetime(when).to_numpy()
            if isinstance(when, pd.Series)
            else np.full(len(leads), np.datetime64(when))
        )
        # the pipeline counts events up to as_of's whole second: put the what-if event there
        as_of_values = as_of_values.astype("datetime64[s]").astype("datetime64[us]")
        current = self.features(leads=leads, activities=activities, as_of=when)
        base = self.predict_proba_features(current)
        lead_ids = leads["lead_id"].astype(str).to_numpy()
        variant_leads, variant_activities, variant_as_of = [], [], []
        for action in ACTIONABLE_TYPES:
            ids = np.char.add(lead_ids.astype(str), f"\x1f{action}")
            copy = leads.copy()
            copy["lead_id"] = ids
            variant_leads.append(copy)
            variant_as_of.append(as_of_values)
            original = activities[activities["lead_id"].astype(str).isin(set(lead_ids))].copy()
            original["lead_id"] = original["lead_id"].astype(str) + f"\x1f{action}"
            extra = pd.DataFrame({"lead_id": ids, "timestamp": as_of_values, "activity_type": action})
            variant_activities += [original, extra]
        after = self.predict_proba_features(
            self.features(
                leads=pd.concat(variant_leads, ignore_index=True),
                activities=pd.concat(variant_activities, ignore_index=True),
                as_of=pd.Series(np.concatenate(variant_as_of)),
            )
        ).reshape(len(ACTIONABLE_TYPES), len(leads))
        return self.actions_from_probabilities(
            base=base,
            after=after,
            column=_frame_column(current),
            open_leads=np.array([state.status is LeadStatus.OPEN for state in states], dtype=bool),
            contact=self.contact_advice(current),
        )

    def actions_from_probabilities(
        self,
        *,
        base: np.ndarray,
        after: np.ndarray,
        column: Callable[[str], np.ndarray | None],
        open_leads: np.ndarray,
        contact: Sequence[ContactAdvice | None] | None = None,
    ) -> list[list[NextBestAction]]:
        """The suggested actions of each lead from its probability now (``base``, shape n) and with
        one more of each ``ACTIONABLE_TYPES`` activity (``after``, shape actions x n).

        Leaves out leads that are not open, actions done in the last ``JUST_DONE_DAYS`` days
        (``column(name)`` reads the lead's current features) and uplifts below ``MATERIAL_UPLIFT``;
        shared by :meth:`next_best_actions` and the service's single-lead fast path. A sales action
        is suggested only where the follow-up line agrees (``contact``, :meth:`contact_advice`): never
        where contacting now is estimated to hurt, and below the SQL threshold only where it is
        estimated to help.
        """
        n = len(base)
        contact = contact if contact is not None else [None] * n
        recent = {}
        for action, signal in zip(ACTIONABLE_TYPES, REP_SIGNALS, strict=True):
            done = column(window_count_name(signal.name, JUST_DONE_DAYS))
            recent[action] = done > 0 if done is not None else np.zeros(n, dtype=bool)
        results: list[list[NextBestAction]] = []
        for i in range(n):
            advice = contact[i]
            verdict = advice.verdict if advice is not None else None
            advised = verdict is ContactVerdict.HELPS or (
                verdict is not ContactVerdict.HURTS and base[i] >= self.thresholds.sql
            )
            if not open_leads[i] or not advised:
                results.append([])
                continue
            actions = [
                NextBestAction(
                    action,
                    ACTION_LABELS[action],
                    float(after[j, i]),
                    float(after[j, i] - base[i]),
                    _association(signal.name, before=float(base[i]), after=float(after[j, i])),
                )
                for j, (action, signal) in enumerate(zip(ACTIONABLE_TYPES, REP_SIGNALS, strict=True))
                if not recent[action][i] and after[j, i] - base[i] >= MATERIAL_UPLIFT
            ]
            results.append(sorted(actions, key=lambda a: -a.uplift))
        return results


def _frame_column(frame: pd.DataFrame) -> Callable[[str], np.ndarray | None]:
    """A feature column of ``frame`` as floats, or None when the frame has no such column."""

    def column(name: str) -> np.ndarray | None:
        return frame[name].to_numpy(dtype=float) if name in frame.columns else None

    return column


def _association(signal: str, *, before: float, after: float) -> str:
    """The what-if in honest words: the model's score with one more of it, not an observed outcome."""
    more = ASSOCIATION_PHRASES.get(signal, f"one more {signal.replace('_', ' ')}")
    return (
        f"The model scores leads like this higher with {more}: {100 * after:.0f}% vs "
        f"{100 * before:.0f}% now (an association, not a measured effect)."
    )
