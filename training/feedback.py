"""When reps were right and when the model was: rep feedback read against outcomes once they mature.

A rep's verdict (``POST /feedback``: agree / disagree with a reason code) refers to one stored score.
The model's claim is its tier then: marketing-qualified or sales-ready says "worth sales' time", anything
lower "not yet". Agreeing takes the same side; disagreeing the other. Once the horizon after the score
has passed (or the lead converted within it), the outcome says who was right. Per verdict and reason:
how many, how many matured, the share that became opportunities (95% Wilson interval) beside the model's
mean probability, and, for disagreements, the share where the rep was right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.training.channels import wilson_interval

__all__ = ["WORTH_SALES_TIME", "FeedbackReport", "feedback_report"]

#: the tiers that say a lead is worth sales' time
WORTH_SALES_TIME = frozenset({"sales_ready", "marketing_qualified"})


@dataclass(frozen=True)
class FeedbackReport:
    """One row per verdict and reason (and the totals), and the notes a reader needs."""

    table: pd.DataFrame
    notes: tuple[str, ...]

    def markdown(self) -> str:
        lines = ["# Rep feedback against outcomes", "", *[f"- {note}" for note in self.notes], ""]
        columns = ["verdict", "reason", "feedback", "matured", "converted", "rate", "rate_low", "rate_high"]
        columns += ["model_probability", "rep_right", "rep_right_low", "rep_right_high"]
        shown = self.table[columns]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for row in shown.itertuples(index=False):
            cells = [
                f"{v:.3f}" if isinstance(v, float) and v == v else ("" if v != v else str(v)) for v in row
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def feedback_report(
    feedback: pd.DataFrame, *, ledger: pd.DataFrame, until: pd.Timestamp, horizon_days: int
) -> FeedbackReport:
    """Read each verdict against the lead's outcome within ``horizon_days`` of the score it refers to.

    ``feedback`` is :meth:`~leadscore.ledger.store.Ledger.feedback_frame`; ``ledger`` the lead ledger
    (``lead_id``, ``converted_at``); ``until`` the export's last date.
    """
    if feedback.empty:
        raise ValueError("the score ledger holds no rep feedback yet (POST /feedback)")
    converted = pd.to_datetime(ledger["converted_at"]).groupby(ledger["lead_id"].astype(str)).min()
    rows = feedback.copy()
    rows["lead_id"] = rows["lead_id"].astype(str)
    at = pd.to_datetime(rows["score_as_of"])
    end = at + pd.Timedelta(days=horizon_days)
    when = rows["lead_id"].map(converted)
    became = when.notna() & (when > at) & (when <= end)
    already = when.notna() & (when <= at)
    rows["known"] = (became | (end <= until)) & ~already & rows["lead_id"].isin(converted.index)
    rows["converted"] = became
    model_says_worth = rows["tier"].isin(WORTH_SALES_TIME)
    rep_says_worth = np.where(rows["verdict"] == "agree", model_says_worth, ~model_says_worth)
    rows["rep_right"] = rep_says_worth == rows["converted"]
    rows["model_right"] = model_says_worth == rows["converted"]
    parts = []
    for keys, part in rows.groupby(["verdict", "reason"], sort=True):
        parts.append(_row(part, verdict=str(keys[0]), reason=str(keys[1])))
    for verdict, part in rows.groupby("verdict", sort=True):
        parts.append(_row(part, verdict=str(verdict), reason="(all)"))
    parts.append(_row(rows, verdict="(all)", reason="(all)"))
    table = pd.DataFrame(parts)
    outside = int((~rows["lead_id"].isin(converted.index)).sum())
    waiting = int((~rows["known"]).sum()) - outside
    notes = [
        f"{len(rows):,} verdicts on {rows['lead_id'].nunique():,} leads; {int(rows['known'].sum()):,} with a "
        f"known outcome ({horizon_days} days after the score, or an opportunity before)",
        "the model's claim is its tier at the time: marketing-qualified or sales-ready = worth sales' time; "
        "a disagreeing rep takes the other side",
    ]
    if waiting:
        notes.append(f"{waiting:,} verdicts wait for their horizon to end: not counted yet")
    if outside:
        notes.append(f"{outside:,} verdicts are on leads this export does not hold: left out")
    return FeedbackReport(table=table, notes=tuple(notes))


def _row(part: pd.DataFrame, *, verdict: str, reason: str) -> dict[str, object]:
    known = part[part["known"]]
    n = len(known)
    k = int(known["converted"].sum())
    rate_low, rate_high = wilson_interval(np.array([k]), np.array([n]))
    right = int(known["rep_right"].sum())
    right_low, right_high = wilson_interval(np.array([right]), np.array([n]))
    return {
        "verdict": verdict,
        "reason": reason,
        "feedback": len(part),
        "matured": n,
        "converted": k,
        "rate": k / n if n else np.nan,
        "rate_low": float(rate_low[0]),
        "rate_high": float(rate_high[0]),
        "model_probability": float(known["probability"].mean()) if n else np.nan,
        "rep_right": right / n if n else np.nan,
        "rep_right_low": float(right_low[0]),
        "rep_right_high": float(right_high[0]),
        "model_right": float(known["model_right"].mean()) if n else np.nan,
        "note": "too few to judge" if n < 30 else "",
    }
