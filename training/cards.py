"""Reason cards for sales reps: in the terminal (rich) and as self-contained HTML."""

from __future__ import annotations

import functools
import html as html_lib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, StrictUndefined, Template, select_autoescape
from markupsafe import Markup
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from leadscore.features.catalogue import total_count_name
from leadscore.model.records import LeadScore
from leadscore.model.scoring_model import LeadScoringModel, NextBestAction, lead_states

TIER_LABELS = {
    "sales_ready": "Sales-ready: contact now",
    "marketing_qualified": "Marketing-qualified: warm, keep nurturing",
    "nurture": "Nurture: not ready yet",
    "not_a_fit": "Not a fit",
    "review_outside_profile": "Review: engaged but outside profile",
}
STATUS_LABELS = {
    "converted": "Converted: already an opportunity",
    "disqualified": "Disqualified",
    "not_yet_created": "Not created yet",
}
#: Export columns that can name the lead's company (the contract has none; many exports do).
COMPANY_COLUMNS: tuple[str, ...] = ("company", "company_name", "account_name", "organization")


@dataclass(frozen=True)
class LeadIdentity:
    """Who the lead is, for the rep's eyes only: never a feature, never logged or tracked."""

    name: str | None = None
    title: str | None = None
    company: str | None = None

    def __repr__(self) -> str:  # personal data stays out of logs and tracebacks
        return "LeadIdentity(<redacted>)"

    def line(self) -> str:
        """'Jane Doe, VP Marketing at Acme' (whatever parts the export has)."""
        head = ", ".join(part for part in (self.name, self.title) if part)
        if self.company:
            return f"{head} at {self.company}" if head else self.company
        return head


@dataclass(frozen=True)
class LeadCard:
    lead_id: str
    as_of: str
    scored: LeadScore  # the model's record of the lead: the card shows its fields, nothing else
    actions: list[NextBestAction]
    model_version: str
    horizon_days: int | None = None
    who: LeadIdentity | None = None
    range_tiers: tuple[str, str] | None = None  # the tier at the low and the high end of the range

    def __repr__(self) -> str:
        return f"LeadCard(lead_id={self.lead_id!r}, as_of={self.as_of!r}, status={self.scored.status!r})"


def _clean(value: object) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = " ".join(str(value).split())
    return text or None


def lead_identity(lead: dict[str, Any]) -> LeadIdentity:
    """Name, title and company from the export row's own columns (missing parts are left out)."""
    name = " ".join(part for part in (_clean(lead.get("first_name")), _clean(lead.get("last_name"))) if part)
    company = next((_clean(lead.get(c)) for c in COMPANY_COLUMNS if _clean(lead.get(c))), None)
    return LeadIdentity(name=name or None, title=_clean(lead.get("job_title")), company=company)


def explain_leads(
    *,
    model: LeadScoringModel,
    leads: pd.DataFrame,
    activities: pd.DataFrame,
    as_of: pd.Timestamp,
    outcomes: pd.DataFrame | None = None,
) -> list[LeadCard]:
    """Status, score with its interval, reasons and next best actions for each lead, as of one time.

    Leads converted (``outcomes``), disqualified or not yet created at ``as_of`` get their status
    instead of a score. The card names the lead (name, title, company from the export) for the
    rep; those columns never reach the model.
    """
    model.require_native_layout(what="explain")
    mine = activities[activities["lead_id"].isin(set(leads["lead_id"]))]
    states = lead_states(leads=leads, as_of=as_of, outcomes=outcomes)
    features = model.features(leads=leads, activities=mine, as_of=as_of)
    scored = model.score_features(features, explain=True, top_k=5, states=states)
    actions = model.next_best_actions(leads=leads, activities=mine, as_of=as_of, states=states)
    version = str(model.metadata.get("version", ""))
    people = [lead_identity({str(k): v for k, v in row.items()}) for row in leads.to_dict(orient="records")]
    demo = total_count_name("demo_request")
    hand_raised = (  # as the model's tiers read it: only where the model has the feature
        features[demo].to_numpy(dtype=float) > 0
        if demo in model.feature_names
        else np.zeros(len(features), dtype=bool)
    )
    return [
        LeadCard(
            str(s["lead_id"]),
            str(as_of),
            LeadScore.model_validate(s),
            a,
            version,
            model.horizon_days,
            who,
            range_tiers(model, LeadScore.model_validate(s), hand_raised=bool(raised)),
        )
        for s, a, who, raised in zip(scored, actions, people, hand_raised, strict=True)
    ]


