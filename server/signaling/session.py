"""One participant's websocket: join, then messages in order, each answered or refused precisely."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from ..cluster import Cluster, NodeUnreachable, RemoteFailure, RoomHandle, RoomUnavailable
from ..lessons.schedule import Schedule
from ..media.interfaces import SdpError
from ..metrics import SignalingMetrics
from ..rooms import ClassroomError
from ..rooms import events as ev
from ..rooms.actions import Operation, Subscribe, operation_of
from ..settings import Settings
from ..state import StoreUnavailable
from ..tokens import SUBSCRIBERS, Role, TokenError, TokenExpired, verify_token
from . import protocol as p

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 60.0  # clients ping every 20 s
OUTBOX_LIMIT = 256  # messages queued for a client that does not read; then it is dropped
CLOSE_REPLACED = 4409  # the same participant joined again on a newer connection
CLOSE_MOVED = 1012  # the room goes on on another node: the client reconnects
UNREACHABLE = (NodeUnreachable, RoomUnavailable, StoreUnavailable)
FULL_RETRY_S = (5.0, 15.0)  # a full server asks for a retry this much later
SUBSCRIBE = Subscribe(type="subscribe")  # what a join asks for itself, unless it says not to


def _as_message(event: ev.Event) -> p.ServerMessage:
    """The wire message for a room event that reads the same to every member it reaches."""
    match event:
        case ev.BroadcastChanged(live):
            return p.Broadcast(live=live)
        case ev.Quality(layer, reason):
            return p.Quality.model_validate({"layer": layer, "reason": reason})
        case ev.Presence(students):
            return p.Presence(students=students)
        case ev.ChatMessage(sender_id, name, role, text, at):
            return p.ChatOut(from_id=sender_id, name=name, role=role, text=text, at=at)
        case ev.HandsChanged(raised):
            return p.Hands(
                raised=[p.HandOut(participant_id=h.participant_id, name=h.name, at=h.raised_at) for h in raised]
            )
        case ev.Roster(entries, total):
            participants = [
                p.RosterEntry(participant_id=e.participant_id, name=e.name, role=e.role, hand=e.hand, away=e.away)
                for e in entries
            ]
            return p.Roster(participants=participants, total=total)
        case ev.PollOpened(poll_id, question, options, answered):
            return p.PollOut(poll_id=poll_id, question=question, options=list(options), answered=answered)
        case ev.PollResults(poll_id, question, options, counts, answered, final):
            return p.PollResults(
                poll_id=poll_id,
                question=question,
                options=list(options),
                counts=list(counts),
                answered=answered,
                final=final,
            )
        case ev.PollClosed(poll_id):
            return p.PollClosed(poll_id=poll_id)
        case ev.Invited():
            return p.Invited()
        case ev.StageChanged(participant_id, name, muted):
            return p.Stage(participant_id=participant_id, name=name, muted=muted)
    raise TypeError(f"No wire message for {event!r}")


_last_wire: tuple[ev.Event | None, str] = (None, "")


def _wire(event: ev.Event) -> str:
    """Encoded once for everyone: a room tells its whole class the same event object in one loop,
    so the previous encoding is reused (a presence count to 20,000 pupils is one encoding)."""
    global _last_wire
    if _last_wire[0] is not event:
        _last_wire = (event, p.encode(_as_message(event)))
    return _last_wire[1]


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
        self,
        ws: WebSocket,
        cluster: Cluster,
        settings: Settings,
        sessions: set[Session],
        schedule: Schedule,
        metrics: SignalingMetrics,
    ) -> None:
        self._ws = ws
        self._metrics = metrics
        self._cluster = cluster
        self._schedule = schedule
        self._settings = settings
        self._sessions = sessions
        self._outbox: asyncio.Queue[str] = asyncio.Queue(OUTBOX_LIMIT)
        self._dropped = False
        self._bucket = TokenBucket(settings.message_rate_per_s, settings.message_burst, time.monotonic())
        self.room: RoomHandle | None = None
        self._gone = False  # left on purpose (leave, removed, lesson ended): no resuming
        self._held: list[Any] | None = None
        self._buckets: dict[str, TokenBucket] = {}  # for the actions with a rate of their own
        self.participant_id = ""
        self.name = ""
        self.role = Role.STUDENT

    # Member ---------------------------------------------------------------------------------------

    def deliver(self, event: ev.Event) -> None:
        """A room event, as the message this participant receives."""
        match event:
            case ev.Removed(reason):
                self._gone = True
                self.send(p.Removed(reason=reason))
                asyncio.ensure_future(self._close(p.CLOSE_CODES[p.ErrorCode.REMOVED]))
            case ev.LessonEnded():
                self._gone = True
                self.send(p.LessonEnded())
                asyncio.ensure_future(self._close(1000))
            case ev.Replaced():
                self._gone = True
                asyncio.ensure_future(self._close(CLOSE_REPLACED))
            case ev.Moved():
                asyncio.ensure_future(self._close(CLOSE_MOVED))
            case _:
                self.send(_wire(event))

    # Plumbing -------------------------------------------------------------------------------------

    def send(self, message: Any) -> None:
        if self._held is not None:  # joining: room events wait until `joined` has gone out
            self._held.append(message)
            return
        self._put(message)

    def _put(self, message: Any) -> None:
        try:
            self._outbox.put_nowait(message if isinstance(message, str) else p.encode(message))
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
                await self._part(self.room)
            writer.cancel()

    async def _part(self, room: RoomHandle) -> None:
        try:
            if self._gone:
                await room.leave()
            else:
                await room.disconnect()  # may come back within 30 s
        except (*UNREACHABLE, RemoteFailure) as exc:
            log.info("session %s: the room's node did not hear that we left: %s", self.participant_id, exc)
        finally:
            self._cluster.forget(room)

    async def _fail(self, exc: p.ProtocolError) -> None:
        """Send the error, then close with the matching code."""
        self._metrics.errors.labels(exc.code.value).inc()
        self.send(p.Error(code=exc.code, message=exc.message, fatal=True, retry_after=exc.retry_after))
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
        self._metrics.errors.labels(code.value).inc()
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
                    self._gone = True
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
        operation = operation_of(message)
        room = self.room
        if room is None:
            raise p.ProtocolError(p.ErrorCode.NOT_JOINED, f"Expected join first, but got {operation.name}")
        self._require(operation.roles, operation.verb)
        if operation.rate is not None and not self._bucket_for(operation).take(time.monotonic()):
            raise p.ProtocolError(p.ErrorCode.RATE_LIMITED, f"At most {operation.rate.what}; this was dropped")
        try:
            reply = await room.perform(message)
        except ClassroomError as exc:
            raise p.ProtocolError(p.ErrorCode(exc.code), str(exc)) from exc
        except SdpError as exc:
            raise p.ProtocolError(p.ErrorCode.BAD_SDP, str(exc)) from exc
        except LookupError as exc:
            raise p.ProtocolError(p.ErrorCode.BAD_STATE, str(exc)) from exc
        except UNREACHABLE as exc:
            raise p.ProtocolError(p.ErrorCode.UNAVAILABLE, f"The room cannot be reached now; retry ({exc})") from exc
        if reply is not None:
            self.send(reply)

    def _bucket_for(self, operation: Operation[Any]) -> TokenBucket:
        assert operation.rate is not None
        bucket = self._buckets.get(operation.name)
        if bucket is None:
            bucket = self._buckets[operation.name] = TokenBucket(
                operation.rate.per_s, operation.rate.burst, time.monotonic()
            )
        return bucket

    def _require(self, roles: frozenset[Role], action: str) -> None:
        if self.role not in roles:
            allowed = " or ".join(sorted(r.value for r in roles))
            raise p.ProtocolError(p.ErrorCode.FORBIDDEN, f"A {self.role.value} may not {action}; only {allowed}")

    async def _join(self, message: p.Join) -> None:
        if self.room is not None:
            raise p.ProtocolError(p.ErrorCode.ALREADY_JOINED, f"Already joined room {self.room.name!r}")
        started = time.perf_counter()
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
            wait = round(random.uniform(*FULL_RETRY_S), 1)  # spread the crowd's retries
            raise p.ProtocolError(
                p.ErrorCode.SERVER_FULL, f"The server is full; retry in {wait} s", fatal=True, retry_after=wait
            )
        self.participant_id, self.name, self.role = grant.participant_id, grant.name, grant.role
        self._held = []
        try:
            room, result = await self._cluster.join(grant.room, self, message.delivery)
        except ClassroomError as exc:
            raise p.ProtocolError(p.ErrorCode(exc.code), str(exc), fatal=True) from exc
        except UNREACHABLE as exc:
            text = f"The room cannot be reached now; reconnect in a moment ({exc})"
            raise p.ProtocolError(p.ErrorCode.UNAVAILABLE, text, fatal=True, retry_after=1.0) from exc
        finally:
            held, self._held = self._held, None
        self.room = room
        lesson = self._schedule.lesson_now(grant.room)
        self.send(
            p.Joined(
                participant_id=self.participant_id,
                room=grant.room,
                role=self.role.value,
                name=self.name,
                live=result.live,
                lesson=p.Lesson.model_validate(lesson) if lesson else None,
                resumed=result.resumed,
                hand=result.hand,
                hls=result.hls,
            )
        )
        for event in held or ():
            self.send(event)
        self._metrics.joins.labels(self.role.value).inc()
        self._metrics.join_seconds.observe(time.perf_counter() - started)
        log.info("joined", extra={"room": grant.room, "participant": self.participant_id, "role": self.role.value})
        if self.role in SUBSCRIBERS and message.subscribe and result.hls is None:
            offer = await room.perform(SUBSCRIBE)
            if offer is not None:
                self.send(offer)
