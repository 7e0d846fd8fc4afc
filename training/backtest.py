"""Rolling-origin backtest: retrain on a schedule, score the next period, for every candidate.

For each of the last ``periods`` periods (months by default) every candidate is fitted on the rows
before the period starts (all of them: expanding window; or only the latest ``window_periods``:
sliding window), exactly as ``TrainJob`` fits (rounds by early stopping on the newest part of the
training rows, refit on all of them, out-of-time calibration), and scored on the period. Each model
also scores the periods after it (up to ``max_age``) to show how fast it goes stale: the cadence.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from leadscore.model.calibration import em_prior, prior_shift_logit, shifted_probability
from leadscore.training import evaluation
from leadscore.training.config import ModelFamily, TrainConfig
from leadscore.training.drift import drift_report
from leadscore.training.split import TimeAxis, TimeSplit, labelled_rows, period_boundary
from leadscore.training.train import LearnerChoice, TrainJob, use_experiment

log = logging.getLogger(__name__)
CANDIDATES: tuple[str, ...] = (
    "chosen",  # what `leadscore train` deploys: the learner the validation period picks
    "chosen_prior",  # the same, moved to the base rate EM estimates from unlabelled leads (no labels)
    "lightgbm",
    "linear",
    "lightgbm_linear",  # linear-leaf trees: cannot be explained, so never deployed; compared only
    "logistic",  # the plain logistic baseline (no out-of-time calibration)
    "rule_points",
)
DEFAULT_CANDIDATES: tuple[str, ...] = ("chosen", "chosen_prior", "lightgbm", "linear", "rule_points")
"""What a monthly backtest compares by default: every fit of it is one `train` would make."""
MIN_PRIOR_ROWS = 50
"""Fewest unlabelled rows the EM prior estimate is made from."""
METRICS: tuple[str, ...] = (
    "roc_auc",
    "pr_auc",
    "lift_top10",
    "lift_top20",
    "capture_top20",
    "pipeline_capture_top20",
    "ece",
    "positive_rate",
)
SAME_AUC = 0.005
"""AUC differences this small between candidates are read as a tie (the simpler one is recommended)."""
STALE_AUC = 0.01
"""A model older than the cadence loses more than this much AUC on average."""


class Window(StrEnum):
    EXPANDING = "expanding"
    SLIDING = "sliding"


@dataclass(frozen=True)
class BacktestResult:
    results: pd.DataFrame
    """One row per window, candidate, origin period and model age (0 = the period right after training)."""
    summary: pd.DataFrame
    """Mean and spread of each metric per window and candidate at age 0."""
    recommendation: dict[str, Any]
    report: str
    run_id: str | None = None
    skipped: list[str] = field(default_factory=list)


def period_labels(values: pd.Series, *, axis: TimeAxis, frequency: str, n_row_periods: int) -> pd.Series:
    """The period each row falls in: a calendar period for timestamps, a row-count slice for row order."""
    if axis is TimeAxis.TIMESTAMP:
        return values.dt.to_period(frequency)
    ranks = values.rank(method="dense").to_numpy()
    slices = (ranks - 1) * n_row_periods // max(1, int(ranks.max()))
    return pd.Series(slices.astype(int), index=values.index)


class BacktestJob:
    """Rolling-origin retraining over the last ``periods`` periods for every candidate."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        periods: int = 6,
        frequency: str = "M",
        windows: tuple[Window, ...] = (Window.EXPANDING,),
        window_periods: int = 6,
        max_age: int = 2,
        candidates: tuple[str, ...] = DEFAULT_CANDIDATES,
        log_to_mlflow: bool = True,
        progress: Callable[[str, int], None] | None = None,
    ) -> None:
        self.config = config
        self.periods = periods
        self.frequency = frequency
        self.windows = windows
        self.window_periods = window_periods
        self.max_age = max_age
        self.candidates = candidates
        self.log_to_mlflow = log_to_mlflow
        self.progress = progress
        """Called as ``progress(description, total)`` before each origin is fitted (a CLI progress bar)."""

    # --- checklist -------------------------------------------------------------------------------
    def run(self) -> BacktestResult:
        job = TrainJob(self.config)
        axis = job.time_axis
        if axis is TimeAxis.NONE:
            raise ValueError(
                f"{self.config.training_table}: the export has no time order (no created-at column, rows not "
                "declared in time order): a backtest needs one"
            )
        table = labelled_rows(pd.read_parquet(self.config.training_table))
        column = axis.column
        table = table[table[column].notna()].sort_values(column, kind="stable").reset_index(drop=True)
        period = period_labels(
            table[column], axis=axis, frequency=self.frequency, n_row_periods=self.periods + 4
        )
        order = sorted(period.unique())
        origins = order[-self.periods :] if len(order) > self.periods else order[1:]
        rows: list[dict[str, Any]] = []
        skipped: list[str] = []
        self._pooled: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray]]] = {}
        total = len(self.windows) * len(origins)
        for window in self.windows:
            for origin in origins:
                if self.progress is not None:
                    self.progress(f"{window.value} window, {origin}", total)
                index = order.index(origin)
                start = period == origin
                history = period < origin
                if window is Window.SLIDING:
                    history &= period >= order[max(0, index - self.window_periods)]
                history &= self._known_at(
                    table, start_value=table.loc[start, column].min(), axis=axis, job=job
                )
                ages = [order[index + a] for a in range(self.max_age + 1) if index + a < len(order)]
                # leads created before the origin whose outcome was still open then: what a team has
                # unlabelled when it scores the next period (the EM prior's evidence, never its labels)
                pending = (period < origin) & ~self._known_at(
                    table, start_value=table.loc[start, column].min(), axis=axis, job=job
                )
                try:
                    rows += self._one_origin(
                        job=job,
                        history=table[history],
                        targets={a: table[period == p] for a, p in enumerate(ages)},
                        window=window,
                        origin=str(origin),
                        pending=table[pending],
                    )
                except ValueError as error:
                    skipped.append(f"{window.value} {origin}: {error}")
                    log.warning("backtest: skipped %s %s: %s", window.value, origin, error)
        if not rows:
            raise ValueError("no period could be backtested: " + "; ".join(skipped[:3]))
        results = pd.DataFrame(rows)
        summary = self.summarise(results)
        recommendation = self.recommend(results, summary)
        drift = drift_report(
            reference=table[period < origins[0]] if (period < origins[0]).any() else table.head(0),
            current=table[period >= origins[0]],
            numeric_features=[n for n in job.feature_names if n not in set(job.categorical_features)],
            categorical_features=[n for n in job.feature_names if n in set(job.categorical_features)],
            time_axis=axis,
        )
        for warning in drift.warnings:
            log.warning("drift: %s", warning)
        report = self.render(results, summary, recommendation, drift.markdown(), skipped)
        run_id = self.log(results, summary, recommendation, report, drift) if self.log_to_mlflow else None
        return BacktestResult(results, summary, recommendation, report, run_id, skipped)

    # --- steps -----------------------------------------------------------------------------------
    @staticmethod
    def _known_at(table: pd.DataFrame, *, start_value: Any, axis: TimeAxis, job: TrainJob) -> pd.Series:
        if axis is not TimeAxis.TIMESTAMP or not job.horizon_days or not job.config.split.purge_horizon:
            return pd.Series(True, index=table.index)
        return table["as_of"] + pd.Timedelta(days=job.horizon_days) <= start_value

    def _one_origin(
        self,
        *,
        job: TrainJob,
        history: pd.DataFrame,
        targets: dict[int, pd.DataFrame],
        window: Window,
        origin: str,
        pending: pd.DataFrame | None = None,
    ) -> list[dict[str, Any]]:
        axis = job.time_axis
        column = axis.column
        if history[column].nunique() < 2 or history["label"].nunique() < 2:
            raise ValueError(f"{len(history)} training rows with one class or one time value")
        share = self.config.split.validation_fraction / (1.0 - self.config.split.test_fraction)
        validation_start = period_boundary(history[column], newest_share=share)
        train = history[history[column] < validation_start]
        validation = history[history[column] >= validation_start]
        if train["label"].nunique() < 2 or validation["label"].nunique() < 2:
            raise ValueError("the training or validation rows have one class only")
        test = targets[0]
        split = TimeSplit(
            train.reset_index(drop=True),
            validation.reset_index(drop=True),
            test.reset_index(drop=True),
            validation_start,
            test[column].min(),
            0,
            axis,
            float("nan"),
        )
        scorers: dict[str, Any] = {}
        wanted = set(self.candidates)
        choice = job.choose_learner(split) if wanted & {"chosen", "chosen_prior"} else None
        fitted: dict[str, Any] = {}
        for family in (ModelFamily.LIGHTGBM, ModelFamily.LINEAR):
            needed = family.value in wanted or (choice is not None and choice.family is family)
            if needed:
                fixed = LearnerChoice(family=family, reason="a backtest candidate")
                fitted[family.value] = job.fit_model(split, learner=fixed)[0]
        for name in ("lightgbm", "linear"):
            if name in wanted:
                scorers[name] = fitted[name].predict_proba_features
        prior_note: dict[str, float] = {}
        if choice is not None:
            chosen = fitted[choice.family.value]
            if "chosen" in wanted:
                scorers["chosen"] = chosen.predict_proba_features
            if "chosen_prior" in wanted:
                trained_prior = float(np.mean(chosen.predict_proba_features(validation)))
                unlabelled = pending if pending is not None and len(pending) >= MIN_PRIOR_ROWS else test
                estimate = em_prior(chosen.predict_proba_features(unlabelled), trained_prior=trained_prior)
                shift = prior_shift_logit(trained_prior=trained_prior, new_prior=estimate)
                prior_note = {
                    "prior_trained": trained_prior,
                    "prior_estimate": estimate,
                    "prior_rows": float(len(unlabelled)),
                    "prior_from_pending": float(unlabelled is pending),
                }
                scorers["chosen_prior"] = lambda rows, m=chosen, d=shift: shifted_probability(
                    m.predict_proba_features(rows), d
                )
        if "lightgbm_linear" in wanted:
            linear_leaves = self.config.model_copy(
                update={
                    "booster": self.config.booster.model_copy(update={"linear_tree": True}),
                    "learner": self.config.learner.model_copy(update={"family": ModelFamily.LIGHTGBM}),
                }
            )
            scorers["lightgbm_linear"] = TrainJob(linear_leaves).fit_model(split)[0].predict_proba_features
        baselines = [b for b in ("logistic", "rule_points") if b in wanted]
        fitted_baselines = job.fit_baseline_models(split, names=tuple(baselines)) if baselines else {}
        for name in baselines:
            scorers[name] = fitted_baselines[name]
        rows = []
        for age, part in targets.items():
            if part.empty or part["label"].nunique() < 2:
                continue
            y = part["label"].astype(int).to_numpy()
            amounts = part["label_amount"].to_numpy(dtype=float) if "label_amount" in part.columns else None
            for name, scorer in scorers.items():
                p = np.asarray(scorer(part), dtype=float)
                if age == 0:
                    self._pooled.setdefault((window.value, name), []).append((y, p))
                metrics = evaluation.classification_metrics(y_true=y, y_prob=p, threshold=0.5)
                if amounts is not None:
                    metrics |= evaluation.pipeline_capture(amounts=amounts, y_prob=p)
                rows.append(
                    {
                        "window": window.value,
                        "candidate": name,
                        "origin": origin,
                        "age": age,
                        "train_rows": len(history),
                        "test_rows": len(part),
                        "learner": choice.family.value
                        if choice is not None and name.startswith("chosen")
                        else "",
                        **{m: metrics.get(m, float("nan")) for m in METRICS},
                        **(prior_note if name == "chosen_prior" else {}),
                    }
                )
        return rows

    def summarise(self, results: pd.DataFrame) -> pd.DataFrame:
        """Per window and candidate: the mean (and spread) of each period's metrics, and the metrics of
        every period's rows pooled (``pooled_*``: a level that lags the funnel shows there, as months
        ranked wrongly and a large pooled ECE, even where each month ranks well)."""
        fresh = results[results["age"] == 0]
        grouped = fresh.groupby(["window", "candidate"])
        summary = grouped[list(METRICS)].mean().add_prefix("mean_")
        summary["sd_roc_auc"] = grouped["roc_auc"].std()
        summary["worst_roc_auc"] = grouped["roc_auc"].min()
        summary["worst_ece"] = grouped["ece"].max()
        summary["periods"] = grouped.size()
        pooled = getattr(self, "_pooled", {})
        for key in summary.index:
            parts = pooled.get(key)
            if not parts:
                continue
            y = np.concatenate([a for a, _ in parts])
            p = np.concatenate([b for _, b in parts])
            metrics = evaluation.classification_metrics(y_true=y, y_prob=p, threshold=0.5)
            summary.loc[key, "pooled_roc_auc"] = metrics["roc_auc"]
            summary.loc[key, "pooled_ece"] = metrics["ece"]
            summary.loc[key, "pooled_mean_predicted"] = float(p.mean())
            summary.loc[key, "pooled_rate"] = float(y.mean())
        return summary.reset_index().sort_values("mean_roc_auc", ascending=False)

    def recommend(self, results: pd.DataFrame, summary: pd.DataFrame) -> dict[str, Any]:
        """Candidate and window with the best mean AUC (ties go to the simpler); cadence from staleness."""
        simplicity = {
            name: i
            for i, name in enumerate(
                ("chosen", "chosen_prior", "rule_points", "logistic", "linear", "lightgbm", "lightgbm_linear")
            )
        }
        best = summary["mean_roc_auc"].max()
        tied = summary[summary["mean_roc_auc"] >= best - SAME_AUC].copy()
        tied["simplicity"] = tied["candidate"].map(simplicity).fillna(9)
        tied["window_rank"] = (tied["window"] != Window.EXPANDING.value).astype(int)
        pick = tied.sort_values(
            ["simplicity", "window_rank", "mean_roc_auc"], ascending=[True, True, False]
        ).iloc[0]
        top = summary.iloc[0]
        c, w, m = pick["candidate"], pick["window"], pick["mean_roc_auc"]
        if c == top["candidate"] and w == top["window"]:
            why = (
                f"{c} ({w} window) has the best mean ROC AUC over {int(pick['periods'])} periods "
                f"({m:.3f}, worst period {pick['worst_roc_auc']:.3f})"
            )
        else:
            why = (
                f"{c} ({w} window, mean ROC AUC {m:.3f}) is within {SAME_AUC} of the best "
                f"({top['candidate']}, {top['window']}: {top['mean_roc_auc']:.3f}) and simpler"
            )
        chosen = results[(results["candidate"] == pick["candidate"]) & (results["window"] == pick["window"])]
        by_age = chosen.groupby("age")["roc_auc"].mean()
        paired = chosen.pivot_table(index="origin", columns="age", values="roc_auc")
        cadence = 1
        for age in sorted(by_age.index):
            if age == 0:
                continue
            both = paired[[0, age]].dropna() if 0 in paired and age in paired else pd.DataFrame()
            loss = float((both[0] - both[age]).mean()) if len(both) else float("nan")
            if np.isfinite(loss) and loss <= STALE_AUC:
                cadence = age + 1
            else:
                break
        unit = {"M": "month", "W": "week", "Q": "quarter"}.get(self.frequency, "period")
        capped = cadence > max((int(a) for a in by_age.index), default=0)
        limit = f" (no loss seen up to the oldest age tested, {int(max(by_age.index))})" if capped else ""
        return {
            **self.level_verdict(summary, window=str(pick["window"])),
            "candidate": str(pick["candidate"]),
            "window": str(pick["window"]),
            "mean_roc_auc": float(pick["mean_roc_auc"]),
            "why": why,
            "retrain_every_periods": cadence,
            "cadence": f"retrain at least every {cadence} {unit}(s)",
            "cadence_why": (
                "AUC by model age (periods since training): "
                + ", ".join(f"{int(a)}: {v:.3f}" for a, v in by_age.items())
                + f"; a model is kept while it loses at most {STALE_AUC} AUC against a fresh one"
                + limit
            ),
        }

    @staticmethod
    def level_verdict(summary: pd.DataFrame, *, window: str) -> dict[str, Any]:
        """Whether moving the chosen model to the EM-estimated base rate helped its calibration, in words."""
        rows = summary[summary["window"] == window].set_index("candidate")
        if not {"chosen", "chosen_prior"} <= set(rows.index) or "pooled_ece" not in rows.columns:
            return {}
        plain, moved = rows.loc["chosen"], rows.loc["chosen_prior"]
        helps = bool(moved["pooled_ece"] < plain["pooled_ece"] and moved["mean_ece"] <= plain["mean_ece"])
        return {
            "prior_adjustment_helps": helps,
            "prior_adjustment": (
                f"the EM base-rate estimate {'lowers' if helps else 'does not lower'} calibration error: "
                f"pooled ECE {moved['pooled_ece']:.3f} with it vs {plain['pooled_ece']:.3f} without, mean "
                f"per-period ECE {moved['mean_ece']:.3f} vs {plain['mean_ece']:.3f}; mean predicted "
                f"{moved['pooled_mean_predicted']:.3f} vs {plain['pooled_mean_predicted']:.3f} where "
                f"{plain['pooled_rate']:.3f} converted"
            ),
        }

    def render(
        self,
        results: pd.DataFrame,
        summary: pd.DataFrame,
        recommendation: dict[str, Any],
        drift_markdown: str,
        skipped: list[str],
    ) -> str:
        header = "| window | candidate | periods | ROC AUC | worst | PR AUC | lift@10 | lift@20 | ECE |"
        lines = [
            "# Backtest: rolling-origin retraining",
            "",
            f"Recommendation: **{recommendation['candidate']}**, {recommendation['window']} window, "
            f"{recommendation['cadence']}.",
            f"- Why this candidate: {recommendation['why']}.",
            f"- Why this cadence: {recommendation['cadence_why']}.",
            *(
                [f"- Level: {recommendation['prior_adjustment']}."]
                if "prior_adjustment" in recommendation
                else []
            ),
            "",
            "Mean over periods (each period on its own), and pooled (every period's rows together: a level "
            "that lags the funnel ranks months wrongly and shows as a pooled ECE):",
            "",
            header + " pooled ROC AUC | pooled ECE |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in summary.itertuples(index=False):
            pooled_auc, pooled_ece = (
                getattr(r, "pooled_roc_auc", float("nan")),
                getattr(r, "pooled_ece", float("nan")),
            )
            lines.append(
                f"| {r.window} | {r.candidate} | {r.periods} | {r.mean_roc_auc:.3f} | "
                f"{r.worst_roc_auc:.3f} | {r.mean_pr_auc:.3f} | {r.mean_lift_top10:.2f} | "
                f"{r.mean_lift_top20:.2f} | {r.mean_ece:.3f} | {pooled_auc:.3f} | {pooled_ece:.3f} |"
            )
        fresh = results[results["age"] == 0]
        lines += [
            "",
            "Per period (age 0):",
            "",
            "| window | candidate | period | rows | base rate | ROC AUC | lift@20 | ECE |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in fresh.itertuples(index=False):
            lines.append(
                f"| {r.window} | {r.candidate} | {r.origin} | {r.test_rows} | {r.positive_rate:.3f} | "
                f"{r.roc_auc:.3f} | {r.lift_top20:.2f} | {r.ece:.3f} |"
            )
        prior = (
            fresh[fresh["candidate"] == "chosen_prior"]
            if "prior_estimate" in fresh.columns
            else fresh.head(0)
        )
        if len(prior):
            lines += [
                "",
                "Base rate estimated without labels (EM prior shift on the scores of leads still open at "
                "each origin) vs what the period had:",
                "",
                "| window | period | learner | rows used | estimate | model level | actual |",
                "|---|---|---|---|---|---|---|",
            ]
            for r in prior.itertuples(index=False):
                source = "open leads" if r.prior_from_pending else "the period's own leads"
                lines.append(
                    f"| {r.window} | {r.origin} | {r.learner} | {r.prior_rows:,.0f} ({source}) | "
                    f"{r.prior_estimate:.3f} | {r.prior_trained:.3f} | {r.positive_rate:.3f} |"
                )
        lines += ["", "## Drift over the backtested periods", drift_markdown]
        if skipped:
            lines += ["", "Skipped: " + "; ".join(skipped)]
        return "\n".join(lines) + "\n"

    def plot(self, results: pd.DataFrame) -> Any:
        from leadscore.training import plots

        plots._ensure_backend()
        import matplotlib.pyplot as plt

        fresh = results[results["age"] == 0]
        figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
        for (window, candidate), part in fresh.groupby(["window", "candidate"]):
            style = "-" if window == Window.EXPANDING.value else "--"
            top.plot(part["origin"], part["roc_auc"], style, marker="o", label=f"{candidate} ({window})")
        top.set_ylabel("ROC AUC on the next period")
        top.legend(fontsize=7)
        top.grid(alpha=0.3)
        rates = fresh.drop_duplicates("origin")
        bottom.bar(rates["origin"], rates["positive_rate"], color="#999999")
        bottom.set_ylabel("base rate")
        bottom.tick_params(axis="x", rotation=45)
        figure.suptitle("Rolling-origin backtest")
        figure.tight_layout()
        return figure

    def log(
        self,
        results: pd.DataFrame,
        summary: pd.DataFrame,
        recommendation: dict[str, Any],
        report: str,
        drift: Any,
    ) -> str:
        from leadscore.training import plots

        with contextlib.ExitStack() as stack:
            if os.environ.get("MLFLOW_RUN_ID"):
                stack.enter_context(mlflow.start_run())
            else:
                use_experiment(self.config.tracking.experiment)
            parent = stack.enter_context(
                mlflow.start_run(run_name="backtest", nested=mlflow.active_run() is not None)
            )
            out = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            mlflow.set_tags(
                {
                    "leadscore.stage": "backtest",
                    "leadscore.recommended_candidate": recommendation["candidate"],
                    "leadscore.recommended_window": recommendation["window"],
                    "leadscore.recommended_cadence": recommendation["cadence"],
                    "leadscore.drift_warnings": str(len(drift.warnings)),
                    **(
                        {"leadscore.prior_adjustment": str(recommendation["prior_adjustment"])[:4900]}
                        if "prior_adjustment" in recommendation
                        else {}
                    ),
                }
            )
            mlflow.log_params(
                {"periods": self.periods, "frequency": self.frequency, "window_periods": self.window_periods}
            )
            mlflow.log_metrics({k: float(v) for k, v in drift.metrics().items() if np.isfinite(v)})
            for (window, candidate), part in results[results["age"] == 0].groupby(["window", "candidate"]):
                with mlflow.start_run(run_name=f"{candidate}-{window}", nested=True):
                    mlflow.set_tags({"leadscore.candidate": candidate, "leadscore.window": window})
                    for step, row in enumerate(part.itertuples(index=False)):
                        mlflow.log_metrics(
                            {m: float(getattr(row, m)) for m in METRICS if np.isfinite(getattr(row, m))},
                            step=step,
                        )
                    pooled = summary[(summary["window"] == window) & (summary["candidate"] == candidate)]
                    for column in ("pooled_roc_auc", "pooled_ece"):
                        if column in pooled.columns and len(pooled) and np.isfinite(pooled[column].iloc[0]):
                            mlflow.log_metric(column, float(pooled[column].iloc[0]))
            results.to_csv(out / "backtest_results.csv", index=False)
            summary.to_csv(out / "backtest_summary.csv", index=False)
            (out / "backtest.md").write_text(report)
            plots.save_figure(self.plot(results), out / "backtest.png")
            for name in ("backtest_results.csv", "backtest_summary.csv", "backtest.md", "backtest.png"):
                mlflow.log_artifact(str(out / name), "backtest")
            return str(parent.info.run_id)
