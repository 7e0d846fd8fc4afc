"""Sales follow-up cadence: where a lead stands against the sales touches this business's leads need.

Reps tend to stop after one or two attempts, while leads that convert often needed five to ten
sales touches; and touching a lead that is not sales-ready wastes both sides' time. How many touches
is each business's own fact: training learns it from the export (:class:`TouchCadence`, see
``leadscore touches``) and the model carries it. ``follow_up`` turns a lead's tier and its sales
touches so far into one sentence a rep can act on. It is policy on top of the score, not part of it:
the probability never depends on this advice.
"""

from __future__ import annotations

from dataclasses import dataclass

from leadscore.features.vocabulary import Tier

__all__ = ["RULE_OF_THUMB", "TouchCadence", "follow_up"]


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


def follow_up(*, tier: Tier, sales_touches: float | None, cadence: TouchCadence | None = None) -> str | None:
    """What the rep should do next about contacting the lead, or None when there is nothing to say.

    ``sales_touches`` is the lead's sales calls, e-mails and meetings so far (None when the export
    has no sales activity, e.g. a flat export): no advice then. ``cadence`` is the model's learned
    range (None: the 5-10 rule of thumb).
    """
    if sales_touches is None or sales_touches != sales_touches:  # None or NaN
        return None
    cadence = cadence or RULE_OF_THUMB
    touches = int(sales_touches)
    so_far = f"{touches} touch" if touches == 1 else f"{touches} touches"
    usual = (
        f"opportunities that sales contacted usually had {cadence.span} touches before converting"
        if cadence.learned
        else f"a common rule of thumb: {cadence.span} touches"
    )
    if tier is Tier.SALES_READY:
        if touches == 0:
            return f"Sales-ready and not contacted yet: reach out today ({usual})."
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
    return None
