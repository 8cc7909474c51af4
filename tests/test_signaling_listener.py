"""The signaling listener (``SKYCLASS_SIGNALING_PORT``, picows) behind the shipped nginx config, and
what it does itself: a message in several frames, one too large in pieces, one not UTF-8, a path
that is not ``/ws``. (Every other websocket test in the suite runs on it too: ``conftest.py``.)"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .conftest import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _join(server: ServerProcess, room: str) -> str:
    return json.dumps({"type": "join", "room": room, "token": server.token(room, "student", "Wei"), "subscribe": False})


async def _reply(ws: object) -> dict[str, object]:
    reply: dict[str, object] = json.loads(await ws.recv())  # type: ignore[attr-defined]
    return reply


@pytest.fixture(scope="module")
def nginx(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """ops/nginx/skyclass.conf as shipped, its two nodes made this one server: pages to the app's
    port, /ws to the signaling listener. Yields nginx's URL and its access log (with upstreams)."""
    tmp = tmp_path_factory.mktemp("nginx")
    app = server.url.removeprefix("http://")
    listener = server.ws_url.removeprefix("ws://").removesuffix("/ws")
    shipped = (ROOT / "ops/nginx/skyclass.conf").read_text()
    shipped = re.sub(r"\s*server node2:\d+[^;]*;", "", shipped)
    shipped = shipped.replace("node1:8080", app).replace("node1:8090", listener)
    port = free_port()
    shipped = shipped.replace("listen 80;", f"listen 127.0.0.1:{port};")
    access = tmp / "access.log"
    (tmp / "nginx.conf").write_text(
        f"""
daemon off;
{"user root;" if os.geteuid() == 0 else ""}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{}}
http {{
    log_format upstreams '$request_uri $upstream_addr $status';
    access_log {access} upstreams;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    {shipped}
}}
"""
    )
    process = subprocess.Popen([NGINX, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(url + "/healthz", timeout=1)
            break
        except httpx.TransportError:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)
    yield url, access
    process.terminate()
    process.wait(5)


async def test_through_nginx_the_websocket_reaches_the_listener(server: ServerProcess, nginx: tuple[str, Path]) -> None:
    url, access = nginx
    assert httpx.get(url + "/static/learn.html", timeout=5).status_code == 200
    async with connect(url.replace("http", "ws", 1) + "/ws", compression=None) as ws:
        await ws.send(_join(server, "listener-nginx"))
        assert (await _reply(ws))["type"] == "joined"
        await ws.send('{"type": "ping"}')
        assert (await _reply(ws))["type"] == "pong"
    listener = server.ws_url.removeprefix("ws://").removesuffix("/ws")
    lines = access.read_text().splitlines()
    assert any(line.startswith("/ws ") and f" {listener} " in line for line in lines), lines
    assert any(line.startswith("/static/learn.html ") and listener not in line for line in lines), lines


async def test_a_message_in_several_frames_is_one_message(server: ServerProcess) -> None:
    join = _join(server, "listener-frames")
    async with connect(server.ws_url, compression=None) as ws:
        await ws.send(iter([join[:20], join[20:60], join[60:]]))  # a text message in three frames
        assert (await _reply(ws))["type"] == "joined"
        await ws.close(4000, "an application's own code")  # not one of picows' named codes
    await asyncio.sleep(0.3)
    assert "signaling/listener.py" not in server.log()  # no callback of ours failed


async def test_a_message_too_large_in_pieces_or_not_utf8_closes_that_socket_only(server: ServerProcess) -> None:
    async with connect(server.ws_url, compression=None) as bystander:
        await bystander.send(_join(server, "listener-bystander"))
        assert (await _reply(bystander))["type"] == "joined"
        async with connect(server.ws_url, compression=None, max_size=None) as big:
            await big.send(iter(["x" * 65_536] * 5))  # 320 KB in pieces of 64 KB
            with pytest.raises(ConnectionClosed) as closed:
                await big.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        async with connect(server.ws_url, compression=None) as garbled:
            await garbled.send(b"\xff\xfe not text")  # sent as bytes: a binary frame is answered
            assert (await _reply(garbled))["code"] == "binary_frame"
            await garbled.send(b"\xff\xfe", text=True)  # a text frame that is not UTF-8
            with pytest.raises(ConnectionClosed) as closed:
                await garbled.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
        await bystander.send('{"type": "ping"}')
        assert (await _reply(bystander))["type"] == "pong"


async def test_a_path_other_than_ws_is_refused_at_the_handshake(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus, match="404"):
        await connect(server.ws_url.removesuffix("/ws") + "/other")
