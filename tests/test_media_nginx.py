"""nginx's secure_link in front of lesson media (ops/nginx/media.conf, as the README shows): a signed
URL plays through nginx, an altered or expired one is refused by nginx itself, never reaching the
server; Debian's nginx, on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.settings import Settings
from server.signaling.access import MediaSigner

from .conftest import TEST_SECRET, ServerProcess, free_port, start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"  # Debian's nginx-light (.ci/run installs it)


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A node that leaves sending lesson files to nginx (X-Accel-Redirect)."""
    tmp = tmp_path_factory.mktemp("origin")
    server = start_server(tmp, env={"SKYCLASS_ACCEL_REDIRECT": "/_skyclass_files/"})
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def nginx(origin: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = origin
    accel_dir = server.log_path.parent / "data" / "recordings"
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    upstream = server.url.removeprefix("http://")
    (tmp / "nginx.conf").write_text(
        f"""
daemon off;
{"user root;" if os.geteuid() == 0 else ""}  # workers that can write the test's own folders
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{}}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    proxy_cache_path {tmp}/cache keys_zone=skyclass_media:1m;
    upstream skyclass {{ server {upstream}; }}
    server {{
        listen 127.0.0.1:{port};
        set $skyclass_media_secret "{Settings(secret=TEST_SECRET).media_secret}";
        include {ROOT}/ops/nginx/media.conf;
        location /_skyclass_files/ {{ internal; alias {accel_dir}/; }}
    }}
}}
"""
    )
    process = subprocess.Popen([NGINX, "-c", str(tmp / "nginx.conf"), "-p", str(tmp)], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(url + "/media/", timeout=1)
            break
        except httpx.TransportError:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(5)


def signer(ttl_s: int) -> MediaSigner:
    return MediaSigner(Settings(secret=TEST_SECRET).media_secret, ttl_s)


def test_signed_urls_through_nginx(nginx: str, origin: ServerProcess) -> None:
    server = origin
    url = signer(3600).url("/recordings/demo", ".webm")
    demo = (server.log_path.parent / "data" / "recordings" / "demo.webm").read_bytes()
    with httpx.Client(base_url=nginx, timeout=10) as http:
        played = http.get(url, headers={"Range": "bytes=0-1023"})
        assert played.status_code == 206 and played.content == demo[:1024]  # sent by nginx itself
        direct = httpx.get(server.url + url, timeout=10)  # the node checked it and named the file
        assert direct.headers["x-accel-redirect"] == "/_skyclass_files/demo.webm" and not direct.content
        asked_before = server.log().count("/media/")
        signature = url.split("/")[2]
        assert http.get(url.replace(signature, signature[::-1])).status_code == 403
        assert http.get(url.replace("/recordings/demo", "/recordings/other")).status_code == 403
        expired = signer(-7200).url("/recordings/demo", ".webm")
        assert http.get(expired).status_code == 410
        assert http.get("/media/x/1/recordings/demo.webm").status_code == 403
        # A room's HLS: nginx lets a signed playlist through to the node (which has no HLS for a
        # room without a broadcast: 404) and refuses the same path under another room's signature.
        playlist = signer(3600).url("/hls/g9-1/", "index.m3u8")
        assert http.get(playlist).status_code == 404
        stolen = playlist.replace("/hls/g9-1/", "/hls/g12-1/")
        assert http.get(stolen).status_code == 403
        time.sleep(0.3)
        reached = server.log().count("/media/") - asked_before
        assert reached == 1, "a refused URL reached the server"  # only the signed playlist did
