"""Reason cards for sales reps: in the terminal (rich) and as self-contained HTML."""

from __future__ import annotations

import html as html_lib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, select_autoescape
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from leadscore.training.model import LeadScoringModel, NextBestAction

TIER_LABELS = {
    "sales_ready": "Sales-ready: contact now",
    "marketing_qualified": "Marketing-qualified: warm, keep nurturing",
    "nurture": "Nurture: not ready yet",
    "not_a_fit": "Not a fit",
}


@dataclass(frozen=True)
class LeadCard:
    lead_id: str
    as_of: str
    scored: dict[str, Any]
    actions: list[NextBestAction]
    model_version: str


def explain_leads(
    *, model: LeadScoringModel, leads: pd.DataFrame, activities: pd.DataFrame, as_of: pd.Timestamp
) -> list[LeadCard]:
    """Score, reasons and next best actions for each lead, as of one time."""
    mine = activities[activities["lead_id"].isin(set(leads["lead_id"]))]
    features = model.features(leads=leads, activities=mine, as_of=as_of)
    scored = model.score_features(features, explain=True, top_k=5)
    actions = model.next_best_actions(leads=leads, activities=mine, as_of=as_of)
    version = str(model.metadata.get("version", ""))
    return [
        LeadCard(s["lead_id"], str(as_of), s, a, version)  # type: ignore[arg-type]
        for s, a in zip(scored, actions, strict=True)
    ]


def print_card(card: LeadCard, *, console: Console) -> None:
    s = card.scored
    reasons = Table(show_header=True, header_style="bold", expand=True)
    reasons.add_column("why", ratio=4)
    reasons.add_column("impact", justify="right")
    reasons.add_column("family")
    for reason in s["reasons_positive"]:
        reasons.add_row(
            f"[green]+[/] {reason['sentence']}", f"[green]{reason['impact']:+.1f}[/]", reason["family"]
        )
    for reason in s["reasons_negative"]:
        reasons.add_row(
            f"[red]-[/] {reason['sentence']}", f"[red]{reason['impact']:+.1f}[/]", reason["family"]
        )
    best = [a for a in card.actions if a.uplift > 0][:3]
    actions = "\n".join(
        f"  {a.label}: {a.uplift * 100:+.1f} points (to {a.probability_after:.0%})" for a in best
    )
    body = Table.grid(padding=(0, 1))
    body.add_row(
        f"[bold]Score {s['score']:.0f}/100[/]  ({s['probability']:.1%} chance of an opportunity "
        f"within the horizon)"
    )
    body.add_row(
        f"Tier: [bold]{TIER_LABELS.get(s['tier'], s['tier'])}[/]   Grade: [bold]{s['grade']}[/] "
        f"(fit {s['fit_points']:+.1f} pts, engagement {s['engagement_points']:+.1f} pts vs an average "
        f"lead at {s['base_score']:.0f})"
    )
    body.add_row(reasons)
    body.add_row("[bold]Next best action[/]\n" + (actions or "  no single action raises the score"))
    console.print(
        Panel(body, title=f"Lead {card.lead_id} as of {card.as_of}", subtitle=f"model v{card.model_version}")
    )


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lead {{ c.lead_id }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1a202c;max-width:760px}
.score{font-size:48px;font-weight:700}.tier{display:inline-block;padding:4px 10px;border-radius:12px;
background:{{ tier_colour }};color:#fff;font-weight:600}.muted{color:#4a5568}
table{border-collapse:collapse;width:100%}td{padding:4px 6px;vertical-align:middle}
.bar{height:14px;border-radius:3px}.pos{background:#38a169}.neg{background:#e53e3e}
h2{font-size:18px;margin-top:24px;border-bottom:1px solid #e2e8f0}
</style></head><body>
<div class="muted">Lead {{ c.lead_id }} &middot; as of {{ c.as_of }} &middot; model v{{ c.model_version }}</div>
<div class="score">{{ '%.0f' % s.score }}<span class="muted" style="font-size:20px">/100</span></div>
<div><span class="tier">{{ tier_label }}</span> &nbsp; Grade <b>{{ s.grade }}</b>
 &nbsp; <span class="muted">{{ '%.1f' % (s.probability * 100) }}% chance of an opportunity within the horizon</span></div>
<h2>Fit vs engagement</h2>
<p>Fit {{ '%+.1f' % s.fit_points }} points &middot; Engagement {{ '%+.1f' % s.engagement_points }} points
 <span class="muted">(an average lead scores {{ '%.0f' % s.base_score }})</span></p>
<h2>Why</h2>
<table>{% for r in reasons %}<tr><td style="width:55%">{{ r.sentence }}</td>
<td style="width:35%"><div class="bar {{ 'pos' if r.impact > 0 else 'neg' }}"
 style="width:{{ (100 * (r.impact|abs) / max_impact)|round(1) }}%"></div></td>
<td style="text-align:right">{{ '%+.1f' % r.impact }}</td><td class="muted">{{ r.family }}</td></tr>{% endfor %}
</table>
<h2>Next best action</h2>
<ol>{% for a in actions %}<li>{{ a.label }}: <b>{{ '%+.1f' % (a.uplift * 100) }}</b> points
 (to {{ '%.0f' % (a.probability_after * 100) }}%)</li>{% else %}<li>No single action raises the score.</li>{% endfor %}</ol>
</body></html>
"""


def render_html_card(card: LeadCard) -> str:
    s = card.scored
    reasons = sorted(s["reasons_positive"] + s["reasons_negative"], key=lambda r: -r["impact"])
    max_impact = max([abs(r["impact"]) for r in reasons] + [1e-9])
    colours = {
        "sales_ready": "#2f855a",
        "marketing_qualified": "#2b6cb0",
        "nurture": "#718096",
        "not_a_fit": "#9b2c2c",
    }
    environment = Environment(autoescape=select_autoescape(default=True))
    return environment.from_string(_TEMPLATE).render(
        c=card,
        s=s,
        reasons=reasons,
        max_impact=max_impact,
        actions=[a for a in card.actions if a.uplift > 0][:3],
        tier_label=TIER_LABELS.get(s["tier"], s["tier"]),
        tier_colour=colours.get(s["tier"], "#718096"),
    )


def write_html_card(card: LeadCard, *, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in card.lead_id)
    path = out_dir / f"lead-{html_lib.escape(safe)}.html"
    path.write_text(render_html_card(card), encoding="utf-8")
    return path