def range_tiers(model: LeadScoringModel, scored: LeadScore, *, hand_raised: bool) -> tuple[str, str] | None:
    """The tier the lead would have at the low and at the high end of its range (same grades)."""
    if scored.probability_low is None or scored.probability_high is None or not scored.grade:
        return None
    fit, engagement = scored.grade[0], scored.grade[1:]

    def tier_at(probability: float) -> str:
        return model.tier(
            probability, fit_grade=fit, engagement_grade=engagement, hand_raised=hand_raised
        ).value

    return tier_at(float(scored.probability_low)), tier_at(float(scored.probability_high))


LOW_CONFIDENCE = "Low confidence: few similar leads back this number; read it as the range."


def no_action_text(card: LeadCard) -> str:
    """What the card says when no rep action is associated with a higher score: where to look instead."""
    advice = "the tier and the follow-up advice above" if card.scored.follow_up else "the tier above"
    return f"No single extra rep action is associated with a higher score now: follow {advice}."


TIER_NAMES = {
    "sales_ready": "sales-ready",
    "marketing_qualified": "marketing-qualified",
    "nurture": "nurture",
    "not_a_fit": "not a fit",
    "review_outside_profile": "review",
}


def confidence_text(card: LeadCard) -> str | None:
    """What a low-confidence flag means for the rep's next step (None when the number is well backed).

    When the whole range lies in the lead's tier the rep can act on the tier; when it spans tiers,
    the card says which, so the rep qualifies first.
    """
    s = card.scored
    if s.age_note:  # older than any lead the model learnt from: the specific reason comes first
        return s.age_note
    if not s.low_confidence:
        return None
    if card.range_tiers is None:
        return LOW_CONFIDENCE
    low, high = card.range_tiers
    if low == high == str(s.tier):
        return (
            "Few similar leads back this exact number, but its whole range is "
            f"{TIER_NAMES.get(low, low)}: act on the tier."
        )
    return (
        f"Low confidence: few similar leads back this number, and its range spans {TIER_NAMES.get(low, low)} "
        f"to {TIER_NAMES.get(high, high)}: qualify the lead before acting on the tier."
    )


def probability_text(scored: LeadScore, *, horizon: str) -> str:
    """'27% chance of an opportunity within 90 days (likely 24% to 31%)'."""
    text = f"{_percent(float(scored.probability or 0.0))} chance of an opportunity within {horizon}"
    low, high = scored.probability_low, scored.probability_high
    if low is not None and high is not None:
        text += f" (likely {_percent(float(low))} to {_percent(float(high))})"
    return text


def action_lines(card: LeadCard) -> list[NextBestAction]:
    """The rep actions worth showing (already filtered by the model), at most three."""
    return [a for a in card.actions if a.uplift > 0][:3]


