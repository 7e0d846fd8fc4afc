"""Channel report: each lead source from lead to opportunity to pipeline value, and its return on spend.

Every lead counts once. A built table has a lead ledger beside it (``<table>.leads.parquet``: each lead,
its first conversion and whether it came within the horizon of creation); a flat export's table is one
row per lead already; otherwise a lead is its earliest snapshot, which leaves out leads that converted
before it (a note says so). Leads whose horizon has not ended are counted as open, never as lost. Rates
carry 95% Wilson intervals, so a channel of 40 leads is not read like one of 4,000. Spend
(``channel,spend`` or ``channel,month,spend``, one file from marketing) turns the counts into cost per
lead, cost per opportunity and pipeline value per unit of spend. "Pipeline value" is the opportunities'
amounts as the export gives them, not closed revenue. When the export records closed-won deals (the
contract's optional ``won_at``/``won_amount``, or an event mapping's ``outcomes.won`` block), each channel
goes on to won deals (of its opportunities within the horizon, those won by the export's end), the win
rate with its interval, revenue (won amounts), cost per won deal and revenue per unit of spend.

With a model, each channel also gets the opportunities the model expected from its leads at their
earliest snapshot in the table (the sum of calibrated probabilities) next to those observed on the same
rows: observed / expected far from 1 on many leads says the model misjudges that channel (drift, or a
channel it barely saw); the open leads' expected opportunities say what a young channel is likely to
bring before its outcomes are known. With the model's MQL/SQL thresholds: the share of each channel's leads
at SQL and MQL at that snapshot, and how many of its SQL leads with a known outcome became opportunities
(marketing and sales can see which channels their agreed thresholds favour).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from leadscore.training.split import TimeAxis

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MISSING_CHANNEL = "(missing)"
ALL_CHANNELS = "all channels"
WITH_SPEND = "channels with spend"
Z_95 = 1.959963984540054


class ScoresLeads(Protocol):
    """Anything that gives calibrated probabilities for training-table rows (a ``LeadScoringModel``)."""

    feature_names: Any

    def predict_proba_features(self, features: pd.DataFrame) -> npt.NDArray[np.float64]: ...


class SpendFileError(ValueError):
    """A spend file that cannot be read as ``channel[,month],spend``; the message names row and field."""


@dataclass(frozen=True)
class ChannelReport:
    """Per-channel funnel and return on spend, per-month cohorts, and what the reader should know."""

    channels: pd.DataFrame
    """One row per channel (most leads first), then ``all channels`` and, with spend, ``channels with
    spend`` (the cost columns of the paid channels together; organic channels would make them read low)."""
    months: pd.DataFrame
    """Leads, opportunities and rate per month of the lead's first snapshot and channel (empty
    without a timestamp axis)."""
    notes: tuple[str, ...]


def wilson_interval(
    successes: npt.ArrayLike, trials: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """95% Wilson score interval of a proportion, element-wise (NaN where there are no trials)."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denominator = 1 + Z_95**2 / n
        centre = (p + Z_95**2 / (2 * n)) / denominator
        half = Z_95 * np.sqrt(p * (1 - p) / n + Z_95**2 / (4 * n**2)) / denominator
    empty = n <= 0
    low = np.where(empty, np.nan, np.clip(centre - half, 0.0, 1.0))
    high = np.where(empty, np.nan, np.clip(centre + half, 0.0, 1.0))
    return low, high


