"""The monthly review marketing and sales hold together: funnel, time to opportunity, why conversion moved.

From the lead ledger the build writes beside the training table (one row per lead: channel, campaign,
created, converted, amounts, won), and optionally the model's scores:

* **funnel** per channel, per campaign and per month x channel: leads, MQLs and SQLs (from the score
  ledger's tiers, recorded at the thresholds in force then; else the model's score of each lead's first
  snapshot at today's thresholds, and the report says which), opportunities within the horizon, the rate
  among leads whose horizon ended with a 95% Wilson interval, won deals and revenue;
* **time to opportunity** with censoring handled: a Kaplan-Meier estimate per channel (``scipy.stats.ecdf``
  on right-censored data: a lead still open counts for the days it has had), its median days and the share
  converted by day 30 / 60 / 90 with 95% intervals, beside the naive share (converted by then among all
  leads), which reads low for recent leads that have not had their time; per creation cohort, the same two;
* **why conversion moved** between two periods: the change in the rate split exactly into the channel mix
  and the rates within channels (midpoint weights, so the parts add up), and with a model the rate part
  into lead quality (the mean score of the leads) and conversion beyond the score;
* the **expected pipeline** of leads still open: their calibrated probability times the channel's mean
  opportunity amount, with a 90% range.

Groups with fewer than :data:`FEW_LEADS` leads are kept and flagged, never dropped.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from leadscore.training.channels import channel_keys, wilson_interval

__all__ = [
    "FEW_LEADS",
    "MILESTONE_DAYS",
    "CohortPeriod",
    "ConversionChange",
    "ReviewReport",
    "conversion_change",
    "expected_pipeline",
    "funnel_table",
    "monthly_review",
    "review_frame",
    "time_to_opportunity",
    "write_review",
]

#: a group with fewer leads is flagged "too few to judge" (and kept)
FEW_LEADS = 30
MILESTONE_DAYS = (30, 60, 90)
#: the median time to opportunity is read among leads converted by this day
MEDIAN_WITHIN_DAYS = 180
NO_CAMPAIGN = "(no campaign)"
_Z90 = float(stats.norm.ppf(0.95))


class CohortPeriod(StrEnum):
    """How leads are grouped in time, by their creation date."""

    MONTH = "M"
    WEEK = "W"


def review_frame(
    ledger: pd.DataFrame,
    *,
    until: pd.Timestamp,
    period: CohortPeriod = CohortPeriod.MONTH,
    campaign_column: str | None = "campaign",
) -> pd.DataFrame:
    """One row per lead with what the review reads: channel, campaign, cohort, days observed, outcome.

    ``campaign_column`` names the ledger column that holds the lead's campaign (Olist: its landing
    page); missing, or None, gives every lead ``(no campaign)``.
    """
    for name in ("lead_id", "created_at", "converted_at", "label", "horizon_complete"):
        if name not in ledger.columns:
            raise ValueError(f"the lead ledger has no '{name}' column: rebuild the table with build-features")
    created = pd.to_datetime(ledger["created_at"])
    converted = pd.to_datetime(ledger["converted_at"])
    seen = converted.notna() & (converted <= until)
    end = converted.where(seen, until)
    frame = pd.DataFrame({"lead_id": ledger["lead_id"].astype(str), "created_at": created})
    frame["channel_key"], frame["channel"] = channel_keys(
        ledger["channel"]
        if "channel" in ledger.columns
        else pd.Series(pd.NA, index=ledger.index, dtype="string")
    )
    if campaign_column and campaign_column in ledger.columns:
        campaign = ledger[campaign_column].astype("string").str.strip()
        frame["campaign"] = campaign.mask(campaign.isna() | (campaign == ""), NO_CAMPAIGN).astype(str)
    else:
        frame["campaign"] = NO_CAMPAIGN
    frame["cohort"] = created.dt.to_period(period.value).astype(str)
    frame["days"] = np.maximum((end - created).dt.total_seconds().to_numpy() / 86_400, 0.0)
    frame["converted"] = seen.to_numpy()
    frame["matured"] = ledger["horizon_complete"].astype(bool).to_numpy()
    frame["opportunity"] = (ledger["label"].astype("Float64").fillna(0) == 1).to_numpy()
    amount = ledger["opportunity_amount"] if "opportunity_amount" in ledger.columns else np.nan
    frame["amount"] = pd.to_numeric(pd.Series(amount, index=ledger.index), errors="coerce").to_numpy(
        dtype=float
    )
    if "won_at" in ledger.columns:
        frame["won"] = ledger["won_at"].notna().to_numpy()
        won_amount = (
            ledger["won_amount"] if "won_amount" in ledger.columns else pd.Series(0.0, index=ledger.index)
        )
        frame["revenue"] = pd.to_numeric(won_amount, errors="coerce").fillna(0.0).to_numpy()
    return frame


def _flag(leads: pd.Series, known: pd.Series) -> pd.Series:
    few = (leads < FEW_LEADS) | (known < FEW_LEADS)
    return pd.Series(
        np.where(few, known.astype(int).astype(str) + " with a known outcome: too few to judge", ""),
        index=leads.index,
    )


def funnel_table(frame: pd.DataFrame, *, by: list[str], tiers: pd.DataFrame | None = None) -> pd.DataFrame:
    """Leads, MQLs, SQLs, opportunities, the rate among matured leads (95% interval), won and revenue."""
    rows = frame.copy()
    if tiers is not None:
        rows = rows.merge(tiers[["lead_id", "reached_mql", "reached_sql"]], on="lead_id", how="left")
        rows[["reached_mql", "reached_sql"]] = rows[["reached_mql", "reached_sql"]].fillna(False).astype(bool)
    rows["opportunity_matured"] = rows["opportunity"] & rows["matured"]
    grouped = rows.groupby(by, sort=False, observed=True)
    out = grouped.agg(
        leads=("lead_id", "size"), matured=("matured", "sum"), opportunities=("opportunity", "sum")
    )
    out["opportunities_matured"] = grouped["opportunity_matured"].sum()
    if tiers is not None:
        out["mqls"] = grouped["reached_mql"].sum()
        out["sqls"] = grouped["reached_sql"].sum()
    if "won" in rows.columns:
        out["won"] = grouped["won"].sum()
        out["revenue"] = grouped["revenue"].sum()
    out = out.reset_index()
    out["rate"] = out["opportunities_matured"] / out["matured"].where(out["matured"] > 0)
    out["rate_low"], out["rate_high"] = wilson_interval(out["opportunities_matured"], out["matured"])
    out["note"] = _flag(out["leads"], out["matured"])
    return out.sort_values("leads", ascending=False, kind="stable").reset_index(drop=True)


def _km(days: np.ndarray, event: np.ndarray) -> stats._survival.ECDFResult | None:  # type: ignore[name-defined]
    if len(days) == 0 or not event.any():
        return None
    data = stats.CensoredData(uncensored=days[event], right=days[~event])
    return stats.ecdf(data)


def time_to_opportunity(frame: pd.DataFrame, *, by: str) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Kaplan-Meier time to opportunity per group: median days among converters (the day by which half of
    those converted by day 180 had), share by day 30/60/90 (95% interval; NaN while no lead of the group
    has been followed that long), and the naive share.

    Returns the table and, per group, the curve (``days``, ``share``) for the plot.
    """
    rows, curves = [], {}
    for name, part in frame.groupby(by, sort=False, observed=True):
        days, event = part["days"].to_numpy(), part["converted"].to_numpy()
        result = _km(days, event)
        row: dict[str, object] = {by: name, "leads": len(part), "converted": int(event.sum())}
        if result is not None:
            low, high = result.cdf.confidence_interval(confidence_level=0.95)
            followed = float(days.max())
            # the day by which half of those converted by day 180 had converted (Kaplan-Meier)
            half = float(result.cdf.evaluate(min(MEDIAN_WITHIN_DAYS, followed))) / 2
            reached = result.cdf.quantiles[result.cdf.probabilities >= half]
            row["median_days_converters"] = float(reached[0]) if len(reached) else np.nan
            for t in MILESTONE_DAYS:  # no lead followed for t days yet: unknown, not the last value
                seen = followed >= t
                row[f"share_by_{t}d"] = float(result.cdf.evaluate(t)) if seen else np.nan
                row[f"share_by_{t}d_low"] = float(low.evaluate(t)) if seen else np.nan
                row[f"share_by_{t}d_high"] = float(high.evaluate(t)) if seen else np.nan
            curves[str(name)] = pd.DataFrame(
                {"days": result.cdf.quantiles, "share": result.cdf.probabilities}
            )
        elif len(part):  # nobody converted: 0 wherever a lead was followed that long (Wilson interval)
            followed = float(days.max())
            _, high = wilson_interval(np.array([0.0]), np.array([float(len(part))]))
            row["median_days_converters"] = np.nan
            for t in MILESTONE_DAYS:
                seen = followed >= t
                row[f"share_by_{t}d"] = 0.0 if seen else np.nan
                row[f"share_by_{t}d_low"] = 0.0 if seen else np.nan
                row[f"share_by_{t}d_high"] = float(high[0]) if seen else np.nan
        for t in MILESTONE_DAYS:
            row[f"naive_by_{t}d"] = float((event & (days <= t)).mean())
        row["note"] = "too few to judge" if len(part) < FEW_LEADS else ""
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sort_values("leads", ascending=False, kind="stable").reset_index(drop=True), curves


