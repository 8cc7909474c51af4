"""Who may use what over HTTP: the credential a request carries, the rules over rooms, schools and
lesson media, and the signed URLs that let a cache or CDN hand media to members only.

Rules (``docs/protocol.md`` has the whole matrix):
- a room's members (any role of that room's token) see the room: its status, recordings, media;
- an admin's scope is the city or one school: they see and manage the rooms of that school;
- reviewers see every lesson (they review them before pupils do);
- media files are served on a signed URL only, made here for whoever may see them.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import HTTPException, Request

from ..lessons.catalog import Recording
from ..state import Store
from ..tokens import Grant, Lifetimes, Role, TokenError, TokenExpired, verify_token

log = logging.getLogger(__name__)
audit = logging.getLogger("skyclass.audit")  # one line for every admin action

URL_ROUNDING_S = 600  # signed URLs of one class share an expiry (one URL a class, one copy a cache)
SIGNED = re.compile(r"[A-Za-z0-9_-]{22}")


def revocation_keys(grant: Grant) -> list[str]:
    return [f"token:{grant.token_id}", f"participant:{grant.participant_id}"]


def credential(request: Request) -> str:
    """``Authorization: Bearer <token>``, or ``?token=`` (links to pages and files)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query_params.get("token", "")


@dataclass(frozen=True, slots=True)
class MediaSigner:
    """URLs of the form nginx's ``secure_link`` checks: ``/media/<md5>/<expires><prefix><file>``,
    where md5 is base64url(MD5("<expires><prefix> <secret>")) and ``prefix`` is what one signature
    opens: a recording (``/recordings/<id>``, its camera and screen files) or a room's HLS folder
    (``/hls/<room>/``, the playlist and every segment it names, relative URLs keeping the path)."""

    secret: str
    ttl_s: int

    def url(self, prefix: str, file: str, now: float | None = None) -> str:
        expires = math.ceil(((now or time.time()) + self.ttl_s) / URL_ROUNDING_S) * URL_ROUNDING_S
        return f"/media/{self._signature(prefix, expires)}/{expires}{quote(prefix)}{quote(file)}"

    def check(self, prefix: str, signature: str, expires: int, now: float | None = None) -> None:
        """Raise 403 for a signature that is not ours, 410 for one whose time is up."""
        if not SIGNED.fullmatch(signature) or signature != self._signature(prefix, expires):
            raise HTTPException(403, "This media link is not valid")
        if expires < (now or time.time()):
            raise HTTPException(410, "This media link has expired; open the lesson again for a new one")

    def _signature(self, prefix: str, expires: int) -> str:
        digest = hashlib.md5(f"{expires}{prefix} {self.secret}".encode(), usedforsecurity=False).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def recording_urls(signer: MediaSigner, recording: Recording) -> dict[str, str | None]:
    """A lesson's files on signed URLs: the media, the shared screen and the poster, when it has them."""
    prefix = f"/recordings/{recording.id}"  # what one signature opens: all of this lesson's files
    media = recording.file.removeprefix(recording.id) if recording.file else ""
    return {
        "media_url": signer.url(prefix, media) if media else None,
        "screen_url": signer.url(prefix, recording.screen_file.removeprefix(recording.id))
        if recording.screen_file
        else None,
        "poster_url": signer.url(prefix, "-poster.jpg") if recording.poster_file else None,
    }


class Access:
    def __init__(self, secret: str, lifetimes: Lifetimes, store: Store, school_of: Callable[[str], str | None]) -> None:
        self._secret = secret
        self._lifetimes = lifetimes
        self._store = store
        self.school_of = school_of  # a room's school, from the timetable (None: not a class of it)

    async def grant(self, request: Request) -> Grant:
        """The caller's grant; 401 when there is none, or it is not valid, expired or revoked."""
        token = credential(request)
        if not token:
            raise HTTPException(401, "Expected a token: Authorization: Bearer <token>")
        return await self.verify(token)

    async def verify(self, token: str) -> Grant:
        try:
            grant = verify_token(self._secret, token, self._lifetimes)
        except TokenExpired as exc:
            raise HTTPException(401, str(exc)) from exc
        except TokenError as exc:
            raise HTTPException(401, str(exc)) from exc
        if await self._store.denied(revocation_keys(grant)):
            raise HTTPException(401, "This token has been revoked")
        return grant

    # The rules -------------------------------------------------------------------------------------

    def administers(self, grant: Grant, room: str | None = None) -> bool:
        """An admin whose scope holds ``room`` (None: the whole city)."""
        if grant.role is not Role.ADMIN:
            return False
        if room is None:
            return grant.covers_school("")  # the city only
        school = self.school_of(room)
        return grant.covers_school(school) if school is not None else grant.covers_school("")

    def sees_room(self, grant: Grant, room: str) -> bool:
        """Members of the room, admins of its school or city (whatever room their token names),
        reviewers."""
        if grant.role is Role.ADMIN:
            return self.administers(grant, room)
        return grant.room == room or grant.role is Role.REVIEWER

    def teaches(self, grant: Grant, room: str) -> bool:
        return grant.role is Role.TEACHER and grant.room == room

    @staticmethod
    def refuse(grant: Grant, action: str) -> HTTPException:
        return HTTPException(403, f"A {grant.role.value}{_scope(grant)} may not {action}")


def _scope(grant: Grant) -> str:
    return f" of {grant.scope}" if grant.scope else f" of room {grant.room!r}"
