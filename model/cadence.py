"""Sales follow-up cadence: where a lead stands against the sales touches this business's leads need.

Reps tend to stop after one or two attempts, while leads that convert often needed five to ten
sales touches; and touching a lead that is not sales-ready wastes both sides' time. How many touches
is each business's own fact: training learns it from the export (:class:`TouchCadence`, see
``leadscore touches``) and the model carries it. ``follow_up`` turns a lead's tier and its sales
touches so far into one sentence a rep can act on. It is policy on top of the score, not part of it:
the probability never depends on this advice.

Whether contacting a lead *now* helps is estimated, not assumed (:class:`ContactEffect`, learned by
``training.contact`` from the export's hand-raises and whether sales followed them up). The advice
says "contact now" only where that estimate is positive with confidence, "hold off" where it is
negative with confidence, and "no evidence" otherwise; every tier gets a line consistent with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import lightgbm as lgb
import numpy as np
import pandas as pd

from leadscore.features.vocabulary import Tier
from leadscore.model.encoding import CategoryCodeEncoder

__all__ = [
    "RULE_OF_THUMB",
    "BandEffect",
    "ContactAdvice",
    "ContactEffect",
    "ContactVerdict",
    "TouchCadence",
    "follow_up",
]


@dataclass(frozen=True)
class TouchCadence:
    """How many sales touches leads that became opportunities had before converting.

    ``fewest``: at least 80% of them had this many or more; ``most``: at least 90% had this many or
    fewer. ``opportunities`` is how many touched opportunities it was learned from (0: not learned,
    the common 5-10 rule of thumb).
    """

    fewest: int
    most: int
    opportunities: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.fewest <= self.most:
            raise ValueError(f"need 0 <= fewest ({self.fewest}) <= most ({self.most})")

    @property
    def learned(self) -> bool:
        """True when read from this business's own opportunities rather than the rule of thumb."""
        return self.opportunities > 0

    @property
    def span(self) -> str:
        """The range as a rep reads it, e.g. ``4-9``."""
        return f"{self.fewest}-{self.most}" if self.fewest != self.most else str(self.most)

    def source_text(self) -> str:
        """Where the range comes from, in a few words."""
        if self.learned:
            return f"what {self.opportunities:,} past opportunities had"
        return "a common rule of thumb; this model had too few touched opportunities to learn its own"


#: Used when the export has no sales activity to learn from (or too few opportunities).
RULE_OF_THUMB = TouchCadence(fewest=5, most=10)


class ContactVerdict(StrEnum):
    """What the evidence says about contacting an uncontacted lead now."""

    HELPS = "helps"  # the band's effect interval lies above 0
    HURTS = "hurts"  # the band's effect interval lies below 0
    NO_EVIDENCE = "no_evidence"  # the interval holds 0


@dataclass(frozen=True)
class BandEffect:
    """The estimated effect of a follow-up on the conversion probability for one band of leads.

    ``estimate`` is the mean doubly robust pseudo-outcome of the band's past hand-raises, ``low`` /
    ``high`` its simultaneous 95% interval (Bonferroni over the bands), ``units`` how many.
    """

    estimate: float
    low: float
    high: float
    units: int

    @property
    def verdict(self) -> ContactVerdict:
        if self.low > 0:
            return ContactVerdict.HELPS
        if self.high < 0:
            return ContactVerdict.HURTS
        return ContactVerdict.NO_EVIDENCE

    def text(self) -> str:
        """``+2.1 points (95% CI -0.7 to +4.9)``."""
        return f"{100 * self.estimate:+.1f} points (95% CI {100 * self.low:+.1f} to {100 * self.high:+.1f})"


@dataclass(frozen=True)
class ContactAdvice:
    """The effect band an uncontacted, recently hand-raising lead falls in, with its verdict."""

    band: BandEffect
    follow_up_days: int
    learned_from: int  # hand-raises the effect was learned from

    @property
    def verdict(self) -> ContactVerdict:
        return self.band.verdict

    def evidence(self) -> str:
        return (
            f"leads like this that sales followed up within {self.follow_up_days} days of a hand-raise vs "
            f"not: {self.band.text()}, from {self.band.units:,} of {self.learned_from:,} past hand-raises"
        )


