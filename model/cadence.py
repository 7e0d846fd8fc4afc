"""Sales follow-up cadence: where a lead stands against the 5-10 touches leads usually need.

Reps tend to stop after one or two attempts, while most leads that convert need five to ten sales
touches; and touching a lead that is not sales-ready wastes both sides' time. ``follow_up`` turns a
lead's tier and its sales touches so far into one sentence a rep can act on. It is policy on top of
the score, not part of it: the probability never depends on this advice.
"""

from __future__ import annotations

from leadscore.features.vocabulary import Tier

__all__ = ["USUAL_TOUCHES_MAX", "USUAL_TOUCHES_MIN", "follow_up"]

#: The usual number of sales touches before a lead converts (or is let go).
USUAL_TOUCHES_MIN = 5
USUAL_TOUCHES_MAX = 10


def follow_up(*, tier: Tier, sales_touches: float | None) -> str | None:
    """What the rep should do next about contacting the lead, or None when there is nothing to say.

    ``sales_touches`` is the lead's sales calls, e-mails and meetings so far (None when the export
    has no sales activity, e.g. a flat export): no advice then.
    """
    if sales_touches is None or sales_touches != sales_touches:  # None or NaN
        return None
    touches = int(sales_touches)
    usual = f"{USUAL_TOUCHES_MIN}-{USUAL_TOUCHES_MAX}"
    if tier is Tier.SALES_READY:
        if touches == 0:
            return f"Sales-ready and not contacted yet: reach out today (leads usually need {usual} touches)."
        if touches < USUAL_TOUCHES_MIN:
            return f"{touches} of the usual {usual} touches so far: keep following up."
        if touches <= USUAL_TOUCHES_MAX:
            return f"{touches} touches, within the usual {usual}: vary the channel (call, e-mail, meeting)."
        return f"{touches} touches, past the usual {usual}: ask for a decision."
    if touches >= USUAL_TOUCHES_MAX:
        return (
            f"{touches} touches and not sales-ready: hand back to marketing nurture rather than call again."
        )
    return None
