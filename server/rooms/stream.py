"""A room's HLS tier: who watches over HLS instead of WebRTC, and the playlist written for them.

Viewers are sent to HLS when they ask, or when the room has grown past ``HlsPolicy.above``
members (a grade- or city-wide broadcast). The playlist is written from the teacher's current
publication, from the first HLS viewer until the room closes; its files are served as static
files under ``/hls/{room}/`` (``app.py``), for an HTTP cache or CDN to fan out.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from ..media.interfaces import PLAYLIST
from ..media.pool import MediaPeer, MediaPool
from ..tokens import Role

log = logging.getLogger(__name__)

Delivery = Literal["auto", "webrtc", "hls"]


@dataclass(frozen=True, slots=True)
class HlsPolicy:
    directory: Path  # every room's playlist under here
    above: int | None = 1000  # members beyond which new viewers watch over HLS; None: only on request

    def room_directory(self, room: str) -> Path:
        """Room names are anything a token names: the directory is a digest of it."""
        return self.directory / hashlib.sha256(room.encode()).hexdigest()[:32]

    async def clear(self, room: str) -> None:
        """The room's playlist and segments go (off the loop: a folder of segments)."""
        await asyncio.get_running_loop().run_in_executor(None, shutil.rmtree, self.room_directory(room), True)


def playlist_url(room: str) -> str:
    return f"/hls/{quote(room, safe='')}/{PLAYLIST}"


class RoomStream:
    def __init__(self, room: str, media: MediaPool, policy: HlsPolicy | None) -> None:
        self._room = room
        self._media = media
        self._policy = policy
        self.url = playlist_url(room)
        self.wanted = False  # someone watches over HLS: the playlist is written while there is a broadcast
        self._writing: MediaPeer | None = None

    def assigns(self, role: Role, wanted: Delivery, members: int) -> bool:
        """Whether a viewer who joins now watches over HLS."""
        if self._policy is None or role is not Role.STUDENT or wanted == "webrtc":
            return False
        return wanted == "hls" or (self._policy.above is not None and members > self._policy.above)

    async def add_viewer(self, publication: MediaPeer | None) -> None:
        if not self.wanted:
            self.wanted = True
            await self.publication_changed(publication)

    async def publication_changed(self, publication: MediaPeer | None) -> None:
        if self._writing is not None:
            await self._media.stop_hls(self._writing)
            self._writing = None
        if publication is None or not self.wanted or self._policy is None:
            return
        playlist = self._policy.room_directory(self._room) / PLAYLIST
        try:
            await self._media.start_hls(publication, str(playlist))
        except (LookupError, RuntimeError) as exc:
            log.error("room %s: HLS did not start: %s", self._room, exc)
            return
        self._writing = publication
        log.info("room %s: writing HLS", self._room)

    async def close(self) -> None:
        await self.publication_changed(None)
        if self.wanted and self._policy is not None:
            await self._policy.clear(self._room)