def lead_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One row per lead: its earliest snapshot (by ``as_of``, then snapshot age, then table order)."""
    keys = [c for c in ("as_of", "snapshot_age_days", "row_order") if c in table.columns]
    ordered = table.sort_values(keys, kind="stable") if keys else table
    return ordered.drop_duplicates("lead_id", keep="first").reset_index(drop=True)


_THOUSANDS = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$")


def _amount(text: str) -> float:
    text = text.strip().replace(" ", "")
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    try:
        return float(text)
    except ValueError:
        return float("nan")


def read_spend(path: Path) -> pd.DataFrame:
    """Read a spend CSV: ``channel`` and ``spend``, optionally ``month`` (``YYYY-MM``).

    Amounts are plain numbers, optionally with thousands commas (``12,500.50``); a decimal comma is
    refused rather than guessed. Raises :class:`SpendFileError` naming the line and field of every
    bad value (header = line 1).
    """
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise SpendFileError(f"spend file {path}: cannot be read as CSV ({error})") from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in ("channel", "spend") if c not in raw.columns]
    if missing:
        raise SpendFileError(
            f"spend file {path}: missing column(s) {', '.join(missing)}; it needs channel and spend "
            f"(and optionally month as YYYY-MM), found {', '.join(raw.columns) or 'none'}"
        )
    problems: list[str] = []
    channel = raw["channel"].str.strip()
    spend = raw["spend"].map(_amount).astype(float)
    month = (
        pd.to_datetime(raw["month"].str.strip(), format="%Y-%m", errors="coerce").dt.to_period("M")
        if "month" in raw.columns
        else None
    )
    bad_month = month.isna().to_numpy() if month is not None else np.zeros(len(raw), dtype=bool)
    for i in range(len(raw)):
        line = i + 2
        if not channel.iloc[i]:
            problems.append(f"line {line}, channel: empty")
        if not (math.isfinite(spend.iloc[i]) and spend.iloc[i] >= 0):
            problems.append(
                f"line {line}, spend: {raw['spend'].iloc[i]!r} is not an amount >= 0 "
                "(like 1200.50 or 1,200.50)"
            )
        if bad_month[i]:
            problems.append(f"line {line}, month: {raw['month'].iloc[i]!r} is not a month like 2024-03")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise SpendFileError(f"spend file {path}: {len(problems)} bad value(s)\n  " + "\n  ".join(shown))
    frame = pd.DataFrame({"channel": channel, "spend": spend})
    if month is not None:
        frame["month"] = month
    return frame


def _channel_text(values: pd.Series) -> pd.Series:
    """Channel values as text: whole-number floats without '.0' (an int column read with gaps)."""
    if pd.api.types.is_float_dtype(values):
        whole = values.notna() & (values % 1 == 0)
        text = values.astype("string")
        text[whole] = values[whole].astype("int64").astype("string")
        return text.str.strip()
    return values.astype("string").str.strip()


def channel_keys(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(key, shown name) per row: the key ignores case and surrounding spaces; the name shown is the
    key's most common spelling; missing or blank values are ``(missing)``."""
    text = _channel_text(values)
    text = text.mask(text.isna() | (text == ""), MISSING_CHANNEL).astype(str)
    key = text.str.casefold()
    spelling = pd.DataFrame({"key": key, "text": text}).value_counts().reset_index()
    shown = spelling.drop_duplicates("key").set_index("key")["text"]
    return key, key.map(shown)


