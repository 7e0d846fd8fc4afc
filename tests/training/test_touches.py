"""Sales touches learned from the export: the ledger's counts, the learned range, the report and the CLI."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.features.build import EventBuildJob
from leadscore.features.contract import SALES_TOUCH_TYPES
from leadscore.features.simulator import SimulatedCRM
from leadscore.features.training_table import SnapshotPolicy, lead_ledger_path
from leadscore.features.vocabulary import Tier
from leadscore.model.cadence import RULE_OF_THUMB, TouchCadence, follow_up
from leadscore.model.scoring_model import LeadScoringModel
from leadscore.training.touches import (
    MIN_TOUCHED_OPPORTUNITIES,
    cadence_from_counts,
    learn_touch_cadence,
    touch_plot,
    touch_report,
)

from ..conftest import Trained, build_from_csv
from ..features.test_events import make_event_export, write_mapping

POLICY = SnapshotPolicy(ages_days=(3, 14), horizon_days=60)


def touches_from_raw(
    *,
    leads: pd.DataFrame,
    activities: pd.DataFrame,
    outcomes: pd.DataFrame,
    sales_types: set[str],
    horizon: int,
) -> pd.Series:
    """The oracle: sales activities up to the first conversion within the horizon, else the horizon's end."""
    created = pd.to_datetime(leads.set_index("lead_id")["created_at"])
    until = max(
        created.max(),
        pd.to_datetime(activities["timestamp"]).max(),
        pd.to_datetime(outcomes["converted_at"]).max(),
    )
    converted = pd.to_datetime(outcomes.groupby("lead_id")["converted_at"].min()).reindex(created.index)
    horizon_end = created + pd.Timedelta(days=horizon)
    end = horizon_end.where(horizon_end <= until, until)
    end = converted.where(converted <= horizon_end, end)
    sales = activities[activities["activity_type"].isin(sales_types)]
    when = pd.to_datetime(sales["timestamp"]).to_numpy()
    limit = end.reindex(sales["lead_id"]).to_numpy()
    return sales[when <= limit].groupby("lead_id").size().reindex(created.index, fill_value=0).astype(float)


def test_the_ledger_counts_each_lead_s_sales_touches_up_to_its_outcome(
    small_crm: SimulatedCRM, tmp_path: Path
) -> None:
    # a sales call one day after each of 30 conversions: it must not count for those leads
    late = small_crm.outcomes.head(30)
    after_conversion = pd.DataFrame(
        {
            "lead_id": late["lead_id"].to_numpy(),
            "timestamp": (pd.to_datetime(late["converted_at"]) + pd.Timedelta(days=1)).to_numpy(),
            "activity_type": "sales_call",
        }
    )
    activities = pd.concat([small_crm.activities, after_conversion], ignore_index=True)
    output = build_from_csv(
        tmp_path, leads=small_crm.leads, activities=activities, outcomes=small_crm.outcomes, policy=POLICY
    )
    ledger = pd.read_parquet(lead_ledger_path(output)).set_index("lead_id")
    sales_types = {t.value for t in SALES_TOUCH_TYPES}
    expected = touches_from_raw(
        leads=small_crm.leads,
        activities=activities,
        outcomes=small_crm.outcomes,
        sales_types=sales_types,
        horizon=POLICY.horizon_days,
    )
    got = ledger["sales_touches"].reindex(expected.index.astype(str))
    assert expected.sum() > 100  # the simulator's reps do call
    np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())
    every_call = activities[activities["activity_type"].isin(sales_types)].groupby("lead_id").size()
    within = late["lead_id"][ledger.loc[late["lead_id"], "label"].to_numpy() == 1]
    assert len(within) > 20
    assert (ledger.loc[within, "sales_touches"] < every_call.reindex(within).to_numpy()).all()


