"""Build a small trained + promoted model for the serving tests and the serving benchmark.

Run as a script so MLflow state stays out of the test process::

    python tests/serving/modelkit.py --home /tmp/ls --leads 5000

It simulates a CRM export, builds the training table, trains, registers and promotes
``leadscore@champion`` in ``$HOME/mlflow.db``, and writes ``$HOME/sample_leads.json``: raw leads
(the scoring API's format) for requests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def build(home: Path, *, n_leads: int, seed: int = 7, n_sample: int = 400) -> dict[str, str]:
    """Simulate, build features, train and promote; return the environment that points at it."""
    home = home.resolve()
    env = {
        "LEADSCORE_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "BENTOML_HOME": str(home / "bentoml"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_DO_NOT_TRACK": "true",
        "DO_NOT_TRACK": "true",
        "GIT_PYTHON_REFRESH": "quiet",
    }
    os.environ.update(env)
    home.mkdir(parents=True, exist_ok=True)
    os.chdir(home)  # anything MLflow writes relative to the working directory stays under home

    import mlflow
    import pandas as pd

    from leadscore.features.build import raw_lead_records, simulate_and_build
    from leadscore.features.loading import load_crm_tables
    from leadscore.training import registry
    from leadscore.training.config import TrackingConfig, TrainConfig
    from leadscore.training.train import TrainJob

    export = simulate_and_build(n_leads=n_leads, seed=seed, out_dir=home / "data")
    crm, paths, table_path = export.crm, export.paths, export.training_table
    # The training job does not set an artifact location; without this MLflow would write ./mlruns.
    if mlflow.get_experiment_by_name("leadscore") is None:
        mlflow.create_experiment("leadscore", artifact_location=(home / "mlartifacts").as_uri())
    config = TrainConfig(training_table=table_path, tracking=TrackingConfig(model_name="leadscore"))
    result = TrainJob(config).run()
    decision = registry.promote(model_name="leadscore", version=result.model_version, force=True)
    assert decision.promoted or decision.reason == "already the champion", decision

    # Raw leads for requests: the newest ones, as of the end of the export.
    tables = load_crm_tables(leads=paths["leads"], activities=paths["activities"])
    as_of = pd.Timestamp(crm.exported_at)
    newest = tables.leads.sort_values("created_at")["lead_id"].tail(n_sample).tolist()
    records = raw_lead_records(tables=tables, lead_ids=newest, as_of=as_of)
    (home / "sample_leads.json").write_text(json.dumps(records, default=str))
    (home / "env.json").write_text(json.dumps(env))
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    env = build(args.home, n_leads=args.leads, seed=args.seed)
    print(json.dumps(env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
