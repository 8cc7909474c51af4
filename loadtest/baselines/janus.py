"""Janus VideoRoom (Debian's ``janus`` package) as the baseline SFU of the fan-out benchmark.

Janus (libnice) gathers no ICE candidate on loopback interfaces, so ``run`` re-executes this module
inside a private network namespace (``unshare -n``) holding an ``ifb`` device that carries
127.0.0.1/32; Janus is told to use only that device, and packets still take the kernel's loopback
path. Clients drive Janus over its HTTP API; the subscriber workers and the publisher run in the
namespace too. Janus is measured twice: with ``event_loops = 1`` (one media thread, the fair setting
on few cores) and with its default thread per handle.

    python -m loadtest.fanout --targets janus --subscribers 20 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from ..fanout import Result, Target, free_port, run_target, wait_for_port
from ..media import ClipTrack, cached_clip

ROOM_ID, PUBLISHER_ID = 1234, 1
DEVICE = "ifb0"
LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
APT_COMMAND = "apt-get update && apt-get install -y janus"
RESULTS_MARK = "JANUS-RESULTS "
CONFIGS = {"janus (event_loops=1)": 1, "janus (default)": None}


# Janus API over HTTP --------------------------------------------------------------------------------

_http: httpx.AsyncClient | None = None  # one per process: subscribers in a worker share connections
_http_users = 0


class JanusSession:
    """A Janus session with one plugin handle, kept alive by keepalive requests."""

    KEEPALIVE_S = 20.0  # sessions expire after 60 s without requests

    def __init__(self, base: str, session_id: int, handle_id: int) -> None:
        self.base, self.session_id, self.handle_id = base, session_id, handle_id
        self._keepalive = asyncio.create_task(self._keep_alive())

    @classmethod
    async def attach(cls, base: str, plugin: str = "janus.plugin.videoroom") -> JanusSession:
        global _http, _http_users
        if _http is None:
            _http = httpx.AsyncClient(timeout=60)  # above the 30 s of a long poll
        _http_users += 1
        session_id = (await _post(base, {"janus": "create"}))["data"]["id"]
        handle_id = (await _post(f"{base}/{session_id}", {"janus": "attach", "plugin": plugin}))["data"]["id"]
        return cls(base, session_id, handle_id)

    async def message(self, body: dict[str, Any], jsep: dict[str, str] | None = None) -> dict[str, Any]:
        """Send a plugin request; returns the plugin's asynchronous event (with its ``jsep``, if any)."""
        request: dict[str, Any] = {"janus": "message", "body": body, "transaction": secrets.token_hex(8)}
        if jsep:
            request["jsep"] = jsep
        reply = await _post(f"{self.base}/{self.session_id}/{self.handle_id}", request)
        while reply["janus"] == "ack":  # the answer comes later, through the session's event queue
            events = (await _http_client().get(f"{self.base}/{self.session_id}", params={"maxev": 10})).json()
            reply = next((e for e in _as_list(events) if e.get("transaction") == request["transaction"]), reply)
        data = reply.get("plugindata", {}).get("data", {})
        if reply["janus"] != "event" or "error" in data:
            raise RuntimeError(f"Janus refused {body}: {reply}")
        return dict(reply)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.KEEPALIVE_S)
            await _post(f"{self.base}/{self.session_id}", {"janus": "keepalive"})

    async def close(self) -> None:
        global _http, _http_users
        self._keepalive.cancel()
        try:
            await _post(f"{self.base}/{self.session_id}", {"janus": "destroy"})
        except (httpx.HTTPError, RuntimeError):
            pass  # Janus may already be gone
        _http_users -= 1
        if _http_users == 0 and _http is not None:
            await _http.aclose()
            _http = None


def _http_client() -> httpx.AsyncClient:
    assert _http is not None, "no Janus session is open"
    return _http


def _as_list(events: Any) -> list[dict[str, Any]]:
    return events if isinstance(events, list) else [events]