@dataclass(frozen=True)
class ContactEffect:
    """The learned effect of following up a hand-raise, in bands of the estimated per-lead effect.

    ``booster`` (with ``encoder``, on ``feature_names``) is the DR-learner's final stage: the
    estimated effect per lead, used only to place a lead in a band; ``cutoffs`` split the bands
    (ascending), each with its honestly estimated :class:`BandEffect`. It applies to a lead with no
    sales touch whose latest hand-raise (``hand_raise_columns``: days since it) is at most
    ``follow_up_days`` old: the decision the units measured.
    """

    encoder: CategoryCodeEncoder
    booster: lgb.Booster
    feature_names: tuple[str, ...]
    cutoffs: tuple[float, ...]
    bands: tuple[BandEffect, ...]
    hand_raise_columns: tuple[str, ...]
    follow_up_days: int
    units: int
    treated_share: float

    def __post_init__(self) -> None:
        if len(self.bands) != len(self.cutoffs) + 1:
            raise ValueError(
                f"{len(self.bands)} bands need {len(self.bands) - 1} cutoffs, not {len(self.cutoffs)}"
            )

    def applies(self, features: pd.DataFrame) -> np.ndarray:
        """Leads with no sales touch and a hand-raise in the last ``follow_up_days`` days."""
        n = len(features)
        touches = (
            features["sales_touches_total"].to_numpy(dtype=float)
            if "sales_touches_total" in features
            else np.full(n, np.nan)
        )
        recent = np.zeros(n, dtype=bool)
        for name in self.hand_raise_columns:
            if name in features:
                days = features[name].to_numpy(dtype=float)
                recent |= days <= self.follow_up_days  # NaN (never) compares False
        return recent & (np.nan_to_num(touches, nan=0.0) == 0)

    def row_applies(self, row: Mapping[str, object]) -> bool:
        """:meth:`applies` for one feature row (the single-lead fast path: no frame for leads it skips)."""
        touches = row.get("sales_touches_total")
        if touches is not None and touches == touches and float(touches) != 0:  # type: ignore[arg-type]
            return False
        for name in self.hand_raise_columns:
            days = row.get(name)
            if days is not None and days == days and float(days) <= self.follow_up_days:  # type: ignore[arg-type]
                return True
        return False

    def estimated_effect(self, features: pd.DataFrame) -> np.ndarray:
        """The final stage's estimated effect per lead (only its band is shown: it is noisy alone)."""
        encoded = self.encoder.transform(features.loc[:, list(self.feature_names)])
        return np.asarray(self.booster.predict(encoded), dtype=np.float64)

    def advice(self, features: pd.DataFrame) -> list[ContactAdvice | None]:
        """Each lead's band and verdict where the effect applies (None elsewhere)."""
        applies = self.applies(features)
        out: list[ContactAdvice | None] = [None] * len(features)
        if not applies.any():
            return out
        rows = np.flatnonzero(applies)
        band = np.searchsorted(
            np.asarray(self.cutoffs), self.estimated_effect(features.iloc[rows]), side="right"
        )
        for row, b in zip(rows, band, strict=True):
            out[int(row)] = ContactAdvice(self.bands[int(b)], self.follow_up_days, self.units)
        return out

    def summary(self) -> str:
        """The bands in one line, for the model card and the CLI."""
        parts = "; ".join(
            f"band {i + 1}: {b.text()}, {b.units:,} hand-raises, {b.verdict.value.replace('_', ' ')}"
            for i, b in enumerate(self.bands)
        )
        return (
            f"follow-up within {self.follow_up_days} days of a hand-raise, learned from {self.units:,} "
            f"hand-raises ({100 * self.treated_share:.0f}% followed up): {parts}"
        )


