"""One participant's websocket: join, then messages in order, each answered or refused precisely."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import WebSocketDisconnect
from starlette.datastructures import Address

from ..cluster import Cluster, NodeUnreachable, RemoteFailure, RoomHandle, RoomUnavailable
from ..lessons.catalog import Recording
from ..lessons.schedule import Schedule
from ..media.interfaces import PLAYLIST, SdpError
from ..metrics import SignalingMetrics
from ..rooms import ClassroomError
from ..rooms import events as ev
from ..rooms.actions import Subscribe, operation_of
from ..settings import Settings
from ..state import StoreUnavailable
from ..tokens import MEMBERS, SUBSCRIBERS, Grant, Role, TokenError, TokenExpired, parse_duration, verify_token
from . import protocol as p
from .access import Access, MediaSigner, recording_urls, revocation_keys
from .limits import Buckets, TokenBucket, Unjoined, client_address
from .turn import ice_servers

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 60.0  # clients ping every 20 s
OUTBOX_LIMIT = 256  # messages queued for a client that does not read; then it is dropped
CLOSE_REPLACED = 4409  # the same participant joined again on a newer connection
CLOSE_MOVED = 1012  # the room goes on on another node: the client reconnects
CLOSE_ORIGIN = 4403  # a page of another origin (SKYCLASS_ALLOWED_ORIGINS)
UNREACHABLE = (NodeUnreachable, RoomUnavailable, StoreUnavailable)
FULL_RETRY_S = (5.0, 15.0)  # a full server asks for a retry this much later
UNAVAILABLE_RETRY_S = (1.0, 4.0)  # a room's node that cannot take a join now, this much later
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
        case ev.SeatTaken(participant_id, name):
            return p.SeatTaken(participant_id=participant_id, name=name)
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
        case ev.Questions(waiting):
            return p.Questions(waiting=[p.QuestionOut.model_validate(dataclasses.asdict(q)) for q in waiting])
        case ev.QuestionAnswered(question):
            return p.QuestionAnswered(question=p.QuestionOut.model_validate(dataclasses.asdict(question)))
        case ev.Sections(rows, pupils, hands):
            out = [p.SectionRow.model_validate(dataclasses.asdict(row)) for row in rows]
            return p.Sections(rows=out, pupils=pupils, hands=hands)
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


class Socket(Protocol):
    """What a session needs of its websocket: Starlette's (``/ws`` on the app's port) or the
    signaling listener's (``listener.py``)."""

    @property
    def client(self) -> Address | None: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def accept(self) -> None: ...

    async def receive(self) -> Mapping[str, Any]: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass
class Sessions:
    """What every session of this process shares."""

    settings: Settings
    cluster: Cluster
    schedule: Schedule
    metrics: SignalingMetrics
    signer: MediaSigner
    access: Access
    joined: set[Session] = field(default_factory=set)
    unjoined: Unjoined = field(init=False)
    trusted: frozenset[str] = field(init=False)  # proxies whose X-Forwarded-For names the client
    budgets: Buckets = field(default_factory=Buckets)  # messages and actions, per participant
    join_attempts: Buckets = field(default_factory=Buckets)  # per client address

    def __post_init__(self) -> None:
        self.unjoined = Unjoined(self.settings.max_unjoined, self.settings.max_unjoined_per_address)
        self.trusted = frozenset(self.settings.trusted_proxies)

    def refuses_origin(self, origin: str | None) -> str | None:
        """Why a page of this origin may not open the websocket (``SKYCLASS_ALLOWED_ORIGINS``)."""
        allowed = self.settings.allowed_origins
        return f"Origin {origin!r} may not open this websocket" if allowed and origin not in allowed else None

    def revoke(self, keys: list[str]) -> int:
        """Close the sessions of these revoked tokens or participants; how many there were."""
        doomed = [s for s in self.joined if s.grant is not None and set(revocation_keys(s.grant)) & set(keys)]
        for session in doomed:
            session.revoked()
        return len(doomed)


