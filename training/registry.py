"""Model registry: champion alias behind a promotion gate (baselines, champion, bootstrap CIs), rollback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from sklearn.metrics import roc_auc_score

from leadscore.model.scoring_model import LeadScoringModel
from leadscore.model.store import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    TEST_FEATURES_ARTIFACT,
    TEST_PREDICTIONS_ARTIFACT,
    champion_version,
    load_scoring_model,
)
from leadscore.training import evaluation


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    candidate_version: str
    champion_version: str | None
    candidate_auc: float
    champion_auc: float | None
    reason: str
    checks: tuple[GateCheck, ...] = ()


def held_out_column(model: LeadScoringModel) -> str:
    """The column of a model's run's logged held-out scores that holds its own (``p_<learner>``)."""
    return f"p_{model.metadata.get('learner', 'lightgbm')}"  # models trained before the choice: LightGBM


def comparability_problem(*, candidate: LeadScoringModel, champion: LeadScoringModel) -> str | None:
    """Why two models cannot be compared on the candidate's test rows, or None when they can."""
    if (candidate.horizon_days or None) != (champion.horizon_days or None):  # 0: older "not declared"
        return f"horizon {candidate.horizon_days} vs {champion.horizon_days} days"
    if candidate.layout is not champion.layout:
        return f"one reads {candidate.layout.value} leads, the other {champion.layout.value} leads"
    missing = sorted(set(champion.feature_names) - set(candidate.feature_names))
    if missing:
        return f"the champion needs features the candidate's test rows lack: {missing[:5]}"
    return _time_overlap(candidate=candidate.metadata, champion=champion.metadata)


def _time_value(text: object, *, axis: object) -> Any:
    """A stored time value (``test_start``, ``trained_until``) as a comparable value; None if absent."""
    if text is None or str(text).strip() in {"", "NaT", "nan", "None"} or axis == "none":
        return None
    if axis == "row_order":
        return float(str(text))
    if axis == "timestamp":
        return pd.Timestamp(str(text))
    try:  # models saved before ``time_axis`` was stored: a row position or a timestamp
        return float(str(text))
    except ValueError:
        return pd.Timestamp(str(text))


def _time_overlap(*, candidate: dict[str, object], champion: dict[str, object]) -> str | None:
    """Whether the champion saw rows of the candidate's test period (typed values: 100 > 99 rows)."""
    axis_candidate, axis_champion = candidate.get("time_axis"), champion.get("time_axis")
    if axis_candidate and axis_champion and axis_candidate != axis_champion:
        return f"time axis {axis_candidate} vs {axis_champion}"
    try:
        test_start = _time_value(candidate.get("test_start"), axis=axis_candidate)
        until = _time_value(champion.get("trained_until"), axis=axis_champion)
        if until is None:  # champions saved before trained_until: their own test start bounds training
            older = _time_value(champion.get("test_start"), axis=axis_champion)
            overlap = test_start is not None and older is not None and older > test_start
        else:
            overlap = test_start is not None and until >= test_start
    except (TypeError, ValueError) as error:
        return f"their time values cannot be compared ({error})"
    if overlap:
        until_text = champion.get("trained_until") or champion.get("test_start")
        return (
            f"the champion was trained on data from the candidate's test period (trained until "
            f"{until_text}, test from {candidate.get('test_start')})"
        )
    return None


GATE_METRICS: tuple[str, ...] = ("roc_auc", "ece", "capture")
ECE_SLACK = 0.01
"""How much worse (absolute) an ECE may significantly be before the gate refuses."""
MIN_COMPARABLE_ROWS = 100


@dataclass(frozen=True)
class GateCheck:
    """One comparison of the promotion gate: candidate vs a reference on one metric, same rows."""

    reference: str
    metric: str
    candidate: float
    reference_value: float
    low: float
    high: float
    """95% bootstrap interval of candidate - reference (for ECE lower is better)."""
    passed: bool
    rule: str

    def line(self) -> str:
        mark = "ok " if self.passed else "FAIL"
        return (
            f"{mark} {self.metric:<8} candidate {self.candidate:.4f} vs {self.reference} "
            f"{self.reference_value:.4f} (diff 95% CI [{self.low:+.4f}, {self.high:+.4f}]; {self.rule})"
        )


