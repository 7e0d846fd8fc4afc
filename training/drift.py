"""Drift diagnostics: how the newest period differs from the data a model learnt from.

Base rate per period, population stability index (PSI) per feature, numeric features whose newest
values fall outside the training range, and the change in category mix (channel, source, ...).
Used by train, evaluate and backtest: CLI warnings, MLflow tags/metrics and a model-card section.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leadscore.training.split import TimeAxis

PSI_MODERATE = 0.1
PSI_MAJOR = 0.25
OUT_OF_RANGE_SHARE = 0.05
MIX_CHANGE = 0.1
_EPS = 1e-4


@dataclass(frozen=True)
class DriftReport:
    base_rate: pd.DataFrame
    """period, rows, conversions, rate (reference and newest periods together)."""
    features: pd.DataFrame
    """feature, kind, psi, out_of_range_share (numeric), mix_change (categorical), top_change."""
    reference_rate: float
    current_rate: float
    warnings: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Flat MLflow metrics (``drift_*``)."""
        out = {
            "drift_base_rate_reference": self.reference_rate,
            "drift_base_rate_newest": self.current_rate,
            "drift_psi_max": float(self.features["psi"].max()) if len(self.features) else 0.0,
            "drift_features_psi_major": float((self.features["psi"] > PSI_MAJOR).sum()),
            "drift_features_out_of_range": float(
                (self.features["out_of_range_share"].fillna(0) > OUT_OF_RANGE_SHARE).sum()
            ),
        }
        for name, psi in zip(
            self.features["feature"], self.features["psi"].to_numpy(dtype=float), strict=True
        ):
            out[f"drift_psi.{metric_key(str(name))}"] = float(psi)
        return out

    def markdown(self) -> str:
        """The model card's drift section."""
        lines = [
            f"Base rate: {self.reference_rate:.1%} in the data the model learnt from, "
            f"{self.current_rate:.1%} in the newest period.",
            "",
        ]
        if self.warnings:
            lines += ["**Warnings:**", *(f"- {w}" for w in self.warnings), ""]
        else:
            lines += [
                "No feature moved beyond the warning levels (PSI > 0.25, > 5% out of range, mix > 0.1).",
                "",
            ]
        top = self.features.sort_values("psi", ascending=False).head(10)
        if len(top):
            lines += [
                "| feature | PSI | outside training range | mix change | most changed |",
                "|---|---|---|---|---|",
            ]
            for row in top.to_dict(orient="records"):
                outside, mix_change = float(row["out_of_range_share"]), float(row["mix_change"])
                share = "" if np.isnan(outside) else f"{outside:.1%}"
                mix = "" if np.isnan(mix_change) else f"{mix_change:.3f}"
                lines.append(
                    f"| {row['feature']} | {float(row['psi']):.3f} | {share} | {mix} | {row['top_change']} |"
                )
            lines.append("")
        if len(self.base_rate):
            lines += ["| period | rows | rate |", "|---|---|---|"]
            lines += [
                f"| {r.period} | {r.rows} | {r.rate:.3f} |" for r in self.base_rate.itertuples(index=False)
            ]
        return "\n".join(lines)


def metric_key(name: str) -> str:
    """A feature name as an MLflow-safe metric key."""
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", name)[:200]


