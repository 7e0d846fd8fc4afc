"""`evaluate` never reports rows the model was fitted on: newer rows, else the logged held-out scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.training import evaluation
from leadscore.training.honest import NoHeldOutRows, evaluate_registered, metrics_with_intervals
from leadscore.training.split import labelled_rows
from tests.conftest import Trained


def test_a_table_the_model_was_fitted_on_is_never_reported_as_an_evaluation(trained: Trained) -> None:
    table = labelled_rows(trained.table)
    with pytest.raises(NoHeldOutRows, match="no rows this model did not learn from"):
        evaluate_registered(model=trained.result.model, table=table, logged_scores=None, n_boot=20)


def test_rows_newer_than_the_model_s_data_are_scored_by_the_registered_model(trained: Trained) -> None:
    model = trained.result.model
    table = labelled_rows(trained.table)
    until = pd.Timestamp(str(model.metadata["trained_until"]))
    later = table.tail(3_000).assign(as_of=until + pd.Timedelta(days=30))  # as if from a newer export
    result = evaluate_registered(
        model=model, table=pd.concat([table, later], ignore_index=True), logged_scores=None, n_boot=50
    )
    assert result.rows == 3_000 and "newer than the model's data" in result.source
    expected = evaluation.classification_metrics(
        y_true=later["label"].astype(int).to_numpy(),
        y_prob=model.predict_proba_features(later),
        threshold=model.thresholds.sql,
    )
    assert result.metrics["roc_auc"] == pytest.approx(expected["roc_auc"])
    low, high = result.intervals["roc_auc"]
    assert low < result.metrics["roc_auc"] < high


def test_without_newer_rows_the_logged_held_out_scores_are_used_and_named(trained: Trained) -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(2_000) < 0.2).astype(int)
    logged = pd.DataFrame(
        {"label": y, "p_lightgbm": np.clip(0.2 + 0.3 * (y - 0.2) + rng.normal(0, 0.1, 2_000), 0.01, 0.99)}
    )
    result = evaluate_registered(
        model=trained.result.model, table=labelled_rows(trained.table), logged_scores=logged, n_boot=50
    )
    assert "held-out test period logged at training" in result.source and "in-sample" in result.source
    assert result.rows == 2_000 and result.positives == int(y.sum())
    assert result.metrics["roc_auc"] == pytest.approx(
        evaluation.classification_metrics(y_true=y, y_prob=logged["p_lightgbm"].to_numpy(), threshold=0.5)[
            "roc_auc"
        ]
    )


def test_intervals_narrow_with_more_rows_and_hold_the_point_estimate() -> None:
    rng = np.random.default_rng(1)

    def width(n: int) -> float:
        p = rng.uniform(0.01, 0.5, n)
        y = (rng.random(n) < p).astype(int)
        point, intervals = metrics_with_intervals(y=y, probability=p, threshold=0.3, n_boot=100)
        low, high = intervals["roc_auc"]
        assert low <= point["roc_auc"] <= high
        return high - low

    assert width(8_000) < width(500) / 2


def test_the_comparison_in_words_names_the_winner_and_a_better_calibrated_baseline() -> None:
    from leadscore.training.honest import comparison_sentences

    rng = np.random.default_rng(2)
    truth = rng.beta(1, 6, 6_000)
    y = (rng.random(6_000) < truth).astype(int)
    sentences = comparison_sentences(
        y=y,
        predictions={
            "lightgbm": np.clip(truth * 1.8, 0, 0.99),  # ranks as the truth does, reads too high
            "logistic": np.clip(truth + rng.normal(0, 0.15, 6_000), 0.001, 0.99),  # calibrated-ish, noisier
        },
        n_boot=100,
    )
    text = " ".join(sentences)
    assert "LightGBM ranks leads better than the logistic baseline: ROC AUC" in text and "95% CI +" in text
    assert "the logistic baseline is better calibrated than LightGBM" in text


def test_the_registered_model_s_card_says_the_comparison_in_words(trained: Trained) -> None:
    import mlflow

    card = mlflow.artifacts.load_text(f"runs:/{trained.result.run_id}/model_card.md")
    assert "In words (paired bootstrap, 95% intervals of the difference):" in card
    assert "than the rule-points baseline" in card or "rule-points baseline rank" in card
