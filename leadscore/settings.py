"""Project-local defaults for MLflow, BentoML and data paths.

Nothing here runs on import: :func:`apply_environment_defaults` is called by the CLI (and by
tests through fixtures) so that a fresh clone never writes under ``~`` and never phones home.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The folder above the package: the repository root in a source checkout, site-packages when installed."""
STATE_DIR_ENV = "LEADSCORE_HOME"
DATASETS_DIR_ENV = "LEADSCORE_DATASETS_DIR"
DEFAULT_MODEL_NAME = "leadscore"


def is_source_checkout() -> bool:
    """True when the package runs from a clone of the repository (not from an installed wheel)."""
    return (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "features").is_dir()


def state_dir() -> Path:
    """Folder for artifacts, BentoML and generated data: ``$LEADSCORE_HOME``, else ``.leadscore`` in the
    working directory (never inside an installed package, never under ``~``)."""
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured).resolve() if configured else Path.cwd() / ".leadscore"


def in_state_dir(path: Path) -> Path:
    """A path under ``.leadscore/`` (the configs' and options' defaults) read under :func:`state_dir`,
    so ``$LEADSCORE_HOME`` moves every command's files together; any other path as given."""
    parts = Path(path).parts
    if parts and parts[0] == ".leadscore":
        return state_dir().joinpath(*parts[1:])
    return Path(path)


def crm_data_dir() -> Path:
    """The default CRM export folder of every command (``simulate`` writes it, ``build-features``,
    ``explain`` and ``score-batch`` read it): ``data/crm`` under :func:`state_dir`."""
    return state_dir() / "data" / "crm"


def default_tracking_uri() -> str:
    """The local SQLite tracking store.

    With ``LEADSCORE_HOME`` set: ``$LEADSCORE_HOME/mlflow.db``. Otherwise MLflow's own default,
    ``mlflow.db`` in the working directory, so that ``leadscore train``, ``mlflow run .`` and a bare
    ``mlflow ui`` started in the same folder all read and write one store.
    """
    if os.environ.get(STATE_DIR_ENV):
        return f"sqlite:///{state_dir() / 'mlflow.db'}"
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def default_artifact_root() -> Path:
    return state_dir() / "mlartifacts"


def datasets_dir() -> Path:
    """Team datasets folder: ``$LEADSCORE_DATASETS_DIR``, else ``../shared/datasets`` beside the
    repository (a source checkout) or beside the working directory (an installed package)."""
    configured = os.environ.get(DATASETS_DIR_ENV)
    if configured:
        return Path(configured)
    root = PROJECT_ROOT if is_source_checkout() else Path.cwd()
    return root.parent / "shared" / "datasets"


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
    # artifact downloads are local and instant here: their progress bars only add noise to each command
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(fragment in record.getMessage() for fragment in self.fragments)


def quiet_known_third_party_noise() -> None:
    """Silence third-party messages that tell a leadscore user nothing they can act on (CLI only).

    Each is filtered for a stated reason; everything else from MLflow and friends still shows.
    """
    # mlflow.data resolves a local Parquet path to two equivalent LocalArtifactDatasetSource
    # classes and says so on every run; the lineage it records is the same either way
    warnings.filterwarnings(
        "ignore", message="The specified dataset source can be interpreted", category=UserWarning
    )
    # MLflow infers the output schema from the input example's predictions, whose integer columns
    # (score, touches) are computed by the model and never missing: the hint is about inputs
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
    # the model object is saved by leadscore's own code; loading any MLflow model means trusting its
    # registry (see docs/guides/ops.md): a caveat for the docs, not news on every training run
    logging.getLogger("mlflow.pyfunc").addFilter(_DropMessages("serialized using CloudPickle"))
    # "Validating input example against model signature": a step, not a finding (failures still show)
    logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)
    # "Creating initial MLflow database tables" / "Updating database tables": first-use bookkeeping
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
