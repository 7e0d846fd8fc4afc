"""How many sales touches this business's leads need: learned from its own export, not assumed.

Reps are told that leads "usually need 5-10 touches"; each business has its own number. The lead
ledger beside a built table (``<table>.leads.parquet``) holds each lead's sales touches as of its
outcome: up to its first conversion when one came within the horizon, else over the whole horizon
(or up to the export's end while the horizon is open), counted by the same point-in-time feature
code the model reads (``sales_touches_total``).

From it :func:`touch_report` gives the distribution of touches the opportunities had before
converting, and for every k the share of leads that went on to an opportunity among those that got k
touches without having converted yet, with 95% Wilson intervals. :func:`learn_touch_cadence` turns
the touched opportunities into the range the model's follow-up advice uses (:class:`TouchCadence`):
``fewest`` (at least 80% had that many or more) to ``most`` (at least 90% had that many or fewer).

What these numbers are not: reps choose whom to touch and keep touching leads that answer, so the
rates describe what happened to the leads that got k touches, not what one more touch would do to a
given lead (for that, see ``training/uplift.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from leadscore.model.cadence import TouchCadence
from leadscore.training.channels import wilson_interval

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "MIN_TOUCHED_OPPORTUNITIES",
    "TouchReport",
    "learn_touch_cadence",
    "touch_plot",
    "touch_report",
]

#: A range learned from fewer touched opportunities than this is too noisy to show a rep.
MIN_TOUCHED_OPPORTUNITIES = 50
#: The "after k touches" table stops where fewer leads than this reached k touches.
MIN_LEADS_REACHING = 20
FEWEST_SHARE = 0.8  # at least 80% of touched opportunities had ``fewest`` touches or more
MOST_SHARE = 0.9  # at least 90% had ``most`` touches or fewer


@dataclass(frozen=True)
class TouchReport:
    """Touches before conversion, what happened after k touches, the learned range and notes."""

    distribution: pd.DataFrame
    """Per number of touches (0, 1, ...): ``opportunities`` that had exactly that many before
    converting, their ``share`` of all opportunities, ``cumulative_share``, and
    ``cumulative_share_touched`` among the opportunities touched at least once (what the range reads)."""
    after: pd.DataFrame
    """Per k: ``leads_reaching`` (leads with a known outcome that got k touches before converting or
    without converting), ``opportunities`` among them, ``rate`` with ``rate_low``/``rate_high`` (95%),
    and ``share_of_opportunities`` (of all opportunities, those that came after k touches or more)."""
    cadence: TouchCadence | None
    """The learned range; None with ``not_learned`` saying why."""
    not_learned: str | None
    notes: tuple[str, ...]


def _known(ledger: pd.DataFrame) -> pd.DataFrame:
    """Leads with a known outcome and their touches, validated; a readable error names the column."""
    missing = [c for c in ("label", "sales_touches") if c not in ledger.columns]
    if missing:
        raise ValueError(
            f"the lead ledger has no {', '.join(missing)} column: the export has no activities file to count "
            "sales touches in (a flat export, or an event mapping without activities), or the table was "
            "built before touches were counted (rebuild it with `leadscore build-features`)"
        )
    is_known = np.array(ledger["label"].notna(), dtype=bool)
    if "horizon_complete" in ledger.columns:  # a lead that converted in a still-open horizon is open too,
        is_known &= (
            ledger["horizon_complete"].fillna(False).to_numpy(dtype=bool)
        )  # or rates favour converters
    known = ledger.loc[is_known]
    touches = np.asarray(pd.to_numeric(known["sales_touches"], errors="coerce"), dtype=float)
    if np.isnan(touches).any() or (touches < 0).any():
        raise ValueError("the lead ledger's sales_touches must be non-negative counts")
    converted = known["label"].astype("Int64").to_numpy(dtype=int) == 1
    return pd.DataFrame({"touches": touches.astype(np.int64), "converted": converted})


def cadence_from_counts(touches: np.ndarray) -> TouchCadence:
    """The range of touches of these touched opportunities (every count >= 1); see :class:`TouchCadence`."""
    counts = np.sort(np.asarray(touches, dtype=np.int64))
    n = len(counts)
    if n == 0 or counts[0] < 1:
        raise ValueError("need the touch counts of opportunities touched at least once")
    # fewest: the largest k with share(touches >= k) >= 80%; most: the smallest k with share(<= k) >= 90%
    at_least = n - np.searchsorted(counts, np.arange(1, counts[-1] + 2), side="left")
    fewest = int(np.flatnonzero(at_least >= FEWEST_SHARE * n - 1e-9).max()) + 1
    at_most = np.searchsorted(counts, np.arange(0, counts[-1] + 1), side="right")
    most = int(np.flatnonzero(at_most >= MOST_SHARE * n - 1e-9).min())
    return TouchCadence(fewest=fewest, most=max(most, fewest), opportunities=n)


def learn_touch_cadence(ledger: pd.DataFrame) -> tuple[TouchCadence | None, str | None]:
    """The range of sales touches this export's opportunities had before converting, or why not.

    Learned from the opportunities (known outcomes) touched at least once before converting; None
    (with the reason) when the ledger has no touches or fewer than ``MIN_TOUCHED_OPPORTUNITIES``.
    """
    return _learn(_known(ledger))


def _learn(known: pd.DataFrame) -> tuple[TouchCadence | None, str | None]:
    """:func:`learn_touch_cadence` on the leads with a known outcome (``_known``)."""
    touched = known.loc[known["converted"] & (known["touches"] > 0), "touches"].to_numpy()
    if known["touches"].sum() == 0:
        return None, "the export records no sales touch (calls, sales e-mails, meetings) before any outcome"
    if len(touched) < MIN_TOUCHED_OPPORTUNITIES:
        return None, (
            f"only {len(touched)} opportunities had a sales touch before converting; "
            f"a range needs {MIN_TOUCHED_OPPORTUNITIES}"
        )
    return cadence_from_counts(touched), None


def touch_report(ledger: pd.DataFrame) -> TouchReport:
    """Touches before conversion, the opportunity rate after k touches, and the learned range."""
    known = _known(ledger)
    if known.empty:
        raise ValueError("no lead in the ledger has a known outcome yet (every lead's horizon is still open)")
    touches = known["touches"].to_numpy()
    converted = known["converted"].to_numpy()
    opportunities = int(converted.sum())
    top = int(touches.max())
    by_count = np.bincount(touches[converted], minlength=top + 1)
    distribution = pd.DataFrame(
        {
            "touches": np.arange(top + 1),
            "opportunities": by_count,
            "share": by_count / max(opportunities, 1),
            "cumulative_share": np.cumsum(by_count) / max(opportunities, 1),
        }
    )
    touched_opportunities = int(by_count[1:].sum())
    distribution["cumulative_share_touched"] = np.where(
        distribution["touches"] > 0,
        (np.cumsum(by_count) - by_count[0]) / max(touched_opportunities, 1),
        np.nan,
    )
    reaching = np.array([(touches >= k).sum() for k in range(top + 1)])
    converted_after = np.array([(converted & (touches >= k)).sum() for k in range(top + 1)])
    shown = np.flatnonzero(reaching >= MIN_LEADS_REACHING)
    last = int(shown.max()) + 1 if len(shown) else 1
    low, high = wilson_interval(converted_after[:last], reaching[:last])
    after = pd.DataFrame(
        {
            "touches": np.arange(last),
            "leads_reaching": reaching[:last],
            "opportunities": converted_after[:last],
            "rate": converted_after[:last] / np.maximum(reaching[:last], 1),
            "rate_low": low,
            "rate_high": high,
            "share_of_opportunities": converted_after[:last] / max(opportunities, 1),
        }
    )
    cadence, not_learned = _learn(known)
    untouched = int((converted & (touches == 0)).sum())
    notes = [
        "Reps choose whom to touch and keep touching leads that answer: these rates describe what happened "
        "to leads that got k touches, not what one more touch would do.",
    ]
    if opportunities:
        notes.append(
            f"{untouched:,} of {opportunities:,} opportunities ({untouched / opportunities:.0%}) converted "
            "before any sales touch; the learned range counts only the touched ones."
        )
    open_leads = len(ledger) - len(known)
    if open_leads:
        notes.append(
            f"{open_leads:,} leads whose horizon is still open are left out, converted or not (counting only "
            "those already converted would make every rate read high)."
        )
    if top + 1 > last:
        notes.append(
            f"Counts above {last - 1} touches are left out of the rate table: fewer than "
            f"{MIN_LEADS_REACHING} leads reached them."
        )
    if cadence is not None:
        past = after[after["touches"] == cadence.most + 1]
        if len(past):
            row = past.iloc[0]
            notes.append(
                f"Of {int(row['leads_reaching']):,} leads that got more than {cadence.most} touches, "
                f"{row['rate']:.1%} ({row['rate_low']:.1%}-{row['rate_high']:.1%}) became opportunities "
                f"(all leads with a known outcome: {opportunities / len(known):.1%})."
            )
    return TouchReport(
        distribution=distribution,
        after=after,
        cadence=cadence,
        not_learned=not_learned,
        notes=tuple(notes),
    )


def touch_plot(report: TouchReport) -> Figure:
    """Touches the opportunities had before converting (learned range shaded) and the rate after k."""
    from leadscore.training.plots import _ensure_backend

    _ensure_backend()
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.4), dpi=110)
    left, right = figure.subplots(1, 2)
    distribution = report.distribution
    left.bar(distribution["touches"], distribution["opportunities"], color="tab:blue")
    if report.cadence is not None:
        left.axvspan(
            report.cadence.fewest - 0.5,
            report.cadence.most + 0.5,
            color="tab:green",
            alpha=0.15,
            label=f"learned range {report.cadence.span}",
        )
        left.legend(loc="upper right")
    left.set_xlabel("sales touches before converting")
    left.set_ylabel("opportunities")
    after = report.after
    rate = after["rate"].to_numpy(dtype=float)
    right.errorbar(
        after["touches"],
        rate,
        yerr=[
            rate - after["rate_low"].to_numpy(dtype=float),
            after["rate_high"].to_numpy(dtype=float) - rate,
        ],
        fmt="o-",
        color="tab:orange",
        capsize=3,
    )
    right.set_xlabel("k: leads that got at least k sales touches (before converting, if they did)")
    right.set_ylabel("share that became opportunities (95% interval)")
    figure.suptitle("Sales touches: what happened, not what a touch causes")
    figure.tight_layout()
    return figure