async def _post(url: str, request: dict[str, Any]) -> dict[str, Any]:
    request = {"transaction": secrets.token_hex(8), **request}
    reply: dict[str, Any] = (await _http_client().post(url, json=request)).json()
    if reply["janus"] == "error":
        raise RuntimeError(f"Janus error on {request['janus']}: {reply['error']}")
    return reply


# Clients ---------------------------------------------------------------------------------------------


def _peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


@dataclasses.dataclass
class _Closing:
    pc: RTCPeerConnection
    session: JanusSession

    async def close(self) -> None:
        await self.pc.close()
        await self.session.close()


async def subscribe_janus(url: str, token: str) -> tuple[RTCPeerConnection, JanusSession]:
    """Join ``token``'s room as a subscriber of its feed and answer Janus's offer."""
    feed = json.loads(token)
    session = await JanusSession.attach(url)
    join = {"request": "join", "ptype": "subscriber", "room": feed["room"], "streams": [{"feed": feed["feed"]}]}
    offer = (await session.message(join))["jsep"]
    pc = _peer()
    await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
    await pc.setLocalDescription(await pc.createAnswer())  # aiortc puts all its candidates in the SDP
    await session.message({"request": "start"}, {"type": "answer", "sdp": pc.localDescription.sdp})
    return pc, session


async def publish_janus(target: Target) -> _Closing:
    """Publish the replayed clip (H.264 only, plus Opus) as the room's only feed."""
    session = await JanusSession.attach(target.url)
    await session.message({"request": "join", "ptype": "publisher", "room": ROOM_ID, "id": PUBLISHER_ID})
    pc = _peer()
    for track in ClipTrack("audio", cached_clip("audio")), ClipTrack("video", cached_clip("video")):
        transceiver = pc.addTransceiver(track, direction="sendonly")
        if track.kind == "video":
            codecs = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType == "video/H264"][:1])
    await pc.setLocalDescription(await pc.createOffer())
    offer = {"type": "offer", "sdp": pc.localDescription.sdp}
    answer = (await session.message({"request": "publish", "audio": True, "video": True}, offer))["jsep"]
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
    return _Closing(pc, session)


# Server, inside the namespace -------------------------------------------------------------------------


@dataclasses.dataclass
class JanusTarget(Target):
    log: Path = Path("/dev/null")

    def token(self, role: str, name: str) -> str:
        return json.dumps({"room": ROOM_ID, "feed": PUBLISHER_ID})  # Janus checks no identity here


def write_configs(directory: Path, port: int, event_loops: int | None) -> None:
    def others(folder: str, keep: str) -> str:  # load only the plugin and transport we use
        return ",".join(p.name for p in (LIB / folder).glob("*.so") if p.name != keep)

    general = [
        f'configs_folder = "{directory}"',
        f'plugins_folder = "{LIB / "plugins"}"',
        f'transports_folder = "{LIB / "transports"}"',
        f'events_folder = "{LIB / "events"}"',
        f'loggers_folder = "{LIB / "loggers"}"',
        f'log_to_file = "{directory / "janus.log"}"',
        "log_to_stdout = false",
        "debug_colors = false",
        "debug_level = 4",
        *([f"event_loops = {event_loops}"] if event_loops else []),
    ]
    files = {
        "janus.jcfg": f"""
            general: {{ {", ".join(general)} }}
            certificates: {{ }}
            media: {{ }}
            nat: {{ ice_enforce_list = "{DEVICE}", ignore_mdns = true }}
            plugins: {{ disable = "{others("plugins", "libjanus_videoroom.so")}" }}
            transports: {{ disable = "{others("transports", "libjanus_http.so")}" }}
            loggers: {{ disable = "{others("loggers", "")}" }}
            events: {{ broadcast = false }}
        """,
        "janus.transport.http.jcfg": f"""
            general: {{ json = "compact", base_path = "/janus", http = true, port = {port}, ip = "127.0.0.1" }}
            admin: {{ admin_http = false }}
        """,
        "janus.plugin.videoroom.jcfg": f"""
            general: {{ }}
            room-{ROOM_ID}: {{
                description = "fanout", publishers = 3, bitrate = 0,
                audiocodec = "opus", videocodec = "h264"
            }}
        """,
    }
    for name, text in files.items():
        (directory / name).write_text(text)


