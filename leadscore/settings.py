"""Project-local defaults for MLflow, BentoML and data paths.

Nothing here runs on import: :func:`apply_environment_defaults` is called by the CLI (and by
tests through fixtures) so that a fresh clone never writes under ``~`` and never phones home.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR_ENV = "LEADSCORE_HOME"
DATASETS_DIR_ENV = "LEADSCORE_DATASETS_DIR"
DEFAULT_MODEL_NAME = "leadscore"


def state_dir() -> Path:
    """Folder for local MLflow, BentoML and generated data (``$LEADSCORE_HOME`` or ``./.leadscore``)."""
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured).resolve() if configured else PROJECT_ROOT / ".leadscore"


def default_tracking_uri() -> str:
    """Project-local SQLite tracking store."""
    return f"sqlite:///{state_dir() / 'mlflow.db'}"


def default_artifact_root() -> Path:
    return state_dir() / "mlartifacts"


def datasets_dir() -> Path:
    """Team datasets folder (``$LEADSCORE_DATASETS_DIR`` or ``../shared/datasets`` beside the repo)."""
    configured = os.environ.get(DATASETS_DIR_ENV)
    return Path(configured) if configured else PROJECT_ROOT.parent / "shared" / "datasets"


def apply_environment_defaults() -> None:
    """Set offline, project-local defaults for MLflow and BentoML unless the user set them."""
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_TRACKING_URI", default_tracking_uri())
    os.environ.setdefault("BENTOML_HOME", str(state / "bentoml"))
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
