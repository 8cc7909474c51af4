"""Lesson media over HTTP, on signed URLs only (``access.MediaSigner``): recordings with range
requests, and the HLS tier's live playlists and segments with cache headers for a cache or CDN in
front (nginx's ``secure_link`` checks the same signatures: README, private media)."""

from __future__ import annotations

import asyncio
import re

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from ..lessons.catalog import Recording
from ..media.interfaces import PLAYLIST
from .api import Services, Svc, recording_prefix

router = APIRouter(include_in_schema=False)

HLS_FILE = re.compile(r"index\.m3u8|seg-\d{6}\.ts")
ROOM = re.compile(r"[^/]{1,128}")
# A signed URL is the credential: a cache or CDN may keep what it fetched with one (nginx checks the
# signature before its cache, README); the playlist expires at once, a segment never changes.
PLAYLIST_CACHE = {"Cache-Control": "public, max-age=1"}  # a cache asks again about once a segment
SEGMENT_CACHE = {"Cache-Control": "public, max-age=86400, immutable"}


@router.get("/media/{signature}/{expires}/recordings/{recording_id}.webm")
async def recording_media(signature: str, expires: int, recording_id: str, svc: Svc) -> FileResponse:
    """A recorded lesson (or, ``<id>-screen``, its shared screen), with HTTP range requests."""
    screen = recording_id.endswith("-screen")
    recording_id = recording_id.removesuffix("-screen")
    svc.signer.check(recording_prefix(recording_id), signature, expires)
    found = await _local_recording(svc, recording_id)
    if screen:
        if found.screen_file is None:
            raise HTTPException(status_code=404, detail=f"Recording {recording_id!r} has no shared screen")
        return FileResponse(svc.catalog.directory / found.screen_file, media_type="video/webm")
    return FileResponse(svc.catalog.media_path(found), media_type="video/webm")


@router.get("/media/{signature}/{expires}/hls/{room}/{name}")
async def hls_file(request: Request, signature: str, expires: int, room: str, name: str, svc: Svc) -> Response:
    """A live playlist or segment: the playlist changes every segment, a segment never. Asked of a
    node that does not write the room's playlist, the answer is a redirect to the node that does."""
    svc.signer.check(f"/hls/{room}/", signature, expires)
    policy = svc.cluster.rooms.hls
    if policy is None or not HLS_FILE.fullmatch(name) or not ROOM.fullmatch(room):
        raise HTTPException(status_code=404, detail="No such HLS file")
    path = policy.room_directory(room) / name
    if not path.exists():
        owner = await svc.store.room_owner(room)
        url = next((n.url for n in await svc.store.nodes() if n.node == owner), None)
        if owner is not None and owner != svc.cluster.id and url:
            return RedirectResponse(f"{url}{request.url.path}", status_code=307)
        raise HTTPException(status_code=404, detail=f"Room {room!r} has no HLS {name} now")
    if name == PLAYLIST:  # rewritten every segment: read whole, not streamed with a size that may change
        playlist = await asyncio.to_thread(path.read_bytes)
        return Response(playlist, media_type="application/vnd.apple.mpegurl", headers=PLAYLIST_CACHE)
    return FileResponse(path, media_type="video/mp2t", headers=SEGMENT_CACHE)


async def _local_recording(svc: Services, recording_id: str) -> Recording:
    """A recording whose files this node can serve."""
    found = svc.catalog.get(recording_id)
    if found is not None and svc.catalog.media_path(found).exists():
        return found
    elsewhere = await svc.store.recording(recording_id)
    if elsewhere is not None:
        detail = (
            f"Recording {recording_id!r} is on the disk of node {elsewhere.get('node')}; "
            "share SKYCLASS_DATA_DIR/recordings between nodes (README, many nodes)"
        )
        raise HTTPException(status_code=404, detail=detail)
    raise HTTPException(status_code=404, detail=f"No recording {recording_id!r}")
