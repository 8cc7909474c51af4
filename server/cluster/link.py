"""Calls and events between nodes over the ``Bus``: each node listens on its own channel.

Messages are JSON: ``call`` (op, payload, reply-to), ``reply`` (result or error) and ``events``
(one room event for several of the receiving node's sessions). Replies and events leave through
one ordered sender, so a node receives them in the order they were produced, and an event meant
for many sessions crosses once per node, not once per session.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from ..media.interfaces import SdpError
from ..rooms import ClassroomError
from ..rooms import events as ev
from ..rpc import Calls, Errors, Handler, RemoteFailure, answer
from ..state import Bus, BusUnavailable, StoreUnavailable
from .codec import decode_event, encode_event

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 10.0


def channel(node: str) -> str:
    return f"sky:node:{node}"


class NodeUnreachable(Exception):
    """Nobody listens on the node's channel: it died, or lost Redis."""


class RoomUnavailable(Exception):
    """The room cannot be reached now (its node is busy, moving or cut off); join again shortly."""


EventSink = Callable[[list[str], ev.Event], None]

# Errors that cross nodes as themselves; anything else becomes RemoteFailure.
ERRORS = Errors(
    {
        "classroom": (ClassroomError, ClassroomError),
        "sdp": (SdpError, lambda code, message: SdpError(message)),
        "unavailable": (
            (StoreUnavailable, RoomUnavailable, NodeUnreachable),
            lambda code, message: RoomUnavailable(message),
        ),
        "lookup": (LookupError, lambda code, message: LookupError(message)),
    }
)
__all__ = ["Link", "NodeUnreachable", "RemoteFailure", "RoomUnavailable", "channel"]


class Link:
    def __init__(self, bus: Bus, node: str, on_call: Handler, on_events: EventSink) -> None:
        self.node = node
        self._bus = bus
        self._on_call = on_call
        self._on_events = on_events
        self._calls = Calls(ERRORS)
        self._outbox: list[tuple[str, str]] = []
        self._batches: dict[str, tuple[ev.Event, list[str]]] = {}  # node -> the event being gathered
        self._wakeup = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.lost = 0  # replies and events that could not be published (Redis away)

    async def start(self) -> None:
        self._sender = asyncio.create_task(self._send_forever())
        await self._bus.listen(channel(self.node), self._receive)

    async def close(self) -> None:
        """Stop, after sending what is queued (members elsewhere hear that the room moves)."""
        for node in list(self._batches):
            self._flush_events(node)
        if self._sender is not None:
            self._sender.cancel()
        for task in self._tasks:
            task.cancel()
        if self._outbox:
            try:
                await self._bus.publish(self._outbox)
            except Exception as exc:
                log.warning("could not send %d last messages: %s", len(self._outbox), exc)

    # Out ------------------------------------------------------------------------------------------

    async def call(self, node: str, op: str, payload: dict[str, Any], timeout: float = CALL_TIMEOUT_S) -> Any:
        with self._calls.call(op, payload) as (message, future):
            message |= {"k": "call", "from": self.node}
            try:
                (reached,) = await self._bus.publish([(channel(node), json.dumps(message))])
            except BusUnavailable as exc:
                raise RoomUnavailable(f"Other nodes cannot be reached now: {exc}") from exc
            if not reached:
                raise NodeUnreachable(f"Node {node} does not answer")
            try:
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError:
                raise NodeUnreachable(f"Node {node} did not answer {op} within {timeout:.0f} s") from None

    def deliver(self, node: str, key: str, event: ev.Event) -> None:
        """``event`` for session ``key`` on ``node``; the same event for several sessions on one
        node (a room telling its class) goes as one message."""
        gathering = self._batches.get(node)
        if gathering is not None and gathering[0] is event:
            gathering[1].append(key)
            return
        self._flush_events(node)
        self._batches[node] = (event, [key])
        self._wakeup.set()

    def _flush_events(self, node: str) -> None:
        gathering = self._batches.pop(node, None)
        if gathering is not None:
            event, keys = gathering
            self._outbox.append((channel(node), json.dumps({"k": "events", "to": keys, "e": encode_event(event)})))

    def _reply(self, node: str, message: dict[str, Any]) -> None:
        self._flush_events(node)  # what the call delivered goes first
        self._outbox.append((channel(node), json.dumps(message)))
        self._wakeup.set()

    async def _send_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            for node in list(self._batches):
                self._flush_events(node)
            batch, self._outbox = self._outbox, []
            if not batch:
                continue
            try:
                await self._bus.publish(batch)
            except Exception as exc:  # Redis away: the lesson goes on, these are lost (counted)
                self.lost += len(batch)
                log.warning("could not send %d messages to other nodes: %s", len(batch), exc)

    # In -------------------------------------------------------------------------------------------

    def _receive(self, text: str) -> None:
        try:
            message = json.loads(text)
            kind = message["k"]
            if kind == "events":
                self._on_events(message["to"], decode_event(message["e"]))
            elif kind == "reply":
                self._calls.resolve(message)
            elif kind == "call":
                task = asyncio.ensure_future(self._answer(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except Exception:
            log.exception("bad message on the bus: %s", text[:200])

    async def _answer(self, message: dict[str, Any]) -> None:
        reply = await answer(self._on_call, message, ERRORS, f"node {message['from']}")
        self._reply(message["from"], {"k": "reply", **reply})