def _ece(y: np.ndarray, p: np.ndarray) -> float:
    return evaluation.expected_calibration_error(y_true=y, y_prob=p)


def _capture(y: np.ndarray, p: np.ndarray, amounts: np.ndarray | None) -> float:
    if amounts is not None:
        return evaluation.pipeline_capture_at(amounts=amounts, y_prob=p, fraction=0.2)
    return evaluation.capture_rate_at(y_true=y, y_prob=p, fraction=0.2)


def _metric(name: str, y: np.ndarray, p: np.ndarray, amounts: np.ndarray | None) -> float:
    if name == "roc_auc":
        return auc_or_nan(y, p)
    if name == "ece":
        return _ece(y, p)
    return _capture(y, p, amounts)


def bootstrap_checks(
    *,
    y: np.ndarray,
    candidate: np.ndarray,
    reference: np.ndarray,
    reference_name: str,
    amounts: np.ndarray | None,
    must_beat: bool,
    tolerance: float = 0.0,
    n_boot: int = 200,
    seed: int = 0,
) -> list[GateCheck]:
    """Paired bootstrap of candidate - reference on AUC, ECE and (pipeline) capture of the top 20%.

    ``must_beat`` (baselines): the candidate's AUC must be higher, and neither AUC nor capture may be
    significantly lower nor ECE significantly higher (by more than ``ECE_SLACK``). Otherwise
    (champion): not significantly worse on any of them, allowing ``tolerance``.
    """
    rng = np.random.default_rng(seed)
    n = len(y)
    if amounts is not None and not np.nansum(amounts) > 0:
        amounts = None
    diffs: dict[str, list[float]] = {m: [] for m in GATE_METRICS}
    for _ in range(n_boot):
        rows = rng.integers(0, n, n)
        yb = y[rows]
        if yb.min() == yb.max():
            continue
        ab = None if amounts is None else amounts[rows]
        for m in GATE_METRICS:
            diffs[m].append(_metric(m, yb, candidate[rows], ab) - _metric(m, yb, reference[rows], ab))
    checks = []
    for m in GATE_METRICS:
        cand, ref = _metric(m, y, candidate, amounts), _metric(m, y, reference, amounts)
        low, high = (float(v) for v in np.nanquantile(diffs[m], [0.025, 0.975]))
        name = "pipeline" if (m == "capture" and amounts is not None) else m
        if m == "ece":
            passed = low <= ECE_SLACK + tolerance
            rule = f"not significantly above by more than {ECE_SLACK + tolerance:g}"
        elif must_beat and m == "roc_auc":
            passed = cand > ref and high > 0
            rule = "must be higher"
        else:
            passed = high >= -tolerance
            rule = "not significantly lower" + (f" (tolerance {tolerance:g})" if tolerance else "")
        checks.append(GateCheck(reference_name, name, cand, ref, low, high, passed, rule))
    return checks


def logged_held_out_scores(*, client: Any, run_id: str) -> pd.DataFrame | None:
    """A run's logged test-period scores (evaluated model and baselines), or None for older runs."""
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=TEST_PREDICTIONS_ARTIFACT)
    except (MlflowException, OSError):
        return None
    return pd.read_parquet(path)


def _keys(frame: pd.DataFrame) -> list[str]:
    return [c for c in ("lead_id", "as_of", "row_order") if c in frame.columns]


def rows_never_learnt_from(model: LeadScoringModel, rows: pd.DataFrame) -> np.ndarray:
    """Which ``rows`` the model never learnt from (newer than its data); all False when unknown."""
    axis = str(model.metadata.get("time_axis", "timestamp"))
    until = str(model.metadata.get("trained_until", "") or "")
    start = str(model.metadata.get("test_start", "") or "")
    column = "row_order" if axis == "row_order" else "as_of"
    if column not in rows.columns:
        return np.zeros(len(rows), dtype=bool)
    values = rows[column]
    try:
        if until:
            bound: Any = int(until) if column == "row_order" else pd.Timestamp(until)
            return np.asarray(values > bound)
        if start and start != "NaT":  # models saved before refits: fitted and calibrated before test_start
            bound = int(start) if column == "row_order" else pd.Timestamp(start)
            return np.asarray(values >= bound)
    except (TypeError, ValueError):
        pass
    return np.zeros(len(rows), dtype=bool)


