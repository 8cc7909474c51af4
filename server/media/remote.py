"""The main process's side of a media worker: a ``MediaBackend`` that forwards every call of the
protocol (``MEDIA_CALLS``) to it; nothing here is written per call."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..rpc import Calls
from .interfaces import CALLBACKS, MEDIA_CALLS, MEDIA_ERRORS

log = logging.getLogger(__name__)

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
        self._calls = Calls(MEDIA_ERRORS)
        self._callbacks: dict[tuple[str, str], Callable[..., None]] = {}  # (peer, callback) -> it
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
        self._calls.fail_all(RuntimeError(f"media worker {self.name} is gone"))
        self.on_lost()

    def _receive(self, message: dict[str, Any]) -> None:
        if "event" in message:
            callback = self._callbacks.get((message["peer"], message["event"]))
            if callback is not None:
                callback(*message["args"])
            return
        self._calls.resolve(message)

    def __getattr__(self, op: str) -> Any:  # Any: the type checker takes the calls from MediaBackend
        """``MediaBackend``'s calls, each bound to its signature and sent to the worker."""
        signature = MEDIA_CALLS.get(op)
        if signature is None:
            raise AttributeError(op)

        async def call(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            del arguments["self"]
            callbacks = {name: arguments.pop(name) for name in CALLBACKS if name in arguments}
            if op == "close":
                for name in CALLBACKS:
                    self._callbacks.pop((arguments["peer"], name), None)
            result = await self._call(op, arguments)
            for name, callback in callbacks.items():
                if callback is not None:
                    self._callbacks[(result[0], name)] = callback  # a call with callbacks makes a peer
            return tuple(result) if isinstance(result, list) else result

        return call

    async def _call(self, op: str, args: dict[str, Any]) -> Any:
        if self.gone:
            if op in _MAKES_PEERS:
                raise RuntimeError(f"media worker {self.name} is gone")
            return _AFTER_DEATH.get(op)
        with self._calls.call(op, args) as (message, future):
            self._writer.write(json.dumps(message).encode() + b"\n")
            return await future

    async def stop(self) -> None:
        self.on_lost = lambda: None
        self._writer.close()
        self._listener.cancel()
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.process.wait, 5)
        except subprocess.TimeoutExpired:
            self.process.kill()
