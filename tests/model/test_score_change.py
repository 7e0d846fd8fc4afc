"""Why a score changed (model change, time passing, new activity) and the cool-down forecast, on
real fitted models: the deployed model and the pre-test refit standing in for the previous version."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.model.records import RawLead
from leadscore.model.score_change import (
    LeadAtTime,
    PartKind,
    ScoreChange,
    cool_down_forecast,
    explain_score_change,
    lead_record,
)
from leadscore.model.scoring_model import LeadScoringModel

from ..conftest import Trained

DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def model(trained: Trained) -> LeadScoringModel:
    return trained.result.model


@pytest.fixture(scope="module")
def old_model(trained: Trained) -> LeadScoringModel:
    assert trained.result.evaluated is not None
    assert trained.result.evaluated is not trained.result.model
    return trained.result.evaluated


@pytest.fixture(scope="module")
def end(trained: Trained) -> pd.Timestamp:
    return pd.Timestamp(trained.crm.exported_at)


@pytest.fixture(scope="module")
def open_leads(trained: Trained, end: pd.Timestamp) -> pd.DataFrame:
    """Leads created 20-200 days before the export's end that had not converted by then."""
    leads = trained.crm.leads
    age = (end - leads["created_at"]) / DAY
    converted = set(trained.crm.outcomes["lead_id"])
    chosen = leads[(age >= 20) & (age <= 200) & ~leads["lead_id"].isin(converted)]
    return chosen.reset_index(drop=True)


def record(trained: Trained, lead_id: str, *, until: pd.Timestamp | None = None) -> RawLead:
    """The lead as the export holds it; with ``until``, only its activities up to that time."""
    activities = trained.crm.activities
    if until is not None:
        activities = activities[activities["timestamp"] <= until]
    return lead_record(trained.crm.leads, activities, lead_id)


def card_scores(
    trained: Trained,
    model: LeadScoringModel,
    lead_id: str,
    times: list[pd.Timestamp],
    *,
    until: pd.Timestamp,
    field: str = "score",
) -> list[float]:
    """The card's score (or probability) of the lead at each time, from the tables (score_features),
    counting its events up to ``until``."""
    leads = trained.crm.leads[trained.crm.leads["lead_id"] == lead_id]
    acts = trained.crm.activities
    acts = acts[(acts["lead_id"] == lead_id) & (acts["timestamp"] <= until)]
    out = []
    for when in times:
        rows = model.features(leads=leads, activities=acts, as_of=pd.Series([when]))
        out.append(float(model.score_features(rows, explain=False)[0][field]))  # type: ignore[arg-type]
    return out


def tenths(points: float) -> int:
    return round(points * 10)


def assert_adds_up(change: ScoreChange) -> None:
    assert tenths(change.change) == tenths(change.current_score) - tenths(change.previous_score)
    assert sum(tenths(p.points) for p in change.parts) == tenths(change.change)
    for part in change.parts:
        if part.reasons:
            assert sum(tenths(r.points) for r in part.reasons) == tenths(part.points), part.kind
        # the sentence shown: its listed points (the top reasons and "other factors") add up to the part
        listed = re.findall(r"\(([+-]\d+\.\d)\)", part.text().split(": ", 1)[-1])
        if part.reasons:
            assert sum(tenths(float(x)) for x in listed) == tenths(part.points), part.text()


def test_parts_add_up_to_the_change_and_match_the_cards(
    trained: Trained,
    model: LeadScoringModel,
    old_model: LeadScoringModel,
    open_leads: pd.DataFrame,
    end: pd.Timestamp,
) -> None:
    since = end - 14 * DAY
    sample = open_leads.sample(25, random_state=3)["lead_id"].tolist()
    started = time.perf_counter()
    changes = [
        explain_score_change(
            previous=LeadAtTime(old_model, record(trained, lead), since, "1"),
            current=LeadAtTime(model, record(trained, lead), end, "2"),
        )
        for lead in sample
    ]
    per_change_ms = (time.perf_counter() - started) / len(sample) * 1000
    print(f"explain_score_change: {per_change_ms:.1f} ms per change")
    assert per_change_ms < 1000
    for lead, change in zip(sample, changes, strict=True):
        assert_adds_up(change)
        # the two ends are exactly what the cards showed at the two times
        assert change.previous_score == card_scores(trained, old_model, lead, [since], until=end)[0]
        assert change.current_score == card_scores(trained, model, lead, [end], until=end)[0]
        assert change.model_change.kind is PartKind.MODEL_CHANGE
    assert any(c.model_change.points != 0 for c in changes)  # two different models do disagree
    assert any(c.model_change.reasons and "1 -> 2" in c.model_change.reasons[0].sentence for c in changes)
    assert any(c.time_passing.points != 0 for c in changes)


