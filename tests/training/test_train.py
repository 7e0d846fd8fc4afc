"""Training end to end on the simulator: split, calibration, baselines, oracle, MLflow pyfunc, promotion."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from leadscore.features.simulator import oracle_probability, point_in_time_oracle_probability
from leadscore.features.training_table import SnapshotPolicy
from leadscore.model import store
from leadscore.model.encoding import CategoryCodeEncoder
from leadscore.training import registry
from leadscore.training.config import BoosterConfig, SplitConfig, TrackingConfig
from leadscore.training.evaluation import expected_calibration_error
from leadscore.training.split import time_ordered_split
from leadscore.training.train import TrainJob, lead_flow_mask, read_table_metadata

from ..conftest import Trained


@parametrize_with_checks([CategoryCodeEncoder(), CategoryCodeEncoder(min_frequency=3)])
def test_category_encoder_is_a_proper_sklearn_transformer(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


def test_encoder_maps_unknown_and_rare_to_other_and_keeps_missing() -> None:
    frame = pd.DataFrame({"c": ["a"] * 5 + ["b"] * 5 + ["rare"], "n": np.arange(11.0)})
    encoder = CategoryCodeEncoder(columns=["c"], min_frequency=2).fit(frame)
    out = encoder.transform(pd.DataFrame({"c": ["a", "rare", "never-seen", None], "n": [1.0, 2.0, 3.0, 4.0]}))
    other = len(encoder.categories_["c"]) - 1
    assert out["c"].tolist()[:3] == [0.0, other, other] and np.isnan(out["c"].iloc[3])
    assert out["n"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_time_ordered_split_never_trains_on_the_future(trained: Trained) -> None:
    split = time_ordered_split(trained.table, config=SplitConfig(), horizon_days=90)
    assert split.train["as_of"].max() < split.validation["as_of"].min()
    assert split.validation["as_of"].max() < split.test["as_of"].min()
    # purged: every training/validation label was already known when the test period starts
    assert (split.train["as_of"] + pd.Timedelta(days=90) <= split.test_start).all()
    assert (split.validation["as_of"] + pd.Timedelta(days=90) <= split.test_start).all()
    assert split.purged_rows > 0


def lead_flow_test(trained: Trained) -> pd.DataFrame:
    """The test period as training reads it: the lead flow at the configured snapshot ages."""
    test = time_ordered_split(trained.table, config=SplitConfig(), horizon_days=90).test
    return test[lead_flow_mask(test, ages_days=SnapshotPolicy().ages_days)].reset_index(drop=True)


def test_calibrated_on_held_out_data(trained: Trained) -> None:
    test = lead_flow_test(trained)
    assert trained.result.evaluated is not None  # the pre-test refit: test rows are held out from it
    probability = trained.result.evaluated.predict_proba_features(test)
    ece = expected_calibration_error(y_true=test["label"].astype(int).to_numpy(), y_prob=probability)
    assert ece < 0.05
    assert trained.result.metrics["ece"] == pytest.approx(ece, abs=1e-9)


def test_evaluated_model_is_refit_on_all_pre_test_rows_and_the_registered_one_on_all(
    trained: Trained,
) -> None:
    split = time_ordered_split(trained.table, config=SplitConfig(), horizon_days=90)
    evaluated, deployed = trained.result.evaluated, trained.result.model
    assert evaluated is not None and evaluated is not deployed
    assert evaluated.metadata["trained_until"] == str(split.earlier["as_of"].max())
    assert pd.Timestamp(str(evaluated.metadata["trained_until"])) < split.test_start
    assert deployed.metadata["trained_until"] == str(split.test["as_of"].max())
    # rounds scale with rows: the refit on more rows boosts at least as long as the pre-test refit
    assert int(deployed.metadata["boosting_rounds"]) >= int(evaluated.metadata["boosting_rounds"])
    # the calibrated score keeps the raw ranking: as many distinct probabilities as raw scores
    raw = evaluated.raw_scores(split.test)
    probability = evaluated.predict_proba_features(split.test)
    assert len(np.unique(probability)) == len(np.unique(raw))
    assert "refit on all labelled" in mlflow.artifacts.load_text(
        f"runs:/{trained.result.run_id}/model_card.md"
    )


def test_the_registered_model_chooses_its_thresholds_on_its_own_newest_rows(
    trained: Trained,
) -> None:
    split = time_ordered_split(trained.table, config=SplitConfig(), horizon_days=90)
    deployed, evaluated = trained.result.model, trained.result.evaluated
    assert evaluated is not None
    newest = split.test.tail(2_000)
    held_out = np.linspace(0.01, 0.6, len(newest))  # the deployment refit's held-out probabilities

    class FixedRefit(TrainJob):
        held_out_probability = held_out

        def fit_refit(self, frame, *, rounds, reference_rows, anchor_verdict=None):  # type: ignore[no-untyped-def,override]
            return deployed.encoder, deployed.booster, deployed.calibrator, newest, self.held_out_probability

    validation_probability = evaluated.predict_proba_features(split.validation)
    evaluated_choice = TrainJob(trained.config).choose_thresholds(
        newest=split.validation,
        held_out_probability=validation_probability,
        own_probability=validation_probability,
    )
    model, choice = FixedRefit(trained.config).fit_deployment_model(
        split, evaluated=evaluated, evaluated_choice=evaluated_choice
    )
    # the default rules (SQL: top 10% of leads, MQL: top 30%) are quantiles of the registered model's own
    # scores of its newest rows, not of held-out scores (under drift those can sit far from its own)
    own = deployed.predict_proba_features(newest)
    assert model.thresholds.sql == choice.sql_threshold and model.thresholds.mql == choice.mql_threshold
    assert 0.09 < np.mean(own >= model.thresholds.sql) <= 0.10
    assert 0.29 < np.mean(own >= model.thresholds.mql) <= 0.30
    assert not 0.09 < np.mean(held_out >= model.thresholds.sql) <= 0.10
    assert model.metadata["thresholds_chosen_on"].startswith("2,000 newest labelled rows")
    # rules the newest block cannot meet: the evaluated model's thresholds, and the model says why
    precise = trained.config.model_copy(
        update={"thresholds": trained.config.thresholds.model_copy(update={"sql_target_precision": 0.9})}
    )
    uninformative = FixedRefit(precise)
    uninformative.held_out_probability = np.full(len(newest), 0.2)  # precision = base rate everywhere
    kept, kept_choice = uninformative.fit_deployment_model(
        split, evaluated=evaluated, evaluated_choice=evaluated_choice
    )
    assert (
        kept_choice == evaluated_choice and kept_choice is not evaluated_choice
    )  # the card tells them apart
    assert kept.thresholds.sql == evaluated_choice.sql_threshold
    assert "is not reachable" in kept.metadata["thresholds_chosen_on"]
    assert kept.metadata["thresholds_read_from"].startswith("held-out scores")
    assert model.metadata["thresholds_read_from"].startswith("the model's own scores")
    card = mlflow.artifacts.load_text(f"runs:/{trained.result.run_id}/model_card.md")
    assert f"SQL >= {deployed.thresholds.sql:.3f}, the same rules on" in card
    assert f"The evaluated model (the test metrics above): MQL >= {evaluated.thresholds.mql:.3f}" in card


def test_model_beats_the_rule_based_baseline_and_nears_the_oracle(trained: Trained) -> None:
    comparison = trained.result.comparison.set_index("model")
    assert comparison.loc["lightgbm", "roc_auc"] > comparison.loc["rule_points", "roc_auc"]
    test = lead_flow_test(trained)
    snapshots = test[["lead_id", "as_of"]]
    oracle = point_in_time_oracle_probability(crm=trained.crm, snapshots=snapshots, horizon_days=90)
    y = test["label"].astype(int).to_numpy()
    oracle_auc = roc_auc_score(y, oracle)
    # generous at 12K leads (the benchmark records the exact gap on 1M rows: 0.004); no model
    # beats the Bayes-optimal score by more than noise
    assert oracle_auc - 0.05 < trained.result.metrics["roc_auc"] < oracle_auc + 0.01
    latent = oracle_probability(
        truth=trained.crm.truth, leads=trained.crm.leads, snapshots=snapshots, horizon_days=90
    )
    assert roc_auc_score(y, latent) > oracle_auc  # knowing the latent intent is worth more still


def test_run_is_tracked_with_lineage_plots_and_card(trained: Trained) -> None:
    run = mlflow.get_run(trained.result.run_id)
    assert run.data.metrics["roc_auc"] == pytest.approx(trained.result.metrics["roc_auc"])
    assert "booster.num_leaves" in run.data.params and run.data.tags["mlflow.source.git.commit"]
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.name == "training_table"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "plots")}
    assert {"plots/calibration.png", "plots/gains.png", "plots/pipeline_gains.png"} <= artifacts
    assert "plots/shap_beeswarm.png" in artifacts
    card = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/model_card.md")
    assert "Intended use" in card and "rule_points" in card
    assert "isotonic regression" in card  # the calibration the config chose
    # lead -> revenue: the top of the ranking holds far more than its share of opportunity value
    top20 = trained.result.metrics["pipeline_capture_top20"]
    assert top20 > 0.4 and run.data.metrics["lightgbm_pipeline_capture_top20"] == pytest.approx(top20)
    assert f"the top 20% hold {top20:.0%}." in card
    # the learner the validation period picked, with its evidence, on the card and in MLflow
    assert run.data.params["learner"] == trained.result.model.metadata["learner"]
    assert "validation ROC AUC linear" in str(trained.result.model.metadata["learner_choice"])
    assert "Learner: **" in card
    # the base rate without labels: checked on the test period, estimated for the open snapshots now
    metrics = trained.result.metrics
    assert abs(metrics["base_rate_test_em_estimate"] - metrics["base_rate_test_actual"]) < 0.05
    assert "base_rate_estimate" not in trained.result.model.metadata  # the default build drops open snapshots
    assert "Base rate without labels" in card and "keep_incomplete_horizon" in card


def test_logged_pyfunc_scores_raw_leads(trained: Trained) -> None:
    meta = read_table_metadata(trained.table_path).model_dump(mode="json")
    raw = pd.DataFrame(meta["raw_example"])
    pyfunc = mlflow.pyfunc.load_model(f"models:/leadscore-test/{trained.result.model_version}")
    predicted = pyfunc.predict(raw)
    assert list(predicted["lead_id"]) == list(raw["lead_id"])
    assert predicted["probability"].between(0, 1).all() and predicted["tier"].notna().all()
    model = trained.result.model
    leads = (
        trained.crm.leads[trained.crm.leads["lead_id"].isin(raw["lead_id"])]
        .set_index("lead_id")
        .loc[raw["lead_id"]]
        .reset_index()
    )
    direct = model.predict_proba_features(
        model.features(
            leads=leads,
            activities=trained.crm.activities,
            as_of=pd.Series(pd.to_datetime(raw["as_of"]).to_numpy()),
        )
    )
    np.testing.assert_allclose(predicted["probability"].to_numpy(), direct, rtol=0, atol=1e-12)


def every_third_lead(trained: Trained) -> pd.DataFrame:
    """A third of the leads with all their snapshots (the same time span): for the runs whose point
    needs no 12,000 leads, as each run's logistic baseline and SHAP values grow with the rows."""
    codes = trained.table["lead_id"].astype("category").cat.codes
    return trained.table[codes % 3 == 0].reset_index(drop=True)


