"""The notebooks in ``notebooks/`` run top to bottom in a fresh kernel and are committed without outputs.

Each notebook sets up its own temporary ``LEADSCORE_HOME`` and MLflow store in its first cell, so
executing them here touches neither ``~`` nor the repository's ``.leadscore``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300
# The notebooks simulate 5,000 leads for readers; here they run the same cells on fewer (the first
# `N_LEADS = ...` line is rewritten in memory, never in the file) to keep the suite fast.
TEST_N_LEADS = 2_000
N_LEADS_LINE = re.compile(r"^N_LEADS = [0-9_]+$", flags=re.MULTILINE)


def smaller(notebook: Any) -> Any:
    cells = [cell for cell in notebook.cells if cell.cell_type == "code" and N_LEADS_LINE.search(cell.source)]
    assert len(cells) == 1, "each notebook sets N_LEADS once in a code cell"
    cells[0].source = N_LEADS_LINE.sub(f"N_LEADS = {TEST_N_LEADS:_}", cells[0].source)
    return notebook


def test_there_are_notebooks() -> None:
    assert [path.name for path in NOTEBOOKS] == [
        "01-explore-leads.ipynb",
        "02-train-evaluate.ipynb",
        "03-explain-leads.ipynb",
        "04-monthly-review.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name} cell {index} has outputs: clear them"
        assert cell.get("execution_count") is None, f"{path.name} cell {index} has an execution count"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_top_to_bottom(path: Path, record_property: Callable[[str, Any], None]) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = smaller(nbformat.read(path, as_version=4))
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(REPO_ROOT)}},
    )
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError (naming the cell) on the first error
    elapsed = time.perf_counter() - started
    record_property("seconds", round(elapsed, 1))
    print(f"{path.name}: {elapsed:.1f} s")
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, f"{path.name}: {errors}"
