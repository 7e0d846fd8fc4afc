"""Per-worker state shared by the service and its middleware, in a light module (no pandas).

``HOLDER`` is the worker's :class:`~leadscore.serving.engine.ModelHolder` and ``BATCH_PROCESS`` its
:class:`~leadscore.serving.batch_process.BatchProcess` or None (set by the service instance);
:class:`ReloadSignal` lets a ``POST /reload`` answered by one worker reach them all.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

HOLDER: Any = None  # the worker's ModelHolder, once the service instance exists
BATCH_PROCESS: Any = None  # the worker's BatchProcess, when the service runs one
LEDGER: Any = None  # the worker's LedgerWriter, when the score ledger is on


class ReloadSignal:
    """A small file beside the worker processes: writing it asks every worker to check the model.

    Workers of one server share a parent process; the file is keyed by it, under ``BENTOML_HOME``
    (project-local state), and each worker's loader reads it once a second.
    """

    def __init__(self) -> None:
        home = os.environ.get("BENTOML_HOME") or tempfile.gettempdir()
        self.path = Path(home) / f"leadscore-reload-{os.getppid()}"

    def read(self) -> str:
        try:
            return self.path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            return ""

    def raise_(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(f"{time.time_ns()}-{os.getpid()}", encoding="ascii")
        except OSError:
            pass  # this worker still reloads (its loader is woken directly)