@dataclass(frozen=True)
class ConversionChange:
    """The change in the opportunity rate between two periods, in parts that add up to it (rate points)."""

    before: str
    after: str
    rate_before: float
    rate_after: float
    mix: float  # the channel mix moved
    within: float  # rates within channels moved (quality + beyond_score when a model is given)
    quality: float | None  # the model's mean score of the leads moved
    beyond_score: float | None  # conversion beyond what the score expected moved
    by_channel: pd.DataFrame

    @property
    def change(self) -> float:
        return self.rate_after - self.rate_before

    def sentence(self) -> str:
        parts = f"channel mix {100 * self.mix:+.2f}, rates within channels {100 * self.within:+.2f}"
        if self.quality is not None and self.beyond_score is not None:
            parts += (
                f" (lead quality as the model saw it {100 * self.quality:+.2f}, conversion beyond the score "
                f"{100 * self.beyond_score:+.2f})"
            )
        return (
            f"Opportunity rate {100 * self.rate_before:.2f}% ({self.before}) -> {100 * self.rate_after:.2f}% "
            f"({self.after}): {100 * self.change:+.2f} points = {parts}."
        )


def conversion_change(
    frame: pd.DataFrame, *, before: str, after: str, quality: pd.Series | None = None
) -> ConversionChange:
    """Split the rate change between cohorts ``before`` and ``after`` (matured leads) into mix and rates.

    Per channel ``c`` with lead share ``w`` and rate ``r``: ``w1 r1 - w0 r0 = (w1 - w0)(r0 + r1)/2 +
    (w0 + w1)/2 (r1 - r0)``, summed over channels, exactly. With ``quality`` (the model's probability
    per lead, indexed like ``frame``) each channel's rate is its mean score ``q`` plus the rest ``r - q``,
    so the rate part splits into quality ``(w0 + w1)/2 (q1 - q0)`` and beyond the score.
    """
    rows = frame[frame["matured"] & frame["cohort"].isin([before, after])].copy()
    if quality is not None:
        rows["quality"] = quality.reindex(rows.index).to_numpy(dtype=float)
    sides = {}
    for label in (before, after):
        part = rows[rows["cohort"] == label]
        if part.empty:
            raise ValueError(f"no lead of cohort {label} has a known outcome yet")
        grouped = part.groupby("channel", observed=True)
        side = pd.DataFrame({"leads": grouped.size(), "rate": grouped["opportunity"].mean()})
        if quality is not None:
            side["quality"] = grouped["quality"].mean()
        side["share"] = side["leads"] / side["leads"].sum()
        sides[label] = side
    b, a = sides[before], sides[after]
    channels = b.index.union(a.index)
    b, a = b.reindex(channels), a.reindex(channels)
    w0, w1 = b["share"].fillna(0.0), a["share"].fillna(0.0)
    # a channel missing from one period: its rate there is the other period's (no within-channel change)
    r0, r1 = b["rate"].fillna(a["rate"]), a["rate"].fillna(b["rate"])
    mix = (w1 - w0) * (r0 + r1) / 2
    within = (w0 + w1) / 2 * (r1 - r0)
    table = pd.DataFrame(
        {
            "leads_before": b["leads"].fillna(0).astype(int),
            "leads_after": a["leads"].fillna(0).astype(int),
            "share_before": w0,
            "share_after": w1,
            "rate_before": b["rate"],
            "rate_after": a["rate"],
            "mix": mix,
            "within": within,
        }
    )
    quality_part = beyond = None
    if quality is not None:
        q0, q1 = b["quality"].fillna(a["quality"]), a["quality"].fillna(b["quality"])
        table["quality"] = (w0 + w1) / 2 * (q1 - q0)
        table["beyond_score"] = table["within"] - table["quality"]
        quality_part, beyond = float(table["quality"].sum()), float(table["beyond_score"].sum())
    table["note"] = _flag(
        table["leads_before"] + table["leads_after"],
        pd.concat([table["leads_before"], table["leads_after"]], axis=1).min(axis=1),
    )
    return ConversionChange(
        before=before,
        after=after,
        rate_before=float((w0 * r0).sum()),
        rate_after=float((w1 * r1).sum()),
        mix=float(mix.sum()),
        within=float(within.sum()),
        quality=quality_part,
        beyond_score=beyond,
        by_channel=table.reset_index(names="channel"),
    )