def print_card(card: LeadCard, *, console: Console) -> None:
    """The reason card in the terminal; CRM text is escaped so it can never be read as rich markup."""
    s = card.scored
    body = Table.grid(padding=(0, 1))
    if card.who is not None and card.who.line():
        body.add_row(f"[bold]{escape(card.who.line())}[/]")
    status = str(s.status or "open")
    if status != "open":
        body.add_row(f"[bold]{escape(STATUS_LABELS.get(status, status))}[/]: no score")
        body.add_row(escape(s.status_note))
        _print_panel(card, body, console)
        return
    reasons = Table(show_header=True, header_style="bold", expand=True)
    reasons.add_column("why", ratio=4)
    reasons.add_column("impact", justify="right")
    reasons.add_column("family")
    for reason in s.reasons_positive:
        reasons.add_row(
            f"[green]+[/] {escape(reason.sentence)}",
            f"[green]{reason.impact:+.1f}[/]",
            escape(reason.family),
        )
    for reason in s.reasons_negative:
        reasons.add_row(
            f"[red]-[/] {escape(reason.sentence)}",
            f"[red]{reason.impact:+.1f}[/]",
            escape(reason.family),
        )
    actions = "\n".join(
        f"  {escape(a.label)}. {escape(a.evidence)}" if a.evidence else f"  {escape(a.label)}"
        for a in action_lines(card)
    )
    horizon = f"{card.horizon_days} days" if card.horizon_days else "the horizon"
    body.add_row(
        f"[bold]Score {_score_text(float(s.score or 0.0))}/100[/]: {escape(probability_text(s, horizon=horizon))}"
    )
    confidence = confidence_text(card)
    if confidence:
        body.add_row(f"[bold]{escape(confidence)}[/]")
    body.add_row(
        f"Tier: [bold]{escape(TIER_LABELS.get(str(s.tier), str(s.tier)))}[/]   "
        f"Grade: [bold]{escape(str(s.grade))}[/] "
        f"(fit {s.fit_points or 0.0:+.1f} pts, engagement {s.engagement_points or 0.0:+.1f} pts vs an average "
        f"lead at {s.base_score or 0.0:.0f})"
    )
    if abs(s.context_points or 0.0) >= 1.0:
        body.add_row(f"Market conditions (the same for every lead now): {s.context_points or 0.0:+.1f} pts")
    if s.follow_up:
        body.add_row(f"[bold]Follow-up:[/] {escape(s.follow_up)}")
    if s.reasons_positive or s.reasons_negative:
        body.add_row(reasons)
    else:
        body.add_row("No single reason moves the score by a point or more.")
    body.add_row(
        "[bold]Next best action[/] (what the model associates with a higher score, not measured effects)\n"
        + (actions or f"  {escape(no_action_text(card))}")
    )
    _print_panel(card, body, console)