def test_an_event_export_counts_the_types_it_maps_to_sales_touches(tmp_path: Path) -> None:
    paths = make_event_export(tmp_path)
    plain = EventBuildJob(mapping_path=write_mapping(tmp_path), output=tmp_path / "plain.parquet").run()
    plain_ledger = pd.read_parquet(lead_ledger_path(plain.output))
    assert (plain_ledger["sales_touches"] == 0).all()  # no type mapped to a sales touch
    assert "no sales touch" in str(learn_touch_cadence(plain_ledger)[1])
    activities = pd.read_csv(paths["activities"], sep=";", dtype=str)
    calls = activities[activities["What"] == "Page View"].iloc[::3].assign(What="Call")
    pd.concat([activities, calls]).to_csv(paths["activities"], sep=";", index=False)
    mapping = write_mapping(
        tmp_path,
        **{
            "tables.activities.types": {
                "Page View": "page_view",
                "Trial Login": "page_view",
                "Call": "sales_call",
            }
        },
    )
    built = EventBuildJob(mapping_path=mapping, output=tmp_path / "calls.parquet").run()
    ledger = pd.read_parquet(lead_ledger_path(built.output)).set_index("lead_id")
    leads = pd.read_csv(paths["leads"], sep=";", dtype=str)
    deals = pd.read_csv(paths["outcomes"], sep=";", dtype=str)
    form = "%d/%m/%Y %H:%M"
    expected = touches_from_raw(
        leads=pd.DataFrame(
            {"lead_id": leads["Contact"], "created_at": pd.to_datetime(leads["Signed Up"], format=form)}
        ),
        activities=pd.DataFrame(
            {
                "lead_id": calls["Contact"].tolist() + activities["Contact"].tolist(),
                "timestamp": pd.to_datetime(
                    calls["When"].tolist() + activities["When"].tolist(), format=form
                ),
                "activity_type": ["sales_call"] * len(calls) + ["other"] * len(activities),
            }
        ),
        outcomes=pd.DataFrame(
            {"lead_id": deals["Contact"], "converted_at": pd.to_datetime(deals["Won"], format=form)}
        ),
        sales_types={"sales_call"},
        horizon=60,
    )
    assert expected.sum() > 50
    np.testing.assert_array_equal(
        ledger["sales_touches"].reindex(expected.index).to_numpy(), expected.to_numpy()
    )


@pytest.mark.parametrize("seed", range(8))
def test_the_learned_range_is_exactly_what_its_definition_says(seed: int) -> None:
    rng = np.random.default_rng(seed)
    counts = 1 + rng.poisson(rng.uniform(0.5, 8.0), int(rng.integers(50, 400)))
    cadence = cadence_from_counts(counts)
    share_at_least = lambda k: np.mean(counts >= k)  # noqa: E731
    share_at_most = lambda k: np.mean(counts <= k)  # noqa: E731
    assert share_at_least(cadence.fewest) >= 0.8 > share_at_least(cadence.fewest + 1)
    assert share_at_most(cadence.most) >= 0.9 > share_at_most(cadence.most - 1)
    assert cadence.opportunities == len(counts) and cadence.learned


def test_a_known_distribution_gives_its_range() -> None:
    # 10 opportunities: 1,2,3,4,4,5,6,7,8,12 touches
    cadence = cadence_from_counts(np.array([4, 1, 2, 3, 4, 5, 6, 7, 8, 12]))
    assert (cadence.fewest, cadence.most) == (3, 8)  # 8 of 10 had >= 3; 9 of 10 had <= 8
    assert cadence.span == "3-8"


def ledger_of(touches: list[int], labels: list[int | None]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": [f"l{i}" for i in range(len(touches))],
            "sales_touches": np.asarray(touches, dtype=float),
            "label": pd.array(labels, dtype="Int8"),
        }
    )


def test_too_few_or_no_touched_opportunities_learn_nothing_and_say_why() -> None:
    few = ledger_of(
        [2] * (MIN_TOUCHED_OPPORTUNITIES - 1) + [0] * 100, [1] * (MIN_TOUCHED_OPPORTUNITIES - 1) + [0] * 100
    )
    cadence, why = learn_touch_cadence(few)
    assert (
        cadence is None and why is not None and f"only {MIN_TOUCHED_OPPORTUNITIES - 1} opportunities" in why
    )
    enough = ledger_of([2] * MIN_TOUCHED_OPPORTUNITIES, [1] * MIN_TOUCHED_OPPORTUNITIES)
    assert learn_touch_cadence(enough)[0] == TouchCadence(
        fewest=2, most=2, opportunities=MIN_TOUCHED_OPPORTUNITIES
    )
    none = ledger_of([0] * 200, [1] * 100 + [0] * 100)
    cadence, why = learn_touch_cadence(none)
    assert cadence is None and why is not None and "no sales touch" in why


