"""The tracking store, seen from the service: existence, identity, bounded lookups (light: no pandas).

Used by the start-up check (:mod:`leadscore.serving.preflight`, before the port is bound) and by
each worker's :class:`~leadscore.serving.engine.ModelHolder`. MLflow is imported only when a
lookup runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from leadscore.serving.errors import ModelUnavailable

T = TypeVar("T")


class StoreUnavailable(ModelUnavailable):
    """The tracking store is missing, unreachable or did not answer in time."""


@dataclass(frozen=True)
class Resolved:
    version: str
    identity: str


def sqlite_store_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for other stores)."""
    if not uri.startswith("sqlite:"):
        return None
    path = uri.split("sqlite:///", 1)[-1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def check_store_exists(uri: str) -> str | None:
    """A problem when the tracking store is a local file or folder that does not exist (never created)."""
    database = sqlite_store_path(uri)
    if database is not None:
        return None if database.is_file() else f"the tracking store {database} does not exist"
    if uri.startswith("file:") or "://" not in uri:
        folder = Path(uri.removeprefix("file://").removeprefix("file:"))
        return None if folder.is_dir() else f"the tracking store {folder} does not exist"
    return None


def store_fingerprint(uri: str) -> str | None:
    """Device and inode of a local store: a store replaced on disk gets a new one."""
    database = sqlite_store_path(uri)
    try:
        stat = database.stat() if database is not None else None
    except OSError:
        return None
    return f"{stat.st_dev}:{stat.st_ino}" if stat is not None else None


class _Bounded:
    """Runs registry calls on a daemon thread, waiting at most ``timeout`` seconds for each.

    A call that hangs (a dead tracking server, MLflow's retries) keeps its thread; later calls fail
    at once with :class:`StoreUnavailable` until it returns, so nothing piles up behind it. Daemon
    threads never hold the worker at exit (a SIGTERM ends it even while a call hangs).
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._busy: threading.Thread | None = None

    def __call__(self, function: Callable[[], T], what: str) -> T:
        if self._busy is not None and self._busy.is_alive():
            raise StoreUnavailable(f"{what}: an earlier call to the tracking store has not returned yet")
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = function()
            except BaseException as error:  # handed to the caller below
                box["error"] = error

        thread = threading.Thread(target=run, name="leadscore-registry", daemon=True)
        thread.start()
        thread.join(self.timeout)
        if thread.is_alive():
            self._busy = thread
            raise StoreUnavailable(
                f"{what}: the tracking store did not answer within {self.timeout:g}s "
                "(LEADSCORE_LOAD_TIMEOUT_SECONDS)"
            )
        if "error" in box:
            raise box["error"]
        return box["value"]  # type: ignore[no-any-return]


def lookup_challenger(*, name: str) -> Resolved | None:
    """The ``challenger`` alias's version and identity, or None when the model has none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        found = mlflow.MlflowClient().get_model_version_by_alias(name, "challenger")
    except MlflowException as error:
        if getattr(error, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return Resolved(str(found.version), f"{found.run_id}:{found.creation_timestamp}")


def lookup_model(*, name: str, pinned: str | None) -> Resolved:
    """The version to serve (the pinned one, or the champion alias's) and its registration identity."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        found = (
            client.get_model_version(name, pinned)
            if pinned is not None
            else client.get_model_version_by_alias(name, "champion")
        )
    except MlflowException as error:
        code = getattr(error, "error_code", "")
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise ModelUnavailable(
                f"model '{name}' has no version {pinned} (LEADSCORE_MODEL_VERSION)"
                if pinned is not None
                else f"model '{name}' is not registered or has no 'champion' alias: run "
                "`leadscore promote`, or pin a version with LEADSCORE_MODEL_VERSION "
                "(LEADSCORE_MODEL_NAME names the model)"
            ) from None
        raise
    return Resolved(str(found.version), f"{found.run_id}:{found.creation_timestamp}")
