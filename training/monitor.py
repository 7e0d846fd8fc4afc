"""Label-free monitoring: is the model still right, months before the labels arrive?

From calibrated probabilities alone a model's expected performance can be read (confidence-based
performance estimation, as NannyML's CBPE does): if a lead's probability is right, it is an expected
conversion of ``p`` and an expected non-conversion of ``1 - p``, so the expected ROC curve, precision
at the SQL threshold and base rate follow without a single label. Those estimates are only as good as
the calibration, so the monitor also shows, for every cohort whose labels have matured, the realised
values beside them, and the feature and score drift that would break the calibration.

:class:`MonitorJob` reads the newest export's table (and, when it exists, the score ledger), scores
the rows the model never learnt from by monthly (or weekly) cohort and raises alerts a scheduler can
act on (the CLI exits 1).
"""

from __future__ import annotations

import base64
import html
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.model.calibration import MIN_EM_ROC_AUC, em_prior_settled, expected_roc_auc
from leadscore.model.scoring_model import LeadScoringModel
from leadscore.training import evaluation
from leadscore.training.drift import PSI_MAJOR, DriftReport, drift_report, population_stability
from leadscore.training.registry import rows_never_learnt_from
from leadscore.training.split import TimeAxis
from leadscore.training.train import lead_flow_mask

log = logging.getLogger(__name__)
MIN_COHORT_ROWS = 50
"""Fewest rows a cohort needs for its estimates (smaller cohorts are listed, flagged, not estimated)."""
MIN_REALISED_OUTCOMES = 10
"""Fewest conversions and non-conversions a matured cohort needs for a realised AUC."""
AUC_DROP_ALERT = 0.05
"""An estimated or realised ROC AUC this far below the model's own test AUC raises an alert."""
SCORE_PSI_ALERT = PSI_MAJOR
CALIBRATION_Z_ALERT = 3.0
"""A matured cohort whose conversions sit this many binomial standard errors from the predicted ones."""


def expected_precision(probability: np.ndarray, *, threshold: float) -> float:
    """Expected precision of the leads at or above ``threshold`` (their mean probability)."""
    p = np.asarray(probability, dtype=np.float64)
    chosen = p[p >= threshold]
    return float(chosen.mean()) if len(chosen) else float("nan")


def cohort_label(values: pd.Series, *, frequency: str) -> pd.Series:
    """Each time stamp's cohort (``2025-03`` for months, ``2025-03-10/2025-03-16`` for weeks)."""
    return pd.to_datetime(values).dt.to_period(frequency).astype(str)


MIN_RECALIBRATION_ROWS = 500
"""Fewest matured rows (newer than the model's data) the estimates' recalibration is fitted on."""


@dataclass(frozen=True)
class Recalibration:
    """A Platt map of the model's probabilities fitted on matured rows it never learnt from.

    The estimates are only as good as the probabilities: on the simulator the newest months' matured
    leads read a calibration slope near 0.8 (the model ranks a little more confidently than the new
    months bear out), which raised the raw estimate of ROC AUC by about 0.04. The slope and intercept
    learnt on earlier matured cohorts correct that for the later ones.
    """

    slope: float
    intercept: float
    rows: int

    def __call__(self, probability: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(probability, dtype=np.float64), 1e-9, 1 - 1e-9)
        return np.asarray(1.0 / (1.0 + np.exp(-(self.intercept + self.slope * np.log(p / (1 - p))))))