def promote(
    *,
    model_name: str,
    version: str | None = None,
    force: bool = False,
    tolerance: float = 0.0,
    n_boot: int = 200,
    move_aliases: bool = True,
) -> PromotionDecision:
    """Move the champion alias to ``version`` (default: latest) only if the evidence supports it.

    On the candidate's held-out test period (scores of its pre-test refit, logged at training) the
    candidate must beat both baselines fitted on the same rows (higher AUC, not significantly worse
    ECE or capture of the top 20%) and must not be significantly worse than the champion on the same
    rows (bootstrap 95% intervals of the paired differences). The champion is scored by its own
    logged held-out scores where it has them, else by the registered champion on rows newer than
    its data. ``force`` promotes anyway. The old champion keeps the ``previous`` alias for rollback.
    ``move_aliases=False`` judges only (``leadscore retrain`` names a passing candidate ``challenger``).
    """
    client = mlflow.MlflowClient()
    if version is None:
        versions = client.search_model_versions(f"name='{model_name}'")
        if not versions:
            raise ValueError(f"no registered versions of model '{model_name}'")
        version = str(max(int(v.version) for v in versions))
    candidate_run = client.get_model_version(model_name, version).run_id
    features = pd.read_parquet(
        mlflow.artifacts.download_artifacts(run_id=candidate_run, artifact_path=TEST_FEATURES_ARTIFACT)
    )
    scored = logged_held_out_scores(client=client, run_id=str(candidate_run))
    candidate_model = load_scoring_model(model_name=model_name, version=version)
    notes: list[str] = []
    column = held_out_column(candidate_model)
    if scored is None or column not in scored.columns or len(scored) != len(features):
        scored = features.copy()
        scored[column] = candidate_model.predict_proba_features(scored)
        notes.append("run logged no held-out scores (trained before the gate): baselines not checked")
    y = scored["label"].astype(int).to_numpy()
    amounts = scored["label_amount"].to_numpy(dtype=float) if "label_amount" in scored.columns else None
    p_candidate = scored[column].to_numpy(dtype=float)
    candidate_auc = auc_or_nan(y, p_candidate)
    checks: list[GateCheck] = []
    for baseline in ("logistic", "rule_points"):
        if f"p_{baseline}" in scored.columns:
            checks += bootstrap_checks(
                y=y,
                candidate=p_candidate,
                reference=scored[f"p_{baseline}"].to_numpy(dtype=float),
                reference_name=baseline,
                amounts=amounts,
                must_beat=True,
                n_boot=n_boot,
            )
    current = champion_version(model_name=model_name)
    if current == version:
        return PromotionDecision(
            False, version, current, candidate_auc, candidate_auc, "already the champion", tuple(checks)
        )
    champion_auc = None
    mismatch = None
    if current is not None:
        champion = load_scoring_model(model_name=model_name, version=current)
        mismatch = comparability_problem(candidate=candidate_model, champion=champion)
        if mismatch is None:
            p_champion, rows = _champion_scores(
                client=client,
                model_name=model_name,
                version=current,
                champion=champion,
                scored=scored,
                features=features,
            )
            if rows.sum() < MIN_COMPARABLE_ROWS or np.unique(y[rows]).size < 2:
                mismatch = (
                    f"only {int(rows.sum())} of the candidate's {len(y)} test rows are held out from "
                    f"champion v{current}"
                )
            else:
                champion_auc = auc_or_nan(y[rows], p_champion[rows])
                checks += bootstrap_checks(
                    y=y[rows],
                    candidate=p_candidate[rows],
                    reference=p_champion[rows],
                    reference_name=f"champion v{current}",
                    amounts=None if amounts is None else amounts[rows],
                    must_beat=False,
                    tolerance=tolerance,
                    n_boot=n_boot,
                )
                if rows.sum() < len(y):
                    notes.append(f"champion compared on {int(rows.sum())} of {len(y)} rows held out from it")
    failed = [c for c in checks if not c.passed]
    if (failed or mismatch) and not force:
        why = (
            f"not comparable with champion v{current}: {mismatch}"
            if mismatch
            else f"{len(failed)} gate check(s) failed"
        )
        return PromotionDecision(
            False,
            version,
            current,
            candidate_auc,
            champion_auc,
            f"{why} (use --force to promote anyway)" + "".join(f"; {n}" for n in notes),
            tuple(checks),
        )
    if move_aliases:
        if current is not None:
            client.set_registered_model_alias(model_name, PREVIOUS, current)
        client.set_registered_model_alias(model_name, CHAMPION, version)
    if failed or mismatch:
        problems = [f"not comparable with champion v{current}: {mismatch}"] if mismatch else []
        problems += [f"{len(failed)} gate check(s) failed"] if failed else []
        reason = "forced: " + "; ".join(problems)
    elif current is None:
        reason = "no champion yet" + ("; beats both baselines on its held-out test period" if checks else "")
    else:
        reason = (
            f"beats both baselines; not worse than champion v{current} "
            f"(AUC {candidate_auc:.4f} vs {champion_auc:.4f})"
        )
    return PromotionDecision(
        True,
        version,
        current,
        candidate_auc,
        champion_auc,
        reason + "".join(f"; {n}" for n in notes),
        tuple(checks),
    )


