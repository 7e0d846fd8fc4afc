"""The deployable scoring model: feature transform + booster + calibration + explanation.

One object, pickled into the MLflow pyfunc, so training, batch scoring, ``mlflow models serve``
and the BentoML service all run the identical code path:
``compute_features`` -> ``CategoryCodeEncoder`` -> LightGBM -> isotonic calibration ->
TreeSHAP (LightGBM ``pred_contrib``) grouped into reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from leadscore.features.catalogue import FEATURE_CATALOGUE, SIGNALS, Family
from leadscore.features.contract import ActivityType
from leadscore.features.events import EventFeatureTransform
from leadscore.features.mapping import FlatFeatureTransform
from leadscore.features.pipeline import compute_features
from leadscore.features.vocabulary import Tier
from leadscore.training.cadence import follow_up
from leadscore.training.calibration import IsotonicCalibrator, PlattCalibrator
from leadscore.training.encoding import CategoryCodeEncoder
from leadscore.training.explain import (
    Concept,
    Reason,
    concept_sentence,
    concepts_for,
    points_from_contributions,
    rows_as_records,
    top_reasons,
)

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
    action: str  # activity type to cause
    label: str
    probability_after: float
    uplift: float  # probability points gained

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "label": self.label,
            "probability_after": round(self.probability_after, 4),
            "uplift": round(self.uplift, 4),
        }


ACTION_LABELS: dict[str, str] = {
    ActivityType.DEMO_REQUEST.value: "Offer a product demo",
    ActivityType.WEBINAR_REGISTERED.value: "Invite to a webinar",
    ActivityType.WEBINAR_ATTENDED.value: "Get the lead to attend a webinar",
    ActivityType.CONTENT_DOWNLOAD.value: "Send relevant content to download",
    ActivityType.SALES_CALL.value: "Call the lead",
    ActivityType.SALES_EMAIL.value: "Send a personal sales e-mail",
    ActivityType.SALES_MEETING.value: "Book a meeting",
}
ACTIONABLE_TYPES: tuple[str, ...] = tuple(
    dict.fromkeys(s.activity_type.value for s in SIGNALS if s.actionable)
)


@dataclass
class LeadScoringModel:
    """A trained, calibrated, explainable lead-scoring model."""

    encoder: CategoryCodeEncoder
    booster: lgb.Booster
    calibrator: IsotonicCalibrator | PlattCalibrator | IsotonicRegression  # the last: models saved earlier
    feature_names: tuple[str, ...]
    thresholds: TierThresholds
    grade_cutoffs: GradeCutoffs
    horizon_days: int
    metadata: dict[str, object] = field(default_factory=dict)
    flat: FlatFeatureTransform | None = None  # set for flat (pre-aggregated) exports
    events: EventFeatureTransform | None = None  # set for event-mapping exports (own names and types)

    def __post_init__(self) -> None:
        self._prepare()

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._prepare()

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def _prepare(self) -> None:
        """Load-time work, kept off the request path."""
        events = self.__dict__.get("events")  # models pickled before event mappings have none
        self.events = events
        own = self.flat if self.flat is not None else events
        catalogue = own.catalogue if own is not None else FEATURE_CATALOGUE
        self._sentence = own.sentence if own is not None else concept_sentence
        self._concepts, self._grouping = concepts_for(self.feature_names, catalogue)
        families = np.array([c.family for c in self._concepts])
        self._fit_concepts = families == Family.FIT
        self._engagement_concepts = ~self._fit_concepts

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
        """Feature rows for each lead as of ``as_of`` (default: now, UTC)."""
        if self.flat is not None:
            raise ValueError("this model scores flat export rows: use features_from_export()")
        if self.events is not None:  # the export's own column and activity names
            return self.events.features(leads=leads, activities=activities, as_of=as_of)
        when = pd.Timestamp.now(tz="UTC").tz_localize(None) if as_of is None else as_of
        snapshots = pd.DataFrame({"lead_id": leads["lead_id"].astype(str).to_numpy()})
        snapshots["as_of"] = when.to_numpy() if isinstance(when, pd.Series) else when
        return compute_features(leads=leads, activities=activities, snapshots=snapshots)

    def features_from_export(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Feature rows from a flat export's own rows (flat models only)."""
        if self.flat is None:
            raise ValueError("this model scores leads with activities: use features()")
        return self.flat.features(frame)

    def contributions(self, features: pd.DataFrame) -> np.ndarray:
        """TreeSHAP contributions (log-odds) per feature, last column the expected value."""
        return np.asarray(self.booster.predict(self.encode(features), pred_contrib=True), dtype=np.float64)

    def score_features(
        self, features: pd.DataFrame, *, explain: bool = True, top_k: int = 5
    ) -> list[dict[str, object]]:
        """Score feature rows: probability, 0-100 score, tier, grade and (optionally) top reasons."""
        if explain:
            contributions = self.contributions(features)
            raw = contributions.sum(axis=1)
        else:
            contributions = None
            raw = self.raw_scores(features)
        probability = self.calibrate(raw)
        scores = 100.0 * probability
        results: list[dict[str, object]] = []
        if contributions is not None:
            grouped = contributions[:, :-1] @ self._grouping
            fit_part = grouped[:, self._fit_concepts].sum(axis=1)
            engagement_part = grouped[:, self._engagement_concepts].sum(axis=1)
            base_raw = float(contributions[0, -1])
            base_score = 100.0 * float(self.calibrate(np.array([base_raw]))[0])
            slope = 100.0 * probability * (1.0 - probability)
            points = points_from_contributions(
                grouped=grouped, scores=scores, base_score=base_score, slope=slope
            )
            records = rows_as_records(features.loc[:, list(self.feature_names)])
        else:
            fit_part = engagement_part = None
            # "not a fit" needs the fit grade: explain only the rows below the MQL threshold
            below = np.flatnonzero(probability < self.thresholds.mql)
            fit_grades: dict[int, str] = {}
            if len(below):
                partial = self.contributions(features.iloc[below])[:, :-1] @ self._grouping
                for row, value in zip(below, partial[:, self._fit_concepts].sum(axis=1), strict=True):
                    fit_grades[int(row)] = self.fit_grade(float(value))
        touches = (
            features["sales_touches_total"].to_numpy(dtype=float)
            if "sales_touches_total" in features.columns
            else np.full(len(features), np.nan)
        )
        for i in range(len(features)):
            result: dict[str, object] = {
                "lead_id": str(features["lead_id"].iat[i]) if "lead_id" in features else None,
                "probability": float(probability[i]),
                "score": round(float(scores[i]), 1),
            }
            if contributions is not None and fit_part is not None and engagement_part is not None:
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
                    tier=self.tier(float(probability[i]), fit_grade=fit_grade).value,
                    grade=f"{fit_grade}{engagement_grade}",
                    fit_points=round(float(points[i, self._fit_concepts].sum()), 2),
                    engagement_points=round(float(points[i, self._engagement_concepts].sum()), 2),
                    base_score=round(base_score, 2),
                    reasons_positive=[r.as_dict() for r in positive],
                    reasons_negative=[r.as_dict() for r in negative],
                )
            else:
                result.update(
                    tier=self.tier(float(probability[i]), fit_grade=fit_grades.get(i)).value, grade=None
                )
            result["follow_up"] = follow_up(tier=Tier(str(result["tier"])), sales_touches=float(touches[i]))
            results.append(result)
        return results

    def all_reasons(self, features: pd.DataFrame) -> list[list[Reason]]:
        """Every grouped contribution of each lead, strongest first."""
        contributions = self.contributions(features)
        grouped = contributions[:, :-1] @ self._grouping
        probability = self.calibrate(contributions.sum(axis=1))
        base_score = 100.0 * float(self.calibrate(np.array([contributions[0, -1]]))[0])
        points = points_from_contributions(
            grouped=grouped,
            scores=100.0 * probability,
            base_score=base_score,
            slope=100.0 * probability * (1.0 - probability),
        )
        records = rows_as_records(features.loc[:, list(self.feature_names)])
        out = []
        for i in range(len(features)):
            positive, negative = top_reasons(
                concepts=self._concepts,
                points_row=points[i],
                feature_row=records[i],
                top_positive=len(self._concepts),
                top_negative=len(self._concepts),
                min_abs_points=0.0,
                sentence=self._sentence,
            )
            out.append(sorted(positive + negative, key=lambda r: -abs(r.impact)))
        return out

    def fit_grade(self, fit_part: float) -> str:
        """A (best fit) .. D from the fit part's training quartiles."""
        return "DCBA"[int(np.searchsorted(self.grade_cutoffs.fit, fit_part, side="right"))]

    def engagement_grade(self, engagement_part: float) -> str:
        """1 (most engaged) .. 4 from the engagement part's training quartiles."""
        return "4321"[int(np.searchsorted(self.grade_cutoffs.engagement, engagement_part, side="right"))]

    def tier(self, probability: float, *, fit_grade: str | None) -> Tier:
        if probability >= self.thresholds.sql:
            return Tier.SALES_READY
        if probability >= self.thresholds.mql:
            return Tier.MARKETING_QUALIFIED
        if fit_grade == "D":
            return Tier.NOT_A_FIT
        return Tier.NURTURE

    # --- what-if -------------------------------------------------------------------------------
    def next_best_actions(
        self, *, leads: pd.DataFrame, activities: pd.DataFrame, as_of: pd.Series | pd.Timestamp | None = None
    ) -> list[list[NextBestAction]]:
        """For each lead, actionable activities ranked by how much one more would raise its probability.

        Re-scores the lead through the same pipeline with one extra activity at ``as_of``; only
        engagement and sales actions a rep or marketer can cause are varied, never fit.
        """
        if self.flat is not None:  # pre-aggregated exports have no activities to add
            return [[] for _ in range(len(leads))]
        when = pd.Timestamp.now(tz="UTC").tz_localize(None) if as_of is None else as_of
        as_of_values = (
            pd.to_datetime(when).to_numpy()
            if isinstance(when, pd.Series)
            else np.full(len(leads), np.datetime64(when))
        )
        # the pipeline counts events up to as_of's whole second: put the what-if event there
        as_of_values = as_of_values.astype("datetime64[s]").astype("datetime64[us]")
        base = self.predict_proba_features(self.features(leads=leads, activities=activities, as_of=when))
        lead_ids = leads["lead_id"].astype(str).to_numpy()
        variant_leads, variant_activities, variant_as_of = [], [activities], []
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
        all_leads = pd.concat(variant_leads, ignore_index=True)
        all_activities = pd.concat([a for a in variant_activities[1:]], ignore_index=True)
        after = self.predict_proba_features(
            self.features(
                leads=all_leads, activities=all_activities, as_of=pd.Series(np.concatenate(variant_as_of))
            )
        ).reshape(len(ACTIONABLE_TYPES), len(leads))
        results = []
        for i in range(len(leads)):
            actions = [
                NextBestAction(
                    action, ACTION_LABELS[action], float(after[j, i]), float(after[j, i] - base[i])
                )
                for j, action in enumerate(ACTIONABLE_TYPES)
            ]
            results.append(sorted(actions, key=lambda a: -a.uplift))
        return results