def expected_pipeline(frame: pd.DataFrame, *, open_probability: pd.Series) -> pd.DataFrame:
    """Per channel, the open leads' expected opportunities and pipeline value, with 90% ranges.

    ``open_probability`` is the model's probability per open lead (indexed by ``lead_id``). The amount
    is the channel's mean opportunity amount (all channels' where the channel has fewer than
    :data:`FEW_LEADS` opportunities with an amount). The range adds the Bernoulli spread of the
    opportunities and the amount's standard error (normal approximation).
    """
    amounts = frame.loc[frame["opportunity"] & np.isfinite(frame["amount"]), ["channel", "amount"]]
    overall_mean = float(amounts["amount"].mean()) if len(amounts) else np.nan
    overall_se = float(amounts["amount"].std(ddof=1) / np.sqrt(len(amounts))) if len(amounts) > 1 else np.nan
    by_channel = amounts.groupby("channel", observed=True)["amount"].agg(["mean", "std", "size"])
    rows = frame.set_index("lead_id").reindex(open_probability.index)
    rows["p"] = open_probability.to_numpy(dtype=float)
    out = []
    for channel, part in rows.groupby("channel", sort=False, observed=True):
        p = part["p"].to_numpy()
        count = int(by_channel.at[channel, "size"]) if channel in by_channel.index else 0
        own = count >= FEW_LEADS
        mean = float(by_channel.at[channel, "mean"]) if own else overall_mean
        se = float(by_channel.at[channel, "std"] / np.sqrt(count)) if own else overall_se
        expected = float(p.sum())
        spread = float(np.sqrt((p * (1 - p)).sum()))
        value = expected * mean
        value_sd = float(np.sqrt((mean**2) * spread**2 + (expected**2) * (se**2 if se == se else 0.0)))
        out.append(
            {
                "channel": channel,
                "open_leads": len(part),
                "expected_opportunities": expected,
                "opportunities_low": max(0.0, expected - _Z90 * spread),
                "opportunities_high": expected + _Z90 * spread,
                "mean_amount": mean,
                "amount_from": "channel" if own else "all channels",
                "expected_pipeline": value,
                "pipeline_low": max(0.0, value - _Z90 * value_sd),
                "pipeline_high": value + _Z90 * value_sd,
                "note": "too few to judge" if len(part) < FEW_LEADS else "",
            }
        )
    table = pd.DataFrame(out)
    if table.empty:
        return table
    return table.sort_values("expected_pipeline", ascending=False, kind="stable").reset_index(drop=True)


