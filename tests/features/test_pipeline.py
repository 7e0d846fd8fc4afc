"""The point-in-time feature pipeline: exact values, serving parity and leakage safety."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.features.catalogue import (
    FEATURE_NAMES,
    SIGNALS,
    days_since_name,
    total_count_name,
    window_count_name,
)
from leadscore.features.contract import PII_COLUMNS
from leadscore.features.pipeline import compute_features, email_domain_type
from leadscore.features.simulator import SimulatedCRM
from leadscore.features.training_table import (
    SnapshotPolicy,
    build_training_table,
    label_snapshots,
    make_snapshots,
    observed_until,
)


def _lead(lead_id: str, created: str, email: str | None = "a@acme.com") -> dict[str, object]:
    return {
        "lead_id": lead_id,
        "created_at": pd.Timestamp(created),
        "channel": "web_form",
        "job_title": "CTO",
        "seniority": "c_level",
        "department": "it",
        "country": "US",
        "industry": "software",
        "employee_count": 250.0,
        "annual_revenue": 3e7,
        "company_type": "private",
        "email": email,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "phone": "+1 555 0100",
    }


def _activities(rows: list[tuple[str, str, str, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["lead_id", "timestamp", "activity_type", "page_category"]).assign(
        timestamp=lambda f: pd.to_datetime(f["timestamp"], format="ISO8601")
    )


def _features_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(
        {c: "object" for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)}
    )


def test_hand_computed_windows_counts_and_recency() -> None:
    leads = pd.DataFrame([_lead("a", "2024-01-01"), _lead("b", "2024-01-05", email="b@gmail.com")])
    activities = _activities(
        [
            ("a", "2024-01-02 09:00", "page_view", "pricing"),
            ("a", "2024-01-10 00:00", "demo_request", None),
            ("a", "2024-02-19 12:00", "page_view", "pricing"),
            ("a", "2024-02-20 00:00:01", "page_view", "pricing"),  # one second after the snapshot
            ("b", "2024-01-06", "sales_call", None),
            ("b", "2024-01-07", "sales_meeting", None),
        ]
    )
    snapshots = pd.DataFrame(
        {"lead_id": ["a", "a", "b"], "as_of": pd.to_datetime(["2024-02-20", "2024-01-10", "2024-03-01"])}
    )
    f = compute_features(leads=leads, activities=activities, snapshots=snapshots)
    assert list(f.columns) == ["lead_id", "as_of", *FEATURE_NAMES]
    first, early, b = f.iloc[0], f.iloc[1], f.iloc[2]
    assert first["page_pricing_7d"] == 1 and first["page_pricing_30d"] == 1 and first["page_pricing_90d"] == 2
    assert first["page_pricing_total"] == 2  # the event one second later is not counted
    assert first["days_since_page_pricing"] == pytest.approx(0.5)
    assert first["days_since_demo_request"] == pytest.approx(41.0)
    assert early["demo_request_total"] == 1  # an event exactly at as_of counts
    assert early["days_since_demo_request"] == 0
    assert early["lead_age_days"] == pytest.approx(9.0)
    assert b["sales_touches_total"] == 2 and b["sales_call_total"] == 1
    assert b["days_since_last_sales_touch"] == pytest.approx(54.0)  # 2024 is a leap year
    assert np.isnan(b["days_since_last_activity"])
    assert str(b["email_domain_type"]) == "free" and str(first["email_domain_type"]) == "corporate"
    assert not set(PII_COLUMNS) & set(f.columns)


def test_email_domain_type_classes() -> None:
    emails = pd.Series(["x@Acme.COM", "y@gmail.com", "z@mit.edu", None, "broken", "p@ox.ac.uk"])
    assert email_domain_type(emails).astype(str).tolist() == [
        "corporate",
        "free",
        "education",
        "missing",
        "missing",
        "education",
    ]


def _reference_counts(events: pd.DataFrame, as_of: pd.Timestamp) -> dict[str, float]:
    """Brute-force reference: a plain loop over the events, independent of the vectorised code."""
    out: dict[str, float] = {}
    for signal in SIGNALS:
        if signal.page_category is None:
            mine = events[events["activity_type"] == signal.activity_type.value]
        else:
            mine = events[
                (events["activity_type"] == "page_view")
                & (events["page_category"] == signal.page_category.value)
            ]
        times = [t for t in mine["timestamp"] if t <= as_of]
        for days in (7, 30, 90):
            out[window_count_name(signal.name, days)] = sum(
                1 for t in times if t > as_of - pd.Timedelta(days=days)
            )
        out[total_count_name(signal.name)] = len(times)
        out[days_since_name(signal.name)] = (as_of - max(times)) / pd.Timedelta(days=1) if times else np.nan
    return out


@settings(max_examples=40, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=200 * 86_400), min_size=0, max_size=40),
    kinds=st.lists(
        st.sampled_from(
            [
                "page_view:pricing",
                "page_view:blog",
                "demo_request:",
                "sales_call:",
                "email_open:",
                "page_view:careers",
                "unsubscribe:",
            ]
        ),
        min_size=40,
        max_size=40,
    ),
    as_of_offset=st.integers(min_value=0, max_value=220 * 86_400),
)
def test_vectorised_counts_equal_brute_force(offsets: list[int], kinds: list[str], as_of_offset: int) -> None:
    created = pd.Timestamp("2024-03-01")
    leads = pd.DataFrame([_lead("x", "2024-03-01"), _lead("y", "2024-03-01")])
    types = [k.split(":") for k in kinds[: len(offsets)]]
    events = pd.DataFrame(
        {
            "lead_id": ["x"] * len(offsets),
            "timestamp": [created + pd.Timedelta(seconds=o) for o in offsets],
            "activity_type": [t for t, _ in types],
            "page_category": [p or None for _, p in types],
        }
    )
    noise = events.assign(lead_id="y")  # another lead's events must not leak in
    as_of = created + pd.Timedelta(seconds=as_of_offset)
    f = compute_features(
        leads=leads,
        activities=pd.concat([events, noise], ignore_index=True),
        snapshots=pd.DataFrame({"lead_id": ["x"], "as_of": [as_of]}),
    )
    expected = _reference_counts(events.astype({"timestamp": "datetime64[us]"}), as_of)
    for name, value in expected.items():
        assert f[name].iloc[0] == pytest.approx(value, nan_ok=True, abs=1e-4), name


@pytest.fixture(scope="module")
def table(small_crm: SimulatedCRM) -> pd.DataFrame:
    return build_training_table(
        leads=small_crm.leads,
        activities=small_crm.activities,
        outcomes=small_crm.outcomes,
        policy=SnapshotPolicy(),
    )


def test_serving_transform_gives_the_identical_row(small_crm: SimulatedCRM, table: pd.DataFrame) -> None:
    """A lead plus only its own activities up to now, as serving sees it, gives the training row."""
    rng = np.random.default_rng(0)
    rows = table.iloc[rng.choice(len(table), size=40, replace=False)]
    for _, row in rows.iterrows():
        lead = small_crm.leads[small_crm.leads["lead_id"] == row["lead_id"]]
        mine = small_crm.activities[
            (small_crm.activities["lead_id"] == row["lead_id"])
            & (small_crm.activities["timestamp"] <= row["as_of"])
        ]
        served = compute_features(
            leads=lead.reset_index(drop=True),
            activities=mine.reset_index(drop=True),
            snapshots=pd.DataFrame({"lead_id": [row["lead_id"]], "as_of": [row["as_of"]]}),
        )
        pd.testing.assert_frame_equal(
            _features_as_text(served[list(FEATURE_NAMES)]).reset_index(drop=True),
            _features_as_text(table.loc[[row.name], list(FEATURE_NAMES)]).reset_index(drop=True),
        )


def test_events_after_the_snapshot_never_change_features(small_crm: SimulatedCRM) -> None:
    leads, activities = small_crm.leads, small_crm.activities
    snapshots = pd.DataFrame(
        {"lead_id": leads["lead_id"], "as_of": leads["created_at"] + pd.Timedelta(days=20)}
    )
    baseline = compute_features(leads=leads, activities=activities, snapshots=snapshots)
    as_of = activities["lead_id"].map(dict(zip(snapshots["lead_id"], snapshots["as_of"], strict=True)))
    future = activities["timestamp"] > as_of
    assert future.sum() > 100  # the test means something only if there are future events
    deleted = compute_features(leads=leads, activities=activities[~future], snapshots=snapshots)
    rng = np.random.default_rng(1)
    shuffled = activities.copy()
    shuffled.loc[future, "activity_type"] = rng.permutation(shuffled.loc[future, "activity_type"].to_numpy())
    shuffled.loc[future, "timestamp"] = shuffled.loc[future, "timestamp"] + pd.to_timedelta(
        rng.integers(0, 30 * 86_400, future.sum()), unit="s"
    )
    shuffled = shuffled.sample(frac=1.0, random_state=2)  # row order must not matter either
    reshuffled = compute_features(leads=leads, activities=shuffled, snapshots=snapshots)
    pd.testing.assert_frame_equal(_features_as_text(baseline), _features_as_text(deleted))
    pd.testing.assert_frame_equal(_features_as_text(baseline), _features_as_text(reshuffled))


def test_labels_read_only_after_the_snapshot_and_within_the_horizon() -> None:
    leads = pd.DataFrame([_lead(i, "2024-01-01") for i in ("before", "at", "edge", "late", "never", "young")])
    leads.loc[leads["lead_id"] == "young", "created_at"] = pd.Timestamp("2024-06-20")
    outcomes = pd.DataFrame(
        {
            "lead_id": ["before", "at", "edge", "late"],
            "converted_at": pd.to_datetime(
                ["2024-01-10", "2024-01-31", "2024-04-30", "2024-04-30 00:00:01"], format="ISO8601"
            ),
            "opportunity_amount": [1.0, 1.0, 25_000.0, 9.0],
        }
    )
    activities = _activities([("never", "2024-01-02", "page_view", "blog")])
    policy = SnapshotPolicy(ages_days=(30,), horizon_days=90, older_ages_per_lead=0)
    table = build_training_table(
        leads=leads, activities=activities, outcomes=outcomes, policy=policy, until=pd.Timestamp("2024-07-01")
    )
    labels = dict(zip(table["lead_id"], table["label"].astype(int), strict=True))
    # converted before or exactly at the snapshot (2024-01-31): excluded, never a feature row
    assert "before" not in labels and "at" not in labels
    assert labels == {"edge": 1, "late": 0, "never": 0}  # 'young' horizon not observed: excluded
    # the revenue each label found: the opportunity's amount when inside the horizon, else 0
    amounts = dict(zip(table["lead_id"], table["label_amount"], strict=True))
    assert amounts == {"edge": 25_000.0, "late": 0.0, "never": 0.0}
    no_amounts = build_training_table(
        leads=leads,
        activities=activities,
        outcomes=outcomes.drop(columns="opportunity_amount"),
        policy=policy,
        until=pd.Timestamp("2024-07-01"),
    )
    unknown = no_amounts.set_index("lead_id")["label_amount"]  # a positive without an amount: unknown
    assert np.isnan(unknown["edge"]) and unknown["late"] == 0.0 and unknown["never"] == 0.0
    kept = build_training_table(
        leads=leads,
        activities=activities,
        outcomes=outcomes,
        policy=SnapshotPolicy(
            ages_days=(30,), horizon_days=90, keep_incomplete_horizon=True, older_ages_per_lead=0
        ),
        until=pd.Timestamp("2024-07-01"),
    )
    young = kept[kept["lead_id"] == "young"]
    assert young["label"].isna().all() and not young["horizon_complete"].any()
    assert young["label_amount"].isna().all()


def test_training_table_shape_and_policy(small_crm: SimulatedCRM, table: pd.DataFrame) -> None:
    until = observed_until(
        leads=small_crm.leads, activities=small_crm.activities, outcomes=small_crm.outcomes
    )
    assert (table["as_of"] + pd.Timedelta(days=90) <= until).all()
    policy = SnapshotPolicy()
    ages = table["snapshot_age_days"]
    assert set(ages[ages <= max(policy.ages_days)].unique()) <= set(policy.ages_days)
    older = table[ages > max(policy.ages_days)]
    assert len(older) > 0 and older.groupby("lead_id").size().max() <= policy.older_ages_per_lead
    # the model learns old leads from old snapshots: at least one per 10 leads past 180 days
    assert (older["snapshot_age_days"] > 180).sum() > 0.1 * small_crm.leads["lead_id"].nunique()
    age_days = (
        table["as_of"] - table["lead_id"].map(small_crm.leads.set_index("lead_id")["created_at"])
    ).dt.days
    assert (age_days == ages).all()
    assert table["label"].notna().all()
    converted = small_crm.outcomes.set_index("lead_id")["converted_at"]
    at = table["lead_id"].map(converted)
    assert not (at <= table["as_of"]).any()  # nobody already converted at the snapshot
    assert 0.02 < table["label"].astype(float).mean() < 0.5


def test_older_snapshots_are_labelled_like_any_and_stable_across_rebuilds(small_crm: SimulatedCRM) -> None:
    """Older-age snapshots: past the configured ages, horizon complete, never after a conversion,
    labelled by the same rule, and the same rows whatever the export's order."""
    policy = SnapshotPolicy(ages_days=(3, 14), horizon_days=60, older_ages_per_lead=3)
    until = observed_until(
        leads=small_crm.leads, activities=small_crm.activities, outcomes=small_crm.outcomes
    )
    snapshots = make_snapshots(leads=small_crm.leads, outcomes=small_crm.outcomes, policy=policy, until=until)
    older = snapshots[snapshots["snapshot_age_days"] > 14]
    assert len(older) > len(small_crm.leads)  # most leads are old enough for several
    created = older["lead_id"].map(small_crm.leads.set_index("lead_id")["created_at"])
    assert (older["as_of"] + pd.Timedelta(days=60) <= until).all()
    assert (
        (older["as_of"] - created) == pd.to_timedelta(older["snapshot_age_days"].astype(int), unit="D")
    ).all()
    converted = older["lead_id"].map(small_crm.outcomes.set_index("lead_id")["converted_at"])
    assert not (converted <= older["as_of"]).any()
    assert not older.duplicated(["lead_id", "snapshot_age_days"]).any()
    reordered = make_snapshots(
        leads=small_crm.leads.sample(frac=1.0, random_state=3),
        outcomes=small_crm.outcomes,
        policy=policy,
        until=until,
    )

    def key(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(["lead_id", "snapshot_age_days"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(key(snapshots), key(reordered))
    labelled = label_snapshots(
        snapshots=older, leads=small_crm.leads, outcomes=small_crm.outcomes, policy=policy, until=until
    )
    expected = (converted > older["as_of"]) & (converted <= older["as_of"] + pd.Timedelta(days=60))
    assert (labelled["label"].astype(int).to_numpy() == expected.to_numpy()).all()
    none = make_snapshots(
        leads=small_crm.leads,
        outcomes=small_crm.outcomes,
        policy=policy.model_copy(update={"older_ages_per_lead": 0}),
        until=until,
    )
    assert set(none["snapshot_age_days"].unique()) == {3, 14}
