"""HTML reason cards: self-contained, escaped, bars proportional to impact, and they really render."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from leadscore.model.records import LeadScore
from leadscore.model.scoring_model import NextBestAction
from leadscore.training.cards import LeadCard, explain_leads, print_card, render_html_card, write_html_card

from ..conftest import Trained

HOSTILE = '<script>alert("x")</script>'


@pytest.fixture(scope="module")
def cards(trained: Trained) -> list[LeadCard]:
    leads = trained.crm.leads.tail(60)  # recent leads: reasons of a point or more on both sides
    return explain_leads(
        model=trained.result.model,
        leads=leads,
        activities=trained.crm.activities,
        as_of=trained.crm.exported_at,
    )


@pytest.fixture(scope="module")
def card(cards: list[LeadCard]) -> LeadCard:
    """A card with reasons on both sides (the interesting layout)."""
    both = [c for c in cards if c.scored.reasons_positive and c.scored.reasons_negative]
    assert both, "expected at least one lead with positive and negative reasons"
    return both[0]


def hostile_card() -> LeadCard:
    reason = {"concept": "industry", "sentence": f"Industry: {HOSTILE}", "impact": 3.2, "family": "fit"}
    return LeadCard(
        lead_id=f'L1"><img src=x onerror=alert(1)>{HOSTILE}',
        as_of="2025-01-01 00:00:00",
        scored=LeadScore.model_validate(
            {
                "lead_id": "L1",
                "probability": 0.2,
                "score": 20.0,
                "tier": "nurture",
                "grade": "<b>A1</b>",
                "fit_points": 3.2,
                "engagement_points": -1.0,
                "base_score": 18.0,
                "reasons_positive": [reason],
                "reasons_negative": [
                    {
                        "concept": "x",
                        "sentence": "[bold red]not markup[/] [/oops]",
                        "impact": -1.0,
                        "family": HOSTILE,
                    }
                ],
            }
        ),
        actions=[NextBestAction("demo_request", f"Offer {HOSTILE}", 0.3, 0.1)],
        model_version=f"{HOSTILE}",
        horizon_days=90,
    )


class _Bars(HTMLParser):
    """Collects each reason row's bar (kind, width %, data-impact, which half) and printed points."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, object]] = []
        self._in_reason = False
        self._half = ""
        self._cell_class = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "tr":
            self._in_reason = "reason" in classes
            if self._in_reason:
                self.rows.append({})
        elif self._in_reason and tag == "div" and "half" in classes:
            self._half = "left" if "left" in classes else "right"
        elif self._in_reason and tag == "div" and "bar" in classes:
            width = re.fullmatch(r"width:([0-9.]+)%", a["style"])
            assert width, a["style"]
            self.rows[-1].update(
                kind="pos" if "pos" in classes else "neg",
                width=float(width.group(1)),
                impact=float(a["data-impact"]),
                half=self._half,
            )
        elif self._in_reason and tag == "td":
            self._cell_class = a.get("class", "")

    def handle_data(self, data: str) -> None:
        if self._in_reason and "num" in self._cell_class.split() and data.strip():
            self.rows[-1]["printed"] = float(data.strip())


