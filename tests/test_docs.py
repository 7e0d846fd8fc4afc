"""The README and the docs site: their examples run, their numbers come from results files.

Every fenced ``bash`` / ``python`` block of ``README.md`` and ``docs/**/*.md`` is executed here, in
page order, in a scratch folder with its own ``LEADSCORE_HOME`` and MLflow store (state carries over
from page to page, as for a reader following the docs: the getting-started page trains the model the
later pages use; pages that need nothing from the others run meanwhile in a second folder).
A block that cannot run here says so in an HTML comment on the line above it::

    <!-- example: skip (needs a running server) -->

Blocks in other languages (yaml, json, text) are shown, not run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_LANGUAGES = {
    "bash": "bash",
    "sh": "bash",
    "shell": "bash",
    "console": "bash",
    "python": "python",
    "py": "python",
}
SKIP = re.compile(r"^<!-- example: skip \((?P<reason>[^)]+)\) -->$")
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<lang>[\w-]*)\s*$")
BLOCK_TIMEOUT_S = 120
MIN_EXECUTED = 15


def doc_files() -> list[Path]:
    """The README, then the docs in reading order: getting started first, the reference last."""
    order = ["index.md", "getting-started.md", "guides", "concepts", "reference"]
    docs = sorted((ROOT / "docs").rglob("*.md"), key=lambda p: (_rank(p, order), str(p)))
    return [ROOT / "README.md", *docs]


def _rank(path: Path, order: list[str]) -> int:
    first = path.relative_to(ROOT / "docs").parts[0]
    return order.index(first) if first in order else len(order)


@dataclass(frozen=True)
class Block:
    file: Path
    line: int  # of the opening fence, 1-based
    language: str  # the fence's info string
    code: str
    skip_reason: str | None

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the skip marker above it, if any."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        code = "\n".join(line.removeprefix(indent) for line in lines[i + 1 : j]) + "\n"
        above = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        skip = SKIP.match(above)
        found.append(Block(path, i + 1, opening["lang"], code, skip["reason"] if skip else None))
        i = j + 1
    return found


def runnable(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.language in RUN_LANGUAGES]


EXECUTED: list[str] = []


# Pages whose examples need nothing from the other pages: they run in a second scratch folder, in a
# background thread while the getting-started chain runs (two cores: the docs test stays near 90 s)
INDEPENDENT = ("README.md", "docs/guides/marketing-ops.md", "docs/reference/cli.md")


def _scratch(tmp_path_factory: pytest.TempPathFactory, template: Path, name: str) -> Path:
    """A scratch folder as a reader's working directory (never the repo's state), with its own store."""
    work = tmp_path_factory.mktemp(name)
    home = work / ".leadscore"
    home.mkdir()
    shutil.copyfile(template, home / "mlflow.db")
    (work / "examples").symlink_to(ROOT / "examples")  # the docs' mappings, as in a checkout
    return work


@dataclass
class Examples:
    work: Path  # where the pages that build on each other run, in order
    independent: dict[str, Future[list[Ran]]]  # the other pages, running meanwhile


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory, mlflow_store_template: Path) -> Iterator[Examples]:
    aside = _scratch(tmp_path_factory, mlflow_store_template, "docs-examples-independent")
    with ThreadPoolExecutor(max_workers=1) as pool:
        futures = {page: pool.submit(run_page, ROOT / page, aside) for page in INDEPENDENT}
        yield Examples(_scratch(tmp_path_factory, mlflow_store_template, "docs-examples"), futures)


def _env(work: Path) -> dict[str, str]:
    home = work / ".leadscore"
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("LEADSCORE_", "MLFLOW_", "BENTOML_"))}
    return {
        **keep,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "LEADSCORE_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "BENTOML_HOME": str(home / "bentoml"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_DO_NOT_TRACK": "true",
        "DO_NOT_TRACK": "true",
        "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", "1000"),
        "COLUMNS": "100",
    }


@dataclass(frozen=True)
class Ran:
    block: Block
    done: subprocess.CompletedProcess[str]
    seconds: float


def run_block(block: Block, work: Path) -> Ran:
    if RUN_LANGUAGES[block.language] == "bash":
        command = ["bash", "-euo", "pipefail", "-c", block.code]
    else:
        command = [sys.executable, "-c", block.code]
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=work,
        env=_env(work),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
        check=False,
    )
    return Ran(block, done, time.perf_counter() - started)


def run_page(path: Path, work: Path) -> list[Ran]:
    """A page's examples in order, up to the first that fails."""
    ran: list[Ran] = []
    for block in runnable(path):
        if block.skip_reason is None:
            ran.append(run_block(block, work))
            if ran[-1].done.returncode != 0:
                break
    return ran


