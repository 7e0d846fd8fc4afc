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
  "last notable activity" next to "last activity";
* ``filled_mostly_for_converted``: filled for at most half of the leads, and those are mostly
  converted ones (a deal-stage, seller or contract field filled in during the sale);
* ``date_at_or_after_outcome``: a date column whose values are at or after the lead's outcome for
  most converted leads (known only once the deal happened);
* ``name_suggests_post_contact``: the name says duration, length, talk time, outcome, result,
  stage, owner, won/lost, close, reason, disposition...: facts known only after a contact;
* ``suspicious_auc``: AUC alone in ``[confirm_auc, max_auc)`` (default 0.70-0.85): strong for one
  column, possibly a leak under an innocuous name (a call's length alone reaches about 0.8).

Two tiers: ``flag`` (too predictive, missingness, filled for converted, dates after the outcome, or a
suspicious AUC *and* a post-contact name together) and ``confirm`` ("suspicious: confirm": one weaker
sign alone). Flags are prompts for review, not verdicts: a mapping lists cleared columns in
``audit_allow``.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

HINDSIGHT_WORDS = re.compile(
    r"\b(score|index|quality|status|stage|tags?|profile|rating|grade|notable|owner|outcome|result)\b",
    re.IGNORECASE,
)
POST_CONTACT_WORDS = re.compile(
    r"\b(duration|durations|length|len|talk ?time|talk|call ?time|call ?length|outcomes?|results?|stages?|"
    r"owners?|won|lost|closed?|close ?date|reason|disposition|converted|conversion|seller|sdr|sr|"
    r"assigned|rep|resolution)\b",
    re.IGNORECASE,
)


def name_tokens(name: str) -> str:
    """A column name as lower-case words: 'callLenSec' and 'call_len_sec' -> 'call len sec'."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return re.sub(r"[^0-9a-zA-Z]+", " ", spaced).strip().lower()


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
    confirm_auc: float = 0.70,
    outcome_at: np.ndarray | pd.Series | None = None,
    created_at: np.ndarray | pd.Series | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per column: AUC alone, missing share, missingness AUC, flags and tier (strongest first).

    ``outcome_at`` (per row, missing for leads without an outcome) enables the dates-after-outcome
    check; ``created_at`` lets it ignore dates equal to the creation date.
    """
    y = np.asarray(label).astype(int)
    base_rate = float(y.mean()) if len(y) else 0.0
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
        filled = ~missing
        rows.append(
            {
                "column": column,
                "kind": "numeric" if numeric else "text",
                "distinct": int(values.nunique()),
                "auc_alone": round(auc, 4),
                "missing_share": round(float(missing.mean()), 4),
                "missingness_auc": round(_symmetric_auc(y, missing.astype(float)), 4),
                "converted_share_when_filled": round(float(y[filled].mean()), 4) if filled.any() else None,
                "after_outcome_share": _after_outcome_share(values, outcome_at, created_at),
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
        post_contact = bool(POST_CONTACT_WORDS.search(name_tokens(str(row["column"]))))
        if post_contact:
            found.append("name_suggests_post_contact")
        if confirm_auc <= row["auc_alone"] < max_auc:
            found.append("suspicious_auc")
        share = row["converted_share_when_filled"]
        if (
            share is not None
            and row["missing_share"] >= 0.5
            and base_rate < 0.5
            and share >= max(0.8, 2 * base_rate)
        ):
            found.append("filled_mostly_for_converted")
        if row["after_outcome_share"] is not None and row["after_outcome_share"] >= 0.5:
            found.append("date_at_or_after_outcome")
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
    report["tier"] = [_tier(f) for f in flags]
    return report.sort_values(["flagged", "auc_alone"], ascending=False).reset_index(drop=True)


HARD_FLAGS = (
    "too_predictive",
    "missingness_predicts_label",
    "filled_mostly_for_converted",
    "date_at_or_after_outcome",
)


def _tier(found: list[str]) -> str:
    """``flag`` (review before training), ``confirm`` (suspicious: confirm) or empty."""
    if any(f in HARD_FLAGS for f in found):
        return "flag"
    if "suspicious_auc" in found and (
        "name_suggests_post_contact" in found or "name_suggests_hindsight" in found
    ):
        return "flag"
    return "confirm" if found else ""


def _after_outcome_share(
    values: pd.Series, outcome_at: np.ndarray | pd.Series | None, created_at: np.ndarray | pd.Series | None
) -> float | None:
    """For a date column: the share of leads with an outcome whose date is at or after it."""
    if outcome_at is None:
        return None
    dates = _as_dates(values)
    if dates is None:
        return None
    outcome = pd.to_datetime(pd.Series(np.asarray(outcome_at)), errors="coerce").to_numpy()
    both = ~np.isnat(outcome) & ~np.isnat(dates)
    if created_at is not None:
        created = pd.to_datetime(pd.Series(np.asarray(created_at)), errors="coerce").to_numpy()
        same_day = ~np.isnat(created) & (dates.astype("datetime64[D]") == created.astype("datetime64[D]"))
        both &= ~same_day  # the creation date itself is not a hindsight date
    if both.sum() < 10:
        return None
    at_or_after = dates[both].astype("datetime64[D]") >= outcome[both].astype("datetime64[D]")
    return round(float(at_or_after.mean()), 4)


def _as_dates(values: pd.Series) -> np.ndarray | None:
    """The column as naive datetimes when it holds dates (>= 90% of a sample parse), else None."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        parsed = pd.to_datetime(values)
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):
            parsed = parsed.dt.tz_localize(None)
        return parsed.to_numpy(dtype="datetime64[ns]")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return None
    present = values.dropna().astype(str)
    if present.empty:
        return None
    sample = present.head(200)
    if not sample.str.contains(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}", regex=True).mean() >= 0.9:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(values.astype("string"), errors="coerce", format="mixed")
    if parsed.notna().sum() < 0.9 * len(present):
        return None
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.to_numpy(dtype="datetime64[ns]")
