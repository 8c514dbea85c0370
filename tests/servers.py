"""Real servers on loopback for the tests that need one: PostgreSQL, Redis and MLflow, each on a free port with
its data in a private folder, stopped afterwards. PostgreSQL and Redis come from Debian's packages, which
`make test` installs when they are missing."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(command: list[str], port: int, what: str, timeout: float = 90.0, env: dict | None = None):
    """Start `command`, wait until it accepts connections on `port`, and stop it when the block ends."""
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{what} did not start on 127.0.0.1:{port} (exit code {server.poll()})")
            time.sleep(0.1)
        yield
    finally:
        server.terminate()
        server.wait(timeout=30)


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([shutil.which(name)] if shutil.which(name) else [])
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is missing: `make test` installs it (Debian package postgresql)")
    return found[-1]


@contextlib.contextmanager
def postgres_server(password: str = "pipeline"):
    """A throwaway PostgreSQL cluster; yields (port, user, password). PostgreSQL refuses to run as root, so as
    root the cluster belongs to the `postgres` user, in a folder outside pytest's private temp tree."""
    folder = Path(tempfile.mkdtemp(prefix="pipeline-pg-"))
    folder.chmod(0o755)
    data, pwfile = folder / "data", folder / "pw"
    pwfile.write_text(password + "\n")
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(pwfile, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run([*as_user, _postgres_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
                    f"--pwfile={pwfile}", "-E", "UTF8"], check=True, capture_output=True)
    command = [*as_user, _postgres_bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(folder),
               "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
    try:
        with serving(command, port, "PostgreSQL"):
            yield port, "postgres", password
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def redis_server():
    """A throwaway Redis with no persistence; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing: `make test` installs it (Debian package redis-server)")
    port = free_port()
    with serving([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], port, "Redis"):
        yield f"redis://127.0.0.1:{port}/0"


def create_database(port: int, user: str, password: str, name: str) -> None:
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", port=port, user=user, password=password, dbname="postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()


@contextlib.contextmanager
def mlflow_server(folder: Path, port: int | None = None):
    """A real MLflow tracking server with its SQLite store and artifacts in `folder`; yields its URL. Started
    again on the same folder and port, it serves the same registry."""
    import sys

    port = port or free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--artifacts-destination", str(folder / "served")]
    with serving(command, port, "the MLflow server", env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}):
        yield f"http://127.0.0.1:{port}"
