"""One participant's websocket: join, then messages in order, each answered or refused precisely."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from ..lessons.schedule import Schedule
from ..media.sfu import SdpError
from ..rooms import Room, Rooms
from ..settings import Settings
from ..tokens import PUBLISHERS, SUBSCRIBERS, Role, TokenError, TokenExpired, verify_token
from . import protocol as p

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 60.0  # clients ping every 20 s
OUTBOX_LIMIT = 256  # messages queued for a client that does not read; then it is dropped


class TokenBucket:
    """Allows ``rate`` messages a second on average and ``burst`` at once. Time is passed in."""

    __slots__ = ("rate", "burst", "_tokens", "_at")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class Session:
    """A participant's signaling session; the room layer sees it as a ``Member``."""

    def __init__(
        self, ws: WebSocket, rooms: Rooms, settings: Settings, sessions: set[Session], schedule: Schedule
    ) -> None:
        self._ws = ws
        self._rooms = rooms
        self._schedule = schedule
        self._settings = settings
        self._sessions = sessions
        self._outbox: asyncio.Queue[str] = asyncio.Queue(OUTBOX_LIMIT)
        self._dropped = False
        self._bucket = TokenBucket(settings.message_rate_per_s, settings.message_burst, time.monotonic())
        self.room: Room | None = None
        self.participant_id = ""
        self.name = ""
        self.role = Role.STUDENT

    # Member ---------------------------------------------------------------------------------------

    def broadcast_changed(self, live: bool) -> None:
        self.send(p.Broadcast(live=live))

    def presence_changed(self, students: int) -> None:
        self.send(p.Presence(students=students))

    # Plumbing -------------------------------------------------------------------------------------

    def send(self, message: Any) -> None:
        try:
            self._outbox.put_nowait(p.encode(message))
        except asyncio.QueueFull:
            if not self._dropped:
                self._dropped = True
                log.warning("session %s does not read its messages; closing it", self.participant_id)
                asyncio.ensure_future(self._ws.close(1008))

    async def _write(self) -> None:
        while True:
            await self._ws.send_text(await self._outbox.get())
            self._outbox.task_done()

    async def run(self) -> None:
        await self._ws.accept()
        self._sessions.add(self)
        writer = asyncio.create_task(self._write())
        try:
            await self._serve()
        except p.ProtocolError as exc:  # fatal ones end up here
            await self._fail(exc)
        except WebSocketDisconnect:
            pass
        finally:
            self._sessions.discard(self)
            if self.room is not None:
                await self._rooms.leave(self.room, self)
            writer.cancel()

    async def _fail(self, exc: p.ProtocolError) -> None:
        """Send the error, then close with the matching code."""
        self.send(p.Error(code=exc.code, message=exc.message, fatal=True))
        await self._close(p.CLOSE_CODES.get(exc.code, p.CLOSE_PROTOCOL_ERROR))

    async def _close(self, code: int) -> None:
        """Close after what is queued has gone out (or after 2 s)."""
        try:
            await asyncio.wait_for(self._outbox.join(), 2.0)
            await self._ws.close(code)
        except (TimeoutError, WebSocketDisconnect, RuntimeError):
            pass

    async def _receive_text(self, timeout: float) -> str | None:
        """The next text frame; None for a frame that was refused (already answered)."""
        try:
            message = await asyncio.wait_for(self._ws.receive(), timeout)
        except TimeoutError:
            if self.room is None:
                raise p.ProtocolError(
                    p.ErrorCode.JOIN_TIMEOUT, f"Expected a join within {timeout:.0f} s of connecting", fatal=True
                ) from None
            raise p.ProtocolError(
                p.ErrorCode.BAD_STATE, "No message for 60 s; send ping every 20 s", fatal=True
            ) from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text: str | None = message.get("text")
        if text is None:
            self._refuse(p.ErrorCode.BINARY_FRAME, "Expected a text frame with JSON, but got a binary frame")
            return None
        if len(text) > self._settings.max_message_bytes:
            self._refuse(
                p.ErrorCode.TOO_LARGE,
                f"Expected at most {self._settings.max_message_bytes} bytes, but the message has {len(text)}",
            )
            return None
        if not self._bucket.take(time.monotonic()):
            self._refuse(p.ErrorCode.RATE_LIMITED, "Too many messages; this one was dropped")
            return None
        return text

    def _refuse(self, code: p.ErrorCode, message: str) -> None:
        self.send(p.Error(code=code, message=message))

    async def _serve(self) -> None:
        timeout = self._settings.join_timeout_s
        while True:
            text = await self._receive_text(timeout if self.room is None else IDLE_TIMEOUT_S)
            if text is None:
                continue
            try:
                message = p.parse_client_message(text)
                if isinstance(message, p.Leave):
                    await self._close(1000)
                    return
                await self._handle(message)
            except p.ProtocolError as exc:
                if exc.fatal:
                    raise
                self._refuse(exc.code, exc.message)
            except Exception:
                log.exception("session %s: failed on %s", self.participant_id, text[:200])
                self._refuse(p.ErrorCode.SERVER_ERROR, "The server failed on that message; it has been logged")

    # Messages -------------------------------------------------------------------------------------

    async def _handle(self, message: p.ClientMessage) -> None:
        if isinstance(message, p.Join):
            await self._join(message)
            return
        if isinstance(message, p.Ping):
            self.send(p.Pong())
            return
        room = self.room
        if room is None:
            raise p.ProtocolError(p.ErrorCode.NOT_JOINED, f"Expected join first, but got {message.type}")
        try:
            if isinstance(message, p.Publish):
                self._require(PUBLISHERS, "publish")
                self.send(p.PublishAnswer(sdp=await room.publish(self, message.sdp)))
            elif isinstance(message, p.Unpublish):
                self._require(PUBLISHERS, "unpublish")
                await room.unpublish(self)
            elif isinstance(message, p.Subscribe):
                self._require(SUBSCRIBERS, "subscribe")
                self.send(p.Offer(sdp=await room.subscribe(self)))
            elif isinstance(message, p.Answer):
                self._require(SUBSCRIBERS, "answer")
                await room.accept_answer(self, message.sdp)
            elif isinstance(message, p.Ice):
                await room.add_ice_candidate(
                    self, message.target, message.candidate, message.sdpMid, message.sdpMLineIndex
                )
        except SdpError as exc:
            raise p.ProtocolError(p.ErrorCode.BAD_SDP, str(exc)) from exc
        except LookupError as exc:
            raise p.ProtocolError(p.ErrorCode.BAD_STATE, str(exc)) from exc

    def _require(self, roles: frozenset[Role], action: str) -> None:
        if self.role not in roles:
            allowed = " or ".join(sorted(r.value for r in roles))
            raise p.ProtocolError(p.ErrorCode.FORBIDDEN, f"A {self.role.value} may not {action}; only {allowed}")

    async def _join(self, message: p.Join) -> None:
        if self.room is not None:
            raise p.ProtocolError(p.ErrorCode.ALREADY_JOINED, f"Already joined room {self.room.name!r}")
        try:
            grant = verify_token(self._settings.signing_secret, message.token)
        except TokenExpired as exc:
            raise p.ProtocolError(p.ErrorCode.TOKEN_EXPIRED, str(exc), fatal=True) from exc
        except TokenError as exc:
            raise p.ProtocolError(p.ErrorCode.INVALID_TOKEN, str(exc), fatal=True) from exc
        if grant.room != message.room:
            raise p.ProtocolError(
                p.ErrorCode.WRONG_ROOM, f"The token is for room {grant.room!r}, not {message.room!r}", fatal=True
            )
        if len(self._sessions) > self._settings.max_sessions:
            raise p.ProtocolError(p.ErrorCode.SERVER_FULL, "The server is full; retry in 5 s", fatal=True)
        self.participant_id, self.name, self.role = grant.participant_id, grant.name, grant.role
        self.room = await self._rooms.join(grant.room, self)
        lesson = self._schedule.lesson_now(grant.room)
        self.send(
            p.Joined(
                participant_id=self.participant_id,
                room=grant.room,
                role=self.role.value,
                name=self.name,
                live=self.room.live,
                lesson=p.Lesson.model_validate(lesson) if lesson else None,
            )
        )
        if self.role in SUBSCRIBERS:
            self.send(p.Offer(sdp=await self.room.subscribe(self)))
