"""The main process's side of a media worker: a ``MediaBackend`` that forwards calls to it."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .interfaces import OnFailed, OnQuality, PeerId, SdpError

log = logging.getLogger(__name__)

_ERRORS: dict[str, type[Exception]] = {"SdpError": SdpError, "LookupError": LookupError, "TimeoutError": TimeoutError}
# Once the worker is gone its peer connections are gone too: calls that would make new ones fail,
# and the others (close, attach, mute, ...) have nothing left to act on and answer this.
_MAKES_PEERS = {"publish", "subscribe", "open_relay_ingress", "open_relay_egress", "start_recording", "start_hls"}
_AFTER_DEATH: dict[str, Any] = {"stop_recording": {"error": "the media worker stopped"}, "forwarding_stats": {}}


class WorkerClient:
    def __init__(
        self, name: str, process: subprocess.Popen[bytes], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.name = name
        self.process = process
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._on_failed: dict[str, OnFailed] = {}
        self._on_quality: dict[str, OnQuality] = {}
        self.gone = False
        self.on_lost: Callable[[], object] = lambda: None  # the worker died (not stopped by us)
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    @classmethod
    async def spawn(
        cls, name: str, socket_path: Path, *, video_codec: str, keyframe_interval_s: float, ice_addresses: list[str]
    ) -> WorkerClient:
        command = [sys.executable, "-m", "server.media.worker", "--socket", str(socket_path)]
        command += ["--video-codec", video_codec, "--keyframe-interval", str(keyframe_interval_s)]
        for address in ice_addresses:
            command += ["--ice-address", address]
        socket_path.unlink(missing_ok=True)
        process = subprocess.Popen(command)
        deadline = time.monotonic() + 30
        while True:
            try:
                reader, writer = await asyncio.open_unix_connection(str(socket_path))
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError(f"media worker {name} did not start") from None
                await asyncio.sleep(0.05)
        log.info("media worker %s started (pid %d)", name, process.pid)
        return cls(name, process, reader, writer)

    async def _listen(self) -> None:
        try:
            while line := await self._reader.readline():
                self._receive(json.loads(line))
        except (ConnectionError, OSError) as exc:  # a killed worker may reset rather than close
            log.error("media worker %s: %s", self.name, exc)
        self.gone = True
        log.error("media worker %s closed its connection", self.name)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RuntimeError(f"media worker {self.name} is gone"))
        self.on_lost()

    def _receive(self, message: dict[str, Any]) -> None:
        if message.get("event") == "failed":
            failed = self._on_failed.get(message["peer"])
            if failed is not None:
                failed()
            return
        if message.get("event") == "quality":
            quality = self._on_quality.get(message["peer"])
            if quality is not None:
                quality(message["layer"], message["reason"])
            return
        future = self._pending.pop(message["id"], None)
        if future is None or future.done():
            return
        if "error" in message:
            error = message["error"]
            future.set_exception(_ERRORS.get(error["type"], RuntimeError)(error["message"]))
        else:
            future.set_result(message["result"])

    async def _call(self, op: str, **args: Any) -> Any:
        if self.gone:
            if op in _MAKES_PEERS:
                raise RuntimeError(f"media worker {self.name} is gone")
            return _AFTER_DEATH.get(op)
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        self._writer.write(json.dumps({"id": call_id, "op": op, "args": args}).encode() + b"\n")
        return await future

    async def publish(
        self, offer_sdp: str, on_failed: OnFailed = None, names: list[str] | None = None
    ) -> tuple[PeerId, str]:
        result = await self._call("publish", offer_sdp=offer_sdp, names=names)
        self._on_failed[result["peer"]] = on_failed
        return PeerId(result["peer"]), str(result["sdp"])

    async def subscribe(self, on_failed: OnFailed = None, on_quality: OnQuality = None) -> tuple[PeerId, str]:
        result = await self._call("subscribe")
        self._on_failed[result["peer"]] = on_failed
        self._on_quality[result["peer"]] = on_quality
        return PeerId(result["peer"]), str(result["sdp"])

    async def accept_answer(self, subscription: PeerId, sdp: str) -> None:
        await self._call("accept_answer", subscription=subscription, sdp=sdp)

    async def add_ice_candidate(
        self, peer: PeerId, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        await self._call(
            "add_ice_candidate", peer=peer, candidate=candidate, sdp_mid=sdp_mid, sdp_mline_index=sdp_mline_index
        )

    async def attach(self, subscription: PeerId, publication: PeerId | None, role: str = "teacher") -> None:
        await self._call("attach", subscription=subscription, publication=publication, role=role)

    async def set_muted(self, publication: PeerId, kind: str, muted: bool) -> None:
        await self._call("set_muted", publication=publication, kind=kind, muted=muted)

    async def close(self, peer: PeerId) -> None:
        self._on_failed.pop(peer, None)
        self._on_quality.pop(peer, None)
        await self._call("close", peer=peer)

    async def open_relay_ingress(self, host: str = "127.0.0.1", standing: bool = False) -> tuple[PeerId, int]:
        peer, port = await self._call("open_relay_ingress", host=host, standing=standing)
        return PeerId(peer), int(port)

    async def open_relay_egress(self, publication: PeerId, port: int, host: str = "127.0.0.1") -> PeerId:
        return PeerId(await self._call("open_relay_egress", publication=publication, port=port, host=host))

    async def start_recording(self, publication: PeerId, path: str) -> None:
        await self._call("start_recording", publication=publication, path=path)

    async def stop_recording(self, publication: PeerId) -> dict[str, object]:
        result: dict[str, object] = await self._call("stop_recording", publication=publication)
        return result

    async def start_hls(self, publication: PeerId, playlist: str) -> None:
        await self._call("start_hls", publication=publication, playlist=playlist)

    async def stop_hls(self, publication: PeerId) -> None:
        await self._call("stop_hls", publication=publication)

    async def forwarding_stats(self) -> dict[str, int]:
        result: dict[str, int] = await self._call("forwarding_stats")
        return result

    async def stop(self) -> None:
        self.on_lost = lambda: None
        self._writer.close()
        self._listener.cancel()
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.process.wait, 5)
        except subprocess.TimeoutExpired:
            self.process.kill()