def _champion_scores(
    *,
    client: Any,
    model_name: str,
    version: str,
    champion: LeadScoringModel,
    scored: pd.DataFrame,
    features: pd.DataFrame,
) -> tuple[np.ndarray, np.ndarray]:
    """Champion probabilities on the candidate's test rows and which of them are usable.

    A row is usable when the champion's own run logged a held-out score for it, or when it is newer
    than every row the registered champion learnt from (then the champion scores it).
    """
    p = np.full(len(scored), np.nan)
    logged = logged_held_out_scores(
        client=client, run_id=client.get_model_version(model_name, version).run_id
    )
    keys = _keys(scored)
    column = held_out_column(champion)
    if logged is not None and column in logged.columns and keys and set(keys) <= set(logged.columns):
        joined = scored.loc[:, keys].merge(
            logged.loc[:, [*keys, column]].drop_duplicates(keys), on=keys, how="left"
        )
        p = joined[column].to_numpy(dtype=float)
    newer = rows_never_learnt_from(champion, scored) & ~np.isfinite(p)
    if newer.any():
        p[newer] = champion.predict_proba_features(features.iloc[np.flatnonzero(newer)])
    return p, np.isfinite(p)


def rollback(*, model_name: str) -> str:
    """Point champion back at the previous champion; returns the version now serving."""
    client = mlflow.MlflowClient()
    try:
        previous = str(client.get_model_version_by_alias(model_name, PREVIOUS).version)
    except MlflowException as error:
        raise ValueError(f"model '{model_name}' has no '{PREVIOUS}' alias to roll back to") from error
    current = champion_version(model_name=model_name)
    client.set_registered_model_alias(model_name, CHAMPION, previous)
    if current is not None:
        client.set_registered_model_alias(model_name, PREVIOUS, current)
    return previous


def auc_or_nan(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def nominate_challenger(
    *, model_name: str, version: str, tolerance: float = 0.0, force: bool = False
) -> PromotionDecision:
    """Run the promotion gate on ``version`` without moving the champion; when it passes (or with
    ``force``), point the ``challenger`` alias at it (the service then scores it in shadow)."""
    decision = promote(
        model_name=model_name, version=version, tolerance=tolerance, force=force, move_aliases=False
    )
    if decision.promoted:
        mlflow.MlflowClient().set_registered_model_alias(model_name, CHALLENGER, version)
    return decision