def _check(ran: list[Ran]) -> None:
    for r in ran:
        if r.done.returncode != 0:
            pytest.fail(
                f"example at {r.block.where} exited {r.done.returncode} after {r.seconds:.1f} s\n"
                f"--- code\n{r.block.code}--- stdout (tail)\n{r.done.stdout[-3000:]}\n"
                f"--- stderr (tail)\n{r.done.stderr[-3000:]}"
            )
        EXECUTED.append(f"{r.block.where} ({r.seconds:.1f} s)")


def _in_run_order(paths: list[Path]) -> list[Path]:
    """The chained pages first (in reading order), the independent ones last: their results are ready."""
    return sorted(paths, key=lambda p: str(p.relative_to(ROOT)) in INDEPENDENT)


@pytest.mark.slow
@pytest.mark.parametrize("path", _in_run_order(doc_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(path: Path, examples: Examples) -> None:
    page = str(path.relative_to(ROOT))
    if page in examples.independent:
        _check(examples.independent[page].result(timeout=600))
    else:
        _check(run_page(path, examples.work))


@pytest.mark.slow
def test_examples_executed_count(capsys: pytest.CaptureFixture[str]) -> None:
    """How many examples ran, and which: written to the test log as it runs (not captured)."""
    total = sum(len(runnable(p)) for p in doc_files())
    skipped = [b for p in doc_files() for b in runnable(p) if b.skip_reason]
    report = [
        f"docs examples: {len(EXECUTED)} executed, {len(skipped)} marked not-run, of {total} bash/python"
    ]
    report += [f"  ran     {where}" for where in EXECUTED]
    report += [f"  not run {block.where}: {block.skip_reason}" for block in skipped]
    with capsys.disabled():
        print("\n" + "\n".join(report))
    assert len(EXECUTED) + len(skipped) == total, "some examples neither ran nor say why (run the whole file)"
    assert len(EXECUTED) > MIN_EXECUTED
    assert len(EXECUTED) > len(skipped), "most examples should run"


def test_every_fenced_block_names_its_language() -> None:
    """A block in a shell or Python dialect the runner does not know, or with no language, would never run."""
    dialects = {"zsh", "pycon", "ipython", "python3", "shell-session", "bash-session"}
    unknown = [
        f"{b.where} ({b.language})" for p in doc_files() for b in blocks(p) if b.language.lower() in dialects
    ]
    assert not unknown, f"blocks in a language the runner does not execute (use bash or python): {unknown}"
    untagged = [b.where for p in doc_files() for b in blocks(p) if not b.language]
    assert not untagged, f"fenced blocks without a language (say text, yaml, bash ...): {untagged}"


def test_every_cli_command_is_in_the_cli_reference() -> None:
    import typer

    from leadscore.cli import app

    page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    missing = [name for name in typer.main.get_command(app).commands if f"| `{name}` |" not in page]  # type: ignore[attr-defined]
    assert not missing, f"commands missing from docs/reference/cli.md: {missing}"


def test_every_leadscore_variable_is_in_the_configuration_reference() -> None:
    page = (ROOT / "docs" / "reference" / "configuration.md").read_text()
    read = set()
    for folder in ("leadscore", "features", "model", "training", "serving", "ledger"):
        for source in (ROOT / folder).rglob("*.py"):
            read |= set(re.findall(r"\b(LEADSCORE_[A-Z][A-Z_]*[A-Z])\b", source.read_text()))
    missing = sorted(name for name in read if f"`{name}`" not in page)
    assert not missing, (
        f"variables the code reads but docs/reference/configuration.md does not list: {missing}"
    )


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_results_tables_match_the_results_files() -> None:
    render_results = _load(ROOT / "benchmarks" / "render_results.py", "render_results")
    stale = [str(p.relative_to(ROOT)) for p in render_results.stale()]
    assert not stale, (
        f"benchmark tables differ from benchmarks/results/*.json in {stale}: "
        "run python benchmarks/render_results.py"
    )
    assert "<!-- results:start -->" in (ROOT / "README.md").read_text()
    files = {p.name for p in (ROOT / "benchmarks" / "results").glob("*.json")}
    unrendered = sorted(files - {row.file for row in render_results.ROWS})
    assert not unrendered, f"results files without a row in benchmarks/render_results.py ROWS: {unrendered}"


def test_generated_reference_is_current() -> None:
    """The mapping schema and endpoint pages match the code (in a subprocess: it imports the service)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("LEADSCORE_")},
    )
    assert done.returncode == 0, f"{done.stdout}{done.stderr[-2000:]}"


def test_readme_fits_on_a_screen() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    long = [i + 1 for i, line in enumerate(lines) if len(line) > 200]
    assert not long, f"README lines over 200 characters: {long}"


def test_docs_links_point_at_files() -> None:
    """Relative links in the README resolve (mkdocs build --strict checks the site's own)."""
    text = (ROOT / "README.md").read_text()
    missing = [
        target
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
        if "://" not in target and not (ROOT / target).exists()
    ]
    assert not missing, f"README links to missing files: {missing}"