@dataclass
class ReviewReport:
    """Every table of the review, what it was read from, and the report a person looks at."""

    channels: pd.DataFrame
    campaigns: pd.DataFrame
    months: pd.DataFrame
    time_by_channel: pd.DataFrame
    time_by_cohort: pd.DataFrame
    change: ConversionChange | None
    pipeline: pd.DataFrame | None
    notes: list[str]
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    html: str = ""

    def tables(self) -> dict[str, pd.DataFrame]:
        out = {
            "channels": self.channels,
            "campaigns": self.campaigns,
            "months": self.months,
            "time_to_opportunity_by_channel": self.time_by_channel,
            "time_to_opportunity_by_cohort": self.time_by_cohort,
        }
        if self.change is not None:
            out["conversion_change"] = self.change.by_channel
        if self.pipeline is not None:
            out["expected_pipeline"] = self.pipeline
        return out


def _default_periods(frame: pd.DataFrame) -> tuple[str, str] | None:
    """The newest two cohorts in which at least 80% of leads have a known outcome."""
    share = frame.groupby("cohort", observed=True)["matured"].mean().sort_index()
    ready = [c for c, s in share.items() if s >= 0.8]
    return (str(ready[-2]), str(ready[-1])) if len(ready) >= 2 else None


def monthly_review(
    frame: pd.DataFrame,
    *,
    tiers: pd.DataFrame | None = None,
    tiers_source: str = "",
    quality: pd.Series | None = None,
    open_probability: pd.Series | None = None,
    periods: tuple[str, str] | None = None,
) -> ReviewReport:
    """Every table of the review from :func:`review_frame` rows and, optionally, the model's scores."""
    notes = []
    if tiers is None:
        notes.append("No MQL/SQL counts: no score ledger and no model to read tiers from.")
    else:
        notes.append(f"MQLs and SQLs: {tiers_source}.")
    channels = funnel_table(frame, by=["channel"], tiers=tiers)
    campaigns = funnel_table(frame, by=["campaign"], tiers=tiers)
    months = funnel_table(frame, by=["cohort", "channel"], tiers=tiers).sort_values(
        ["cohort", "leads"], ascending=[True, False], kind="stable"
    )
    time_by_channel, curves = time_to_opportunity(frame, by="channel")
    time_by_cohort, _ = time_to_opportunity(frame, by="cohort")
    time_by_cohort = time_by_cohort.sort_values("cohort", kind="stable").reset_index(drop=True)
    periods = periods or _default_periods(frame)
    change = None
    if periods is not None:
        try:
            change = conversion_change(frame, before=periods[0], after=periods[1], quality=quality)
        except ValueError as error:
            notes.append(f"No conversion change: {error}.")
    else:
        notes.append("No conversion change: fewer than two cohorts have 80% of their outcomes known.")
    pipeline = None
    if open_probability is not None and len(open_probability):
        pipeline = expected_pipeline(frame, open_probability=open_probability)
    else:
        notes.append("No expected pipeline: no model scores of the leads still open.")
    few = int((channels["note"] != "").sum() + (campaigns["note"] != "").sum())
    if few:
        notes.append(
            f"{few} channels or campaigns have fewer than {FEW_LEADS} leads with a known outcome: flagged, "
            "not dropped."
        )
    report = ReviewReport(
        channels=channels,
        campaigns=campaigns,
        months=months.reset_index(drop=True),
        time_by_channel=time_by_channel,
        time_by_cohort=time_by_cohort,
        change=change,
        pipeline=pipeline,
        notes=notes,
        curves=curves,
    )
    report.html = _html(report)
    return report


