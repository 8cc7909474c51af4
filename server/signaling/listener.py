"""The signaling websocket on a listener of its own (``SKYCLASS_SIGNALING_PORT``), served by picows.

uvicorn parses a websocket's upgrade and frames in Python (h11, wsproto): ~1.2 ms of CPU and ~17 KB
an idle socket before a session does anything (``loadtest/joins.py``). picows does both in C, at
about half that. The session is the same either way: this module only gives it a socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)
from starlette.datastructures import Address
from starlette.websockets import WebSocketDisconnect

from .session import Session, Sessions

log = logging.getLogger(__name__)

SIGNALING_PATH = "/ws"
HANDSHAKE_TIMEOUT_S = 10.0


class ListenerSocket(WSListener):
    """One connection: picows' callbacks on one side, the socket a ``Session`` reads and writes on
    the other (the part of Starlette's ``WebSocket`` that a session uses)."""

    __slots__ = ("_sessions", "_transport", "_inbox", "_waiting", "_paused", "_pieces", "_task", "_limit", "client")

    def __init__(self, sessions: Sessions, limit: int) -> None:
        self._sessions = sessions
        self._limit = limit  # a message in pieces may grow this large
        self._transport: WSTransport | None = None
        self._inbox: deque[dict[str, Any]] = deque()
        self._waiting: asyncio.Future[None] | None = None  # a receive, while the inbox is empty
        self._paused: asyncio.Future[None] | None = None  # a send, while the peer does not read
        self._pieces: list[bytes] | None = None  # a text message sent in several frames
        self._task: asyncio.Task[None] | None = None
        self.client: Address | None = None

    # picows' side -----------------------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._transport = transport
        peer = transport.underlying_transport.get_extra_info("peername")
        self.client = Address(peer[0], peer[1]) if peer else None
        self._task = asyncio.get_running_loop().create_task(Session(self, self._sessions).run())
        self._task.add_done_callback(lambda _: transport.disconnect())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            code = frame.get_close_code()  # one of the enum's, or a plain int (an application's 4xxx)
            _end(transport, code)
            self._push({"type": "websocket.disconnect", "code": code if isinstance(code, int) else code.value})
        elif kind == WSMsgType.TEXT or (kind == WSMsgType.CONTINUATION and self._pieces is not None):
            self._text(transport, frame)
        elif kind == WSMsgType.BINARY:
            self._push({"type": "websocket.receive", "bytes": frame.get_payload_as_bytes()})

    def _text(self, transport: WSTransport, frame: WSFrame) -> None:
        pieces = self._pieces if self._pieces is not None else []
        pieces.append(frame.get_payload_as_bytes())
        if sum(map(len, pieces)) > self._limit:
            self._pieces = None
            _end(transport, WSCloseCode.MESSAGE_TOO_BIG)
            return
        if not frame.fin:
            self._pieces = pieces
            return
        self._pieces = None
        try:
            text = b"".join(pieces).decode()
        except UnicodeDecodeError:
            _end(transport, WSCloseCode.INVALID_TEXT)
            return
        self._push({"type": "websocket.receive", "text": text})

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._push({"type": "websocket.disconnect", "code": 1006})
        self._wake_sender()

    def pause_writing(self) -> None:
        if self._paused is None:
            self._paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake_sender()

    def _wake_sender(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None and not paused.done():
            paused.set_result(None)

    def _push(self, message: dict[str, Any]) -> None:
        self._inbox.append(message)
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    # The session's side ---------------------------------------------------------------------------

    @property
    def headers(self) -> Mapping[str, str]:
        assert self._transport is not None
        headers: Mapping[str, str] = self._transport.request.headers  # case-insensitive, as Starlette's
        return headers

    async def accept(self) -> None:
        """picows has already answered the upgrade."""

    async def receive(self) -> dict[str, Any]:
        while not self._inbox:
            self._waiting = asyncio.get_running_loop().create_future()
            await self._waiting
        return self._inbox.popleft()

    async def send_text(self, text: str) -> None:
        transport = self._transport
        if transport is None or transport.is_disconnected:
            raise WebSocketDisconnect(1006)
        transport.send(WSMsgType.TEXT, text.encode())
        if self._paused is not None:  # wait while the peer does not read: the session's queue fills
            await self._paused

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        transport = self._transport
        if transport is not None and not transport.is_disconnected:
            _end(transport, code, reason or "")


def _end(transport: WSTransport, code: WSCloseCode | int, reason: str = "") -> None:
    """A close frame with this code (and reason, cut to what a frame holds), then the connection
    goes."""
    # picows sends any code (ours: 4401, 4403, 4409...); its stubs name only the enum's
    transport.send_close(code, reason.encode()[:123])  # type: ignore[arg-type]
    transport.disconnect()


async def start_listener(sessions: Sessions, host: str, port: int, limit: int) -> asyncio.Server:
    """Listen for signaling websockets on ``port``; every server process of a node binds it
    (``SO_REUSEPORT``: the kernel spreads the connections). Messages over ``limit`` bytes are cut off."""

    def admit(request: WSUpgradeRequest) -> ListenerSocket | WSUpgradeResponseWithListener:
        if request.path.decode().split("?", 1)[0] != SIGNALING_PATH:
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(404), None)
        refused = sessions.refuses_origin(request.headers.get("origin"))
        if refused:  # at the handshake, as uvicorn does for /ws on the app's port
            return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(403, refused.encode()), None)
        return ListenerSocket(sessions, limit)

    server: asyncio.Server = await ws_create_server(
        admit,
        host,
        port,
        reuse_port=True,
        use_aiofastnet=False,  # uvloop's transports: 5 KB less an idle socket than aiofastnet's, and faster
        max_frame_size=limit,
        websocket_handshake_timeout=HANDSHAKE_TIMEOUT_S,
        read_buffer_init_size=2048,  # most messages are small; the buffer grows for the rest
        logger_name=__name__,
    )
    log.info("signaling websocket also on ws://%s:%d%s", host, port, SIGNALING_PATH)
    return server
