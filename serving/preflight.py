"""Start-up check, run before the server binds its port: can this configuration serve at all?

``bentoml serve`` (the supervisor) runs :func:`check_in_subprocess`; it starts
``python -m leadscore.serving.preflight`` and waits at most ``LEADSCORE_STARTUP_TIMEOUT_SECONDS``
(default 25). The check reads the settings, requires the tracking store to exist (a missing
``mlflow.db`` is reported, never created), and resolves the model (the champion alias or the
pinned version). Any problem is one line naming the model and what to do, and the server exits
non-zero instead of binding the port and restarting workers that cannot load a model.
"""

from __future__ import annotations

import os
import subprocess
import sys

STARTUP_TIMEOUT_ENV = "LEADSCORE_STARTUP_TIMEOUT_SECONDS"
DEFAULT_STARTUP_TIMEOUT = 25.0


def check() -> str | None:
    """The problem that stops this configuration from serving, or None."""
    from leadscore.serving.settings import ConfigurationError, ServingSettings
    from leadscore.settings import apply_environment_defaults

    apply_environment_defaults()
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        settings = ServingSettings.from_env()
        settings.require_auth_configured()
    except ConfigurationError as error:
        return str(error)
    from leadscore.serving.errors import ModelUnavailable as Unavailable
    from leadscore.serving.store import check_store_exists, lookup_model

    name = settings.model_name
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    missing = check_store_exists(uri)
    if missing is not None:
        return f"model '{name}': {missing} (MLFLOW_TRACKING_URI / LEADSCORE_HOME); it is never created here"
    try:
        lookup_model(name=name, pinned=settings.model_version)
    except Unavailable as error:
        return str(error)
    except Exception as error:  # the store itself failed: say which and how
        detail = str(error).splitlines()[0][:200] if str(error) else ""
        return f"model '{name}': the tracking store {uri} failed ({type(error).__name__}: {detail})"
    return None


def check_in_subprocess() -> str | None:
    """:func:`check` in a child process, bounded in time; the problem, or None when it can serve."""
    raw = os.environ.get(STARTUP_TIMEOUT_ENV, "").strip()
    try:
        timeout = float(raw) if raw else DEFAULT_STARTUP_TIMEOUT
    except ValueError:
        return f"{STARTUP_TIMEOUT_ENV}={raw!r} is not a number"
    name = os.environ.get("LEADSCORE_MODEL_NAME", "").strip() or "leadscore"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "leadscore.serving.preflight"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        uri = os.environ.get("MLFLOW_TRACKING_URI", "the tracking store")
        return (
            f"model '{name}': {uri} did not answer within {timeout:g}s ({STARTUP_TIMEOUT_ENV}); "
            "is the tracking server running?"
        )
    if result.returncode == 0:
        return None
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return lines[-1] if lines else f"the start-up check failed:\n{result.stderr[-2000:]}"


def main() -> int:
    problem = check()
    if problem is None:
        return 0
    print(problem)
    return 1


if __name__ == "__main__":
    sys.exit(main())
