"""Custom Prometheus metrics, served by BentoML's ``/metrics`` next to its own.

``prometheus_client`` is imported on first use, never at module import: BentoML workers set
``PROMETHEUS_MULTIPROC_DIR`` after importing the service module, and metrics created before
that would be invisible to the multi-process collector behind ``/metrics``.

* ``leadscore_requests_total{endpoint, outcome}``: every request to ``/score``, ``/explain``
  and ``/reload`` by outcome (ok, unauthorized, malformed_json, unsupported_media_type,
  payload_too_large, invalid_request, unavailable, error).
* ``leadscore_score`` (histogram, 0-100): every score returned.
* ``leadscore_leads_scored_total{tier}``: leads scored, by tier.
* ``leadscore_model_version``: the registered version each worker serves (one series per worker pid).
* ``leadscore_ledger_rows_total{outcome}``: score-ledger rows written or dropped (buffer full while the
  database was down or slow, or left at shutdown); ``leadscore_ledger_buffered``: rows waiting now.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from leadscore.serving.errors import ERROR_CODES

SCORE_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
_lock = threading.Lock()
_metrics: dict[str, Any] = {}


def _get() -> dict[str, Any]:
    if _metrics:
        return _metrics
    with _lock:
        if not _metrics:
            import prometheus_client as prom

            _metrics["requests"] = prom.Counter(
                "leadscore_requests",
                "Scoring API requests by endpoint and outcome.",
                labelnames=("endpoint", "outcome"),
            )
            _metrics["score"] = prom.Histogram(
                "leadscore_score", "Scores returned (0-100).", buckets=SCORE_BUCKETS
            )
            _metrics["leads"] = prom.Counter(
                "leadscore_leads_scored", "Leads scored, by tier.", labelnames=("tier",)
            )
            _metrics["version"] = prom.Gauge(
                "leadscore_model_version",
                "Registered model version being served (numeric versions only).",
                multiprocess_mode="all",  # one series per worker: a mixed fleet shows
            )
            _metrics["base_rate"] = prom.Gauge(
                "leadscore_base_rate_estimate",
                "The served model's base rate estimated without labels at training (EM prior shift on its "
                "scores of the newest snapshots whose outcome was not known yet), with its 95% interval.",
                labelnames=("bound",),
                multiprocess_mode="all",
            )
            _metrics["ledger"] = prom.Counter(
                "leadscore_ledger_rows",
                "Score-ledger rows, written or dropped.",
                labelnames=("outcome",),
            )
            _metrics["feedback"] = prom.Counter(
                "leadscore_feedback",
                "Rep feedback on scores, by verdict (agree / disagree).",
                labelnames=("verdict",),
            )
            _metrics["ledger_buffered"] = prom.Gauge(
                "leadscore_ledger_buffered",
                "Score-ledger rows buffered, waiting for the database.",
                multiprocess_mode="livesum",
            )
    return _metrics


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    return ERROR_CODES.get(status, "error" if status >= 500 else "client_error")


def count_request(endpoint: str, status: int) -> None:
    _get()["requests"].labels(endpoint=endpoint, outcome=outcome_of(status)).inc()


def observe_scores(scores: Iterable[float | None], tiers: Iterable[str | None]) -> None:
    """Scored leads into the histogram and tier counts (leads that are not open have neither)."""
    metrics = _get()
    histogram, leads = metrics["score"], metrics["leads"]
    per_tier: dict[str, int] = {}
    for score, tier in zip(scores, tiers, strict=True):
        if score is None or tier is None:
            continue
        histogram.observe(score)
        per_tier[tier] = per_tier.get(tier, 0) + 1
    for tier, count in per_tier.items():
        leads.labels(tier=tier).inc(count)


def set_model_version(version: str) -> None:
    if version.isdigit():
        _get()["version"].set(int(version))


def set_base_rate(metadata: dict[str, object]) -> None:
    """The served model's estimated base rate (estimate, low, high), when its training made one."""
    estimate = metadata.get("base_rate_estimate")
    if isinstance(estimate, dict):
        for bound in ("estimate", "low", "high"):
            value = estimate.get(bound)
            if isinstance(value, int | float):
                _get()["base_rate"].labels(bound=bound).set(float(value))


def observe_feedback(*, verdict: str) -> None:
    """One rep verdict stored."""
    _get()["feedback"].labels(verdict=verdict).inc()


def observe_ledger(what: str, rows: int) -> None:
    """The ledger writer's observer: rows ``written`` / ``dropped`` (counted), ``buffered`` (now)."""
    metrics = _get()
    if what == "buffered":
        metrics["ledger_buffered"].set(rows)
    elif rows:
        metrics["ledger"].labels(outcome=what).inc(rows)
