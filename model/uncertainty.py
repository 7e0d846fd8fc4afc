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

When the calibration set spans several time blocks (the refit path's out-of-time cross-fitting),
the range also carries how much the rate of leads scored alike moved from one period to the next:
each block's offset (in log-odds) from the pooled rates is estimated, the between-block spread
beyond sampling noise (``period_spread``, a DerSimonian-Laird random-effects estimate) is added in
quadrature to each range's half-widths. A range then speaks for the next period, not only for the
calibration period's sampling noise.

The claim is about leads scored like this one, not about this lead's own latent chance: no model
can observe that.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
from scipy.special import betaincinv, ndtri
from scipy.special import expit as _expit
from scipy.special import logit as _raw_logit

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
    period_spread: float = 0.0
    """Between-period standard deviation (log-odds) of the rate of leads scored alike (0: one period)."""
    anchor_logit: float = 0.0
    """Added to each bound's log-odds: the calibration's shift to the newest period (see :meth:`anchored`)."""

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
        blocks: np.ndarray | None = None,
        weights: np.ndarray | None = None,
    ) -> ScoreUncertainty:
        """From the calibration set's raw scores and 0/1 labels (NaN scores are dropped); ``blocks``
        (a time-block id per row, optional) adds the between-period spread to every range, with
        ``weights`` the evidence each row carries (1 / its lead's snapshots)."""
        raw = np.asarray(raw, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        if raw.shape != y.shape:
            raise ValueError(f"raw ({raw.shape}) and y ({y.shape}) must have the same shape")
        keep = np.isfinite(raw)
        raw, y = raw[keep], y[keep]
        block_ids = None if blocks is None else np.asarray(blocks)[keep]
        row_weights = None if weights is None else np.asarray(weights, dtype=np.float64)[keep]
        if len(raw) == 0:
            raise ValueError("the calibration set is empty: cannot estimate score uncertainty")
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        order = np.argsort(raw, kind="stable")
        n = len(raw)
        k = neighbours or int(np.clip(round(2.0 * np.sqrt(n)), 100, 2000))
        cum = np.concatenate([[0], np.cumsum(y[order])]).astype(np.int64)
        pooled = cls(
            raw_sorted=raw[order].astype(np.float32),
            cum_positives=cum,
            neighbours=min(k, n),
            level=level,
            min_support=min_support,
            support_width=support_width,
        )
        if block_ids is None or len(np.unique(block_ids)) < 2:
            return pooled
        spread = between_period_spread(
            rate=pooled.neighbour_rate(raw), y=y, blocks=block_ids, weights=row_weights
        )
        return dataclasses.replace(pooled, period_spread=spread)

    def neighbour_rate(self, raw: np.ndarray) -> np.ndarray:
        """The conversion rate of the calibration leads nearest to each raw score (the range's centre)."""
        size, positives = self._window(np.asarray(raw, dtype=np.float64))
        return positives / np.maximum(size, 1.0)

    @functools.cached_property
    def _sorted64(self) -> np.ndarray:
        """``raw_sorted`` as float64, converted once (a search casts the whole array otherwise)."""
        return self.raw_sorted.astype(np.float64)

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "_sorted64"}  # derived: not pickled

    def _window(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, k = self.size, self.neighbours
        position = np.searchsorted(self._sorted64, raw)
        # a window centred on the lead: near the ends it shrinks (and the range widens) rather than
        # leaning on leads scored lower (or higher) than this one
        half = np.minimum(k // 2, np.minimum(position, n - position))
        half = np.maximum(half, min(MIN_HALF_WINDOW, n // 2))
        start = np.clip(position - half, 0, n)
        stop = np.clip(position + half, 0, n)
        size = (stop - start).astype(np.float64)
        positives = (self.cum_positives[stop] - self.cum_positives[start]).astype(np.float64)
        return size, positives

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

    def anchored(self, shift: float) -> ScoreUncertainty:
        """The same intervals moved by ``shift`` in log-odds, as the probabilities they bracket are
        (``PriorShiftedCalibrator.anchor_logit``)."""
        if shift == 0.0:
            return self
        return dataclasses.replace(self, anchor_logit=float(getattr(self, "anchor_logit", 0.0)) + shift)

    def intervals(self, *, raw: np.ndarray, probability: np.ndarray) -> ScoreIntervals:
        """Interval, support and low-confidence flag of each lead (raw score and calibrated probability)."""
        raw = np.asarray(raw, dtype=np.float64) - self.shift
        probability = np.asarray(probability, dtype=np.float64)
        sorted_raw = self._sorted64
        size, positives = self._window(raw)
        tail = (1.0 - self.level) / 2.0
        # Jeffreys interval: quantiles of Beta(positives + 1/2, others + 1/2) (``betaincinv`` is what
        # scipy.stats.beta.ppf computes, without its per-call argument checks: ~0.15 ms a call)
        a, b = positives + 0.5, size - positives + 0.5
        low = np.where(positives > 0, betaincinv(a, b, tail), 0.0)
        high = np.where(positives < size, betaincinv(a, b, 1.0 - tail), 1.0)
        spread = float(getattr(self, "period_spread", 0.0))  # models saved before it: 0
        if spread > 0:  # the next period's rate moves too: add it to each half-width, in log-odds
            centre = _logit(np.clip(positives / np.maximum(size, 1.0), 1e-6, 1 - 1e-6))
            extra = (ndtri(1.0 - tail) * spread) ** 2  # the normal quantile
            low = np.where(low > 0, _expit(centre - np.sqrt((centre - _logit(low)) ** 2 + extra)), 0.0)
            high = np.where(high < 1, _expit(centre + np.sqrt((_logit(high) - centre) ** 2 + extra)), 1.0)
        anchor = float(getattr(self, "anchor_logit", 0.0))  # models saved before it: 0
        if anchor != 0.0:
            low = np.where(low > 0, _expit(_logit(low) + anchor), 0.0)
            high = np.where(high < 1, _expit(_logit(high) + anchor), 1.0)
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


def _logit(p: np.ndarray) -> np.ndarray:
    return np.asarray(_raw_logit(np.clip(p, 1e-12, 1 - 1e-12)), dtype=np.float64)


#: Offsets beyond this many log-odds are not estimated (a block that far off says "refit", not "widen").
MAX_PERIOD_OFFSET = 5.0


def between_period_spread(
    *, rate: np.ndarray, y: np.ndarray, blocks: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """How far (standard deviation, log-odds) each period's conversion moved from the pooled rates of
    leads scored alike, beyond what its sample size explains (DerSimonian-Laird; 0 when it did not).

    ``rate`` is each row's pooled expected rate, ``y`` its label, ``blocks`` its period id and
    ``weights`` how much independent evidence the row is (1 / the lead's snapshots: a lead's
    snapshots share one outcome). Each period's offset solves the weighted
    sum(expit(logit(rate) + offset)) = its weighted positives, by bisection within
    +-``MAX_PERIOD_OFFSET``; periods whose offset would lie beyond that are left out.
    """
    base = _logit(np.clip(rate, 1e-4, 1 - 1e-4))
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    offsets, variances = [], []
    for block in np.unique(blocks):
        mine = blocks == block
        target = float((w[mine] * y[mine]).sum())

        def excess(offset: float, mine: np.ndarray = mine, target: float = target) -> float:
            return float((w[mine] * _expit(base[mine] + offset)).sum()) - target

        low, high = -MAX_PERIOD_OFFSET, MAX_PERIOD_OFFSET
        if not excess(low) < 0 < excess(high):
            continue  # no positives, no negatives, or further off than an interval should stretch
        for _ in range(60):  # the weighted expected count rises with the offset: bisect
            middle = (low + high) / 2
            low, high = (middle, high) if excess(middle) < 0 else (low, middle)
        offset = (low + high) / 2
        p = _expit(base[mine] + offset)
        offsets.append(offset)
        variances.append(1.0 / max(float((w[mine] * p * (1 - p)).sum()), 1e-9))
    if len(offsets) < 2:
        return 0.0
    delta, weights = np.asarray(offsets), 1.0 / np.asarray(variances)
    mean = float((weights * delta).sum() / weights.sum())
    q = float((weights * (delta - mean) ** 2).sum())
    scale = float(weights.sum() - (weights**2).sum() / weights.sum())
    tau_squared = max(0.0, (q - (len(delta) - 1)) / scale) if scale > 0 else 0.0
    return float(np.sqrt(tau_squared))