class Session:
    """A participant's signaling session; the room layer sees it as a ``Member``.

    Thousands sit idle on a node, so a session keeps little: its messages out wait in a queue made
    when there is one, sent by a writer task that runs only while the queue has messages."""

    __slots__ = (
        "_ws",
        "_shared",
        "_settings",
        "_metrics",
        "_outbox",
        "_writer",
        "_stopped",
        "_dropped",
        "_deadline",
        "_bucket",
        "address",
        "room",
        "grant",
        "_gone",
        "_held",
        "participant_id",
        "name",
        "role",
    )

    def __init__(self, ws: Socket, shared: Sessions) -> None:
        self._ws = ws
        self._shared = shared
        self._settings = shared.settings
        self._metrics = shared.metrics
        self._outbox: deque[str] | None = None  # waiting to be sent (at most OUTBOX_LIMIT)
        self._writer: asyncio.Task[None] | None = None  # sending them, while there are any
        self._stopped = False  # the session ended, or a send failed: no more writers
        self._dropped = False
        now = time.monotonic()
        self._deadline = now + self._settings.join_timeout_s  # whatever comes before the join
        self._bucket = TokenBucket(self._settings.message_rate_per_s, self._settings.message_burst, now)
        self.address = ws.client.host if ws.client else ""
        self.room: RoomHandle | None = None
        self.grant: Grant | None = None
        self._gone = False  # left on purpose (leave, removed, lesson ended): no resuming
        self._held: list[Any] | None = None
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
        text = message if isinstance(message, str) else p.encode(message)
        if self._outbox is None:
            self._outbox = deque()
        if len(self._outbox) >= OUTBOX_LIMIT:
            if not self._dropped:
                self._dropped = True
                log.warning("session %s does not read its messages; closing it", self.participant_id)
                asyncio.ensure_future(self._ws.close(1008))
            return
        self._outbox.append(text)
        if self._writer is None and not self._stopped:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        """Sends what is queued, in order, then ends (the next message starts another)."""
        outbox = self._outbox
        try:
            while outbox:
                await self._ws.send_text(outbox.popleft())
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._stopped = True  # the socket is gone; what is queued stays unsent
        finally:
            self._writer = None
            if outbox is not None and not outbox and self._outbox is outbox:
                self._outbox = None

    async def _flushed(self) -> None:
        """Until what is queued has gone out."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def run(self) -> None:
        shared = self._shared
        self.address = client_address(self.address, self._ws.headers, shared.trusted)
        foreign = shared.refuses_origin(self._ws.headers.get("origin"))
        if foreign:
            await self._ws.close(CLOSE_ORIGIN, foreign)
            return
        await self._ws.accept()
        refused = shared.unjoined.enter(self.address)
        waiting = refused is None
        try:
            if refused is not None:
                wait = round(random.uniform(*FULL_RETRY_S), 1)
                raise p.ProtocolError(p.ErrorCode.SERVER_FULL, refused, fatal=True, retry_after=wait)
            await self._serve()
        except p.ProtocolError as exc:  # fatal ones end up here
            await self._fail(exc)
        except WebSocketDisconnect:
            pass
        finally:
            if waiting and self.room is None:
                shared.unjoined.leave(self.address)
            shared.joined.discard(self)
            if self.room is not None:
                await self._part(self.room)
            self._stopped = True
            if self._writer is not None:
                self._writer.cancel()

    def revoked(self) -> None:
        """Access revoked (``POST /api/revocations``): told, then closed; no resuming."""
        self._gone = True
        self.send(p.Error(code=p.ErrorCode.INVALID_TOKEN, message="Your access has been revoked", fatal=True))
        asyncio.ensure_future(self._close(p.CLOSE_CODES[p.ErrorCode.INVALID_TOKEN]))

    async def _part(self, room: RoomHandle) -> None:
        try:
            if self._gone:
                await room.leave()
            else:
                await room.disconnect()  # may come back within 30 s
        except (*UNREACHABLE, RemoteFailure) as exc:
            log.info("session %s: the room's node did not hear that we left: %s", self.participant_id, exc)
        finally:
            self._shared.cluster.forget(room)

    async def _fail(self, exc: p.ProtocolError) -> None:
        """Send the error, then close with the matching code."""
        self._metrics.errors.labels(exc.code.value).inc()
        self.send(p.Error(code=exc.code, message=exc.message, fatal=True, retry_after=exc.retry_after))
        await self._close(p.CLOSE_CODES.get(exc.code, p.CLOSE_PROTOCOL_ERROR))

    async def _close(self, code: int) -> None:
        """Close after what is queued has gone out (or after 2 s)."""
        try:
            await asyncio.wait_for(self._flushed(), 2.0)
            await self._ws.close(code)
        except (TimeoutError, WebSocketDisconnect, RuntimeError):
            pass

    async def _receive_text(self) -> str | None:
        """The next text frame; None for a frame that was refused (already answered)."""
        joined = self.room is not None
        timeout = IDLE_TIMEOUT_S if joined else max(0.0, self._deadline - time.monotonic())
        try:
            async with asyncio.timeout(timeout):  # no task of its own per receive, as wait_for has
                message = await self._ws.receive()
        except TimeoutError:
            if not joined:
                raise p.ProtocolError(
                    p.ErrorCode.JOIN_TIMEOUT,
                    f"Expected a join within {self._settings.join_timeout_s:.0f} s of connecting",
                    fatal=True,
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
        if not self._within_budget("messages", self._settings.message_rate_per_s, self._settings.message_burst):
            self._refuse(p.ErrorCode.RATE_LIMITED, "Too many messages; this one was dropped")
            return None
        return text

    def _within_budget(self, what: str, rate: float, burst: int) -> bool:
        """Joined, the budget is the participant's, whichever socket they use; before, the socket's."""
        now = time.monotonic()
        if self.room is None:
            return self._bucket.take(now)
        return self._shared.budgets.take((self.participant_id, what), rate, burst, now)

    def _refuse(self, code: p.ErrorCode, message: str) -> None:
        self._metrics.errors.labels(code.value).inc()
        self.send(p.Error(code=code, message=message))

    async def _serve(self) -> None:
        while True:
            text = await self._receive_text()
            if text is not None and not await self._take(text):
                return

    async def _take(self, text: str) -> bool:
        """One message, answered or refused; False after a leave. A function of its own, so that an
        idle session keeps nothing of its last message (the join's token) while it waits."""
        try:
            message = p.parse_client_message(text)
            if isinstance(message, p.Leave):
                self._gone = True
                await self._close(1000)
                return False
            await self._handle(message)
        except p.ProtocolError as exc:
            if exc.fatal:
                raise
            self._refuse(exc.code, exc.message)
        except Exception:
            log.exception("session %s: failed on %s", self.participant_id, text[:200])
            self._refuse(p.ErrorCode.SERVER_ERROR, "The server failed on that message; it has been logged")
        return True

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
        rate = operation.rate
        if rate is not None and not self._within_budget(operation.name, rate.per_s, rate.burst):
            raise p.ProtocolError(p.ErrorCode.RATE_LIMITED, f"At most {rate.what}; this was dropped")
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

    def _require(self, roles: frozenset[Role], action: str) -> None:
        if self.role not in roles:
            allowed = " or ".join(sorted(r.value for r in roles))
            raise p.ProtocolError(p.ErrorCode.FORBIDDEN, f"A {self.role.value} may not {action}; only {allowed}")

    async def _join(self, message: p.Join) -> None:
        if self.room is not None:
            raise p.ProtocolError(p.ErrorCode.ALREADY_JOINED, f"Already joined room {self.room.name!r}")
        started = time.perf_counter()
        shared, settings = self._shared, self._settings
        if not shared.join_attempts.take(
            (self.address,), settings.join_rate_per_address, settings.join_burst_per_address, time.monotonic()
        ):
            wait = round(random.uniform(1.0, 5.0), 1)
            raise p.ProtocolError(
                p.ErrorCode.RATE_LIMITED,
                f"Too many joins from {self.address}; retry in {wait} s",
                fatal=True,
                retry_after=wait,
            )
        grant = await self._verify(message)
        if len(shared.joined) >= settings.max_sessions:
            wait = round(random.uniform(*FULL_RETRY_S), 1)  # spread the crowd's retries
            raise p.ProtocolError(
                p.ErrorCode.SERVER_FULL, f"The server is full; retry in {wait} s", fatal=True, retry_after=wait
            )
        self.participant_id, self.name, self.role = grant.participant_id, grant.name, grant.role
        self._held = []
        try:
            room, result = await shared.cluster.join(grant.room, self, message.delivery, message.resume)
        except ClassroomError as exc:
            raise p.ProtocolError(p.ErrorCode(exc.code), str(exc), fatal=True) from exc
        except UNREACHABLE as exc:
            text = f"The room cannot be reached now; reconnect in a moment ({exc})"
            wait = round(random.uniform(*UNAVAILABLE_RETRY_S), 1)  # spread: a refused crowd comes back spread out
            raise p.ProtocolError(p.ErrorCode.UNAVAILABLE, text, fatal=True, retry_after=wait) from exc
        finally:
            held, self._held = self._held, None
        self.room, self.grant = room, grant
        shared.unjoined.leave(self.address)
        shared.joined.add(self)
        self.send(
            p.Joined(
                participant_id=self.participant_id,
                room=grant.room,
                role=self.role.value,
                name=self.name,
                live=result.live,
                lesson=self._lesson(grant.room),
                next_lesson=self._next_lesson(grant.room),
                server_time=time.time(),
                ice_servers=ice_servers(  # never valid longer than the join token
                    settings.turn_urls,
                    settings.turn_secret,
                    self.participant_id,
                    min(parse_duration(settings.turn_ttl), max(0, grant.expires_at - int(time.time()))),
                ),
                resumed=result.resumed,
                hand=result.hand,
                hls=shared.signer.url(f"/hls/{result.broadcast or grant.room}/", PLAYLIST) if result.hls else None,
                resume=result.resume,
                broadcast=result.broadcast or None,
                section=result.section or None,
            )
        )
        for event in held or ():
            self.send(event)
        self._metrics.joins.labels(self.role.value).inc()
        self._metrics.join_seconds.observe(time.perf_counter() - started)
        log.debug("joined", extra={"room": grant.room, "participant": self.participant_id, "role": self.role.value})
        if self.role in SUBSCRIBERS and message.subscribe and result.hls is None:
            offer = await room.perform(SUBSCRIBE)
            if offer is not None:
                self.send(offer)

    async def _verify(self, message: p.Join) -> Grant:
        """The token's grant, for this room; refused (fatally) when it is not."""
        try:
            grant = verify_token(self._settings.signing_secret, message.token, self._settings.lifetimes)
        except TokenExpired as exc:
            raise p.ProtocolError(p.ErrorCode.TOKEN_EXPIRED, str(exc), fatal=True) from exc
        except TokenError as exc:
            raise p.ProtocolError(p.ErrorCode.INVALID_TOKEN, str(exc), fatal=True) from exc
        if grant.room != message.room:
            raise p.ProtocolError(
                p.ErrorCode.WRONG_ROOM, f"The token is for room {grant.room!r}, not {message.room!r}", fatal=True
            )
        if grant.role not in MEMBERS:
            text = f"A {grant.role.value} token reviews lessons in the library; it does not join a room"
            raise p.ProtocolError(p.ErrorCode.FORBIDDEN, text, fatal=True)
        if grant.role is Role.ADMIN and not self._shared.access.administers(grant, grant.room):
            text = f"An admin of {grant.scope} may not join room {grant.room!r}, which is not in their scope"
            raise p.ProtocolError(p.ErrorCode.FORBIDDEN, text, fatal=True)
        try:
            revoked = await self._shared.cluster.rooms.store.denied(revocation_keys(grant))
        except UNREACHABLE as exc:
            raise p.ProtocolError(p.ErrorCode.UNAVAILABLE, str(exc), fatal=True, retry_after=1.0) from exc
        if revoked:
            raise p.ProtocolError(p.ErrorCode.INVALID_TOKEN, "This token has been revoked", fatal=True)
        return grant

    def _lesson(self, room: str) -> p.Lesson | None:
        """The timetable's lesson now, its recording on a signed URL."""
        lesson = self._shared.schedule.lesson_now(room)
        if lesson is None:
            return None
        recording: Recording | None = lesson["recording"]
        if recording is not None:
            urls = recording_urls(self._shared.signer, recording)
            lesson["recording"] = {
                "id": recording.id,
                "url": urls["media_url"],
                "poster_url": urls["poster_url"],
                "kind": recording.kind,
                "duration_s": recording.duration_s,
            }
        return p.Lesson.model_validate(lesson)

    def _next_lesson(self, room: str) -> p.NextLesson | None:
        found = self._shared.schedule.next_lesson(room)
        return p.NextLesson.model_validate(found) if found else None
