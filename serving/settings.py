"""Serving configuration, read from environment variables (see ``docs/reference/configuration.md``).

Every setting has a safe default except the API keys: without keys the service refuses to start
unless ``LEADSCORE_ALLOW_NO_AUTH=true`` says that running open is intended.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from leadscore.settings import DEFAULT_MODEL_NAME

logger = logging.getLogger("leadscore.serving")

MODEL_NAME_ENV = "LEADSCORE_MODEL_NAME"
MODEL_VERSION_ENV = "LEADSCORE_MODEL_VERSION"
API_KEYS_ENV = "LEADSCORE_API_KEYS"
API_KEYS_FILE_ENV = "LEADSCORE_API_KEYS_FILE"
ALLOW_NO_AUTH_ENV = "LEADSCORE_ALLOW_NO_AUTH"
MAX_BATCH_ENV = "LEADSCORE_MAX_BATCH"
MAX_BODY_ENV = "LEADSCORE_MAX_BODY_MB"
RELOAD_ENV = "LEADSCORE_RELOAD_SECONDS"
CLOCK_SKEW_ENV = "LEADSCORE_CLOCK_SKEW_SECONDS"
FULL_VALIDATION_ENV = "LEADSCORE_FULL_VALIDATION"
HOST_ENV = "LEADSCORE_HOST"
PORT_ENV = "LEADSCORE_PORT"
WORKERS_ENV = "LEADSCORE_WORKERS"
MAX_EVENTS_PER_LEAD_ENV = "LEADSCORE_MAX_EVENTS_PER_LEAD"
MAX_EVENTS_ENV = "LEADSCORE_MAX_EVENTS_PER_REQUEST"
READ_TIMEOUT_ENV = "LEADSCORE_READ_TIMEOUT_SECONDS"
MAX_CONCURRENCY_ENV = "LEADSCORE_MAX_CONCURRENCY"
LOAD_TIMEOUT_ENV = "LEADSCORE_LOAD_TIMEOUT_SECONDS"
AUTH_FAILURES_ENV = "LEADSCORE_AUTH_FAILURES_PER_MINUTE"
REQUEST_TIMEOUT_ENV = "LEADSCORE_REQUEST_TIMEOUT_SECONDS"
BATCH_NICENESS_ENV = "LEADSCORE_BATCH_NICENESS"
BATCH_PROCESS_ENV = "LEADSCORE_BATCH_PROCESS"
LEDGER_ENV = "LEADSCORE_LEDGER"
SHADOW_ENV = "LEADSCORE_SHADOW"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000
DEFAULT_MAX_BATCH = 1000
DEFAULT_MAX_BODY_MB = 64.0
DEFAULT_RELOAD_SECONDS = 60.0
DEFAULT_CLOCK_SKEW_SECONDS = 300.0
DEFAULT_MAX_EVENTS_PER_LEAD = 10_000  # activities plus expanded engagement_counts, per lead
DEFAULT_MAX_EVENTS = 200_000  # the same, per request
DEFAULT_READ_TIMEOUT_SECONDS = 15.0  # headers and body of one request
DEFAULT_MAX_CONCURRENCY = 32  # API requests in progress per worker; more get 503
DEFAULT_LOAD_TIMEOUT_SECONDS = 20.0  # one registry check or model load
DEFAULT_AUTH_FAILURES_PER_MINUTE = 30  # wrong keys per client address, then 429
DEFAULT_REQUEST_TIMEOUT_SECONDS = 60.0  # the service's own time per request, then 504
DEFAULT_BATCH_NICENESS = 10  # batch threads' OS priority below single leads' (0 = the same, 19 = lowest)
MIN_KEY_LENGTH = 16
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigurationError(RuntimeError):
    """The serving configuration is unusable; the message says which variable to fix."""


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _switch(name: str, *, default: bool) -> bool:
    """A true/false variable with a default; anything else is a configuration error."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE or raw in _FALSE:
        return raw in _TRUE
    raise ConfigurationError(f"{name}={raw!r} must be true or false")


def _number(name: str, default: float, *, minimum: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as error:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from error
    if not value >= minimum:  # also rejects NaN
        raise ConfigurationError(f"{name}={raw!r} must be at least {minimum}")
    return value


def read_api_keys() -> tuple[str, ...]:
    """Keys from ``LEADSCORE_API_KEYS`` (comma-separated) and ``LEADSCORE_API_KEYS_FILE``.

    The file holds one key per line; blank lines and lines starting with ``#`` are skipped.
    """
    keys = [k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",")]
    path = os.environ.get(API_KEYS_FILE_ENV, "").strip()
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise ConfigurationError(f"{API_KEYS_FILE_ENV}: cannot read the keys file ({error})") from error
        keys += [line.strip() for line in lines if not line.strip().startswith("#")]
    keys = [k for k in keys if k]
    short = sum(len(k) < MIN_KEY_LENGTH for k in keys)
    if short:
        logger.warning(
            "%d API key(s) shorter than %d characters: use long random keys", short, MIN_KEY_LENGTH
        )
    return tuple(dict.fromkeys(keys))


