"""Leakage audit: which columns predict the label too well, or in a way that smells of hindsight.

For every column of an export (features and non-features alike) the audit measures how well the
column alone predicts the label (ROC AUC of out-of-fold target encoding for text, of the value for
numbers) and how well its *missingness* does, and raises flags a person should review:

* ``too_predictive``: AUC alone >= ``max_auc`` (default 0.85): likely recorded after the outcome;
* ``missingness_predicts_label``: AUC of "is missing" >= ``max_missing_auc`` (default 0.6): the field
  is filled in by a process that already knows the outcome (e.g. by the assigned rep);
* ``name_suggests_hindsight``: the name says score, index, quality, status, stage, tag, profile,
  rating, grade, notable or owner: values typically assigned by people or tools after the fact;
* ``near_duplicate``: nearly the same information as another column (Cramér's V >= 0.9), e.g. a
  "last notable activity" next to "last activity".

Flags are prompts for review, not verdicts: a mapping lists cleared columns in ``audit_allow``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

HINDSIGHT_WORDS = re.compile(
    r"\b(score|index|quality|status|stage|tags?|profile|rating|grade|notable|owner|outcome|result)\b",
    re.IGNORECASE,
)


def _symmetric_auc(y: np.ndarray, score: np.ndarray) -> float:
    if len(np.unique(y)) < 2 or len(np.unique(score)) < 2:
        return 0.5
    auc = float(roc_auc_score(y, score))
    return max(auc, 1.0 - auc)


def _text_auc(values: pd.Series, y: np.ndarray, seed: int) -> float:
    """AUC of out-of-fold target encoding (no in-sample optimism for high-cardinality text)."""
    keys = values.fillna("__missing__").astype(str).to_numpy()
    encoded = np.zeros(len(keys))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    for train, test in folds.split(keys, y):
        rates = pd.Series(y[train]).groupby(keys[train]).mean()
        encoded[test] = pd.Series(keys[test]).map(rates).fillna(y[train].mean()).to_numpy()
    return _symmetric_auc(y, encoded)


def _cramers_v(a: pd.Series, b: pd.Series) -> float:
    table = pd.crosstab(a.fillna("__missing__").astype(str), b.fillna("__missing__").astype(str))
    if min(table.shape) < 2:
        return 0.0
    n = table.to_numpy().sum()
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    chi2 = float(((table.to_numpy() - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / (n * (min(table.shape) - 1))))


def audit_columns(
    frame: pd.DataFrame,
    *,
    label: pd.Series | np.ndarray,
    missing_values: tuple[str, ...] = ("", "Select"),
    max_auc: float = 0.85,
    max_missing_auc: float = 0.6,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per column: AUC alone, missing share, missingness AUC, flags (strongest first)."""
    y = np.asarray(label).astype(int)
    cleaned = {}
    rows = []
    for column in frame.columns:
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values.dtype):
            values = values.astype("string").str.strip()
            values = values.where(~values.isin(list(missing_values)))
        cleaned[column] = values
        missing = values.isna().to_numpy()
        numeric = pd.api.types.is_numeric_dtype(values.dtype)
        if numeric:
            filled = values.fillna(values.median() if values.notna().any() else 0.0).to_numpy(dtype=float)
            auc = _symmetric_auc(y, filled)
        else:
            auc = _text_auc(values, y, seed)
        rows.append(
            {
                "column": column,
                "kind": "numeric" if numeric else "text",
                "distinct": int(values.nunique()),
                "auc_alone": round(auc, 4),
                "missing_share": round(float(missing.mean()), 4),
                "missingness_auc": round(_symmetric_auc(y, missing.astype(float)), 4),
            }
        )
    report = pd.DataFrame(rows)
    flags: list[list[str]] = []
    text_columns = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(cleaned[c].dtype)]
    for row in report.to_dict(orient="records"):
        found = []
        if row["auc_alone"] >= max_auc:
            found.append("too_predictive")
        if row["missingness_auc"] >= max_missing_auc:
            found.append("missingness_predicts_label")
        if HINDSIGHT_WORDS.search(re.sub(r"[_\-.]", " ", str(row["column"]))):
            found.append("name_suggests_hindsight")
        if row["column"] in text_columns and 2 <= row["distinct"] <= 200:
            for other in text_columns:
                if (
                    other != row["column"]
                    and 2 <= cleaned[other].nunique() <= 200
                    and (_cramers_v(cleaned[row["column"]], cleaned[other]) >= 0.9)
                ):
                    found.append(f"near_duplicate:{other}")
                    break
        flags.append(found)
    report["flags"] = [", ".join(f) for f in flags]
    report["flagged"] = [bool(f) for f in flags]
    return report.sort_values(["flagged", "auc_alone"], ascending=False).reset_index(drop=True)
