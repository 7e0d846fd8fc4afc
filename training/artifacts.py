"""Logging a training run's files: Parquet evidence, the model's own code and its requirements.

The artifact names live in :mod:`leadscore.model.store`, next to the code that reads them back.
"""

from __future__ import annotations

import functools
import importlib
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

import pandas as pd


def log_parquet(frame: pd.DataFrame, *, artifact: str, out: Path) -> None:
    """Write ``frame`` under ``out`` and log it to the active MLflow run at the path ``artifact``."""
    import mlflow

    target = Path(artifact)
    frame.to_parquet(out / target.name, index=False)
    mlflow.log_artifact(str(out / target.name), str(target.parent))


def scoring_code_dir(destination: Path) -> Path:
    """Copy the importable ``leadscore`` package (with its features/model/training/serving rooms) to
    ``destination/leadscore`` and return that folder: logged as the MLflow model's ``code_paths``,
    so the model scores anywhere its requirements install, without leadscore on an index."""
    import leadscore

    target = destination / "leadscore"
    if target.exists():
        shutil.rmtree(target)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    (root,) = leadscore.__path__
    shutil.copytree(root, target, ignore=ignore)
    for room in ("features", "model", "training", "serving"):
        module = importlib.import_module(f"leadscore.{room}")
        (source,) = module.__path__
        shutil.rmtree(target / room, ignore_errors=True)
        shutil.copytree(source, target / room, ignore=ignore)
    return target


@functools.cache
def _top_level_distributions() -> Mapping[str, list[str]]:
    """Top-level module -> the installed distributions providing it (a scan of every installed
    package, ~1 s: done once per process; what is installed does not change under a running job)."""
    import importlib.metadata as metadata

    return metadata.packages_distributions()


def scoring_requirements() -> list[str]:
    """Pinned versions of leadscore's own dependencies imported in this process once the scoring model
    (``leadscore.model.pyfunc``) is loaded: the MLflow model's requirements.txt. In a training
    process that includes a few training-only packages (plots, SHAP): a superset, still installable."""
    import importlib.metadata as metadata

    importlib.import_module("leadscore.model.pyfunc")
    loaded = {name.split(".")[0] for name in sys.modules}
    provides = _top_level_distributions()
    imported = {dist.lower() for top in loaded for dist in provides.get(top, ())}
    declared = metadata.requires("leadscore") or []
    names = sorted(
        {
            re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
            for requirement in declared
            if "extra ==" not in requirement
        }
    )
    return [f"{name}=={metadata.version(name)}" for name in names if name.lower() in imported]