def fit_recalibration(probability: np.ndarray, y: np.ndarray) -> Recalibration | None:
    """Platt recalibration on matured rows, or None with fewer than ``MIN_RECALIBRATION_ROWS`` rows or
    ``MIN_REALISED_OUTCOMES`` of either outcome."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y).astype(int)
    if len(y) < MIN_RECALIBRATION_ROWS or min(int(y.sum()), len(y) - int(y.sum())) < MIN_REALISED_OUTCOMES:
        return None
    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-9, 1 - 1e-9)
    fitted = LogisticRegression(C=1e6).fit(np.log(p / (1 - p)).reshape(-1, 1), y)
    return Recalibration(float(fitted.coef_[0, 0]), float(fitted.intercept_[0]), len(y))


def cohort_table(
    frame: pd.DataFrame,
    *,
    threshold: float,
    trained_prior: float,
    frequency: str = "M",
    recalibration: Recalibration | None = None,
) -> pd.DataFrame:
    """Per cohort: label-free estimates from ``probability`` and, where labels matured, realised values.

    ``frame`` has ``as_of``, ``probability`` and optionally ``label`` (NaN: not known yet). The ROC AUC
    and precision estimates read the probabilities through a :class:`Recalibration` fitted on the
    matured rows of the *earlier* cohorts (so a cohort's estimate never saw its own labels), or through
    ``recalibration`` when it is given (rows without labels, such as the ledger's); without either, the
    probabilities as they are (``recalibrated_on`` 0).
    """
    rows = []
    labels = frame["label"] if "label" in frame.columns else pd.Series(np.nan, index=frame.index)
    cohort_of = cohort_label(frame["as_of"], frequency=frequency)
    all_p = frame["probability"].to_numpy(dtype=float)
    all_known = labels.notna().to_numpy()
    for cohort, part in frame.groupby(cohort_of, sort=True):
        p = part["probability"].to_numpy(dtype=float)
        known = labels.loc[part.index].notna().to_numpy()
        earlier = (cohort_of < cohort).to_numpy() & all_known
        mapping = recalibration or fit_recalibration(all_p[earlier], labels.to_numpy(dtype=float)[earlier])
        q = mapping(p) if mapping is not None else p
        row: dict[str, Any] = {"cohort": cohort, "rows": len(part), "labelled": int(known.sum())}
        row["too_few"] = len(part) < MIN_COHORT_ROWS
        row["mean_predicted"] = float(p.mean())
        row["recalibrated_on"] = mapping.rows if mapping is not None else 0
        row["calibration_slope"] = mapping.slope if mapping is not None else float("nan")
        if not row["too_few"]:
            row["estimated_roc_auc"] = expected_roc_auc(q)
            row["estimated_base_rate"] = em_prior_settled(p, trained_prior=trained_prior)
            row["estimated_precision_sql"] = expected_precision(q[p >= threshold], threshold=0.0)
        row["sql_share"] = float(np.mean(p >= threshold))
        y = labels.loc[part.index].to_numpy(dtype=float)[known]
        if known.any():
            row["realised_rate"] = float(y.mean())
            expected, spread = float(p[known].sum()), float(np.sqrt(np.sum(p[known] * (1 - p[known]))))
            row["calibration_z"] = (float(y.sum()) - expected) / spread if spread > 0 else float("nan")
            if min(y.sum(), len(y) - y.sum()) >= MIN_REALISED_OUTCOMES:
                metrics = evaluation.classification_metrics(
                    y_true=y.astype(int), y_prob=p[known], threshold=threshold
                )
                row["realised_roc_auc"] = metrics["roc_auc"]
                row["realised_ece"] = metrics["ece"]
                row["estimated_roc_auc_labelled"] = expected_roc_auc(q[known])
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class MonitorResult:
    cohorts: pd.DataFrame
    drift: DriftReport | None
    score_psi: float
    alerts: list[str]
    reference_auc: float
    report_html: str
    report_markdown: str
    ledger_cohorts: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def exit_code(self) -> int:
        """1 when any alert was raised (a scheduler's signal), else 0."""
        return 1 if self.alerts else 0


class MonitorJob:
    """Label-free monitoring of a registered model on the rows it never learnt from."""

    def __init__(
        self,
        *,
        model: LeadScoringModel,
        table: pd.DataFrame,
        ages_days: list[int] | tuple[int, ...] | None,
        reference_auc: float,
        frequency: str = "M",
        ledger_scores: pd.DataFrame | None = None,
    ) -> None:
        self.model = model
        self.table = table
        self.ages_days = ages_days
        self.reference_auc = reference_auc
        self.frequency = frequency
        self.ledger_scores = ledger_scores

    # --- checklist -------------------------------------------------------------------------------
    def run(self) -> MonitorResult:
        flow = self.table[lead_flow_mask(self.table, ages_days=self.ages_days)]
        newer = rows_never_learnt_from(self.model, flow)
        reference, current = flow[~newer], flow[newer]
        if current.empty:
            raise ValueError(
                "no rows newer than the model's data (trained until "
                f"{self.model.metadata.get('trained_until')}): monitor reads a newer export's table "
                "(build it with `leadscore build-features`; `--set snapshots.keep_incomplete_horizon=true` "
                "keeps the snapshots whose outcome is still open)"
            )
        p_current = self.model.predict_proba_features(current)
        # the model's level on its newest data: EM reads every shift against it (a level taken from
        # older rows would read as a base-rate change that no lead made)
        reference = reference.sort_values("as_of", kind="stable")
        reference_sample = reference.tail(max(500, min(20_000, len(reference) // 5)))
        p_reference = (
            self.model.predict_proba_features(reference_sample) if len(reference_sample) else np.array([])
        )
        trained_prior = float(p_reference.mean()) if len(p_reference) else float(p_current.mean())
        complete = (
            current["horizon_complete"].astype(bool)
            if "horizon_complete" in current.columns
            else pd.Series(True, index=current.index)
        )
        labelled = current["label"].where(complete)
        frame = pd.DataFrame(
            {"as_of": current["as_of"].to_numpy(), "probability": p_current, "label": labelled.to_numpy()}
        )
        threshold = self.model.thresholds.sql
        cohorts = cohort_table(
            frame, threshold=threshold, trained_prior=trained_prior, frequency=self.frequency
        )
        drift = self.feature_drift(reference, current) if len(reference) else None
        score_psi = self.score_drift(p_reference, p_current) if len(p_reference) else float("nan")
        known = frame["label"].notna().to_numpy()
        recalibration = fit_recalibration(p_current[known], frame["label"].to_numpy(dtype=float)[known])
        ledger_cohorts = self.ledger_cohorts(
            threshold=threshold, trained_prior=trained_prior, recalibration=recalibration
        )
        alerts = self.alerts(cohorts=cohorts, drift=drift, score_psi=score_psi)
        markdown = self.markdown(cohorts, drift, score_psi, alerts, ledger_cohorts)
        report = self.html(markdown, cohorts)
        return MonitorResult(
            cohorts, drift, score_psi, alerts, self.reference_auc, report, markdown, ledger_cohorts
        )

    # --- steps -----------------------------------------------------------------------------------
    def feature_drift(self, reference: pd.DataFrame, current: pd.DataFrame) -> DriftReport:
        categorical = set(self.model.encoder.columns or ())
        names = self.model.feature_names
        return drift_report(
            reference=reference,
            current=current,
            numeric_features=[n for n in names if n not in categorical],
            categorical_features=[n for n in names if n in categorical],
            time_axis=TimeAxis.TIMESTAMP,
        )

    @staticmethod
    def score_drift(reference: np.ndarray, current: np.ndarray) -> float:
        """PSI of the score distribution over the reference's deciles."""
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, 11)[1:-1]))
        r = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
        c = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
        return population_stability(r / r.sum(), c / c.sum())

    def ledger_cohorts(
        self, *, threshold: float, trained_prior: float, recalibration: Recalibration | None
    ) -> pd.DataFrame:
        """The same label-free estimates over what the service scored (the ledger's newest score per lead
        and as-of, of this model's name)."""
        scores = self.ledger_scores
        if scores is None or scores.empty:
            return pd.DataFrame()
        latest = scores.sort_values("scored_at").drop_duplicates(["lead_id", "as_of"], keep="last")
        return cohort_table(
            latest.loc[:, ["as_of", "probability"]].reset_index(drop=True),
            threshold=threshold,
            trained_prior=trained_prior,
            frequency=self.frequency,
            recalibration=recalibration,
        )

    def alerts(self, *, cohorts: pd.DataFrame, drift: DriftReport | None, score_psi: float) -> list[str]:
        """What a scheduler should wake someone for, each with its numbers."""
        out: list[str] = []
        if np.isfinite(score_psi) and score_psi > SCORE_PSI_ALERT:
            out.append(
                f"score distribution shifted: PSI {score_psi:.2f} against the data the model learnt from"
            )
        if drift is not None:
            major = drift.features[drift.features["psi"] > PSI_MAJOR]
            for row in major.itertuples(index=False):
                out.append(f"feature '{row.feature}' shifted: PSI {row.psi:.2f} {row.top_change}".rstrip())
        for row in cohorts.itertuples(index=False):
            estimated = getattr(row, "estimated_roc_auc", float("nan"))
            if np.isfinite(estimated) and estimated < self.reference_auc - AUC_DROP_ALERT:
                out.append(
                    f"cohort {row.cohort}: estimated ROC AUC {estimated:.3f}, below the test AUC "
                    f"{self.reference_auc:.3f} by more than {AUC_DROP_ALERT}"
                )
            realised = getattr(row, "realised_roc_auc", float("nan"))
            if np.isfinite(realised) and realised < self.reference_auc - AUC_DROP_ALERT:
                out.append(
                    f"cohort {row.cohort}: realised ROC AUC {realised:.3f} "
                    f"(test AUC {self.reference_auc:.3f})"
                )
            z = getattr(row, "calibration_z", float("nan"))
            if np.isfinite(z) and abs(z) > CALIBRATION_Z_ALERT:
                out.append(
                    f"cohort {row.cohort}: {row.labelled:,} matured leads converted at "
                    f"{row.realised_rate:.1%} where the model predicted {row.mean_predicted:.1%} (z {z:+.1f})"
                )
        return out

    # --- report ----------------------------------------------------------------------------------
    def markdown(
        self,
        cohorts: pd.DataFrame,
        drift: DriftReport | None,
        score_psi: float,
        alerts: list[str],
        ledger_cohorts: pd.DataFrame,
    ) -> str:
        version = self.model.metadata.get("version", "?")
        lines = [
            f"# Monitor: {self.model.metadata.get('model_name', 'leadscore')} version {version}",
            "",
            f"Trained until {self.model.metadata.get('trained_until', '?')}; test ROC AUC "
            f"{self.reference_auc:.3f}. "
            "Estimates read the calibrated probabilities alone (expected conversions p, non-conversions "
            "1 - p), recalibrated on the matured rows of earlier cohorts where there are enough "
            "(`recalibrated_on`); realised values appear once a cohort's labels have matured. The EM "
            "base rate is left empty where the scores separate too little (estimated ROC AUC below "
            f"{MIN_EM_ROC_AUC}) or EM ran to a bound: then any base rate explains the scores.",
            "",
            f"**{'ALERTS' if alerts else 'No alerts'}**" + (":" if alerts else "."),
            *(f"- {a}" for a in alerts),
            "",
            _cohort_markdown(
                cohorts, title="Cohorts of the newest export (rows the model never learnt from)"
            ),
        ]
        if len(ledger_cohorts):
            lines += ["", _cohort_markdown(ledger_cohorts, title="Cohorts the service scored (score ledger)")]
        lines += ["", f"Score distribution PSI against the training rows: {score_psi:.3f}", ""]
        if drift is not None:
            lines += ["## Feature drift", drift.markdown()]
        return "\n".join(lines) + "\n"

    def html(self, markdown: str, cohorts: pd.DataFrame) -> str:
        """One HTML file: the AUC and base-rate plots (embedded) and the report's text."""
        image = _plot_png(cohorts, reference_auc=self.reference_auc)
        body = "".join(
            f"<h1>{html.escape(line[2:])}</h1>"
            if line.startswith("# ")
            else f"<h2>{html.escape(line[3:])}</h2>"
            if line.startswith("## ")
            else f"<p>{html.escape(line)}</p>"
            if line.strip()
            else ""
            for line in markdown.splitlines()
            if not line.startswith("|")
        )
        table = cohorts.round(4).to_html(index=False, na_rep="", classes="cohorts")
        return (
            "<!doctype html><html><head><meta charset='utf-8'><title>leadscore monitor</title>"
            "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>"
            + body.replace(
                "</h1>",
                "</h1><img alt='estimated and realised ROC AUC and base rate by cohort' "
                f"src='data:image/png;base64,{image}'/>",
                1,
            )
            + f"{table}</body></html>"
        )


def _cohort_markdown(cohorts: pd.DataFrame, *, title: str) -> str:
    lines = [
        f"## {title}",
        "",
        "| cohort | rows | labelled | mean predicted | est. base rate | realised rate | est. ROC AUC | "
        "realised ROC AUC | est. precision SQL |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(row: Any, name: str, fmt: str) -> str:
        value = getattr(row, name, float("nan"))
        return format(value, fmt) if isinstance(value, float | int) and np.isfinite(value) else ""

    for row in cohorts.itertuples(index=False):
        flag = " (too few to judge)" if row.too_few else ""
        lines.append(
            f"| {row.cohort}{flag} | {row.rows:,} | {row.labelled:,} | "
            f"{cell(row, 'mean_predicted', '.1%')} | "
            f"{cell(row, 'estimated_base_rate', '.1%')} | {cell(row, 'realised_rate', '.1%')} | "
            f"{cell(row, 'estimated_roc_auc', '.3f')} | {cell(row, 'realised_roc_auc', '.3f')} | "
            f"{cell(row, 'estimated_precision_sql', '.1%')} |"
        )
    return "\n".join(lines)


def _plot_png(cohorts: pd.DataFrame, *, reference_auc: float) -> str:
    from leadscore.training import plots

    plots._ensure_backend()
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    x = cohorts["cohort"].astype(str)
    for column, style, label in (
        ("estimated_roc_auc", "o-", "estimated (no labels)"),
        ("realised_roc_auc", "s--", "realised"),
    ):
        if column in cohorts.columns:
            top.plot(x, cohorts[column], style, label=label)
    top.axhline(reference_auc, color="#999999", lw=1, label="test AUC at training")
    top.set_ylabel("ROC AUC")
    top.legend(fontsize=8)
    for column, style, label in (
        ("mean_predicted", "o-", "mean predicted"),
        ("estimated_base_rate", "^-", "EM estimate"),
        ("realised_rate", "s--", "realised"),
    ):
        if column in cohorts.columns:
            bottom.plot(x, cohorts[column], style, label=label)
    bottom.set_ylabel("conversion rate")
    bottom.legend(fontsize=8)
    bottom.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def write_report(result: MonitorResult, out: Path) -> list[Path]:
    """``monitor.html``, ``monitor.md`` and ``cohorts.csv`` (and ``drift_features.csv``) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "monitor.html", out / "monitor.md", out / "cohorts.csv"]
    paths[0].write_text(result.report_html)
    paths[1].write_text(result.report_markdown)
    result.cohorts.to_csv(paths[2], index=False)
    if result.drift is not None:
        paths.append(out / "drift_features.csv")
        result.drift.features.to_csv(paths[-1], index=False)
    return paths