def start_janus(directory: Path, name: str, event_loops: int | None, _workdir: Path | None = None) -> JanusTarget:
    """Configs and log go to ``directory``, not run_target's ``_workdir``: it outlives a failure."""
    port = free_port()
    write_configs(directory, port, event_loops)
    command = ["janus", "-C", str(directory / "janus.jcfg"), "-F", str(directory)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process)
    return JanusTarget(name, process, f"http://127.0.0.1:{port}/janus", "", "janus", log=directory / "janus.log")


def setup_network() -> None:
    """lo up, plus a non-loopback device carrying 127.0.0.1 for libnice to gather from."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for kind in ("ifb", "dummy"):  # ifb if the kernel has it; a dummy device works the same way
        if subprocess.run(["ip", "link", "add", DEVICE, "type", kind], stderr=subprocess.DEVNULL).returncode == 0:
            break
    else:
        raise RuntimeError(f"could not create {DEVICE} (ifb or dummy) in the network namespace")
    subprocess.run(["ip", "addr", "add", "127.0.0.1/32", "dev", DEVICE], check=True)
    subprocess.run(["ip", "link", "set", DEVICE, "up"], check=True)


def measure_in_namespace(subscribers: int, duration: float, workers: int) -> list[Result]:
    from server.media.ice import use_host_addresses

    setup_network()
    use_host_addresses(["127.0.0.1"])  # for the publisher in this process
    results: list[Result] = []
    for name, event_loops in CONFIGS.items():
        print(f"... {name}: {subscribers} subscribers, {duration:.0f} s", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="janus-") as tmp:
            directory = Path(tmp)
            try:
                start = functools.partial(start_janus, directory, name, event_loops)
                results.append(asyncio.run(run_target(start, publish_janus, subscribers, duration, workers)))
            except BaseException:
                log = directory / "janus.log"
                lines = log.read_text(errors="replace").splitlines()[-40:] if log.exists() else ["(no log)"]
                print(f"--- {name} failed; last lines of {log}:", *lines, sep="\n", file=sys.stderr, flush=True)
                raise
    return results


# Entry points ----------------------------------------------------------------------------------------


def ensure_installed() -> None:
    if shutil.which("janus") and (LIB / "plugins" / "libjanus_videoroom.so").exists():
        return
    if os.environ.get("SKYCLASS_BENCH_INSTALL") != "1":
        raise RuntimeError(f"Janus is not installed: run `{APT_COMMAND}` (or set SKYCLASS_BENCH_INSTALL=1)")
    print(f"... Janus is not installed; {APT_COMMAND}", file=sys.stderr, flush=True)
    subprocess.run(["sh", "-c", APT_COMMAND], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def run(subscribers: int, duration: float, workers: int) -> list[Result]:
    """Measure both Janus configurations in a private network namespace; one Result each."""
    ensure_installed()
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]  # -r: as root in a user namespace
    args = ["--subscribers", str(subscribers), "--duration", str(duration), "--workers", str(workers)]
    command = [*unshare, sys.executable, "-m", "loadtest.baselines.janus", *args]
    child = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    marked = [line for line in child.stdout.splitlines() if line.startswith(RESULTS_MARK)]
    if child.returncode != 0 or not marked:
        raise RuntimeError(f"the Janus benchmark failed (exit {child.returncode}); see its output above")
    return [Result(**r) for r in json.loads(marked[-1].removeprefix(RESULTS_MARK))]


def main() -> None:
    parser = argparse.ArgumentParser(description="Run inside a network namespace by run(); prints JSON.")
    parser.add_argument("--subscribers", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--workers", type=int, required=True)
    args = parser.parse_args()
    results = measure_in_namespace(args.subscribers, args.duration, args.workers)
    print(RESULTS_MARK + json.dumps([dataclasses.asdict(r) for r in results]), flush=True)


if __name__ == "__main__":
    main()