# --- the report people look at ---------------------------------------------------------------------


def _png(figure: object) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)  # type: ignore[attr-defined]
    plt.close(figure)  # type: ignore[arg-type]
    return base64.b64encode(buffer.getvalue()).decode()


def _plots(report: ReviewReport) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    images = []
    channels = report.channels.head(10).iloc[::-1]
    figure, axes = plt.subplots(figsize=(8, 0.45 * len(channels) + 1.2))
    rate = channels["rate"].fillna(0.0).to_numpy()
    error = np.vstack([rate - channels["rate_low"].fillna(0.0), channels["rate_high"].fillna(0.0) - rate])
    axes.barh(channels["channel"].astype(str), 100 * rate, xerr=100 * error, color="#4C72B0")
    axes.set_xlabel("opportunity rate, % (leads whose horizon ended; 95% interval)")
    figure.tight_layout()
    images.append(("Opportunity rate by channel", _png(figure)))

    figure, axes = plt.subplots(figsize=(8, 4))
    for name in report.time_by_channel["channel"].head(6):
        curve = report.curves.get(str(name))
        if curve is not None:
            axes.step(curve["days"], 100 * curve["share"], where="post", label=str(name))
    axes.set_xlim(0, 180)
    axes.set_xlabel("days since the lead was created")
    axes.set_ylabel("converted to an opportunity, %")
    axes.legend(fontsize=8)
    figure.tight_layout()
    images.append(("Time to opportunity (Kaplan-Meier), top channels", _png(figure)))

    cohorts = report.time_by_cohort
    if "share_by_90d" in cohorts.columns:
        figure, axes = plt.subplots(figsize=(8, 3.5))
        x = np.arange(len(cohorts))
        axes.plot(x, 100 * cohorts["share_by_90d"], marker="o", label="Kaplan-Meier (open leads censored)")
        axes.plot(
            x, 100 * cohorts["naive_by_90d"], marker="x", label="naive (open leads count as not converted)"
        )
        axes.set_xticks(x, cohorts["cohort"].astype(str), rotation=60, fontsize=7)
        axes.set_ylabel("converted by day 90, %")
        axes.legend(fontsize=8)
        figure.tight_layout()
        images.append(
            (
                "Share converted by day 90 per creation cohort: the naive rate reads low for recent cohorts",
                _png(figure),
            )
        )

    change = report.change
    if change is not None:
        parts = [("before", change.rate_before), ("channel mix", change.mix)]
        if change.quality is not None and change.beyond_score is not None:
            parts += [("lead quality", change.quality), ("beyond the score", change.beyond_score)]
        else:
            parts += [("rates within channels", change.within)]
        figure, axes = plt.subplots(figsize=(8, 3.5))
        level = 0.0
        for i, (label, value) in enumerate(parts):
            bottom = 0.0 if i == 0 else level
            axes.bar(
                label,
                100 * value,
                bottom=100 * bottom,
                color="#4C72B0" if i == 0 else ("#55A868" if value >= 0 else "#C44E52"),
            )
            level = value if i == 0 else level + value
        axes.bar("after", 100 * change.rate_after, color="#4C72B0")
        axes.set_ylabel("opportunity rate, %")
        figure.tight_layout()
        images.append((f"Why the rate moved: {change.before} -> {change.after}", _png(figure)))
    return images


