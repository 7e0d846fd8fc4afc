"""Model card (markdown) logged with every model version."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from leadscore.model.scoring_model import LeadScoringModel


def _table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = [
        "| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


_CALIBRATION_NAMES = {"isotonic": "isotonic regression", "sigmoid": "Platt scaling (sigmoid)"}


def _pipeline_line(metrics: dict[str, float]) -> str:
    """One sentence on how much opportunity value the top of the ranking holds, when amounts are known."""
    top10, top20 = metrics.get("pipeline_capture_top10"), metrics.get("pipeline_capture_top20")
    if top10 is None or top20 is None or not (np.isfinite(top10) and np.isfinite(top20)):
        return "Opportunity amounts unknown: no pipeline-value capture reported."
    return (
        f"Pipeline value: the top 10% of test scores hold {top10:.0%} of the opportunity value, "
        f"the top 20% hold {top20:.0%}."
    )


def _thresholds_text(
    *, model: LeadScoringModel, metrics: dict[str, float], choice: Any, deployed_choice: Any
) -> str:
    """The registered model's MQL/SQL thresholds, and the evaluated model's with how they did on test."""
    evaluated = (
        f"MQL >= {choice.mql_threshold:.3f}, SQL >= {choice.sql_threshold:.3f} ({choice.rule}), chosen on "
        f"the newest pre-test rows ({choice.sql_leads_per_week:.1f} leads/week there at SQL)"
    )
    on_test = (
        f"On test: {metrics.get('sql_share', float('nan')):.1%} of leads at SQL, precision "
        f"{metrics.get('precision_at_threshold', float('nan')):.3f}, recall "
        f"{metrics.get('recall_at_threshold', float('nan')):.3f}."
    )
    if deployed_choice is None or deployed_choice is choice:
        return f"{evaluated}. {on_test}"
    where = model.metadata.get("thresholds_chosen_on", "its newest rows")
    return (
        f"The registered model: MQL >= {deployed_choice.mql_threshold:.3f}, SQL >= "
        f"{deployed_choice.sql_threshold:.3f}, the same rules on {where} "
        f"({deployed_choice.sql_leads_per_week:.1f} leads/week there at SQL), read from "
        f"{model.metadata.get('thresholds_read_from', 'its scores of those rows')}.\n\n"
        f"The evaluated model (the test metrics above): {evaluated}. {on_test}"
    )


def _cadence_text(model: LeadScoringModel) -> str:
    """Which range of sales touches the follow-up advice uses, and where it comes from."""
    source = model.metadata.get("touch_cadence", "")
    if "sales_touches_total" not in model.feature_names:
        return "No follow-up advice: the export has no sales activity (calls, sales e-mails, meetings)."
    if model.touch_cadence is not None:
        return (
            f"Reps' follow-up advice uses {source} (`leadscore touches` shows the distribution, and how many "
            "opportunities came before any touch). It describes what past opportunities had, not what one more "
            "touch causes."
        )
    why = str(source).removesuffix(": the 5-10 rule of thumb") or "not learned"
    return f"Reps' follow-up advice uses the common 5-10 touches rule of thumb ({why})."


def _contact_text(model: LeadScoringModel) -> str:
    """Whether following up a hand-raise helps, as the advice reads it."""
    summary = model.metadata.get("contact_effect", "")
    if model.contact_effect is None:
        return (
            f"Whether contacting a lead now helps is not estimated ({summary or 'not learned'}): no card advises "
            "contact as an effect; uncontacted leads are told there is no estimate."
        )
    return (
        f"Whether contacting an uncontacted lead now helps (a cross-fitted DR-learner, bands of its estimate "
        f"with Bonferroni 95% intervals; it assumes reps' choices depend only on what the features show): "
        f"{summary}. Cards advise contact only in a band whose interval is above 0, advise holding off in one "
        "below 0, and say there is no evidence otherwise."
    )


def _age_coverage_text(policy: dict[str, object], model: LeadScoringModel) -> str:
    """Which lead ages the model learnt from, and what a card says past them."""
    older = int(str(policy.get("older_ages_per_lead") or 0))
    oldest = model.trained_lead_age_days
    snapshots = (
        f"Plus up to {older} snapshots per lead at older ages (log-uniform up to the oldest age the export "
        "can label), so old open leads are scored from old leads' outcomes"
        if older
        else "No older-age snapshots: leads older than the last age are scored as if they were that old"
    )
    if oldest is None:
        return f"{snapshots}."
    return (
        f"{snapshots}. Oldest lead age learnt from: {oldest:.0f} days; an older lead's card says so and its "
        "range reaches down to 0%."
    )


def _all_ages_line(metrics: dict[str, float]) -> str:
    """Which test rows the table reads, when the table also holds older-age snapshots."""
    if "roc_auc_all_ages" not in metrics:
        return ""
    return (
        "Read on the lead flow at the configured snapshot ages, as reps meet new leads; with the older-age "
        f"snapshots too ({int(metrics['test_rows_all_ages']):,} rows, mostly silent old leads that do not "
        f"convert) ROC AUC would read {metrics['roc_auc_all_ages']:.3f}, a number that flatters any ranking.\n\n"
    )


def _words(sentences: Sequence[str]) -> str:
    """The comparison in words (paired bootstrap intervals), as a list under the table."""
    if not sentences:
        return ""
    return "\nIn words (paired bootstrap, 95% intervals of the difference):\n" + "".join(
        f"- {s}\n" for s in sentences
    )


def _base_rate_text(model: Any, metrics: dict[str, float]) -> str:
    """The base rate estimated without labels (EM prior shift): its check on test and its reading now."""
    lines = [
        "**Base rate without labels** (EM prior shift on the scores; probabilities are not moved by it):"
    ]
    if "base_rate_test_em_estimate" in metrics:
        lines.append(
            f"- Check on the test period, labels hidden: estimated {metrics['base_rate_test_em_estimate']:.1%}, "
            f"mean predicted {metrics['base_rate_test_mean_predicted']:.1%}, actual "
            f"{metrics['base_rate_test_actual']:.1%}; ECE {metrics['ece']:.4f} as scored, "
            f"{metrics['ece_at_em_estimate']:.4f} if moved to the estimate."
        )
    current = model.metadata.get("base_rate_estimate")
    if isinstance(current, dict):
        lines.append(
            f"- Now: the {int(current['rows']):,} newest snapshots whose outcome is not known yet (to "
            f"{current.get('newest_snapshot', '?')}) convert at an estimated {current['estimate']:.1%} (95% "
            f"{current['low']:.1%} to {current['high']:.1%}); the model's level on its newest matured rows is "
            f"{current['model_level']:.1%} (they converted at {current['newest_matured_rate']:.1%})."
        )
    else:
        lines.append(
            "- Now: not estimated: the table holds fewer than 50 snapshots whose outcome is still open (a "
            "native build keeps them with `snapshots.keep_incomplete_horizon: true`)."
        )
    return "\n".join(lines)


_LEARNER_NAMES = {
    "lightgbm": "LightGBM (gradient-boosted trees)",
    "linear": "L2-regularised logistic regression (market context enters linearly, unclipped)",
}


def render_model_card(
    *,
    model: LeadScoringModel,
    meta: dict[str, Any],
    split: Any,
    metrics: dict[str, float],
    comparison: pd.DataFrame,
    choice: Any,
    config: Any,
    drift: Any = None,
    deployed_choice: Any = None,
    comparison_words: Sequence[str] = (),
) -> str:
    """Data window, metrics vs baselines, calibration, top features and intended use."""
    sample = split.test.head(2000)
    contributions = model.contributions(sample)
    grouped = np.abs(contributions[:, :-1] @ model._grouping).mean(axis=0)
    top = sorted(zip([c.label for c in model.concepts], grouped, strict=True), key=lambda kv: -kv[1])[:10]
    policy = meta["snapshot_policy"]
    horizon = policy.get("horizon_days")
    horizon_text = f"**{horizon} days**" if horizon else "the export's label window (horizon not declared)"
    refit = getattr(getattr(config, "refit", None), "enabled", False)
    purge_text = (
        f"{split.purged_rows} rows purged because their label was not yet known at the test start"
        if horizon
        else "not purged: label horizon not declared"
    )
    fitting = (
        f"Boosting rounds chosen by early stopping on the validation period, then refit on train + validation "
        f"(rounds scaled by rows; none for a linear model) for the test metrics below. **The registered model is refit on all labelled "
        f"rows, test period included** ({model.metadata.get('boosting_rounds', '?')} rounds, data until "
        f"{model.metadata.get('trained_until', '?')}): the test metrics come from the pre-test refit."
        if refit
        else "Fitted on the training period, early-stopped and calibrated on the validation period; the "
        "registered model is this model."
    )
    calibration_text = (
        f"fitted on time-blocked out-of-time scores ({config.refit.calibration_blocks} blocks: each block "
        "scored by a model of the blocks before it), keeping the raw ranking; level: "
        f"{model.metadata.get('calibration_level', 'pooled over the blocks')}"
        if refit
        else "fitted on the validation rows"
    )
    drift_text = drift.markdown() if drift is not None else "Not computed."
    columns = [
        "model",
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
        "ece",
        "lift_top10",
        "capture_top20",
        "pipeline_capture_top20",
    ]
    return (
        f"""# Model card: {config.tracking.model_name}