def test_no_new_activity_gives_exactly_zero_new_activity(
    trained: Trained,
    model: LeadScoringModel,
    old_model: LeadScoringModel,
    open_leads: pd.DataFrame,
    end: pd.Timestamp,
) -> None:
    since = end - 21 * DAY
    acts = trained.crm.activities
    active = set(acts.loc[acts["timestamp"] > since, "lead_id"])
    quiet = open_leads[~open_leads["lead_id"].isin(active)].head(10)["lead_id"].tolist()
    assert len(quiet) == 10
    for lead in quiet:
        change = explain_score_change(
            previous=LeadAtTime(old_model, record(trained, lead), since),
            current=LeadAtTime(model, record(trained, lead), end),
        )
        assert change.new_activity.points == 0.0
        assert change.new_activity.reasons == ()
        assert change.new_activity.note == "Nothing new since the previous score."
        assert_adds_up(change)
    # the same record with events after the previous score, but only up to it: still nothing new
    busy = open_leads[open_leads["lead_id"].isin(active)]["lead_id"].iloc[0]
    change = explain_score_change(
        previous=LeadAtTime(model, record(trained, busy), since),
        current=LeadAtTime(model, record(trained, busy, until=since), end),
    )
    assert change.new_activity.points == 0.0


def test_same_model_gives_zero_model_change(
    trained: Trained, model: LeadScoringModel, open_leads: pd.DataFrame, end: pd.Timestamp
) -> None:
    for lead in open_leads.sample(5, random_state=8)["lead_id"]:
        change = explain_score_change(
            previous=LeadAtTime(model, record(trained, lead), end - 10 * DAY),
            current=LeadAtTime(model, record(trained, lead), end),
        )
        assert change.model_change.points == 0.0
        assert change.model_change.reasons == ()
        assert_adds_up(change)
    # the same times, the same record: nothing changed at all
    same = explain_score_change(
        previous=LeadAtTime(model, record(trained, lead), end),
        current=LeadAtTime(model, record(trained, lead), end),
    )
    assert (same.change, *(p.points for p in same.parts)) == (0.0, 0.0, 0.0, 0.0)
    assert same.text.endswith("no change.")


def test_a_demo_request_and_a_pricing_visit_raise_new_activity_and_are_named(
    trained: Trained, model: LeadScoringModel, open_leads: pd.DataFrame, end: pd.Timestamp
) -> None:
    since = end - 10 * DAY
    acts = trained.crm.activities
    demo = set(acts.loc[acts["activity_type"] == "demo_request", "lead_id"])
    pool = open_leads[~open_leads["lead_id"].isin(demo) & (open_leads["created_at"] < since)].tail(1500)
    probability = model.predict_proba_features(
        model.features(leads=pool, activities=acts[acts["timestamp"] <= since], as_of=since)
    )
    # leads the model gives a fair chance: near 0% nothing moves a tenth of a point
    warm = pool[(probability >= 0.05) & (probability <= 0.5)]
    assert len(warm) >= 6
    candidates = warm.sample(6, random_state=5)["lead_id"]
    when = since + 2 * DAY
    raised = 0
    for lead in candidates:
        before = record(trained, lead, until=since)
        added = [
            *before.model_dump()["activities"],
            {"timestamp": when.isoformat(), "activity_type": "demo_request"},
            {
                "timestamp": (when + pd.Timedelta(hours=1)).isoformat(),
                "activity_type": "page_view",
                "page_category": "pricing",
            },
        ]
        after = RawLead.model_validate({**before.model_dump(), "activities": added})
        change = explain_score_change(
            previous=LeadAtTime(model, before, since), current=LeadAtTime(model, after, since + 3 * DAY)
        )
        assert_adds_up(change)
        part = change.new_activity
        assert part.points > 0, change.text
        named = {r.concept: r for r in part.reasons}
        assert "demo_request" in named and named["demo_request"].points > 0
        assert named["demo_request"].sentence.startswith("1 demo request since the previous score")
        assert "demo request" in part.text()
        if "page_pricing" in named:
            assert "pricing" in named["page_pricing"].sentence
        raised += 1
    assert raised == len(candidates)


