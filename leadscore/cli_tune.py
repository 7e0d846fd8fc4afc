"""``leadscore tune``: the command around :class:`~leadscore.training.tune.TuneJob` (printing, exit codes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from leadscore.settings import PROJECT_ROOT, apply_environment_defaults, state_dir
from leadscore.training.config import TrainConfig, load_config
from leadscore.training.tune import SEARCH_SPACE, TuneJob, best_config_yaml

console = Console()


def tune_command(
    config: Annotated[
        Path | None, typer.Option(help="YAML train config (default: the packaged one).")
    ] = None,
    trials: Annotated[int, typer.Option(min=1, help="Number of Optuna trials.")] = 30,
    timeout: Annotated[
        float | None, typer.Option(help="Stop starting new trials after this many seconds.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write the best train config (default: $LEADSCORE_HOME/tune/...yaml)."),
    ] = None,
) -> None:
    """Tune LightGBM on the validation period (Optuna TPE); each trial is a nested MLflow run."""
    apply_environment_defaults()
    path = config or PROJECT_ROOT / "leadscore" / "configs" / "train.yaml"
    try:
        cfg = load_config(TrainConfig, path)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        console.print(f"[bold red]error:[/] invalid config {path}: {problems}")
        raise typer.Exit(code=2) from None
    except (OSError, ValueError) as error:
        console.print(f"[bold red]error:[/] cannot read config {path}: {error}")
        raise typer.Exit(code=2) from None
    job = TuneJob(cfg, trials=trials, timeout_seconds=timeout)
    with console.status(f"tuning LightGBM ({trials} trials, validation ROC AUC, MLflow nested runs)"):
        best = job.run()
    assert job.study is not None
    best_trial = job.study.best_trial
    target = out or state_dir() / "tune" / "best_train_config.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(best_config_yaml(job.best_train_config(), best_value=best_trial.value))

    table = Table(
        title=(
            f"best of {len(job.outcomes)} trials: validation ROC AUC {best_trial.value:.4f} "
            f"(trial {best_trial.number}, {best_trial.user_attrs['best_iteration']} rounds)"
        )
    )
    table.add_column("parameter")
    table.add_column("current", justify="right")
    table.add_column("best", justify="right")
    for dimension in SEARCH_SPACE:
        table.add_row(
            dimension.name,
            _format(getattr(cfg.booster, dimension.name)),
            _format(getattr(best, dimension.name)),
        )
    console.print(table)
    console.print(f"MLflow parent run {job.run_id} (experiment '{cfg.tracking.experiment}')")
    console.print(f"train with it: leadscore train --config {target}")


def _format(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4g}"
