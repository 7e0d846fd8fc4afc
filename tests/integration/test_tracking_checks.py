"""Fast, friendly failures for a shared tracking setup (no servers needed)."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from leadscore.cli_scale import (
    DatabaseUnavailable,
    TrackingServerUnavailable,
    app,
    check_database,
    check_tracking_server,
    redact,
    tracking_server_command,
)
from tests.integration.postgres_support import free_port


def test_check_tracking_server_names_the_problem_within_seconds() -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(TrackingServerUnavailable, match=r"does not answer .*leadscore tracking-server"):
        check_tracking_server(uri, timeout=2)
    assert time.monotonic() - started < 5


def test_check_tracking_server_ignores_local_stores() -> None:
    check_tracking_server("sqlite:///nowhere/mlflow.db")
    check_tracking_server("file:///nowhere")


def test_database_check_and_cli_give_a_clear_error_without_the_password() -> None:
    pytest.importorskip("psycopg2")
    uri = f"postgresql://mlflow:s3cret@127.0.0.1:{free_port()}/mlflow"
    with pytest.raises(DatabaseUnavailable, match="cannot connect") as caught:
        check_database(uri, timeout=2)
    assert "s3cret" not in str(caught.value)
    result = CliRunner().invoke(app, ["tracking-server", "--backend-store-uri", uri])
    assert result.exit_code == 2
    assert "cannot connect" in result.output and "s3cret" not in result.output


def test_tracking_server_command_binds_loopback_with_a_local_artifact_root(tmp_path) -> None:  # type: ignore[no-untyped-def]
    command = tracking_server_command(
        backend_store_uri="postgresql://mlflow@127.0.0.1:5432/mlflow", artifacts_destination=tmp_path
    )
    assert command[1:4] == ["-m", "mlflow", "server"]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--artifacts-destination") + 1] == tmp_path.resolve().as_uri()
    assert redact("postgresql://u:pw@h:1/db") == "postgresql://u:***@h:1/db"
