"""Label-side leakage: snapshots and labels must be chosen without hindsight.

Feature-side tests cannot see this: a table builder that drops the snapshots of leads about to
convert (or labels them from the whole future) computes every feature correctly. Here the
snapshot set and the labels are recomputed independently from the raw export and the declared
policy, then compared row by row; the mutations below are the kind of hindsight a real pipeline
slips into, and each must be caught.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from leadscore.features import training_table
from leadscore.features.simulator import SimulatedCRM
from leadscore.features.training_table import SnapshotPolicy, build_training_table, observed_until

POLICY = SnapshotPolicy(ages_days=(3, 14, 30), horizon_days=60, older_ages_per_lead=0)


def hindsight_problems(
    table: pd.DataFrame, *, crm: SimulatedCRM, policy: SnapshotPolicy, until: pd.Timestamp
) -> list[str]:
    """Every way ``table``'s snapshots or labels differ from a choice made without hindsight.

    Expected: one snapshot per lead and age whose as-of time is observed, whose label horizon is
    complete, and at which the lead had not yet converted; each labelled 1 exactly when the lead
    converted after the as-of time and within the horizon. Nothing else may decide.
    """
    leads, outcomes = crm.leads, crm.outcomes
    converted = pd.Series(
        pd.to_datetime(outcomes["converted_at"]).to_numpy(), index=outcomes["lead_id"].astype(str)
    )
    rows = []
    for age in policy.ages_days:
        as_of = pd.to_datetime(leads["created_at"]) + pd.Timedelta(days=age)
        rows.append(pd.DataFrame({"lead_id": leads["lead_id"].astype(str), "as_of": as_of}))
    expected = pd.concat(rows, ignore_index=True)
    conv = converted.reindex(expected["lead_id"]).to_numpy(dtype="datetime64[ns]")
    as_of = expected["as_of"].to_numpy(dtype="datetime64[ns]")
    horizon_end = as_of + np.timedelta64(policy.horizon_days, "D")
    keep = (horizon_end <= np.datetime64(until)) & ~(conv <= as_of)
    expected = expected[keep].assign(
        label=((conv > as_of) & (conv <= horizon_end))[keep].astype(int),
        soon=((conv > as_of) & (conv <= as_of + np.timedelta64(7, "D")))[keep],
    )
    actual = table.assign(lead_id=table["lead_id"].astype(str), as_of=pd.to_datetime(table["as_of"]))
    merged = expected.merge(
        actual[["lead_id", "as_of", "label"]],
        on=["lead_id", "as_of"],
        how="outer",
        indicator=True,
        suffixes=("_expected", "_table"),
    )
    problems = []
    missing = merged[merged["_merge"] == "left_only"]
    if len(missing):
        soon = int(missing["soon"].fillna(False).astype(bool).sum())
        share_missing = soon / len(missing)
        share_all = float(expected["soon"].mean())
        problems.append(
            f"{len(missing)} snapshots missing ({share_missing:.0%} of them convert within 7 days vs "
            f"{share_all:.0%} of all snapshots)"
        )
    extra = merged[merged["_merge"] == "right_only"]
    if len(extra):
        problems.append(f"{len(extra)} snapshots the policy does not allow (after conversion or unobserved)")
    both = merged[merged["_merge"] == "both"]
    wrong = both[both["label_expected"].astype(int) != both["label_table"].astype(int)]
    if len(wrong):
        problems.append(f"{len(wrong)} labels differ from 'converted within the horizon after as_of'")
    return problems


Mutation = Callable[[pd.DataFrame, SimulatedCRM], pd.DataFrame]


def _drop_soon_converters(table: pd.DataFrame, crm: SimulatedCRM) -> pd.DataFrame:
    """The mutation from issue 16: drop the snapshots of leads that convert within 7 days."""
    converted = crm.outcomes.set_index("lead_id")["converted_at"]
    conv = pd.to_datetime(table["lead_id"].map(converted))
    soon = (conv > table["as_of"]) & (conv <= table["as_of"] + pd.Timedelta(days=7))
    return table[~soon.fillna(False)].reset_index(drop=True)


def _label_from_the_whole_future(table: pd.DataFrame, crm: SimulatedCRM) -> pd.DataFrame:
    """Label 1 for any later conversion, however far past the horizon."""
    converted = crm.outcomes.set_index("lead_id")["converted_at"]
    conv = pd.to_datetime(table["lead_id"].map(converted))
    return table.assign(label=(conv > table["as_of"]).fillna(False).astype(int))


def _keep_incomplete_horizons_as_negatives(table: pd.DataFrame, crm: SimulatedCRM) -> pd.DataFrame:
    """Unobserved horizons read as 'did not convert' (the classic right-censoring leak)."""
    until = crm.exported_at
    policy = POLICY.model_copy(update={"keep_incomplete_horizon": True})
    full = build_training_table(
        leads=crm.leads, activities=crm.activities, outcomes=crm.outcomes, policy=policy, until=until
    )
    return full.assign(label=full["label"].fillna(0).astype(int))


@pytest.fixture(scope="module")
def crm(small_crm: SimulatedCRM) -> SimulatedCRM:
    return small_crm


@pytest.fixture(scope="module")
def honest(crm: SimulatedCRM) -> pd.DataFrame:
    return build_training_table(
        leads=crm.leads,
        activities=crm.activities,
        outcomes=crm.outcomes,
        policy=POLICY,
        until=crm.exported_at,
    )


def test_the_builder_chooses_snapshots_and_labels_without_hindsight(
    crm: SimulatedCRM, honest: pd.DataFrame
) -> None:
    assert (
        observed_until(leads=crm.leads, activities=crm.activities, outcomes=crm.outcomes) <= crm.exported_at
    )
    assert int(honest["label"].sum()) >= 30  # there are positives whose selection could be biased
    assert hindsight_problems(honest, crm=crm, policy=POLICY, until=crm.exported_at) == []


def test_older_snapshot_ages_are_chosen_without_the_outcomes(crm: SimulatedCRM) -> None:
    """Older-age snapshots are drawn from the creation time alone: the outcomes only remove leads that had
    already converted at that age, exactly as at the configured ages."""
    policy = POLICY.model_copy(update={"older_ages_per_lead": 2})
    until = crm.exported_at
    with_outcomes = training_table.make_snapshots(
        leads=crm.leads, outcomes=crm.outcomes, policy=policy, until=until
    )
    blind = training_table.make_snapshots(
        leads=crm.leads, outcomes=crm.outcomes.head(0), policy=policy, until=until
    )
    converted = blind["lead_id"].map(crm.outcomes.set_index("lead_id")["converted_at"])
    expected = blind[~(converted <= blind["as_of"])]
    older = with_outcomes["snapshot_age_days"] > max(policy.ages_days)
    assert older.sum() > 0
    key = ["lead_id", "snapshot_age_days"]
    pd.testing.assert_frame_equal(
        with_outcomes.sort_values(key).reset_index(drop=True),
        expected.sort_values(key).reset_index(drop=True),
    )


@pytest.mark.parametrize(
    "mutation", [_drop_soon_converters, _label_from_the_whole_future, _keep_incomplete_horizons_as_negatives]
)
def test_each_hindsight_mutation_is_caught(
    crm: SimulatedCRM, honest: pd.DataFrame, mutation: Mutation
) -> None:
    mutated = mutation(honest, crm)
    assert hindsight_problems(mutated, crm=crm, policy=POLICY, until=crm.exported_at) != []


def test_a_builder_that_drops_soon_converters_fails_the_check(
    crm: SimulatedCRM, honest: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mutation planted inside the library's own snapshot step, as a bug would be."""
    real = training_table.make_snapshots

    def hindsight_snapshots(**kwargs: object) -> pd.DataFrame:
        return _drop_soon_converters(real(**kwargs), crm)  # type: ignore[arg-type]

    monkeypatch.setattr(training_table, "make_snapshots", hindsight_snapshots)
    table = build_training_table(
        leads=crm.leads,
        activities=crm.activities,
        outcomes=crm.outcomes,
        policy=POLICY,
        until=crm.exported_at,
    )
    problems = hindsight_problems(table, crm=crm, policy=POLICY, until=crm.exported_at)
    assert len(table) < len(honest)
    assert problems and problems[0].startswith(f"{len(honest) - len(table)} snapshots missing (100% of them")