def test_time_passing_without_activity_mostly_lowers_a_young_engaged_lead(
    trained: Trained, model: LeadScoringModel, end: pd.Timestamp
) -> None:
    since = end - 60 * DAY
    leads = trained.crm.leads
    age = (since - leads["created_at"]) / DAY
    young = leads[(age >= 2) & (age <= 10)]
    acts = trained.crm.activities
    recent = acts[acts["lead_id"].isin(young["lead_id"]) & (acts["timestamp"] <= since)]
    engaged = recent.groupby("lead_id").size()
    chosen = engaged[engaged >= 8].sort_values(ascending=False).head(20).index.tolist()
    assert len(chosen) >= 10
    drops = []
    for lead in chosen:
        lead_now = record(trained, lead, until=since)
        change = explain_score_change(
            previous=LeadAtTime(model, lead_now, since), current=LeadAtTime(model, lead_now, since + 30 * DAY)
        )
        assert change.new_activity.points == 0.0 and change.model_change.points == 0.0
        assert tenths(change.time_passing.points) == tenths(change.change)
        assert change.time_passing.label == "time passing (30 days)"
        drops.append(change.time_passing.points < 0)
        if change.time_passing.reasons:
            age_reason = [r for r in change.time_passing.reasons if r.concept == "lead_age_days"]
            assert not age_reason or age_reason[0].sentence == "the lead is 30 days older"
    assert np.mean(drops) >= 0.8, drops


def test_cool_down_date_is_where_re_scoring_falls_below_the_threshold(
    trained: Trained, model: LeadScoringModel, open_leads: pd.DataFrame, end: pd.Timestamp
) -> None:
    leads = open_leads.tail(1500)
    acts = trained.crm.activities
    rows = model.features(leads=leads, activities=acts, as_of=end)
    probability = model.predict_proba_features(rows)
    hot = leads["lead_id"].to_numpy()[probability >= model.thresholds.sql][:6]
    assert len(hot) >= 3
    dated = 0
    for lead in hot:
        forecast = cool_down_forecast(LeadAtTime(model, record(trained, lead), end), days=60)
        assert forecast.sales_ready_now and forecast.marketing_qualified_now
        now = card_scores(trained, model, lead, [end], until=end, field="probability")[0]
        assert forecast.probability_now == pytest.approx(now, abs=1e-9)
        for day, threshold in (
            (forecast.below_sales_ready_on, model.thresholds.sql),
            (forecast.below_mql_on, model.thresholds.mql),
        ):
            if day is None:
                continue
            assert day > end.date()
            at = pd.Timestamp(day) + (end - end.normalize())
            on_day, day_before = card_scores(
                trained, model, lead, [at, at - DAY], until=end, field="probability"
            )
            assert on_day < threshold <= day_before, (lead, day, on_day, day_before)
            dated += 1
        if forecast.below_sales_ready_on is not None:
            assert "falls below sales-ready around" in forecast.text
        else:
            assert "stays sales-ready for at least 60 days" in forecast.text
    assert dated >= len(hot)  # most hot leads cool below SQL and MQL within 60 days


def test_a_lead_already_below_gets_a_clear_answer(
    trained: Trained, model: LeadScoringModel, open_leads: pd.DataFrame, end: pd.Timestamp
) -> None:
    leads = open_leads.tail(600)
    rows = model.features(leads=leads, activities=trained.crm.activities, as_of=end)
    probability = model.predict_proba_features(rows)
    ids = leads["lead_id"].to_numpy()
    cold = ids[probability < model.thresholds.mql][0]
    forecast = cool_down_forecast(LeadAtTime(model, record(trained, cold), end))
    assert not forecast.sales_ready_now and not forecast.marketing_qualified_now
    assert forecast.below_sales_ready_on is None and forecast.below_mql_on is None
    assert forecast.text.startswith("Already below sales-ready and below MQL")
    mql = ids[(probability >= model.thresholds.mql) & (probability < model.thresholds.sql)]
    if len(mql):
        forecast = cool_down_forecast(LeadAtTime(model, record(trained, mql[0]), end))
        assert forecast.marketing_qualified_now and not forecast.sales_ready_now
        assert forecast.below_sales_ready_on is None
        assert forecast.text.startswith("Already below sales-ready (an MQL)")


