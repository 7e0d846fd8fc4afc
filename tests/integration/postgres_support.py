"""Throwaway PostgreSQL and MLflow servers on loopback for the integration tests.

PostgreSQL comes from Debian's packages (``.ci/run`` installs them in CI). ``initdb`` refuses to
run as root, so as root the cluster is created and started as the ``postgres`` user (``runuser``)
in a fresh folder under the system temp dir, on a free port, with password authentication.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


class PostgresUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def skip_or_fail(reason: str) -> None:
    """Skip on a developer machine; fail in CI, where .ci/run installs PostgreSQL."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run should have installed PostgreSQL)")
    pytest.skip(reason)


def postgres_bin_dir() -> Path | None:
    """Debian keeps the server binaries in /usr/lib/postgresql/<major>/bin, off the PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    password: str
    root: Path

    def uri(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def connect(self, database: str = "postgres"):  # type: ignore[no-untyped-def]
        import psycopg2

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            connect_timeout=5,
        )

    def create_database(self, name: str) -> None:
        connection = self.connect()
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    """Start a private PostgreSQL cluster on 127.0.0.1; stop it and delete its files afterwards."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
    as_root = os.geteuid() == 0
    run_as: list[str] = []
    if as_root:
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root without runuser: cannot start PostgreSQL as postgres")
        try:
            import pwd

            account = pwd.getpwnam("postgres")
        except KeyError as error:
            raise PostgresUnavailable("running as root and there is no 'postgres' user") from error
        run_as = ["runuser", "-u", "postgres", "--"]
    # as root, under /tmp itself: the postgres user must be able to reach the folder (a TMPDIR or
    # pytest's tmp_path may sit inside a folder only root can enter)
    base = "/tmp" if as_root and os.path.isdir("/tmp") else None
    root = Path(tempfile.mkdtemp(prefix="leadscore-pg-", dir=base))
    data = root / "data"
    password = secrets.token_hex(16)
    (root / "pw").write_text(password + "\n")
    if as_root:
        for path in (root, root / "pw"):
            os.chown(path, account.pw_uid, account.pw_gid)

    def run(*command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*run_as, *command], capture_output=True, text=True, timeout=timeout, check=False, cwd=root
        )

    started = False
    try:
        init = run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "leadscore",
            f"--pwfile={root / 'pw'}",
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        )
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-800:]}")
        for _attempt in range(3):
            port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=40"
            )
            start = run(
                str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w",
                "-t", "60", "start",
                timeout=90,
            )  # fmt: skip
            if start.returncode == 0:
                started = True
                break
        if not started:
            log = (root / "log").read_text()[-800:] if (root / "log").exists() else ""
            raise PostgresUnavailable(f"pg_ctl start failed: {start.stderr.strip()[-400:]} {log}")
        yield Postgres("127.0.0.1", port, "leadscore", password, root)
    finally:
        if started:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class MlflowServer:
    uri: str
    process: subprocess.Popen[bytes]
    artifacts: Path
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and its workers
            try:
                self.process.wait(timeout=2)  # graceful shutdown waits on idle keep-alive clients
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def wait_healthy(uri: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow server not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")