## Intended use
Ranks open leads by the calibrated probability that they become a sales opportunity within
{horizon_text} of the moment they are scored. Use the tier to decide who a rep calls now
(sales-ready), who marketing keeps warming (marketing-qualified / nurture) and who is not a fit.
Not for: credit, employment or any decision about a person outside sales prioritisation.
Inputs never include PII (e-mail, names, phone are reduced to an e-mail domain type, then dropped).

## Data
- Source: `{meta.get("source", "unknown")}`; fingerprint: {meta.get("fingerprint", {})}
- Snapshots at ages {policy["ages_days"]} days after creation; label = opportunity within the horizon after
  the snapshot; converted-before-snapshot and incomplete horizons excluded.
- {_age_coverage_text(policy, model)}
- {"**Split: STRATIFIED RANDOM, because the export has no timestamps.** Test metrics do not show how the model does on future leads." if pd.isna(split.test_start) else "Time-ordered split (below)."}
- Time-ordered split ({getattr(getattr(split, "time_axis", None), "value", "timestamp")} axis): train before
  {split.validation_start}, validation until {split.test_start}, test from {split.test_start}
  ({len(split.train)} / {len(split.validation)} / {len(split.test)} rows; realised test share
  {getattr(split, "test_share", float("nan")):.1%}; {purge_text}).
