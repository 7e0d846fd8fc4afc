"""Start the scoring service with safe defaults: ``python -m leadscore.serving``.

Binds 127.0.0.1 unless ``--host`` (or ``LEADSCORE_HOST``) says otherwise, checks that API keys
are configured before starting anything, applies the project-local MLflow/BentoML defaults, then
replaces itself with ``bentoml serve leadscore.serving.service:LeadScoringService``.
A ``leadscore serve`` CLI command can call :func:`serve` directly.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import NoReturn

from leadscore.serving.settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    HOST_ENV,
    MODEL_NAME_ENV,
    MODEL_VERSION_ENV,
    PORT_ENV,
    RELOAD_ENV,
    WORKERS_ENV,
    ConfigurationError,
    ServingSettings,
)
from leadscore.settings import apply_environment_defaults

SERVICE = "leadscore.serving.service:LeadScoringService"


def bentoml_command(*, host: str, port: int) -> list[str]:
    """The ``bentoml serve`` command line (the executable next to this Python's)."""
    beside = os.path.join(os.path.dirname(sys.executable), "bentoml")
    executable = beside if os.path.exists(beside) else (shutil.which("bentoml") or "bentoml")
    return [executable, "serve", SERVICE, "--host", host, "--port", str(port)]


def serve(
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    reload_seconds: float | None = None,
) -> NoReturn:
    """Validate the configuration, then exec ``bentoml serve`` (never returns)."""
    overrides = {
        HOST_ENV: host,
        PORT_ENV: port,
        WORKERS_ENV: workers,
        MODEL_NAME_ENV: model_name,
        MODEL_VERSION_ENV: model_version,
        RELOAD_ENV: reload_seconds,
    }
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = str(value)
    apply_environment_defaults()
    try:
        ServingSettings.from_env().require_auth_configured()
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    command = bentoml_command(
        host=os.environ.get(HOST_ENV) or DEFAULT_HOST, port=int(os.environ.get(PORT_ENV) or DEFAULT_PORT)
    )
    sys.stdout.flush()
    os.execv(command[0], command)


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(prog="python -m leadscore.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--host", help=f"address to bind (default {DEFAULT_HOST}; 0.0.0.0 exposes it)")
    parser.add_argument("--port", type=int, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--workers", type=int, help="worker processes, each with its own model (default 1)")
    parser.add_argument("--model-name", help="registered MLflow model (default leadscore)")
    parser.add_argument("--model-version", help="pin a version instead of following the champion alias")
    parser.add_argument("--reload-seconds", type=float, help="champion alias poll interval (0 = off)")
    args = parser.parse_args(argv)
    serve(
        host=args.host,
        port=args.port,
        workers=args.workers,
        model_name=args.model_name,
        model_version=args.model_version,
        reload_seconds=args.reload_seconds,
    )