@dataclass(frozen=True)
class ServingSettings:
    """Everything the service reads from the environment, validated once."""

    model_name: str = DEFAULT_MODEL_NAME
    model_version: str | None = None  # None: follow the champion alias
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    allow_no_auth: bool = False
    max_batch: int = DEFAULT_MAX_BATCH
    max_body_bytes: int = int(DEFAULT_MAX_BODY_MB * 2**20)
    reload_seconds: float = DEFAULT_RELOAD_SECONDS  # 0 disables polling
    clock_skew_seconds: float = DEFAULT_CLOCK_SKEW_SECONDS
    full_validation: bool = False
    max_events_per_lead: int = DEFAULT_MAX_EVENTS_PER_LEAD
    max_events: int = DEFAULT_MAX_EVENTS
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    load_timeout_seconds: float = DEFAULT_LOAD_TIMEOUT_SECONDS
    auth_failures_per_minute: int = DEFAULT_AUTH_FAILURES_PER_MINUTE
    batch_niceness: int = DEFAULT_BATCH_NICENESS
    batch_process: bool = True  # large requests answered in a child process (batch_process.py)
    ledger: bool = True  # every /score and /explain result appended to the score ledger (ledger_routes.py)
    shadow: bool = True  # the 'challenger' alias scored in shadow, off the request path, into the ledger

    @classmethod
    def from_env(cls) -> ServingSettings:
        version = os.environ.get(MODEL_VERSION_ENV, "").strip() or None
        return cls(
            model_name=os.environ.get(MODEL_NAME_ENV, "").strip() or DEFAULT_MODEL_NAME,
            model_version=version,
            api_keys=read_api_keys(),
            allow_no_auth=_flag(ALLOW_NO_AUTH_ENV),
            max_batch=int(_number(MAX_BATCH_ENV, DEFAULT_MAX_BATCH, minimum=1)),
            max_body_bytes=int(_number(MAX_BODY_ENV, DEFAULT_MAX_BODY_MB, minimum=0.001) * 2**20),
            reload_seconds=_number(RELOAD_ENV, DEFAULT_RELOAD_SECONDS, minimum=0),
            clock_skew_seconds=_number(CLOCK_SKEW_ENV, DEFAULT_CLOCK_SKEW_SECONDS, minimum=0),
            full_validation=_flag(FULL_VALIDATION_ENV),
            max_events_per_lead=int(_number(MAX_EVENTS_PER_LEAD_ENV, DEFAULT_MAX_EVENTS_PER_LEAD, minimum=1)),
            max_events=int(_number(MAX_EVENTS_ENV, DEFAULT_MAX_EVENTS, minimum=1)),
            read_timeout_seconds=_number(READ_TIMEOUT_ENV, DEFAULT_READ_TIMEOUT_SECONDS, minimum=0.1),
            max_concurrency=int(_number(MAX_CONCURRENCY_ENV, DEFAULT_MAX_CONCURRENCY, minimum=1)),
            load_timeout_seconds=_number(LOAD_TIMEOUT_ENV, DEFAULT_LOAD_TIMEOUT_SECONDS, minimum=0.1),
            auth_failures_per_minute=int(
                _number(AUTH_FAILURES_ENV, DEFAULT_AUTH_FAILURES_PER_MINUTE, minimum=1)
            ),
            batch_niceness=_niceness(),
            batch_process=_switch(BATCH_PROCESS_ENV, default=True),
            ledger=_switch(LEDGER_ENV, default=True),
            shadow=_switch(SHADOW_ENV, default=True),
        )

    def require_auth_configured(self) -> None:
        """Refuse to run without API keys unless running open was asked for explicitly."""
        if not self.api_keys and not self.allow_no_auth:
            raise ConfigurationError(
                f"no API keys configured: set {API_KEYS_ENV} (comma-separated) or {API_KEYS_FILE_ENV} "
                f"(one key per line), or set {ALLOW_NO_AUTH_ENV}=true to serve without authentication"
            )
        if not self.api_keys:
            logger.warning("serving WITHOUT authentication (%s=true)", ALLOW_NO_AUTH_ENV)


def _niceness() -> int:
    value = _number(BATCH_NICENESS_ENV, DEFAULT_BATCH_NICENESS, minimum=0)
    if value > 19 or value != int(value):
        raise ConfigurationError(f"{BATCH_NICENESS_ENV}={value:g} must be a whole number from 0 to 19")
    return int(value)


def http_config() -> dict[str, object]:
    """BentoML ``http`` service config: loopback unless ``LEADSCORE_HOST`` says otherwise."""
    host = os.environ.get(HOST_ENV, "").strip() or DEFAULT_HOST
    port = int(_number(PORT_ENV, DEFAULT_PORT, minimum=1))
    return {"host": host, "port": port}


def worker_count() -> int:
    return int(_number(WORKERS_ENV, 1, minimum=1))


def request_timeout() -> float:
    """BentoML ``traffic.timeout``: the service's own time per request before a 504."""
    return _number(REQUEST_TIMEOUT_ENV, DEFAULT_REQUEST_TIMEOUT_SECONDS, minimum=0.1)
