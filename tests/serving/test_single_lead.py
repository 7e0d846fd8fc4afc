"""The single-lead fast path equals the batch path: features, probabilities, reasons, next best actions.

Property tests over simulated leads (the newest leads of the test model's export) with random
activities, engagement counts, time stamp spellings, fit values and snapshot times. Whenever the
fast path accepts a lead, the batch path must accept it too and give the identical result; when it
declines, the batch path decides (and rejects or scores it) -- the fast path never rejects.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from leadscore.features.catalogue import CATEGORICAL_FEATURES, FEATURE_NAMES
from leadscore.features.single_lead import epoch_microseconds
from leadscore.features.vocabulary import ActivityType, PageCategory
from leadscore.model.raw_leads import prepare_leads, utc_naive
from leadscore.serving import engine
from leadscore.serving.errors import RequestInvalid
from leadscore.serving.fast import FastScorer, applies_to, prepare_one
from leadscore.serving.schemas import ExplainRequest, RawLead, ScoreRequest
from leadscore.serving.settings import ServingSettings
from tests.serving.serving_support import TrainedModel

NOW = pd.Timestamp("2026-01-01T00:00:00")  # after every simulated lead; fixed for both paths
SETTINGS = ServingSettings(api_keys=("k" * 20,))
PROPERTY = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # the same cases every run (they are many and varied; see the leads strategy)
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def loaded(champion: engine.LoadedModel) -> engine.LoadedModel:
    assert applies_to(champion.model) and champion.fast is not None
    return champion


def _now_us() -> int:
    return int(NOW.value // 1000)


def _fast(lead: RawLead, as_of: str | None) -> Any:
    return prepare_one(
        lead, request_as_of=as_of, now_us=_now_us(), clock_skew_seconds=300.0, full_validation=False
    )


# --- time stamps ---------------------------------------------------------------------------------
def _spell(moment: dt.datetime, style: int, offset_minutes: int) -> str:
    """One ISO 8601 spelling of a naive-UTC moment (the moment itself, whatever the spelling)."""
    if style == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%S")
    if style == 1:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 2:
        return moment.isoformat(timespec="microseconds")
    if style == 3:
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if style == 4:
        local = moment + dt.timedelta(minutes=offset_minutes)
        sign = "+" if offset_minutes >= 0 else "-"
        hours, minutes = divmod(abs(offset_minutes), 60)
        return local.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{hours:02d}:{minutes:02d}"
    if style == 5:
        return moment.strftime("%Y-%m-%dT%H:%M")
    return moment.strftime("%Y-%m-%d")


moments = st.datetimes(min_value=dt.datetime(1650, 1, 1), max_value=dt.datetime(2300, 1, 1))
texts = st.one_of(
    st.builds(_spell, moments, st.integers(0, 6), st.integers(-14 * 60, 14 * 60)),
    st.sampled_from(["2025-02-30T00:00:00", "2025-01-01T24:00:00", "2025-01-01T10:00:00.1234567", "x"]),
    st.text(alphabet="0123456789-T:Z+. ", max_size=26),
)


@given(texts)
@settings(max_examples=400, deadline=None)
def test_time_stamps_read_like_pandas_or_not_at_all(text: str) -> None:
    ours = epoch_microseconds(text)
    if ours is None:
        return  # the batch path decides
    theirs = utc_naive([text]).iloc[0]
    assert not pd.isna(theirs), text
    assert ours == int(theirs.value // 1000), text


# the commonest form ("2025-11-29T19:33:54") has its own quick reader: it must answer exactly as the
# general one for every text of that shape, with an odd character in any one or two places
_ODD = " +-_.,:/tTzZa\u0661\uff12"


def _with_odd_characters(text: str, places: list[tuple[int, str]]) -> str:
    chars = list(text)
    for place, char in places:
        chars[place % len(chars)] = char
    return "".join(chars)


shaped = st.builds(
    _with_odd_characters,
    st.builds(_spell, moments, st.just(0), st.just(0)),
    st.lists(st.tuples(st.integers(0, 18), st.sampled_from(_ODD + "0123456789")), max_size=2),
)


@given(shaped)
@example("2025-11-29t19:33:54")  # lower-case separator: Python reads it, pandas' forms do not
@example("2025-11-29X19:33:54")
@example("2025-11-29T19:33,54")  # a comma Python 3.11 reads as a fraction
@example("\u0661999-01-01T00:00:00")  # a digit outside ASCII
@example("1677-12-31T23:59:59")  # outside pandas' range
@example("2025-01-01T24:00:00")  # Python 3.14 reads it as the next midnight
@settings(max_examples=600, deadline=None)
def test_the_quick_reader_answers_as_the_general_one(text: str) -> None:
    from leadscore.features.single_lead import _epoch_microseconds_any_form

    assert epoch_microseconds(text) == _epoch_microseconds_any_form(text), text


# --- leads -----------------------------------------------------------------------------------------
PAGES = [p.value for p in PageCategory] + [None, "Pricing", "landing"]
EMAILS = ["a@gmail.com", " B@GMAIL.COM ", "c@uni.edu", "d@ox.ac.uk", "e@corp.example", "no-at", "", None]


@st.composite
def leads(draw: st.DrawFn, samples: list[dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
    lead = dict(samples[draw(st.integers(0, len(samples) - 1))])
    created = (
        pd.Timestamp(lead["created_at"]).tz_localize(None)
        if pd.Timestamp(lead["created_at"]).tzinfo is None
        else pd.Timestamp(lead["created_at"]).tz_convert("UTC").tz_localize(None)
    )
    span = max(1, int((NOW - created).total_seconds()))

    def moment(low: int = 0) -> dt.datetime:
        seconds = draw(st.integers(low, span + 600))
        micro = draw(st.sampled_from([0, 0, 1, 999_999, draw(st.integers(0, 999_999))]))
        return (created + pd.Timedelta(seconds=seconds, microseconds=micro)).to_pydatetime()

    def spelled(low: int = 0) -> str:
        return _spell(moment(low), draw(st.integers(0, 6)), draw(st.integers(-600, 600)))

    if draw(st.booleans()):
        lead["activities"] = [
            {
                "timestamp": spelled(),
                "activity_type": draw(st.sampled_from([t.value for t in ActivityType])),
                "page_category": draw(st.sampled_from(PAGES)),
            }
            for _ in range(draw(st.integers(0, 40)))
        ]
    if draw(st.booleans()):
        lead["engagement_counts"] = [
            {
                "activity_type": draw(st.sampled_from([t.value for t in ActivityType])),
                "page_category": draw(st.sampled_from(PAGES)),
                "count": draw(st.integers(0, 30)),
                "last_at": spelled(),
                **({"first_at": spelled()} if draw(st.booleans()) else {}),
            }
            for _ in range(draw(st.integers(1, 3)))
        ]
    if draw(st.booleans()):
        lead["email"] = draw(st.sampled_from(EMAILS))
        lead["channel"] = draw(st.sampled_from(["web_form", "carrier_pigeon", "  ", None, "referral"]))
        lead["employee_count"] = draw(st.one_of(st.none(), st.floats(0, 1e7), st.integers(0, 10**6)))
        lead["annual_revenue"] = draw(st.one_of(st.none(), st.floats(0, 1e10)))
    as_of = None
    choice = draw(st.integers(0, 3))
    if choice == 1:
        lead["as_of"] = spelled()
    elif choice == 2:
        as_of = spelled()
    elif choice == 3:
        lead["as_of"] = spelled(low=span + 60)  # after now: the batch path rejects it
    return lead, as_of


def _same_features(fast_row: dict[str, object], frame: pd.DataFrame) -> None:
    for name in FEATURE_NAMES:
        theirs = frame[name].iloc[0]
        ours = fast_row[name]
        if name in CATEGORICAL_FEATURES:
            assert (None if pd.isna(theirs) else str(theirs)) == ours, name
        elif isinstance(ours, float) and math.isnan(ours):
            assert pd.isna(theirs), name
        else:
            assert np.float32(theirs) == np.float32(ours), (name, theirs, ours)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def samples(trained_model: TrainedModel) -> list[dict[str, Any]]:
    return trained_model.leads[:60]


def test_every_sample_lead_takes_the_fast_path(loaded: engine.LoadedModel, samples: list[dict]) -> None:
    for raw in samples:
        assert _fast(RawLead.model_validate(raw), None) is not None, raw["lead_id"]


NEW_FIELDS = {
    "status",
    "status_note",
    "probability_low",
    "probability_high",
    "low_confidence",
    "context_points",
    "fit_points",
    "engagement_points",
    "base_score",
}


def test_property_fast_path_equals_batch_path(
    loaded: engine.LoadedModel, samples: list[dict[str, Any]]
) -> None:
    model = loaded.model
    stats = {"fast": 0, "declined": 0}

    @given(leads(samples), st.booleans(), st.integers(0, 8))
    @PROPERTY
    def check(case: tuple[dict[str, Any], str | None], explain: bool, top_k: int) -> None:
        raw, as_of = case
        lead = RawLead.model_validate(raw)
        one = _fast(lead, as_of)
        try:
            prepared = prepare_leads([lead], as_of=as_of, now=NOW)
        except RequestInvalid:
            assert one is None, "the fast path accepted a lead the batch path rejects"
            stats["declined"] += 1
            return
        if one is None:
            stats["declined"] += 1
            return
        stats["fast"] += 1
        frame = model.features(leads=prepared.leads, activities=prepared.activities, as_of=prepared.as_of)
        _same_features(one.features(), frame)
        batch = engine.score_prepared(loaded, prepared, explain=explain, top_k=top_k)[0]
        fast = engine.score_one_fast(loaded, one, explain=explain, top_k=top_k)
        assert fast.keys() >= NEW_FIELDS and batch.keys() >= NEW_FIELDS
        assert fast == batch
        # and as the API sends them (nothing the schema drops hides a difference)
        assert engine._response(loaded, [fast]).model_dump() == engine._response(loaded, [batch]).model_dump()

        request = ExplainRequest.model_validate({"lead": raw, "as_of": as_of})
        explained_fast = engine.explain_request(loaded, request, SETTINGS, now=NOW, fast=True)
        explained_batch = engine.explain_request(loaded, request, SETTINGS, now=NOW, fast=False)
        assert explained_fast.model_dump() == explained_batch.model_dump()

    check()
    # the generator makes many invalid leads on purpose (declined by both paths); enough must be valid
    assert stats["fast"] >= 20, stats


def test_property_fast_batches_equal_the_batch_path(
    loaded: engine.LoadedModel, samples: list[dict[str, Any]]
) -> None:
    """A batch of certainly valid leads goes through ``compute_features``' kernel on plain arrays:
    the whole response equals the pandas batch path's; any other batch is the batch path's."""
    stats = {"fast": 0, "declined": 0}
    # mostly the export's own leads as they are (valid), some drawn like the single-lead cases
    members = st.one_of(
        *[st.sampled_from(samples).map(lambda lead: (lead, None))] * 4,
        leads(samples),
    )

    @given(st.lists(members, min_size=2, max_size=6), st.booleans(), st.integers(0, 8))
    @settings(PROPERTY, max_examples=40)
    def check(cases: list[tuple[dict[str, Any], str | None]], explain: bool, top_k: int) -> None:
        raws = [{**raw, "lead_id": f"{raw['lead_id']}-{i}"} for i, (raw, _) in enumerate(cases)]
        as_of = cases[0][1]  # the request's own as_of, when the first lead drew one
        request = ScoreRequest.model_validate(
            {"leads": raws, "explain": explain, "top_k": top_k, "as_of": as_of}
        )
        many = engine._fast_many(loaded, request.leads, as_of=request.as_of, settings=SETTINGS, now=NOW)
        stats["fast" if many is not None else "declined"] += 1
        try:
            batch = engine.score_request(loaded, request, SETTINGS, now=NOW, fast=False)
        except RequestInvalid as invalid:
            assert many is None, "the fast path accepted a batch the batch path rejects"
            with pytest.raises(RequestInvalid) as again:
                engine.score_request(loaded, request, SETTINGS, now=NOW, fast=True)
            assert again.value.problems == invalid.problems
            return
        fast = engine.score_request(loaded, request, SETTINGS, now=NOW, fast=True)
        assert fast.model_dump() == batch.model_dump()

    check()
    assert stats["fast"] >= 10 and stats["declined"] >= 3, stats


def test_a_batch_repeating_a_lead_id_is_the_batch_path_s_to_refuse(
    loaded: engine.LoadedModel, samples: list[dict[str, Any]]
) -> None:
    raws = [samples[0], samples[1], {**samples[2], "lead_id": samples[0]["lead_id"]}]
    request = ScoreRequest.model_validate({"leads": raws})
    assert engine._fast_many(loaded, request.leads, as_of=None, settings=SETTINGS, now=NOW) is None
    with pytest.raises(RequestInvalid) as invalid:
        engine.score_request(loaded, request, SETTINGS, now=NOW)
    assert {p.field for p in invalid.value.problems} >= {"leads[0].lead_id", "leads[2].lead_id"}


def test_score_request_prepares_tables_only_when_a_lead_is_not_certainly_valid(
    loaded: engine.LoadedModel, samples: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = engine.prepare_leads

    def counting(raw: Any, **kwargs: Any) -> Any:
        calls.append(len(raw))
        return original(raw, **kwargs)

    monkeypatch.setattr(engine, "prepare_leads", counting)
    one = engine.score_request(loaded, ScoreRequest.model_validate({"leads": samples[:1]}), SETTINGS, now=NOW)
    two = engine.score_request(loaded, ScoreRequest.model_validate({"leads": samples[:2]}), SETTINGS, now=NOW)
    assert calls == []
    assert one.results[0] == two.results[0]
    unsure = {**samples[1], "created_at": "01/02/2024"}  # not a form the fast reader claims: batch path
    with pytest.raises(RequestInvalid):
        engine.score_request(
            loaded, ScoreRequest.model_validate({"leads": [samples[0], unsure]}), SETTINGS, now=NOW
        )
    assert calls == [2]


def test_outside_profile_lead_with_a_demo_request_is_for_review_on_both_paths(
    loaded: engine.LoadedModel, samples: list[dict[str, Any]]
) -> None:
    """Every lead below MQL and fit D (cut-offs above any lead): a demo request means review."""
    from leadscore.model.scoring_model import GradeCutoffs, TierThresholds

    inf = float("inf")
    model = dataclasses.replace(
        loaded.model,
        thresholds=TierThresholds(mql=1.0, sql=1.0),
        grade_cutoffs=GradeCutoffs(fit=(inf, inf, inf), engagement=(inf, inf, inf)),
    )
    strict = engine.LoadedModel(model, "leadscore", loaded.version, 0.0, fast=FastScorer(model))
    raw = dict(samples[0])
    created = pd.Timestamp(raw["created_at"])
    demo = {"timestamp": (created + pd.Timedelta(hours=1)).isoformat(), "activity_type": "demo_request"}
    asking = {**raw, "activities": [*raw.get("activities", []), demo]}
    quiet = {
        **raw,
        "activities": [a for a in raw.get("activities", []) if a["activity_type"] != "demo_request"],
        "engagement_counts": [
            c for c in raw.get("engagement_counts", []) if c["activity_type"] != "demo_request"
        ],
    }
    for lead, expected in ((asking, "review_outside_profile"), (quiet, "not_a_fit")):
        request = ScoreRequest.model_validate({"leads": [lead]})
        for explain in (True, False):
            request = request.model_copy(update={"explain": explain})
            fast = engine.score_request(strict, request, SETTINGS, now=NOW, fast=True).results[0]
            batch = engine.score_request(strict, request, SETTINGS, now=NOW, fast=False).results[0]
            assert fast.tier == batch.tier == expected, (explain, fast.tier, batch.tier)
            assert fast == batch


def test_one_row_contributions_are_lightgbm_s_own_bit_for_bit(loaded: engine.LoadedModel) -> None:
    """One lead's TreeSHAP through LightGBM's single-row C API (GIL held) equals Booster.predict."""
    scorer = FastScorer(loaded.model)
    assert scorer._one_row is not None  # the wheel's library has the single-row API
    rng = np.random.default_rng(3)
    rows = rng.normal(0, 3, size=(200, len(scorer.names)))
    rows[rng.random(rows.shape) < 0.3] = np.nan
    for row in rows:
        expected = loaded.model.booster.predict(row[None, :], pred_contrib=True, num_threads=1)
        assert np.array_equal(scorer.contributions(row[None, :]), expected)
    assert scorer.contributions(rows[:3]).shape == (3, len(scorer.names) + 1)  # batches: predict


def test_a_linear_learner_answers_alike_on_both_paths(
    loaded: engine.LoadedModel, samples: list[dict[str, Any]]
) -> None:
    """When the evidence picks the linear learner, the fast path (one float row) and the batch path
    (a frame) score and explain each lead identically, and the contributions stay exact."""
    from leadscore.model.linear import LinearScorer

    model = loaded.model
    prepared = prepare_leads([RawLead.model_validate(raw) for raw in samples], as_of=None, now=NOW)
    frame = model.features(leads=prepared.leads, activities=prepared.activities, as_of=prepared.as_of)
    encoded = model.encode(frame)
    label = (frame[FEATURE_NAMES[0]].rank(method="first") % 3 == 0).astype(int).to_numpy()  # any two classes
    linear = LinearScorer(
        feature_names=model.feature_names,
        categorical=[n for n in model.feature_names if n in CATEGORICAL_FEATURES],
    ).fit(encoded, label)
    swapped = engine.prepared_model(
        dataclasses.replace(model, booster=linear), name="leadscore", version="linear"
    )
    assert swapped.fast is not None
    contributions = swapped.model.contributions(frame)
    np.testing.assert_allclose(contributions.sum(axis=1), swapped.model.raw_scores(frame), atol=1e-9)
    for raw in samples[:20]:
        lead = RawLead.model_validate(raw)
        one = _fast(lead, None)
        assert one is not None
        batch = engine.score_prepared(
            swapped, prepare_leads([lead], as_of=None, now=NOW), explain=True, top_k=3
        )[0]
        assert engine.score_one_fast(swapped, one, explain=True, top_k=3) == batch