def test_the_report_counts_what_happened_after_k_touches() -> None:
    # known outcomes: touches/label; two open leads (label missing) are left out
    touches = [0, 0, 0, 0, 1, 1, 2, 2, 3, 0, 5]
    labels: list[int | None] = [1, 0, 0, 0, 1, 0, 1, 0, 0, None, None]
    ledger = ledger_of(touches * 5, labels * 5)  # 45 known leads, 15 opportunities
    report = touch_report(ledger)
    after = report.after.set_index("touches")
    assert after.loc[0, "leads_reaching"] == 45 and after.loc[0, "opportunities"] == 15
    assert after.loc[1, "leads_reaching"] == 25 and after.loc[1, "opportunities"] == 10  # 1,1,2,2,3 x5
    assert 2 not in after.index  # only 15 leads reached 2 touches: below the table's 20
    assert after.loc[1, "rate_low"] < 0.4 < after.loc[1, "rate_high"]
    distribution = report.distribution.set_index("touches")
    assert distribution.loc[0, "opportunities"] == 5 and distribution.loc[
        2, "cumulative_share"
    ] == pytest.approx(1.0)
    text = " ".join(report.notes)
    assert "5 of 15 opportunities (33%) converted before any sales touch" in text
    assert "10 leads whose horizon is still open" in text
    assert "not what one more touch would do" in text
    assert "Counts above 1 touches are left out" in text
    assert report.cadence is None and report.not_learned is not None  # 10 touched opportunities
    assert touch_plot(report).axes


def test_a_ledger_without_touches_or_outcomes_is_a_readable_error() -> None:
    with pytest.raises(ValueError, match="no sales_touches column"):
        touch_report(pd.DataFrame({"lead_id": ["a"], "label": pd.array([1], dtype="Int8")}))
    with pytest.raises(ValueError, match="no lead in the ledger has a known outcome"):
        touch_report(ledger_of([1, 2], [None, None]))


@pytest.mark.parametrize(
    ("tier", "touches", "expected"),
    [
        (
            Tier.SALES_READY,
            0,
            "Sales-ready and not contacted yet; no estimate of whether contacting now helps",
        ),
        (Tier.SALES_READY, 1, "1 touch so far, fewer than usual: keep following up"),
        (Tier.SALES_READY, 3, "3 touches, within the usual 3-7: keep following up and vary the channel"),
        (Tier.SALES_READY, 7, "within the usual 3-7"),
        (Tier.SALES_READY, 8, "past the usual 3-7: ask for a decision"),
        # handing back never comes sooner than the rule of thumb's 10
        (Tier.NURTURE, 9, "9 touches and not sales-ready: keep nurturing"),
        (Tier.NURTURE, 10, "hand back to marketing nurture"),
    ],
)
def test_the_advice_reads_the_learned_range(tier: Tier, touches: int, expected: str | None) -> None:
    advice = follow_up(tier=tier, sales_touches=float(touches), cadence=TouchCadence(3, 7, opportunities=400))
    assert advice == expected if expected is None else (advice is not None and expected in advice)


def test_a_wide_learned_range_hands_back_only_past_its_own_end() -> None:
    wide = TouchCadence(4, 14, opportunities=400)
    assert "hand back" not in str(follow_up(tier=Tier.NURTURE, sales_touches=13.0, cadence=wide))
    assert "hand back" in str(follow_up(tier=Tier.NURTURE, sales_touches=14.0, cadence=wide))


def test_leads_converted_in_a_still_open_horizon_stay_out_of_the_rates() -> None:
    complete = ledger_of([1] * 40 + [0] * 60, [1] * 20 + [0] * 20 + [0] * 60).assign(horizon_complete=True)
    recent = ledger_of([1] * 30 + [1] * 30, [1] * 30 + [None] * 30).assign(horizon_complete=False)
    report = touch_report(pd.concat([complete, recent], ignore_index=True))
    after = report.after.set_index("touches")
    assert after.loc[0, "leads_reaching"] == 100 and after.loc[0, "rate"] == pytest.approx(0.2)
    assert after.loc[1, "rate"] == pytest.approx(0.5)  # not (20 + 30) / (40 + 30)
    assert any(note.startswith("60 leads whose horizon is still open") for note in report.notes)


