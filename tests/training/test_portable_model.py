"""The logged MLflow model scores from its own folder alone: its code and its pinned requirements."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import mlflow
import pytest

from tests.conftest import Trained
from tests.fresh_venv import fresh_venv

pytestmark = pytest.mark.slow


def test_logged_model_scores_in_a_fresh_venv_without_leadscore(trained: Trained, tmp_path: Path) -> None:
    model_dir = Path(
        mlflow.artifacts.download_artifacts(  # the URI passed, not set: set_tracking_uri is process-wide
            artifact_uri=f"runs:/{trained.result.run_id}/model",
            dst_path=str(tmp_path / "model"),
            tracking_uri=os.environ["MLFLOW_TRACKING_URI"],
        )
    )
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert all("==" in line for line in requirements if not line.startswith("-")), requirements
    assert not any(line.startswith("leadscore") for line in requirements), "leadscore is on no index"
    example = json.loads((model_dir / "input_example.json").read_text())
    assert not {"email", "first_name", "last_name", "phone"} & set(example["columns"]), "PII in the example"

    venv = tmp_path / "venv"
    python, _ = fresh_venv(venv)  # third-party packages from the test environment; leadscore NOT importable
    script = f"""
import json, sys
import mlflow.pyfunc, pandas as pd
try:
    import leadscore
    raise SystemExit("leadscore importable before loading the model: " + leadscore.__file__)
except ImportError:
    pass
model = mlflow.pyfunc.load_model({str(model_dir)!r})
example = json.load(open({str(model_dir / "input_example.json")!r}))
frame = pd.DataFrame(example["data"], columns=example["columns"])
scores = model.predict(frame)
import leadscore
print(json.dumps({{"where": leadscore.__file__, "p": [float(x) for x in scores["probability"]]}}))
"""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH"}}
    run = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["where"].startswith(str(model_dir / "code")), result["where"]
    assert result["p"] and all(0.0 < p < 1.0 for p in result["p"])