def test_bad_input_names_the_field(
    trained: Trained, model: LeadScoringModel, open_leads: pd.DataFrame, end: pd.Timestamp
) -> None:
    lead = open_leads["lead_id"].iloc[0]
    rec = record(trained, lead)
    with pytest.raises(ValueError, match=r"current\.as_of .* is before previous\.as_of"):
        explain_score_change(previous=LeadAtTime(model, rec, end), current=LeadAtTime(model, rec, end - DAY))
    with pytest.raises(ValueError, match=r"previous\.as_of: not a timestamp"):
        explain_score_change(
            previous=LeadAtTime(model, rec, "yesterday-ish"), current=LeadAtTime(model, rec, end)
        )
    created = pd.Timestamp(rec.created_at)
    with pytest.raises(ValueError, match=r"previous\.as_of: the lead was not created yet"):
        explain_score_change(
            previous=LeadAtTime(model, rec, created - DAY), current=LeadAtTime(model, rec, end)
        )
    with pytest.raises(ValueError, match=r"lead_id: no lead 'nope'"):
        lead_record(trained.crm.leads, trained.crm.activities, "nope")
    with pytest.raises(ValueError, match="days must be between 1 and 3650"):
        cool_down_forecast(LeadAtTime(model, rec, end), days=0)
    with pytest.raises(ValueError, match=r"as_of: missing timestamp"):
        cool_down_forecast(LeadAtTime(model, rec, pd.NaT))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def event_model(
    tmp_path_factory: pytest.TempPathFactory, mlflow_store_template: Path
) -> Iterator[EventExport]:
    """A small model trained on an event export in its own words ('Trial Login', 'Page View')."""
    from typer.testing import CliRunner

    from leadscore.cli import app

    from ..features.test_events import make_event_export, write_mapping

    folder = tmp_path_factory.mktemp("event-export")
    home = folder / "home"
    home.mkdir()
    shutil.copyfile(mlflow_store_template, home / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADSCORE_HOME", str(home))
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        paths = make_event_export(folder)
        mapping = write_mapping(folder)
        table = folder / "t.parquet"
        for arguments in (
            ["build-features", "--mapping", str(mapping), "--output", str(table)],
            [
                "train",
                *("--set", f"training_table={table}"),
                *("--set", "tracking.model_name=events"),
                *("--set", "booster.max_rounds=60"),
            ],
        ):
            result = CliRunner().invoke(app, arguments)
            assert result.exit_code == 0, result.output
        from leadscore.model import store

        model = store.load_scoring_model(model_name="events", version="1")
        leads = pd.read_csv(paths["leads"], sep=";", dtype=str)
        activities = pd.read_csv(paths["activities"], sep=";", dtype=str)
        yield EventExport(model, leads, activities)


@dataclass(frozen=True)
class EventExport:
    model: LeadScoringModel
    leads: pd.DataFrame
    activities: pd.DataFrame

    def record(self, lead_id: str) -> tuple[dict[str, object], pd.Series]:
        """The export's own lead row with its activities nested, and their times (sorted)."""
        row: dict[str, object] = self.leads[self.leads["Contact"] == lead_id].iloc[0].to_dict()
        own = self.activities[self.activities["Contact"] == lead_id]
        row["activities"] = own.drop(columns=["Contact"]).to_dict("records")
        return row, pd.to_datetime(own["When"], format="%d/%m/%Y %H:%M").sort_values().reset_index(drop=True)


def test_an_event_export_model_explains_changes_in_its_own_words(event_model: EventExport) -> None:
    from leadscore.features.vocabulary import InputLayout

    model = event_model.model
    assert model.layout is InputLayout.EVENT_EXPORT
    busiest = event_model.activities["Contact"].value_counts().index[:5]
    for lead in busiest:
        row, times = event_model.record(str(lead))
        middle, after_last = times.iloc[len(times) // 2], times.iloc[-1] + DAY
        change = explain_score_change(
            previous=LeadAtTime(model, row, middle), current=LeadAtTime(model, row, after_last)
        )
        assert_adds_up(change)
        assert change.model_change.points == 0.0
        if change.new_activity.points:  # the export's own activity names its reasons
            assert any(
                "trial" in r.sentence.lower() or "page" in r.sentence.lower()
                for r in change.new_activity.reasons
            )
        # nothing after the last event: exactly zero new activity
        quiet = explain_score_change(
            previous=LeadAtTime(model, row, after_last), current=LeadAtTime(model, row, after_last + 20 * DAY)
        )
        assert quiet.new_activity.points == 0.0 and quiet.new_activity.reasons == ()
        assert_adds_up(quiet)
        forecast = cool_down_forecast(LeadAtTime(model, row, after_last), days=30)
        assert forecast.days_checked == 30 and forecast.text
    with pytest.raises(ValueError, match="not leadscore's raw leads"):
        explain_score_change(
            previous=LeadAtTime(model, RawLead(lead_id="x", created_at="2024-01-01"), "2024-02-01"),
            current=LeadAtTime(model, RawLead(lead_id="x", created_at="2024-01-01"), "2024-03-01"),
        )