def test_the_card_says_when_there_is_no_advice_or_only_the_rule_of_thumb() -> None:
    from types import SimpleNamespace

    from leadscore.training.model_card import _cadence_text

    flat = SimpleNamespace(feature_names=("lead_source",), touch_cadence=None, metadata={})
    assert _cadence_text(flat).startswith("No follow-up advice: the export has no sales activity")  # type: ignore[arg-type]
    reason = "only 12 opportunities had a sales touch before converting; a range needs 50"
    few = SimpleNamespace(
        feature_names=("sales_touches_total",),
        touch_cadence=None,
        metadata={"touch_cadence": f"{reason}: the 5-10 rule of thumb"},
    )
    text = _cadence_text(few)  # type: ignore[arg-type]
    assert f"5-10 touches rule of thumb ({reason})." in text


def test_the_trained_model_carries_the_range_its_ledger_gives(trained: Trained) -> None:
    ledger = pd.read_parquet(lead_ledger_path(trained.table_path))
    learned, _ = learn_touch_cadence(ledger)
    model = trained.result.model
    assert learned is not None and model.touch_cadence == learned
    assert trained.result.evaluated.touch_cadence == learned
    assert "sales touches: at least 80%" in str(model.metadata["touch_cadence"])
    rows = trained.table.sort_values("as_of").tail(3000).reset_index(drop=True)
    scored = model.score_features(rows, explain=False)
    contact = model.contact_advice(rows)
    ready = [
        (s, t, c)
        for s, t, c in zip(scored, rows["sales_touches_total"], contact, strict=True)
        if s["tier"] == "sales_ready"
    ]
    assert ready
    for s, t, c in ready:
        assert s["follow_up"] == follow_up(
            tier=Tier.SALES_READY, sales_touches=float(t), cadence=learned, contact=c
        )
    assert any(learned.span in str(s["follow_up"]) for s, _, _ in ready)


def test_a_model_saved_before_the_cadence_existed_loads_with_the_rule_of_thumb(trained: Trained) -> None:
    state = trained.result.model.__getstate__()
    state.pop("touch_cadence")
    old = LeadScoringModel.__new__(LeadScoringModel)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert old.touch_cadence is None
    rows = trained.table.sort_values("as_of").tail(3000).reset_index(drop=True)
    advice = [s["follow_up"] for s in old.score_features(rows, explain=False) if s["follow_up"]]
    cadence_lines = [a for a in advice if "so far" in a or "the usual" in a]
    assert cadence_lines and all("5-10" in a for a in cadence_lines)
    assert any("a common rule of thumb: 5-10 touches" in a for a in advice)
    assert RULE_OF_THUMB.span == "5-10" and not RULE_OF_THUMB.learned


def test_touches_command_writes_the_report_and_refuses_a_table_without_ledger(
    trained: Trained, tmp_path: Path
) -> None:
    runner = CliRunner()
    out = tmp_path / "reports"
    result = runner.invoke(app, ["touches", "--table", str(trained.table_path), "--output", str(out)])
    assert result.exit_code == 0, result.output
    learned = trained.result.model.touch_cadence
    assert learned is not None and f"learned range: {learned.span} sales touches" in result.output
    after = pd.read_csv(out / "touches_after.csv")
    assert after["leads_reaching"].is_monotonic_decreasing
    assert (out / "touches.png").stat().st_size > 10_000 and (out / "touches.csv").exists()
    lonely = tmp_path / "lonely.parquet"
    trained.table.head(10).to_parquet(lonely)
    result = runner.invoke(app, ["touches", "--table", str(lonely), "--output", str(out)])
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert "no lead ledger" in result.output and "rebuild it" in result.output
    lonely.with_suffix(".meta.json").write_text('{"mode": "flat"}')  # a flat export: rebuilding cannot help
    result = runner.invoke(app, ["touches", "--table", str(lonely), "--output", str(out)])
    assert result.exit_code != 0 and "flat export" in result.output and "rebuild" not in result.output