def population_stability(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI of two share vectors over the same bins: sum((c - r) * ln(c / r))."""
    r = np.clip(reference, _EPS, None)
    c = np.clip(current, _EPS, None)
    return float(np.sum((c - r) * np.log(c / r)))


def _numeric_shares(ref: np.ndarray, cur: np.ndarray, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    known = ref[np.isfinite(ref)]
    edges = np.unique(np.quantile(known, np.linspace(0, 1, n_bins + 1)[1:-1])) if known.size else np.array([])

    def shares(values: np.ndarray) -> np.ndarray:
        missing = ~np.isfinite(values)
        bins = np.searchsorted(edges, values[~missing], side="right")
        counts = np.append(np.bincount(bins, minlength=len(edges) + 1), missing.sum()).astype(float)
        return counts / max(1, len(values))

    return shares(ref), shares(cur)


def _category_shares(ref: pd.Series, cur: pd.Series, top: int = 30) -> tuple[pd.Series, pd.Series]:
    ref_s = ref.astype("string").fillna("(missing)")
    cur_s = cur.astype("string").fillna("(missing)")
    keep = set(ref_s.value_counts().head(top).index) | set(cur_s.value_counts().head(top).index)
    ref_s = ref_s.where(ref_s.isin(keep), "(other)")
    cur_s = cur_s.where(cur_s.isin(keep), "(other)")
    index = sorted(set(ref_s) | set(cur_s))
    return (
        ref_s.value_counts(normalize=True).reindex(index, fill_value=0.0),
        cur_s.value_counts(normalize=True).reindex(index, fill_value=0.0),
    )


def base_rate_by_period(frame: pd.DataFrame, *, time_axis: TimeAxis, n_row_bins: int = 10) -> pd.DataFrame:
    """Rows, conversions and conversion rate per month (timestamps) or per tenth of the rows (row order)."""
    labelled = frame[frame["label"].notna()]
    if labelled.empty or time_axis is TimeAxis.NONE:
        return pd.DataFrame(columns=["period", "rows", "conversions", "rate"])
    if time_axis is TimeAxis.TIMESTAMP:
        span = (labelled["as_of"].max() - labelled["as_of"].min()) / pd.Timedelta(days=1)
        freq = "M" if span > 120 else "W"
        period = labelled["as_of"].dt.to_period(freq).astype(str)
    else:
        ranks = labelled["row_order"].rank(method="first").to_numpy()
        period = pd.Series(
            [f"rows {int(b) + 1}/{n_row_bins}" for b in (ranks - 1) * n_row_bins // len(ranks)],
            index=labelled.index,
        )
    grouped = labelled.groupby(period.to_numpy(), sort=True)["label"]
    table = pd.DataFrame(grouped.agg(rows="size", conversions="sum"))
    table.index.name = "period"
    table = table.reset_index()
    table["conversions"] = table["conversions"].astype(int)
    table["rate"] = table["conversions"] / table["rows"]
    return table


def drift_report(
    *,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric_features: Sequence[str],
    categorical_features: Sequence[str],
    time_axis: TimeAxis,
) -> DriftReport:
    """Compare the newest rows (``current``) with the rows a model learnt from (``reference``)."""
    rows = []
    for name in numeric_features:
        ref = pd.to_numeric(reference[name], errors="coerce").to_numpy(dtype=float)
        cur = pd.to_numeric(current[name], errors="coerce").to_numpy(dtype=float)
        r, c = _numeric_shares(ref, cur)
        known_ref = ref[np.isfinite(ref)]
        known_cur = cur[np.isfinite(cur)]
        if known_ref.size and known_cur.size:
            low, high = known_ref.min(), known_ref.max()
            outside = float(((known_cur < low) | (known_cur > high)).sum() / len(cur))
            direction = "above" if (known_cur > high).sum() >= (known_cur < low).sum() else "below"
            top_change = f"{outside:.1%} {direction} [{low:.4g}, {high:.4g}]" if outside else ""
        else:
            outside, top_change = float("nan"), ""
        rows.append((name, "numeric", population_stability(r, c), outside, float("nan"), top_change))
    for name in categorical_features:
        r_s, c_s = _category_shares(reference[name], current[name])
        diff = c_s - r_s
        moved = diff.abs().idxmax() if len(diff) else ""
        top_change = f"{moved}: {r_s.get(moved, 0):.1%} -> {c_s.get(moved, 0):.1%}" if len(diff) else ""
        tvd = float(0.5 * diff.abs().sum())
        psi = population_stability(r_s.to_numpy(), c_s.to_numpy())
        rows.append((name, "categorical", psi, float("nan"), tvd, top_change))
    features = pd.DataFrame(
        rows, columns=["feature", "kind", "psi", "out_of_range_share", "mix_change", "top_change"]
    )
    ref_rate = float(reference["label"].astype(float).mean()) if len(reference) else float("nan")
    cur_rate = float(current["label"].astype(float).mean()) if len(current) else float("nan")
    warnings: list[str] = []
    if (
        np.isfinite(ref_rate)
        and np.isfinite(cur_rate)
        and abs(cur_rate - ref_rate) > max(0.02, 0.25 * ref_rate)
    ):
        warnings.append(
            f"base rate moved from {ref_rate:.1%} to {cur_rate:.1%}: probabilities calibrated on older data "
            "may be off; retrain or recalibrate on recent data"
        )
    for record in features.sort_values("psi", ascending=False).to_dict(orient="records"):
        name, psi, change = str(record["feature"]), float(record["psi"]), str(record["top_change"])
        outside, mix = float(record["out_of_range_share"]), float(record["mix_change"])
        if psi > PSI_MAJOR:
            warnings.append(f"'{name}' shifted (PSI {psi:.2f})" + (f": {change}" if change else ""))
        elif record["kind"] == "numeric" and outside > OUT_OF_RANGE_SHARE:
            warnings.append(f"'{name}' left its training range: {change}")
        elif record["kind"] == "categorical" and mix > MIX_CHANGE:
            warnings.append(f"'{name}' mix changed by {mix:.2f} ({change})")
    both = pd.concat([reference, current], ignore_index=True)
    return DriftReport(
        base_rate=base_rate_by_period(both, time_axis=time_axis),
        features=features,
        reference_rate=ref_rate,
        current_rate=cur_rate,
        warnings=warnings,
    )