def test_card_is_self_contained(card: LeadCard) -> None:
    page = render_html_card(card)
    assert page.startswith("<!doctype html>") and "<style>" in page
    external = re.findall(
        r"(?i)(https?:|ftp:|//[\w.-]+\.\w|<script|<link|<iframe|<img|<object|@import|url\()", page
    )
    assert external == []
    assert re.search(r"(?i)\son\w+\s*=", page) is None  # no inline event handlers
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_hostile_text_is_escaped_everywhere() -> None:
    page = render_html_card(hostile_card())
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "<b>A1</b>" not in page and "&lt;b&gt;A1&lt;/b&gt;" in page
    assert page.count("&lt;script&gt;") >= 5  # lead id, sentence, family, action label, version, tier
    assert "Industry: &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_hostile_text_is_not_rich_markup_in_the_terminal() -> None:
    out = io.StringIO()
    print_card(hostile_card(), console=Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert "[bold red]not markup[/] [/oops]" in text
    assert "Industry: <script>" in text


def test_hostile_lead_id_cannot_escape_the_output_folder(tmp_path: Path) -> None:
    card = hostile_card()
    path = write_html_card(LeadCard(**{**card.__dict__, "lead_id": "../../etc/passwd"}), out_dir=tmp_path)
    assert path.parent == tmp_path and path.name == "lead-______etc_passwd.html"


def test_bars_are_proportional_to_impact_and_diverge(card: LeadCard) -> None:
    parser = _Bars()
    parser.feed(render_html_card(card))
    rows = parser.rows
    s = card.scored
    assert len(rows) == len(s.reasons_positive) + len(s.reasons_negative)
    largest = max(abs(float(r["impact"])) for r in rows)  # type: ignore[arg-type]
    for row in rows:
        impact = float(row["impact"])  # type: ignore[arg-type]
        assert row["width"] == pytest.approx(100 * abs(impact) / largest, abs=0.051)
        assert (row["kind"], row["half"]) == (("pos", "right") if impact > 0 else ("neg", "left"))
        assert row["printed"] == pytest.approx(impact, abs=0.051)
    assert max(float(r["width"]) for r in rows) == pytest.approx(100.0)  # type: ignore[arg-type]
    # raising reasons first (strongest first), then lowering ones (strongest first)
    impacts = [float(r["impact"]) for r in rows]  # type: ignore[arg-type]
    positives = [i for i in impacts if i > 0]
    negatives = [i for i in impacts if i < 0]
    assert impacts == positives + negatives
    assert positives == sorted(positives, reverse=True) and negatives == sorted(negatives)


def test_bars_with_hand_made_impacts() -> None:
    card = hostile_card()
    scored = {
        **card.scored.model_dump(),
        "reasons_positive": [
            {"concept": "a", "sentence": "a", "impact": 8.0, "family": "engagement"},
            {"concept": "b", "sentence": "b", "impact": 2.0, "family": "fit"},
        ],
        "reasons_negative": [{"concept": "c", "sentence": "c", "impact": -4.0, "family": "fit"}],
    }
    parser = _Bars()
    parser.feed(render_html_card(LeadCard(**{**card.__dict__, "scored": LeadScore.model_validate(scored)})))
    assert [(r["kind"], r["width"]) for r in parser.rows] == [("pos", 100.0), ("pos", 25.0), ("neg", 50.0)]


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if found := shutil.which(name):
            return found
    return None


def _screenshot(browser: str, page: Path, shot: Path, home: Path) -> list[tuple[int, int, int]]:
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={home / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=900,1000",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
        env={**os.environ, "HOME": str(home)},
    )
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == (900, 1000)
    return list(image.getdata())


def _near(pixels: list[tuple[int, int, int]], colour: tuple[int, int, int]) -> int:
    return sum(1 for p in pixels if all(abs(a - b) <= 12 for a, b in zip(p, colour, strict=True)))


def _require_browser() -> str:
    browser = _browser()
    if browser is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("no chromium on PATH (CI=true: .ci/run should have installed Debian's chromium)")
        pytest.skip("no chromium/chrome on PATH (apt-get install chromium) to render the card")
    return browser


@pytest.mark.slow
def test_card_renders_in_headless_chromium(card: LeadCard, tmp_path: Path) -> None:
    browser = _require_browser()
    page = write_html_card(card, out_dir=tmp_path / "cards")
    pixels = _screenshot(browser, page, tmp_path / "card.png", tmp_path)
    ink = sum(1 for r, g, b in pixels if r + g + b < 600)
    assert ink > 0.01 * len(pixels), "the screenshot is (nearly) blank"
    assert _near(pixels, (0x38, 0xA1, 0x69)) > 100, "no green (raising) bars rendered"
    assert _near(pixels, (0xE5, 0x3E, 0x3E)) > 100, "no red (lowering) bars rendered"
    if os.environ.get("LEADSCORE_WRITE_DOCS_IMAGES") == "1":  # refresh the README's picture of a card
        docs_image = Path(__file__).resolve().parents[2] / "docs" / "img" / "rep-card.png"
        docs_image.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "card.png", docs_image)


@pytest.mark.slow
def test_client_text_is_shown_as_text_in_the_browser(tmp_path: Path) -> None:
    """Markup in CRM text renders as its characters, never as styling: magenta markup stays grey text."""
    browser = _require_browser()
    loud = '<b style="display:block;background:#ff00ff;width:800px;height:300px">X</b>'
    card = hostile_card()
    scored = card.scored.model_copy(
        update={
            "reasons_positive": [
                r.model_copy(update={"sentence": loud}) for r in card.scored.reasons_positive
            ]
        }
    )
    page = write_html_card(LeadCard(**{**card.__dict__, "scored": scored}), out_dir=tmp_path / "cards")
    assert "#ff00ff" in page.read_text()  # the text is on the page ...
    pixels = _screenshot(browser, page, tmp_path / "card.png", tmp_path)
    assert _near(pixels, (0xFF, 0x00, 0xFF)) == 0, "client markup was rendered as HTML"  # ... as text only
    assert _near(pixels, (0x38, 0xA1, 0x69)) > 100, "the card itself did not render"