def _table_html(frame: pd.DataFrame) -> str:
    return frame.round(4).to_html(index=False, na_rep="", classes="review", border=0)


def _html(report: ReviewReport) -> str:
    sections = [
        "<!doctype html><html><head><meta charset='utf-8'><title>leadscore monthly review</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table.review{border-collapse:collapse;"
        "font-size:12px}table.review td,table.review th{padding:2px 6px;border-bottom:1px solid #ddd}"
        ".note{color:#a33}</style></head><body><h1>Monthly review</h1>",
    ]
    sections += [f"<p class='note'>{html.escape(note)}</p>" for note in report.notes]
    if report.change is not None:
        sections.append(f"<p><b>{html.escape(report.change.sentence())}</b></p>")
    for title, image in _plots(report):
        sections.append(
            f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
            f"src='data:image/png;base64,{image}'/>"
        )
    for name, table in report.tables().items():
        sections.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2>{_table_html(table)}")
    sections.append("</body></html>")
    return "".join(sections)


def write_review(report: ReviewReport, out: Path) -> list[Path]:
    """``review.html`` and one CSV and one Parquet file per table under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "review.html"]
    paths[0].write_text(report.html, encoding="utf-8")
    for name, table in report.tables().items():
        for suffix in ("csv", "parquet"):
            path = out / f"{name}.{suffix}"
            table.to_csv(path, index=False) if suffix == "csv" else table.to_parquet(path, index=False)
            paths.append(path)
    return paths
