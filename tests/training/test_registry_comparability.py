"""Whether a champion can be compared with a candidate on the candidate's test rows: typed time values."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from leadscore.features.vocabulary import InputLayout
from leadscore.training.registry import comparability_problem


def _model(**metadata: object) -> Any:
    return SimpleNamespace(
        horizon_days=90, layout=InputLayout.LEADSCORE, feature_names=("x",), metadata=metadata
    )


def test_row_positions_compare_as_numbers_not_text() -> None:
    champion = _model(time_axis="row_order", test_start="80", trained_until="99")
    candidate = _model(time_axis="row_order", test_start="100", trained_until="119")
    assert comparability_problem(candidate=candidate, champion=champion) is None  # "99" > "100" as text


def test_a_champion_refit_on_the_candidates_test_period_is_not_compared() -> None:
    # the champion's own test start is before the candidate's, but it was refit on rows up to 2024-06
    champion = _model(time_axis="timestamp", test_start="2024-01-01 00:00:00", trained_until="2024-06-30")
    candidate = _model(time_axis="timestamp", test_start="2024-04-01 00:00:00", trained_until="2024-09-30")
    problem = comparability_problem(candidate=candidate, champion=champion)
    assert problem is not None and "test period" in problem
    older = _model(time_axis="timestamp", test_start="2023-10-01", trained_until="2024-03-31 00:00:00")
    assert comparability_problem(candidate=candidate, champion=older) is None


def test_champions_saved_before_trained_until_fall_back_to_their_test_start() -> None:
    champion = _model(test_start="98")
    assert comparability_problem(candidate=_model(test_start="100"), champion=champion) is None
    assert comparability_problem(candidate=_model(test_start="90"), champion=champion) is not None


def test_an_undeclared_horizon_matches_the_zero_older_models_stored() -> None:
    champion = _model(time_axis="none", test_start="NaT")
    champion.horizon_days = 0
    candidate = _model(time_axis="none", test_start="NaT")
    candidate.horizon_days = None
    assert comparability_problem(candidate=candidate, champion=champion) is None
