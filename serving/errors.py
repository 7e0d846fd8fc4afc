"""Exceptions and the uniform error body, in a light module (no pandas, no model code).

The service module imports only light modules so that the ``bentoml serve`` supervisor process,
which imports it to read the service's configuration, stays small; the scoring engine is
imported by each worker when its service instance starts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from leadscore.model.records import MAX_PROBLEMS, Problem, RequestInvalid
from leadscore.serving.schemas import ErrorResponse

__all__ = [
    "ERROR_CODES",
    "MAX_PROBLEMS",
    "ModelUnavailable",
    "PayloadTooLarge",
    "RequestInvalid",
    "error_body",
    "lead_hash",
]

ERROR_CODES: dict[int, str] = {
    400: "malformed_json",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    408: "request_timeout",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
    504: "timeout",
}


class PayloadTooLarge(ValueError):
    """The request would cost more work than the limits allow; ``problems`` names the field (413)."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(self.problems[0].problem if self.problems else "request too large")


class ModelUnavailable(RuntimeError):
    """No model could be resolved or loaded."""


def error_body(status: int, message: str, problems: list[Problem] | None = None) -> bytes:
    error = ERROR_CODES.get(status, "internal_error" if status >= 500 else "bad_request")
    return ErrorResponse(error=error, message=message, problems=problems or []).model_dump_json().encode()


def lead_hash(lead_id: str) -> str:
    """Short, stable pseudonym of a lead id for logs (lead ids never appear in logs)."""
    return hashlib.sha256(lead_id.encode("utf-8")).hexdigest()[:12]
