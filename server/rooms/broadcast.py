"""The teacher's broadcast: its publication, each member's subscription, the recording, and the
copies that leave this node (other nodes' viewers, the HLS tier)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..lessons.catalog import Catalog
from ..media.pool import MediaPeer, MediaPool
from ..state import Store
from . import events as ev
from .cascade import OriginSide
from .journal import Journal
from .members import Member, Members, quality_teller, tell
from .stream import RoomStream

log = logging.getLogger(__name__)


class Broadcast:
    def __init__(
        self,
        room: str,
        media: MediaPool,
        store: Store,
        members: Members,
        catalog: Catalog | None,
        title: Callable[[str], str],
        stream: RoomStream,
        journal: Journal,
    ) -> None:
        self._room = room
        self._media = media
        self._store = store
        self._members = members
        self._catalog = catalog
        self._title = title  # what a recording of this room is called (the lesson now)
        self._recording_id: str | None = None
        self.publication: MediaPeer | None = None
        self.publisher_id: str | None = None
        self.subscriptions: dict[str, MediaPeer] = {}
        self.edges = OriginSide(room, media)  # other nodes' viewers, fed once per node
        self.stream = stream
        self._journal = journal
        self.on_live_changed: Callable[[], None] = lambda: None  # a broadcast's parts are told

    @property
    def live(self) -> bool:
        return self.publication is not None

    async def publish(self, member: Member, offer_sdp: str, tracks: list[str] | None = None) -> str:
        """Start (or restart) the broadcast from ``member``'s offer (its m-lines named by
        ``tracks``); returns the answer."""

        def on_failed() -> None:
            asyncio.ensure_future(self._publication_failed(member))

        publication, answer = await self._media.publish(self._room, offer_sdp, on_failed, tracks)
        old = self.publication
        self.publication, self.publisher_id = publication, member.participant_id
        await self._attach_all(publication)
        await self.edges.source_changed("teacher", publication)
        if old is not None:
            await self._finish_recording(old)
            await self._media.close(old)
        await self.stream.publication_changed(publication)
        await self._start_recording(publication, member)
        await self._store.set_broadcaster(self._room, member.participant_id)
        if old is None:
            self._tell_viewers(live=True)
            self._journal.broadcast_started(member.participant_id)
        log.info("room %s: %s broadcasts", self._room, member.name)
        return answer

    async def unpublish(self, member: Member, cause: str = "stopped") -> None:
        """The broadcast ends; ``cause`` says why, for the journal (``Journal.broadcast_stopped``)."""
        if self.publisher_id != member.participant_id or self.publication is None:
            return
        publication, self.publication, self.publisher_id = self.publication, None, None
        await self._attach_all(None)
        self._tell_viewers(live=False)  # first: students switch to the recording at once
        self._journal.broadcast_stopped(cause)
        await self.edges.source_changed("teacher", None)
        await self.stream.publication_changed(None)
        await self._finish_recording(publication)
        await self._media.close(publication)
        await self._store.set_broadcaster(self._room, None)
        log.info("room %s: broadcast ended", self._room)

    def _tell_viewers(self, *, live: bool) -> None:
        """Everyone but the publisher: viewers whose media comes through another node too."""
        tell([m for m in self._members.everyone() if m.participant_id != self.publisher_id], ev.BroadcastChanged(live))
        self.on_live_changed()

    async def _publication_failed(self, member: Member) -> None:
        log.warning("room %s: the teacher's connection failed", self._room)
        await self.unpublish(member, "connection_failed")

    async def _attach_all(self, publication: MediaPeer | None) -> None:
        """Every subscription but the publisher's own takes the teacher's broadcast."""
        targets = [s for pid, s in self.subscriptions.items() if publication is None or pid != self.publisher_id]
        await asyncio.gather(*(self._media.attach(s, publication) for s in targets))

    # Recording -----------------------------------------------------------------------------------

    async def _start_recording(self, publication: MediaPeer, member: Member) -> None:
        if self._catalog is None:
            return
        recording = self._catalog.begin(self._room, member.name, self._title(self._room))
        try:
            await self._media.start_recording(publication, str(self._catalog.media_path(recording)))
        except (LookupError, RuntimeError) as exc:
            log.error("room %s: recording did not start: %s", self._room, exc)
            self._catalog.finish(recording.id, {"error": str(exc)})
            return
        self._recording_id = recording.id

    async def _finish_recording(self, publication: MediaPeer) -> None:
        recording_id, self._recording_id = self._recording_id, None
        if recording_id is None or self._catalog is None:
            return
        info = await self._media.stop_recording(publication)
        recording = self._catalog.finish(recording_id, info)
        if recording is not None:
            log.info(
                "room %s: recorded %s (%.1f s, %s)",
                self._room,
                recording.file,
                recording.duration_s or 0,
                recording.status,
            )

    # Subscribers ---------------------------------------------------------------------------------

    async def subscribe(self, member: Member) -> tuple[MediaPeer, str]:
        """A fresh subscription for ``member``, fed by the current broadcast, and its offer."""
        await self.unsubscribe(member.participant_id)
        subscription, offer = await self._media.subscribe(self._room, on_quality=quality_teller(member))
        self.subscriptions[member.participant_id] = subscription
        if member.participant_id != self.publisher_id:
            await self._media.attach(subscription, self.publication)
        return subscription, offer

    async def unsubscribe(self, participant_id: str) -> None:
        subscription = self.subscriptions.pop(participant_id, None)
        if subscription is not None:
            await self._media.close(subscription)

    def subscription(self, participant_id: str, missing: str) -> MediaPeer:
        subscription = self.subscriptions.get(participant_id)
        if subscription is None:
            raise LookupError(missing)
        return subscription

    def publication_of(self, participant_id: str) -> MediaPeer | None:
        return self.publication if self.publisher_id == participant_id else None

    def media_peers(self) -> list[MediaPeer]:
        peers = [self.publication, *self.subscriptions.values(), *self.edges.egresses]
        return [peer for peer in peers if peer is not None]

    async def close(self) -> None:
        await self.edges.close()
        await self.stream.close()
