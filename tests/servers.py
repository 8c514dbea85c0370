"""Real servers on loopback for the tests that need one: PostgreSQL, Redis, MLflow and an S3-compatible object
store, each on a free port with its data in a private folder (or memory), stopped afterwards. PostgreSQL and
Redis come from Debian's packages, which `make test` installs when they are missing; the object store is moto's
server, from the dev extra."""

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
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # Seen once in a full CI run: an http.server child outlived SIGTERM by 30 s (cause not found: its
            # mask and handlers were clean when checked in isolation). SIGKILL cannot be ignored or blocked.
            server.kill()
            server.wait(timeout=30)


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or (
        [shutil.which(name)] if shutil.which(name) else []
    )
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
    subprocess.run(
        [
            *as_user,
            _postgres_bin("initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    command = [
        *as_user,
        _postgres_bin("postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-k",
        str(folder),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",
    ]
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
    with serving(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], port, "Redis"
    ):
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
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination",
        str(folder / "served"),
    ]
    with serving(command, port, "the MLflow server", env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}):
        yield f"http://127.0.0.1:{port}"


S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "pipeline-test",
    "AWS_SECRET_ACCESS_KEY": "pipeline-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextlib.contextmanager
def s3_server(bucket: str):
    """moto's S3-compatible server, speaking the S3 HTTP API on loopback, with `bucket` created; yields the
    environment (endpoint and credentials) that boto3, s3fs and MLflow read."""
    import sys

    import boto3

    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with serving(command, port, "the S3-compatible server (moto)"):
        environment = {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
        boto3.client(
            "s3",
            endpoint_url=environment["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=bucket)
        yield environment


@contextlib.contextmanager
def outage_then_relay(target_port: int, outage_seconds: float):
    """A loopback port that refuses connections for `outage_seconds` (a store that is down), then relays every
    connection to `target_port` (the store back up); yields the port."""
    import threading

    port = free_port()
    stop = threading.Event()

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def serve() -> None:
        if stop.wait(outage_seconds):
            return
        with socket.create_server(("127.0.0.1", port)) as listener:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(("127.0.0.1", target_port))
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=pipe, args=(source, sink), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=5)


@contextlib.contextmanager
def file_server(folder: Path):
    """Python's own HTTP server on loopback serving `folder`; yields its base URL."""
    import sys

    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)]
    with serving(command, port, "http.server"):
        yield f"http://127.0.0.1:{port}/"


@contextlib.contextmanager
def silent_server():
    """A loopback port that accepts connections and never answers, as a remote behind a dead proxy does; yields
    its base URL."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