def advice_for(effect: ContactEffect | None, features: pd.DataFrame) -> Sequence[ContactAdvice | None]:
    """:meth:`ContactEffect.advice`, or no advice for every lead when the model has no effect."""
    return [None] * len(features) if effect is None else effect.advice(features)


#: why a lead gets no effect estimate, in words a rep reads
_NO_ESTIMATE = (
    "no estimate of whether contacting now helps (it has no hand-raise in the last days, or the export "
    "had too few followed-up hand-raises to learn from)"
)


def follow_up(
    *,
    tier: Tier,
    sales_touches: float | None,
    cadence: TouchCadence | None = None,
    contact: ContactAdvice | None = None,
) -> str | None:
    """What the rep should do next about contacting the lead, or None when there is nothing to say.

    ``sales_touches`` is the lead's sales calls, e-mails and meetings so far (None when the export
    has no sales activity, e.g. a flat export): no advice then. ``cadence`` is the model's learned
    range (None: the 5-10 rule of thumb). ``contact`` is the estimated effect of contacting an
    uncontacted lead now (None: no estimate applies): "contact now" only where it is positive with
    confidence, never where it is negative.
    """
    if sales_touches is None or sales_touches != sales_touches:  # None or NaN
        return None
    cadence = cadence or RULE_OF_THUMB
    touches = int(sales_touches)
    if touches == 0:
        return _first_contact(tier, contact)
    so_far = f"{touches} touch" if touches == 1 else f"{touches} touches"
    usual = (
        f"opportunities that sales contacted usually had {cadence.span} touches before converting"
        if cadence.learned
        else f"a common rule of thumb: {cadence.span} touches"
    )
    if tier is Tier.SALES_READY:
        if touches < cadence.fewest:
            return f"{so_far} so far, fewer than usual: keep following up ({usual})."
        if touches <= cadence.most:
            vary = "keep following up and vary the channel (call, e-mail, meeting)"
            return f"{so_far}, within the usual {cadence.span}: {vary}."
        return f"{so_far}, past the usual {cadence.span}: ask for a decision."
    # Handing back needs more than the range: it says when converters had converted, not that more
    # touches stop working, so never sooner than the rule of thumb's 10.
    if touches >= max(cadence.most, RULE_OF_THUMB.most):
        return f"{so_far} and not sales-ready: hand back to marketing nurture rather than call again."
    return (
        f"{so_far} and not sales-ready: keep nurturing; call again when it is sales-ready or asks for a call."
    )


def _first_contact(tier: Tier, contact: ContactAdvice | None) -> str:
    """The line for a lead nobody has contacted yet, consistent with its tier and the evidence."""
    if contact is not None and contact.verdict is ContactVerdict.HURTS:
        return (
            "Hold off contacting: early contact is estimated to put leads like this off "
            f"({contact.evidence()}); "
            "keep nurturing until it asks for more."
        )
    if contact is not None and contact.verdict is ContactVerdict.HELPS:
        if tier is Tier.SALES_READY:
            helped = f"following up is estimated to help ({contact.evidence()})"
            return f"Sales-ready and not contacted yet: reach out now; {helped}."
        return (
            "Not sales-ready, but following up a fresh hand-raise is estimated to help leads like this: "
            f"a short call is worth it ({contact.evidence()})."
        )
    why = f"no evidence that contacting now helps ({contact.evidence()})" if contact else _NO_ESTIMATE
    if tier is Tier.SALES_READY:
        return (
            f"Sales-ready and not contacted yet; {why}. Its score is the reason to prioritise it, not a "
            "measured effect of a call."
        )
    if tier is Tier.MARKETING_QUALIFIED:
        return f"Marketing-qualified, not contacted: keep nurturing until it is sales-ready; {why}."
    if tier is Tier.REVIEW_OUTSIDE_PROFILE:
        return f"Outside the ideal profile but engaged: have a person review it before any call; {why}."
    if tier is Tier.NOT_A_FIT:
        return "Not a fit: no sales follow-up."
    return f"Keep nurturing: not sales-ready, no sales contact yet; {why}."
