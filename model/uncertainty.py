"""How sure a probability is: a per-lead interval and a "low confidence" flag from the calibration set.

A calibrated probability says "leads scored like this one become an opportunity X% of the time".
How well the data backs that depends on how many calibration leads were scored like it. Fed by the
calibration set (the booster's raw scores and the labels), whatever calibrator produced the
probability, :class:`ScoreUncertainty` gives each lead:

* an interval (default 90%) for the conversion rate of the ``neighbours`` calibration leads whose
  raw scores are nearest to the lead's, as many on each side (a Jeffreys binomial interval; fewer
  leads, hence a wider range, at the ends of the score range), widened to contain the calibrated
  probability itself so a card never shows a number outside its own range;
* ``support``: calibration leads within ``support_width`` log-odds of the lead's raw score;
* ``low_confidence``: thin support (fewer than ``min_support`` such leads, or a raw score outside
  the calibration range unless ``flag_outside_range`` is off), or a calibrated probability the
  neighbours' interval does not back.

Leads are counted unweighted even when the calibrator is recency weighted: a weighted count would
need an effective sample size per window, and an interval must not claim more leads than were
seen. A recency-weighted probability that the plain neighbour rate does not back is flagged, which
is what a rep should hear when the export drifts.

The claim is about leads scored like this one, not about this lead's own latent chance: no model
can observe that.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

__all__ = ["ScoreIntervals", "ScoreUncertainty"]

#: The smallest window on each side of a lead's raw score (at the very top or bottom of the scores).
MIN_HALF_WINDOW = 10


@dataclass(frozen=True)
class ScoreIntervals:
    """Per-lead intervals, aligned with the scored rows."""

    low: np.ndarray
    high: np.ndarray
    support: np.ndarray
    low_confidence: np.ndarray


@dataclass(frozen=True)
class ScoreUncertainty:
    """Local binomial intervals over the calibration set's raw scores (see the module docstring)."""

    raw_sorted: np.ndarray  # calibration raw scores, ascending (float32)
    cum_positives: np.ndarray  # cum_positives[i] = positives among raw_sorted[:i] (length n + 1)
    neighbours: int
    level: float = 0.9
    min_support: int = 100
    support_width: float = 0.25
    flag_outside_range: bool = True
    """Whether a raw score outside the calibration range is low confidence on that ground alone."""
    shift: float = 0.0
    """Subtracted from a lead's raw score before the look-up (see :meth:`shifted`)."""

    @classmethod
    def fit(
        cls,
        *,
        raw: np.ndarray,
        y: np.ndarray,
        neighbours: int | None = None,
        level: float = 0.9,
        min_support: int = 100,
        support_width: float = 0.25,
    ) -> ScoreUncertainty:
        """From the calibration set's raw scores and 0/1 labels (NaN scores are dropped)."""
        raw = np.asarray(raw, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        if raw.shape != y.shape:
            raise ValueError(f"raw ({raw.shape}) and y ({y.shape}) must have the same shape")
        keep = np.isfinite(raw)
        raw, y = raw[keep], y[keep]
        if len(raw) == 0:
            raise ValueError("the calibration set is empty: cannot estimate score uncertainty")
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        order = np.argsort(raw, kind="stable")
        n = len(raw)
        k = neighbours or int(np.clip(round(2.0 * np.sqrt(n)), 100, 2000))
        cum = np.concatenate([[0], np.cumsum(y[order])]).astype(np.int64)
        return cls(
            raw_sorted=raw[order].astype(np.float32),
            cum_positives=cum,
            neighbours=min(k, n),
            level=level,
            min_support=min_support,
            support_width=support_width,
        )

    @property
    def size(self) -> int:
        return len(self.raw_sorted)

    def shifted(self, shift: float) -> ScoreUncertainty:
        """The same intervals read in a raw-score domain ``shift`` higher: ``shifted(s).intervals(raw=r)``
        is ``intervals(raw=r - s)``.

        The refit path calibrates raw scores taken relative to each booster's prior log-odds
        (``PriorShiftedCalibrator``) while the deployed model hands over its booster's own raw score.
        There a raw score outside the calibration range is not low confidence by itself: the
        calibration set holds cross-fitted scores of boosters fitted on fewer rows and rounds, whose
        range is narrower than the deployed booster's, so the range edge says little; thin support
        and an unbacked probability still flag a lead.
        """
        return dataclasses.replace(self, shift=self.shift + shift, flag_outside_range=False)

    def intervals(self, *, raw: np.ndarray, probability: np.ndarray) -> ScoreIntervals:
        """Interval, support and low-confidence flag of each lead (raw score and calibrated probability)."""
        raw = np.asarray(raw, dtype=np.float64) - self.shift
        probability = np.asarray(probability, dtype=np.float64)
        n, k = self.size, self.neighbours
        sorted_raw = self.raw_sorted.astype(np.float64)
        position = np.searchsorted(sorted_raw, raw)
        # a window centred on the lead: near the ends it shrinks (and the range widens) rather than
        # leaning on leads scored lower (or higher) than this one
        half = np.minimum(k // 2, np.minimum(position, n - position))
        half = np.maximum(half, min(MIN_HALF_WINDOW, n // 2))
        start = np.clip(position - half, 0, n)
        stop = np.clip(position + half, 0, n)
        size = (stop - start).astype(np.float64)
        positives = (self.cum_positives[stop] - self.cum_positives[start]).astype(np.float64)
        tail = (1.0 - self.level) / 2.0
        low = np.where(positives > 0, beta.ppf(tail, positives + 0.5, size - positives + 0.5), 0.0)
        high = np.where(positives < size, beta.ppf(1.0 - tail, positives + 0.5, size - positives + 0.5), 1.0)
        support = np.searchsorted(sorted_raw, raw + self.support_width, side="right") - np.searchsorted(
            sorted_raw, raw - self.support_width, side="left"
        )
        outside_range = ((raw < sorted_raw[0]) | (raw > sorted_raw[-1])) & self.flag_outside_range
        unbacked = (probability < low) | (probability > high)
        return ScoreIntervals(
            low=np.minimum(low, probability),
            high=np.maximum(high, probability),
            support=support.astype(np.int64),
            low_confidence=(support < self.min_support) | outside_range | unbacked,
        )