def _print_panel(card: LeadCard, body: Table, console: Console) -> None:
    console.print(
        Panel(
            body,
            title=f"Lead {escape(card.lead_id)} as of {escape(card.as_of)}",
            subtitle=f"model v{escape(card.model_version)}" if card.model_version else None,
        )
    )


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Lead {{ c.lead_id }}</title>
<style>
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px auto;padding:0 24px;
color:#1a202c;max-width:820px;line-height:1.35;background:#fff}
.muted{color:#4a5568}.small{font-size:13px}
.who{font-size:20px;font-weight:600;margin-top:4px;overflow-wrap:anywhere}
.head{display:flex;align-items:center;gap:20px;flex-wrap:wrap;margin-top:6px}
.score{font-size:52px;font-weight:700;line-height:1}.score small{font-size:20px;font-weight:600;color:#4a5568}
.tier{display:inline-block;padding:4px 12px;border-radius:12px;background:{{ tier_colour }};color:#fff;font-weight:600}
.grade{font-size:15px}
h2{font-size:17px;margin:26px 0 8px;padding-bottom:4px;border-bottom:1px solid #e2e8f0}
table{border-collapse:collapse;width:100%;table-layout:fixed}
th{font-size:12px;font-weight:600;color:#4a5568;text-align:left;padding:2px 6px;text-transform:uppercase;letter-spacing:.03em}
td{padding:5px 6px;vertical-align:middle}
tr.group td{padding-top:12px;font-size:13px;font-weight:600;color:#4a5568}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.up{color:#276749}.down{color:#c53030}
.axis{display:flex;height:16px}
.half{flex:1 1 0;display:flex;align-items:center}
.half.left{justify-content:flex-end;border-right:2px solid #718096}
.bar{height:12px;min-width:1px}
.pos{background:#38a169;border-radius:0 3px 3px 0}.neg{background:#e53e3e;border-radius:3px 0 0 3px}
.family{font-size:12px;color:#4a5568}
ol{padding-left:22px}li{margin:3px 0}
.foot{margin-top:28px;font-size:12px;color:#718096}
</style></head><body>
<div class="muted small">Lead <b>{{ c.lead_id }}</b> &middot; as of {{ c.as_of }}{% if c.model_version %} &middot; model v{{ c.model_version }}{% endif %}</div>
{% if who %}<div class="who">{{ who }}</div>{% endif %}
{% if status != "open" %}<div class="head"><span class="tier">{{ status_label }}</span></div>
<p class="status-note">{{ s.status_note }}</p>
{% else %}<div class="head">
 <div class="score" aria-label="score {{ score_text }} out of 100">{{ score_text }}<small>/100</small></div>
 <div>
  <div><span class="tier">{{ tier_label }}</span> &nbsp; <span class="grade">Grade <b>{{ s.grade }}</b></span>
   <span class="muted small">(fit A&ndash;D, engagement 1&ndash;4)</span></div>
  <div class="muted" style="margin-top:6px">{{ probability_text }}</div>
  {% if low_confidence %}<div class="low-confidence" style="margin-top:6px"><b>{{ low_confidence }}</b></div>{% endif %}
  {% if s.follow_up %}<div class="follow-up" style="margin-top:6px"><b>Follow-up:</b> {{ s.follow_up }}</div>{% endif %}
 </div>
</div>

<h2>Fit vs engagement</h2>
<table>
<colgroup><col style="width:38%"><col style="width:44%"><col style="width:18%"></colgroup>
{% for part in parts %}<tr>
<td>{{ part.label }}</td>
<td>{{ bar(part.points, parts_max) }}</td>
<td class="num {{ 'up' if part.points > 0 else 'down' if part.points < 0 else '' }}">{{ '%+.1f' % part.points }} pts</td>
</tr>{% endfor %}
</table>
<p class="muted small">Points move the score away from an average lead, which scores {{ '%.0f' % s.base_score }}.{% if market %} Market conditions, the same for every lead now, add {{ '%+.1f' % market }} pts.{% endif %}</p>

<h2>Why</h2>
<table class="reasons">
<colgroup><col style="width:45%"><col style="width:31%"><col style="width:10%"><col style="width:14%"></colgroup>
<thead><tr><th>reason</th><th style="text-align:center">lowers &nbsp;|&nbsp; raises</th><th class="num">points</th><th>family</th></tr></thead>
<tbody>
{% for title, group in groups if group %}<tr class="group"><td colspan="4">{{ title }}</td></tr>
{% for r in group %}<tr class="reason">
<td>{{ r.sentence }}</td>
<td>{{ bar(r.impact, max_impact) }}</td>
<td class="num {{ 'up' if r.impact > 0 else 'down' }}">{{ '%+.1f' % r.impact }}</td>
<td class="family">{{ r.family }}</td>
</tr>
{% endfor %}{% else %}<tr><td colspan="4" class="muted">No single reason moves the score by a point or more.</td></tr>
{% endfor %}</tbody>
</table>

<h2>Next best action</h2>
{% if actions %}<ol>{% for a in actions %}<li><b>{{ a.label }}.</b> <span class="muted">{{ a.evidence }}</span></li>{% endfor %}</ol>
{% else %}<p class="muted">{{ no_action }}</p>{% endif %}
<div class="foot">Reason points are TreeSHAP contributions grouped by concept and converted to score points;
reasons under a point are not listed. Next best actions re-score the lead with one more such activity now:
they show what the model associates with a higher score, not what the action will cause.</div>
{% endif %}
</body></html>
"""

_BAR = (
    '<div class="axis" role="img" aria-label="{label}">'
    '<div class="half left">{negative}</div><div class="half right">{positive}</div></div>'
)
TIER_COLOURS = {
    "sales_ready": "#2f855a",
    "marketing_qualified": "#2b6cb0",
    "nurture": "#4a5568",
    "not_a_fit": "#9b2c2c",
    "review_outside_profile": "#975a16",
}


def _bar(value: float, scale: float) -> Markup:
    """A diverging bar: negative values grow left of the axis, positive ones right; width = |value| / scale."""
    share = 0.0 if scale <= 0 or not math.isfinite(value) else min(1.0, abs(value) / scale)
    width = f"{100.0 * share:.1f}"
    bar = f'<div class="bar {{kind}}" data-impact="{value:.4f}" style="width:{width}%"></div>'
    return Markup(
        _BAR.format(
            label=f"{value:+.1f} points",
            negative=bar.format(kind="neg") if value < 0 else "",
            positive=bar.format(kind="pos") if value > 0 else "",
        )
    )


def _percent(probability: float) -> str:
    """A probability for people: never a flat 0% or 100% (the model is never certain)."""
    value = 100.0 * probability
    if value < 0.1:
        return "<0.1%"
    if value > 99.9:
        return ">99.9%"
    return f"{value:.1f}%" if value < 10 or value > 90 else f"{value:.0f}%"


def _score_text(score: float) -> str:
    if score < 0.5:
        return "<1"
    if score > 99.5:
        return ">99"
    return f"{score:.0f}"


@functools.cache
def _template() -> Template:
    # strict: a template naming a field the scored-lead record lacks fails instead of rendering blank
    environment = Environment(
        autoescape=select_autoescape(default=True, default_for_string=True), undefined=StrictUndefined
    )
    return environment.from_string(_TEMPLATE)


def render_html_card(card: LeadCard) -> str:
    """A self-contained HTML reason card (inline CSS only, no scripts, every text autoescaped)."""
    s = card.scored
    status = str(s.status or "open")
    who = card.who.line() if card.who is not None else ""
    if status != "open":
        return _template().render(
            c=card,
            s=s,
            who=who,
            status=status,
            status_label=STATUS_LABELS.get(status, status),
            tier_colour="#4a5568",
        )
    positive = sorted(s.reasons_positive, key=lambda r: -r.impact)
    negative = sorted(s.reasons_negative, key=lambda r: r.impact)
    max_impact = max([abs(r.impact) for r in positive + negative] + [1e-9])
    parts: list[dict[str, Any]] = [
        {"label": "Fit (who the lead is)", "points": float(s.fit_points or 0.0)},
        {"label": "Engagement & sales activity", "points": float(s.engagement_points or 0.0)},
    ]
    horizon = card.horizon_days
    market = float(s.context_points or 0.0)
    return _template().render(
        c=card,
        s=s,
        who=who,
        status=status,
        market=market if abs(market) >= 1.0 else 0.0,
        score_text=_score_text(float(s.score or 0.0)),
        probability_text=probability_text(s, horizon=f"{horizon} days" if horizon else "the horizon"),
        low_confidence=confidence_text(card),
        no_action=no_action_text(card),
        horizon=f"{horizon} days" if horizon else "the horizon",
        groups=[("Raises the score", positive), ("Lowers the score", negative)],
        max_impact=max_impact,
        parts=parts,
        parts_max=max([abs(p["points"]) for p in parts] + [1e-9]),
        bar=_bar,
        percent=_percent,
        actions=action_lines(card),
        tier_label=TIER_LABELS.get(str(s.tier), str(s.tier)),
        tier_colour=TIER_COLOURS.get(str(s.tier), "#4a5568"),
    )


def write_html_card(card: LeadCard, *, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in card.lead_id)
    path = out_dir / f"lead-{html_lib.escape(safe)}.html"
    path.write_text(render_html_card(card), encoding="utf-8")
    return path