def write_table(table: pd.DataFrame, trained: Trained, path):  # type: ignore[no-untyped-def]
    """``table`` as a training table at ``path``, with the trained table's metadata sidecar."""
    table.to_parquet(path, index=False)
    path.with_suffix(".meta.json").write_text(trained.table_path.with_suffix(".meta.json").read_text())
    return path


def test_promotion_gate_keeps_the_better_champion(trained: Trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    name = trained.config.tracking.model_name
    # the first champion is forced: on this small simulated CRM logistic regression may rank as well
    # as LightGBM, and then the gate rightly refuses (its checks say against which baseline)
    first = registry.promote(model_name=name, version=trained.result.model_version, force=True)
    assert first.promoted and store.champion_version(model_name=name) == trained.result.model_version
    assert all(c.passed for c in first.checks if c.reference == "rule_points")
    weak = TrainJob(
        trained.config.model_copy(
            update={
                "training_table": write_table(every_third_lead(trained), trained, tmp_path / "third.parquet"),
                "booster": BoosterConfig(max_rounds=1, num_leaves=2),
            }
        )
    ).run()
    blocked = registry.promote(model_name=name, version=weak.model_version)
    # the champion's deployment refit saw every labelled row, the candidate's test period included:
    # no fair comparison exists on those rows, so the gate refuses rather than skipping the check
    assert not blocked.promoted
    assert "trained on data from the candidate's test period" in blocked.reason
    assert store.champion_version(model_name=name) == trained.result.model_version
    forced = registry.promote(model_name=name, version=weak.model_version, force=True)
    assert forced.promoted and store.champion_version(model_name=name) == weak.model_version
    assert registry.rollback(model_name=name) == trained.result.model_version
    assert store.champion_version(model_name=name) == trained.result.model_version


def test_promote_refuses_a_model_worse_than_a_baseline(trained: Trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from leadscore.cli import app

    # the same leads with labels shuffled: the model learns nothing, the baselines fitted on the
    # candidate's own rows do no better, and the gate must not call that a win
    table = every_third_lead(trained)
    table["label"] = np.random.default_rng(0).permutation(table["label"].to_numpy())
    shuffled = write_table(table, trained, tmp_path / "shuffled.parquet")
    name = "leadscore-shuffled"
    config = trained.config.model_copy(
        update={"training_table": shuffled, "tracking": TrackingConfig(experiment="test", model_name=name)}
    )
    weak = TrainJob(config).run()
    decision = registry.promote(model_name=name, version=weak.model_version)
    assert not decision.promoted and store.champion_version(model_name=name) is None
    failed = [c for c in decision.checks if not c.passed]
    assert failed and {c.reference for c in failed} & {"logistic", "rule_points"}
    assert "gate check(s) failed" in decision.reason
    # the CLI prints every check with its numbers and exits non-zero
    result = CliRunner().invoke(app, ["promote", "--model-name", name, "--version", str(weak.model_version)])
    assert result.exit_code == 1 and "FAIL" in result.output and "95% CI" in result.output
    forced = registry.promote(model_name=name, version=weak.model_version, force=True)
    assert forced.promoted and forced.reason.startswith("forced")


def test_evaluate_cli_reports_metrics_and_pipeline_capture(trained: Trained) -> None:
    from typer.testing import CliRunner

    from leadscore.cli import app

    version = str(trained.result.model_version)
    args = ["evaluate", "--model-name", "leadscore-test", "--table", str(trained.table_path)]
    result = CliRunner().invoke(app, [*args, "--alias", version])
    assert result.exit_code == 0, result.output
    assert f"version {version}" in result.output
    text = " ".join(result.output.split())
    # the registered model was fitted on every row of this table: only the logged held-out scores count
    assert "held-out test period logged at training" in text and "in-sample and are not shown" in text
    lines = dict(line.split(":", 1) for line in result.output.splitlines() if ": " in line)
    auc, interval = lines["roc_auc".rjust(24)].split("[")
    low, high = (float(v) for v in interval.rstrip("] ").split(","))
    logged = trained.result.metrics["roc_auc"]  # the evaluated (pre-test) model on its test period
    assert float(auc) == pytest.approx(logged, abs=2e-3)  # the same scores (logged rows may be capped)
    assert low < float(auc) < high and high - low < 0.1
    assert 0.0 < float(lines["pipeline_capture_top20".rjust(24)].split("[")[0]) <= 1.0
    unknown = CliRunner().invoke(app, [*args, "--alias", "no-such-alias"])
    assert unknown.exit_code != 0 and "no 'no-such-alias' alias" in unknown.output


def test_agreed_scores_become_the_model_thresholds_and_the_card_says_so(trained: Trained, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from leadscore.training.config import ThresholdConfig

    config = trained.config.model_copy(
        update={
            "training_table": write_table(every_third_lead(trained), trained, tmp_path / "third.parquet"),
            "booster": BoosterConfig(max_rounds=30),
            "thresholds": ThresholdConfig(sql_min_score=40, mql_min_score=15),
            "tracking": trained.config.tracking.model_copy(update={"register_model": False}),
        }
    )
    result = TrainJob(config).run()
    assert result.model.thresholds.sql == pytest.approx(
        0.40
    ) and result.model.thresholds.mql == pytest.approx(0.15)
    assert result.model_version is None
    card = mlflow.artifacts.load_text(f"runs:/{result.run_id}/model_card.md")
    assert "SQL: agreed score >= 40" in card and "MQL: agreed score >= 15" in card


def test_a_long_model_card_is_cut_at_a_line_to_fit_the_registry() -> None:
    from leadscore.training.train import MAX_REGISTRY_DESCRIPTION, registry_description

    short = "# Model card\n\nfits"
    assert registry_description(short) == short
    card = "\n".join(f"line {i}: " + "x" * 70 for i in range(200))
    cut = registry_description(card)
    assert len(cut) <= MAX_REGISTRY_DESCRIPTION < 5_000  # MLflow's SQL column holds 5,000 characters
    assert cut.endswith("the whole card is the run's model_card.md artifact)")
    kept = cut.split("\n\n... (cut")[0]
    assert card.startswith(kept) and card[len(kept)] == "\n"  # cut at a line, never mid-line
    one_early_line = "# Model card\n" + "y" * 6_000  # no late line end: cut mid-line, keep the text
    assert len(registry_description(one_early_line)) > MAX_REGISTRY_DESCRIPTION - 100
