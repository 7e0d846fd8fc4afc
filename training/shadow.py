"""Champion and challenger on live traffic: the shadow scores in the score ledger, read against outcomes.

The service scores the ``challenger`` alias in shadow beside the champion (source ``shadow`` in the
ledger, never returned). Once the horizon after a score has passed, each lead scored by both at the same
as-of is a paired test row: the promotion gate's paired bootstrap checks (ROC AUC, ECE, capture of the
top 20%) say whether the challenger is not worse than the champion on the leads the CRM actually sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.training.registry import MIN_COMPARABLE_ROWS, GateCheck, bootstrap_checks

__all__ = ["ShadowComparison", "shadow_comparison"]


@dataclass(frozen=True)
class ShadowComparison:
    """The paired rows' count, the versions compared and the gate checks (empty when too few rows)."""

    champion_version: str
    challenger_version: str
    paired: int
    matured: int
    checks: tuple[GateCheck, ...]
    note: str

    @property
    def supports_promotion(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)


def shadow_comparison(
    scores: pd.DataFrame,
    *,
    ledger: pd.DataFrame,
    until: pd.Timestamp,
    horizon_days: int,
    tolerance: float = 0.0,
    n_boot: int = 200,
) -> ShadowComparison:
    """Pair the newest challenger's shadow scores with the champion's scores of the same leads and as-of.

    ``scores`` is :meth:`~leadscore.ledger.store.Ledger.scores_frame` with ``include_shadow=True``;
    ``ledger`` the lead ledger (``lead_id``, ``converted_at``); ``until`` the export's last date.
    """
    shadow = scores[scores["source"] == "shadow"]
    if shadow.empty:
        raise ValueError(
            "the score ledger holds no shadow scores: name a challenger with `leadscore retrain`"
        )
    challenger = str(max(shadow["model_version"].astype(str), key=lambda v: (len(v), v)))
    shadow = shadow[shadow["model_version"].astype(str) == challenger]
    served = scores[(scores["source"] != "shadow") & (scores["model_version"].astype(str) != challenger)]
    keys = ["lead_id", "as_of"]
    champion_rows = served.sort_values("scored_at").drop_duplicates(keys, keep="last")
    pairs = (
        shadow.sort_values("scored_at")
        .drop_duplicates(keys, keep="last")
        .merge(champion_rows, on=keys, suffixes=("_challenger", "_champion"))
    )
    champion = str(pairs["model_version_champion"].astype(str).mode().iloc[0]) if len(pairs) else "(none)"
    pairs = pairs[pairs["model_version_champion"].astype(str) == champion]
    converted = pd.to_datetime(ledger["converted_at"]).groupby(ledger["lead_id"].astype(str)).min()
    at = pd.to_datetime(pairs["as_of"])
    when = pairs["lead_id"].astype(str).map(converted)
    end = at + pd.Timedelta(days=horizon_days)
    became = when.notna() & (when > at) & (when <= end)
    known = (
        (became | (end <= until))
        & ~(when.notna() & (when <= at))
        & pairs["lead_id"].astype(str).isin(converted.index)
    )
    y = became[known].to_numpy(dtype=int)
    matured = int(known.sum())
    if matured < MIN_COMPARABLE_ROWS or np.unique(y).size < 2:
        note = (
            f"{matured} of {len(pairs)} paired scores have a known outcome (needs {MIN_COMPARABLE_ROWS} "
            "with both outcomes): wait for more to mature"
        )
        return ShadowComparison(champion, challenger, len(pairs), matured, (), note)
    checks = bootstrap_checks(
        y=y,
        candidate=pairs.loc[known, "probability_challenger"].to_numpy(dtype=float),
        reference=pairs.loc[known, "probability_champion"].to_numpy(dtype=float),
        reference_name=f"champion v{champion}",
        amounts=None,
        must_beat=False,
        tolerance=tolerance,
        n_boot=n_boot,
    )
    note = f"challenger v{challenger} vs champion v{champion} on {matured} of {len(pairs)} paired live scores"
    return ShadowComparison(champion, challenger, len(pairs), matured, tuple(checks), note)