def _funnel(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    grouped = frame.groupby(by, sort=False, observed=True)
    out = grouped.agg(
        channel=("channel", "first"),
        leads=("lead_id", "size"),
        outcome_known=("known", "sum"),
        opportunities=("positive", "sum"),
    )
    if "amount" in frame.columns:
        out["pipeline_value"] = grouped["amount"].sum(min_count=1)
    if "won" in frame.columns:
        out["won"] = grouped["won"].sum()
        out["revenue"] = grouped["revenue"].sum(min_count=1)
    return out.reset_index()


def _with_rates(part: pd.DataFrame) -> pd.DataFrame:
    part = part.copy()
    part["open_leads"] = part["leads"] - part["outcome_known"]
    part["opportunity_rate"] = part["opportunities"] / part["outcome_known"].where(part["outcome_known"] > 0)
    part["rate_low"], part["rate_high"] = wilson_interval(part["opportunities"], part["outcome_known"])
    if "won" in part.columns:
        part["win_rate"] = part["won"] / part["opportunities"].where(part["opportunities"] > 0)
        part["win_low"], part["win_high"] = wilson_interval(part["won"], part["opportunities"])
    return part


def _model_check(table: pd.DataFrame, *, channel_column: str, model: ScoresLeads) -> pd.DataFrame:
    """Per channel key: the model's expected opportunities at each lead's earliest snapshot vs observed."""
    rows = lead_rows(table)
    absent = [n for n in model.feature_names if n not in rows.columns]
    if absent:
        raise ValueError(f"the model's features are not in this table: {', '.join(map(str, absent[:10]))}")
    probability = np.asarray(model.predict_proba_features(rows), dtype=float)
    known = np.array(rows["label"].astype("Float64").notna(), dtype=bool)
    if "horizon_complete" in rows.columns:  # as in the funnel: converted in an open horizon is still open
        known &= rows["horizon_complete"].fillna(False).to_numpy(dtype=bool)
    key, _ = channel_keys(rows[channel_column])
    frame = pd.DataFrame(
        {
            "key": key.to_numpy(),
            "scored_leads": known.astype(int),
            "scored_opportunities": np.where(
                known, rows["label"].astype("Float64").fillna(0).to_numpy(dtype=float), 0.0
            ),
            "expected_opportunities": np.where(known, probability, 0.0),
            "expected_from_open": np.where(known, 0.0, probability),
        }
    )
    thresholds = getattr(model, "thresholds", None)
    if thresholds is not None:  # the tiers a rep would see at first snapshot, per channel
        at_sql = probability >= float(thresholds.sql)
        frame["scored_all"] = 1
        frame["at_sql"] = at_sql.astype(int)
        frame["at_mql"] = (probability >= float(thresholds.mql)).astype(int)
        frame["sql_known"] = (at_sql & known).astype(int)
        frame["sql_opportunities"] = np.where(at_sql & known, frame["scored_opportunities"], 0.0)
    by_key = frame.groupby("key").sum()
    by_key.loc[ALL_CHANNELS.casefold()] = by_key.sum()
    by_key["observed_to_expected"] = by_key["scored_opportunities"] / by_key["expected_opportunities"].where(
        by_key["expected_opportunities"] > 0
    )
    if thresholds is not None:
        by_key["sql_share"] = by_key["at_sql"] / by_key["scored_all"]
        by_key["mql_share"] = by_key["at_mql"] / by_key["scored_all"]
        by_key["sql_precision"] = by_key["sql_opportunities"] / by_key["sql_known"].where(
            by_key["sql_known"] > 0
        )
        by_key = by_key.drop(columns=["scored_all", "at_sql", "at_mql", "sql_known", "sql_opportunities"])
    return by_key


def _fitted_rows_note(table: pd.DataFrame, *, model: ScoresLeads) -> list[str]:
    """A note when the model was fitted on the rows it is checked on (there observed ~ expected by design)."""
    trained_until = pd.to_datetime(
        str(getattr(model, "metadata", {}).get("trained_until") or ""), errors="coerce"
    )
    if pd.isna(trained_until) or "as_of" not in table.columns:
        return []
    as_of = pd.to_datetime(lead_rows(table)["as_of"])
    fitted = int((as_of <= trained_until).sum())
    if not fitted:
        return []
    return [
        f"{fitted:,} of {len(as_of):,} leads the model view scores are from its training period (up to "
        f"{trained_until}): on those, observed close to expected is what fitting gives, not a check; only "
        "leads newer than that test it"
    ]


def channel_report(
    *,
    table: pd.DataFrame,
    channel_column: str,
    ledger: pd.DataFrame | None = None,
    time_axis: TimeAxis = TimeAxis.TIMESTAMP,
    spend: pd.DataFrame | None = None,
    model: ScoresLeads | None = None,
) -> ChannelReport:
    """The channel funnel of an export; see the module docstring for what each column means.

    ``ledger`` (``features.training_table.lead_ledger``, written beside the table by the build) holds
    every lead; without it each lead is its earliest snapshot in ``table``, which leaves out leads that
    converted before that snapshot (a note says so). ``model`` is checked on ``table``'s rows.
    Raises ``ValueError`` naming the column when ``channel_column`` is absent, or when there are no leads.
    """
    source = ledger if ledger is not None else table
    if channel_column not in source.columns:
        candidates = [c for c in source.columns if not pd.api.types.is_numeric_dtype(source[c])]
        raise ValueError(
            f"channel column {channel_column!r} is not in the "
            f"{'lead ledger' if ledger is not None else 'table'}; text columns there: "
            f"{', '.join(map(str, candidates[:30])) or 'none'}"
        )
    notes: list[str] = []
    if ledger is not None:
        leads = ledger.rename(columns={"created_at": "as_of"})
    else:
        leads = lead_rows(table)
        first_age = leads["snapshot_age_days"].min() if "snapshot_age_days" in leads.columns else 0
        if first_age and first_age > 0:
            notes.append(
                f"no lead ledger beside the table: each lead is its first snapshot ({int(first_age)} days "
                "after creation), so leads that became opportunities before it are left out (rebuild the "
                "table to get the ledger)"
            )
    if leads.empty:
        raise ValueError("the table has no leads to report on")
    key, shown = channel_keys(leads[channel_column])
    frame = pd.DataFrame(
        {"lead_id": leads["lead_id"].to_numpy(), "key": key.to_numpy(), "channel": shown.to_numpy()}
    )
    label = leads["label"].astype("Float64")
    # known: the horizon has ended (a lead that converted early in a still-open horizon is open, or the
    # rates would count recent converters while leaving out recent leads that have not converted yet)
    complete = (
        leads["horizon_complete"].fillna(False).to_numpy(dtype=bool)
        if "horizon_complete" in leads.columns
        else np.ones(len(leads), dtype=bool)
    )
    frame["known"] = label.notna().to_numpy() & complete
    frame["positive"] = np.where(frame["known"], label.fillna(0).to_numpy(dtype=float), 0.0)
    converted_open = int((label.eq(1).fillna(False).to_numpy() & ~frame["known"].to_numpy()).sum())
    if "label_amount" in leads.columns and (label.eq(1) & leads["label_amount"].notna()).fillna(False).any():
        frame["amount"] = np.where(frame["known"], leads["label_amount"].astype(float).to_numpy(), np.nan)
    won_known = "won_at" in leads.columns and bool(leads["won_at"].notna().any())
    if won_known:  # of the opportunities within the horizon, those the export records as won by its end
        won = frame["positive"].to_numpy() == 1
        won &= leads["won_at"].notna().to_numpy()
        frame["won"] = won.astype(float)
        amount = (
            leads["won_amount"] if "won_amount" in leads.columns else pd.Series(np.nan, index=leads.index)
        )
        frame["revenue"] = np.where(won, amount.astype(float).to_numpy(), np.nan)
    with_time = time_axis is TimeAxis.TIMESTAMP and "as_of" in leads.columns
    if with_time:
        frame["month"] = pd.to_datetime(leads["as_of"]).dt.to_period("M").to_numpy()

    channels = _funnel(frame, ["key"]).sort_values(["leads", "channel"], ascending=[False, True])
    total = _funnel(frame.assign(key=ALL_CHANNELS.casefold(), channel=ALL_CHANNELS), ["key"])
    channels = _with_rates(pd.concat([channels, total], ignore_index=True))
    months = (
        _with_rates(_funnel(frame, ["month", "key"]).sort_values(["month", "leads"], ascending=[True, False]))
        if with_time
        else pd.DataFrame()
    )
    all_opportunities = float(channels["opportunities"].iloc[-1])
    channels["share_of_opportunities"] = (
        channels["opportunities"] / all_opportunities if all_opportunities else np.nan
    )
    if "pipeline_value" in channels.columns:
        channels["value_per_lead"] = channels["pipeline_value"] / channels["outcome_known"].where(
            channels["outcome_known"] > 0
        )
    if won_known:
        no_amount = int(((frame["won"] == 1) & frame["revenue"].isna()).sum())
        if no_amount:
            notes.append(f"{no_amount:,} won deal(s) have no amount: revenue leaves them out (it reads low)")
        notes.append(
            "won: opportunities within the horizon that the export records as won by its end (recent ones "
            "may still close, so their channels' win rates read low); revenue is the won amounts"
        )
    if model is not None:
        check = _model_check(table, channel_column=channel_column, model=model)
        channels = channels.join(check, on="key")
        notes.extend(_fitted_rows_note(table, model=model))
    if spend is not None:
        channels = _with_spend(channels, frame=frame, spend=spend, with_time=with_time, notes=notes)
    total_row = channels.loc[channels["channel"] == ALL_CHANNELS].iloc[0]
    open_leads = int(total_row["open_leads"])
    if open_leads:
        notes.append(
            f"{open_leads:,} lead{'s are' if open_leads != 1 else ' is'} open (the horizon has not ended"
            + (
                f"; {converted_open:,} of them already became "
                + ("an opportunity" if converted_open == 1 else "opportunities")
                if converted_open
                else ""
            )
            + "): counted as leads, not in the rates"
            + ("; the model's expected opportunities from them are in expected_from_open" if model else "")
            + (
                "; cost per opportunity counts their spend but not their future opportunities (it reads "
                "high, and pipeline per spend low, for channels with many open leads)"
                if spend is not None
                else ""
            )
        )
    if with_time and float(total_row["opportunities"]) > 0:
        per_month = frame.groupby("month")[["known", "positive"]].sum()
        dry = per_month[(per_month["known"] >= 50) & (per_month["positive"] == 0)].index
        if len(dry):
            notes.append(
                f"{len(dry)} month(s) with 50+ known outcomes and no opportunity at all "
                f"({', '.join(str(m) for m in dry[:6])}{', ...' if len(dry) > 6 else ''}): check that the "
                "outcomes file covers them before reading those months' rates"
            )
    body = channels.iloc[: int(np.flatnonzero(channels["channel"] == ALL_CHANNELS)[0])]
    small = body.loc[body["outcome_known"] < 100, "channel"].tolist()
    if small:
        notes.append(
            f"{len(small)} channel(s) have fewer than 100 leads with a known outcome ({', '.join(small[:8])}"
            f"{', ...' if len(small) > 8 else ''}): read their rates with the interval, not the point"
        )
    return ChannelReport(
        channels=channels.drop(columns="key").reset_index(drop=True),
        months=months.drop(columns="key").reset_index(drop=True) if with_time else months,
        notes=tuple(notes),
    )


def _with_spend(
    channels: pd.DataFrame,
    *,
    frame: pd.DataFrame,
    spend: pd.DataFrame,
    with_time: bool,
    notes: list[str],
) -> pd.DataFrame:
    """Spend per channel (matched ignoring case and surrounding spaces) and the cost and return it buys.

    The last row becomes the channels with spend together (organic or unlisted channels would make
    the cost per lead read low); ``all channels`` keeps the funnel without spend.
    """
    keys = set(channels["key"].iloc[:-1])
    spend = spend.assign(key=spend["channel"].astype(str).str.strip().str.casefold())
    matched = spend["key"].isin(keys)
    if not matched.all():
        unmatched = sorted(set(spend.loc[~matched, "channel"]))
        notes.append(
            f"spend for {', '.join(map(repr, unmatched[:8]))} matches no lead's channel: left out of the "
            f"return on spend ({spend.loc[~matched, 'spend'].sum():,.2f} in all)"
        )
    spend = spend[matched]
    if "month" in spend.columns:
        if not with_time:
            raise ValueError("the spend file has months but the table has no timestamps to match them to")
        months = set(frame["month"])
        outside = spend[~spend["month"].isin(months)]
        if len(outside):
            named = ", ".join(sorted({str(m) for m in outside["month"]})[:6])
            notes.append(
                f"{len(outside)} spend row(s) fall in months without leads in the report ({named}): "
                "left out of the return on spend"
            )
        spend = spend[spend["month"].isin(months)]
        spent = set(zip(spend["key"], spend["month"], strict=True))
        lead_months = frame.loc[frame["key"].isin(set(spend["key"])), ["key", "channel", "month"]]
        gaps = sorted(
            {c for k, c, m in lead_months.drop_duplicates().itertuples(index=False) if (k, m) not in spent}
        )
        if gaps:
            notes.append(
                f"{', '.join(gaps[:8])}: spend missing for some months with leads; their cost per lead "
                "counts all their leads against the months given (it reads low)"
            )
    by_key = spend.groupby("key")["spend"].sum()
    body = channels.iloc[:-1].copy()
    body["spend"] = body["key"].map(by_key)
    with_spend = body[body["spend"].notna()]
    rows = [body, channels.iloc[[-1]]]
    if len(with_spend):
        paid = _with_rates(_sum_rows(with_spend, name=WITH_SPEND))
        rows.append(paid)
    channels = pd.concat(rows, ignore_index=True)
    has_spend = channels["spend"].notna()
    channels["cost_per_lead"] = (channels["spend"] / channels["leads"]).where(has_spend)
    channels["cost_per_opportunity"] = (
        channels["spend"] / channels["opportunities"].where(channels["opportunities"] > 0)
    ).where(has_spend)
    if "pipeline_value" in channels.columns:
        channels["pipeline_per_spend"] = channels["pipeline_value"] / channels["spend"].where(
            channels["spend"] > 0
        )
    if "won" in channels.columns:
        channels["cost_per_win"] = (channels["spend"] / channels["won"].where(channels["won"] > 0)).where(
            has_spend
        )
        if "revenue" in channels.columns:
            channels["revenue_per_spend"] = channels["revenue"] / channels["spend"].where(
                channels["spend"] > 0
            )
    return channels


def _sum_rows(rows: pd.DataFrame, *, name: str) -> pd.DataFrame:
    summed = {
        column: rows[column].sum(min_count=1)
        for column in ("leads", "outcome_known", "opportunities", "pipeline_value", "won", "revenue", "spend")
        if column in rows.columns
    }
    return pd.DataFrame([{"key": name.casefold(), "channel": name, **summed}])


def channel_plot(report: ChannelReport) -> Figure:
    """Opportunity rate per channel with its 95% interval, and (with months) the rate per month."""
    from leadscore.training.plots import _ensure_backend

    _ensure_backend()
    from matplotlib.figure import Figure

    rows = report.channels[~report.channels["channel"].isin([ALL_CHANNELS, WITH_SPEND])]
    rows = rows[rows["outcome_known"] > 0].head(12)
    with_months = not report.months.empty
    figure = Figure(figsize=(11 if with_months else 6.4, 4.8), dpi=110)
    axes = figure.subplots(1, 2 if with_months else 1, squeeze=False)[0]
    ax = axes[0]
    y = np.arange(len(rows))[::-1]
    rate = rows["opportunity_rate"].to_numpy(dtype=float)
    ax.errorbar(
        rate,
        y,
        xerr=[rate - rows["rate_low"].to_numpy(dtype=float), rows["rate_high"].to_numpy(dtype=float) - rate],
        fmt="o",
        color="tab:blue",
        capsize=3,
    )
    ax.set_yticks(y, [f"{c} ({n:,})" for c, n in zip(rows["channel"], rows["outcome_known"], strict=True)])
    overall = float(
        report.channels.loc[report.channels["channel"] == ALL_CHANNELS, "opportunity_rate"].iloc[0]
    )
    if math.isfinite(overall):
        ax.axvline(overall, color="grey", linestyle="--", label=f"all channels {overall:.1%}")
        ax.legend(loc="lower right")
    ax.set_xlabel("opportunity rate (95% interval); leads with a known outcome in brackets")
    if with_months:
        ax = axes[1]
        months = report.months[report.months["channel"].isin(rows["channel"].head(6))]
        for channel, part in months.groupby("channel", sort=False):
            ax.plot(part["month"].astype(str), part["opportunity_rate"], marker="o", label=str(channel))
        ax.set_ylabel("opportunity rate")
        ax.set_xlabel("month the lead arrived")
        ax.tick_params(axis="x", labelrotation=45)
        ax.legend(fontsize="small")
    figure.suptitle("Opportunities by channel")
    figure.tight_layout()
    return figure
