"""The one RPC core behind every link that makes calls: between nodes over the bus, and from the
main process to its media workers.

A call is ``{"id", "op", "args"}``; its reply ``{"id", "ok"}`` or ``{"id", "err": {"kind", "code",
"message"}}``. Errors the caller must tell apart cross as themselves, named by an ``Errors`` table
each link gives; anything else arrives as ``RemoteFailure`` (and is logged where it happened).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]


class RemoteFailure(RuntimeError):
    """The other side failed on the call (it logged why)."""


class Errors:
    """Which exceptions cross a link as themselves, each under a name; ``make`` rebuilds one from
    its ``code`` and message."""

    def __init__(
        self, kinds: Mapping[str, tuple[type[Exception] | tuple[type[Exception], ...], Callable[[str, str], Exception]]]
    ) -> None:
        self._kinds = kinds

    def encode(self, exc: Exception) -> dict[str, str] | None:
        for kind, (types, _) in self._kinds.items():
            if isinstance(exc, types):
                return {"kind": kind, "code": str(getattr(exc, "code", "")), "message": str(exc)}
        return None

    def decode(self, err: dict[str, str]) -> Exception:
        entry = self._kinds.get(err.get("kind", ""))
        return entry[1](err.get("code", ""), err["message"]) if entry else RemoteFailure(err["message"])


class Calls:
    """The calls this side made that wait for a reply."""

    def __init__(self, errors: Errors) -> None:
        self.errors = errors
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[Any]] = {}

    @contextmanager
    def call(self, op: str, args: dict[str, Any]) -> Iterator[tuple[dict[str, Any], asyncio.Future[Any]]]:
        """The message to send and the future its reply resolves; forgotten when the block ends."""
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        try:
            yield {"id": call_id, "op": op, "args": args}, future
        finally:
            self._pending.pop(call_id, None)

    def resolve(self, reply: dict[str, Any]) -> None:
        future = self._pending.get(reply["id"])
        if future is None or future.done():
            return  # answered after its caller gave up
        if "err" in reply:
            future.set_exception(self.errors.decode(reply["err"]))
        else:
            future.set_result(reply.get("ok"))

    def fail_all(self, exc: Exception) -> None:
        """The other side is gone: every waiting call fails with ``exc``."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)


async def answer(handler: Handler, call: dict[str, Any], errors: Errors, origin: str) -> dict[str, Any]:
    """Run ``call`` through ``handler``; the reply to send back."""
    try:
        return {"id": call["id"], "ok": await handler(call["op"], call.get("args", {}))}
    except Exception as exc:
        err = errors.encode(exc)
        if err is None:
            log.exception("failed on %s from %s", call["op"], origin)
            err = {"kind": "failure", "code": "", "message": str(exc)}
        return {"id": call["id"], "err": err}