- {fitting}
- Learner: **{_LEARNER_NAMES.get(str(model.metadata.get("learner", "lightgbm")), "LightGBM")}**, chosen
  as {model.metadata.get("learner_choice", "the default (chosen before learners were compared)")}.

## Test metrics vs baselines (newest period)
{_all_ages_line(metrics)}{_table(comparison.loc[:, [c for c in columns if c in comparison.columns]])}
{_words(comparison_words)}
Calibration: {_CALIBRATION_NAMES.get(str(getattr(config.calibration, "value", config.calibration)), config.calibration)}
{calibration_text}; expected calibration error on test {metrics["ece"]:.4f}.

{_base_rate_text(model, metrics)}
{_pipeline_line(metrics)}

## Drift: the newest period vs the data the model learnt from
{drift_text}

## Thresholds
{_thresholds_text(model=model, metrics=metrics, choice=choice, deployed_choice=deployed_choice)}

## Follow-up cadence
{_cadence_text(model)}

{_contact_text(model)}

## Top factors (mean |SHAP|, log-odds, grouped)
"""
        + "\n".join(f"{i + 1}. {label}: {value:.3f}" for i, (label, value) in enumerate(top))
        + """

## Caveats
Fit attributes are taken as exported (their history is not versioned), so a fit field edited after a
snapshot is seen with its current value. Engagement features are strictly point-in-time.
"""
    )
