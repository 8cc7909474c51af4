"""Shared fixtures: a real server process, a real Redis server."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from server.tokens import CITY, Role, issue_token

TEST_SECRET = "test-secret-" + "x" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    url: str
    ws_url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def page_ws_url(self) -> str:
        """/ws on the app's port: where a page opens its websocket, and what /api/edge names."""
        return self.url.replace("http", "ws", 1) + "/ws"

    def member(self, room: str, role: str = "teacher") -> dict[str, str]:
        """Headers that make an HTTP request one of ``room``'s members (room data is theirs only)."""
        return {"Authorization": "Bearer " + self.token(room, role, f"a {role} of {room}")}

    def token(self, room: str, role: str, name: str, ttl_s: int = 3600, scope: str | None = None) -> str:
        """A token for ``room``; an admin's scope is the city unless ``scope`` names a school."""
        scope = scope or (CITY if role == "admin" else None)
        return issue_token(TEST_SECRET, room=room, role=Role(role), name=name, ttl_s=ttl_s, scope=scope)

    def metric(self, name: str) -> float:
        """One sample from /metrics (the first whose name matches exactly)."""
        for line in httpx.get(self.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise KeyError(f"{name} is not among the server's metrics")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    tmp: Path, *extra: str, env: dict[str, str] | None = None, wrapper: tuple[str, ...] = ()
) -> ServerProcess:
    port, signaling_port = free_port(), free_port()
    log_path = tmp / f"server-{port}.log"
    environment = {
        **os.environ,
        "SKYCLASS_SECRET": TEST_SECRET,
        "SKYCLASS_DATA_DIR": str(tmp / "data"),
        # Tests' websockets use the signaling listener; pages use /ws on the app's port: both are served.
        "SKYCLASS_SIGNALING_PORT": str(signaling_port),
        **(env or {}),
    }
    process = subprocess.Popen(
        [
            *wrapper,
            sys.executable,
            "-m",
            "server.cli",
            "serve",
            "--port",
            str(port),
            "--ice-address",
            "127.0.0.1",
            *extra,
        ],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env=environment,
        cwd=Path(__file__).resolve().parent.parent,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited at start:\n" + log_path.read_text())
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                signaling = int(environment["SKYCLASS_SIGNALING_PORT"]) or port
                return ServerProcess(url, f"ws://127.0.0.1:{signaling}/ws", log_path, process)
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not answer within 30 s:\n" + log_path.read_text())


def stop_server(server: ServerProcess) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@contextlib.contextmanager
def running_server(*extra: str, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """`skyclass serve` in a data directory of its own, stopped on the way out."""
    with tempfile.TemporaryDirectory() as tmp:
        process = start_server(Path(tmp), *extra, env=env)
        try:
            yield process
        finally:
            stop_server(process)


@pytest.fixture(params=["python", "native"])
def forwarding_path(request: pytest.FixtureRequest) -> str:
    """A forwarding test runs on the Python path and on the native step (tests/forwarding.py)."""
    return str(request.param)


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """One `skyclass serve` for the whole run, on the embedded state; tests use distinct rooms."""
    with running_server() as process:
        yield process


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis server: the one on 6379 when it answers, else one started on a free port."""
    if _redis_answers(6379):
        yield "redis://127.0.0.1:6379/0"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("No Redis answers on 127.0.0.1:6379 and redis-server is not installed (see .ci/run)")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _redis_answers(port):
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("redis-server did not start within 10 s")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
        process.terminate()
        process.wait(5)
