"""The package as a user installs it: a built wheel in a fresh virtualenv, run from another folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from leadscore.settings import PROJECT_ROOT, default_tracking_uri, state_dir
from tests.fresh_venv import fresh_venv

pytestmark = pytest.mark.slow


def test_state_lives_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADSCORE_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert state_dir() == tmp_path / ".leadscore"
    # MLflow's own default store in the same folder, so `mlflow run .` and `mlflow ui` see the same runs
    assert default_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("LEADSCORE_HOME", str(tmp_path / "home"))
    assert state_dir() == tmp_path / "home"
    assert default_tracking_uri() == f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"


def test_wheel_installs_and_runs_the_demo_from_another_folder(tmp_path: Path) -> None:
    wheels = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(PROJECT_ROOT), "--no-deps", "-q", "-w", str(wheels)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("leadscore-*.whl")

    venv = tmp_path / "venv"
    python, site = fresh_venv(
        venv
    )  # the dependencies from the test environment; leadscore only from the wheel
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    workdir = tmp_path / "work"
    workdir.mkdir()
    private = {"LEADSCORE_HOME", "MLFLOW_TRACKING_URI", "BENTOML_HOME"}
    env = {k: v for k, v in os.environ.items() if k not in private}
    where = subprocess.run(
        [str(python), "-c", "import leadscore.model.scoring_model as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=workdir,
        env=env,
    ).stdout.strip()
    assert where.startswith(site), f"leadscore was imported from {where}, not from the installed wheel"

    demo = subprocess.run(
        [str(venv / "bin" / "leadscore"), "demo", "--leads", "3000"],  # the gate promotes at 3,000
        capture_output=True,
        text=True,
        cwd=workdir,
        env=env,
        timeout=600,
    )
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, output[-3000:]
    assert "promoted: version 1" in output
    assert (workdir / ".leadscore" / "data" / "crm").is_dir()
    assert (workdir / "mlflow.db").is_file()
    assert not (Path(site) / ".leadscore").exists(), "the demo wrote its state inside the installed package"
    # quiet: no third-party warnings or progress bars in what the user reads
    for noise in ("Warning", "WARNING", "Downloading artifacts"):
        assert noise not in output, f"{noise!r} in the demo's output:\n{output[-3000:]}"
