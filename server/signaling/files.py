"""Lesson media over HTTP, on signed URLs only (``access.MediaSigner``): recordings with range
requests, and the HLS tier's live playlists and segments with cache headers for a cache or CDN in
front (nginx's ``secure_link`` checks the same signatures: README, private media)."""

from __future__ import annotations

import asyncio
import re

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from ..lessons.catalog import Recording
from ..media.interfaces import AUDIO_PLAYLIST, PLAYLIST
from .api import Services, Svc, recording_prefix

router = APIRouter(include_in_schema=False)

HLS_FILE = re.compile(r"(index|audio)\.m3u8|(seg|aud)-\d{6}\.ts")
ROOM = re.compile(r"[^/]{1,128}")
# A signed URL is the credential: a cache or CDN may keep what it fetched with one (nginx checks the
# signature before its cache, README); the playlist expires at once, a segment never changes.
PLAYLIST_CACHE = {"Cache-Control": "public, max-age=1"}  # a cache asks again about once a segment
SEGMENT_CACHE = {"Cache-Control": "public, max-age=86400, immutable"}


LESSON_FILE = re.compile(
    r"(?P<id>[A-Za-z0-9_-]+?)(?P<part>\.webm|\.mp4|\.m4a|\.mp3|\.mkv|-screen\.webm|-screen\.mp4|-poster\.jpg)"
)
MEDIA_TYPES = {
    ".webm": "video/webm",
    ".mp4": "video/mp4",
    ".m4a": "audio/mp4",
    ".mp3": "audio/mpeg",
    ".mkv": "video/x-matroska",
    "-screen.webm": "video/webm",
    "-screen.mp4": "video/mp4",
    "-poster.jpg": "image/jpeg",
}


@router.get("/media/{signature}/{expires}/recordings/{name}", response_model=None)
async def lesson_file(signature: str, expires: int, name: str, svc: Svc) -> Response:
    """A lesson's media (with HTTP range requests), its shared screen or its poster. With
    ``SKYCLASS_ACCEL_REDIRECT`` set, nginx sends the bytes (``X-Accel-Redirect``) once this node has
    checked the URL: the README's nginx config."""
    match = LESSON_FILE.fullmatch(name)
    if match is None:
        raise HTTPException(status_code=404, detail=f"No lesson file {name!r}")
    lesson_id, part = match["id"], match["part"]
    svc.signer.check(recording_prefix(lesson_id), signature, expires)
    found = await _local_recording(svc, lesson_id)
    file = (
        found.poster_file if part == "-poster.jpg" else found.screen_file if part.startswith("-screen") else found.file
    )
    if not file or not file.endswith(part):
        raise HTTPException(status_code=404, detail=f"Lesson {lesson_id!r} has no {part} file")
    if svc.settings.accel_redirect:
        headers = {"X-Accel-Redirect": f"{svc.settings.accel_redirect.rstrip('/')}/{file}"}
        return Response(headers=headers, media_type=MEDIA_TYPES[part])
    return FileResponse(svc.catalog.directory / file, media_type=MEDIA_TYPES[part])


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
    if name in (PLAYLIST, AUDIO_PLAYLIST):  # rewritten every segment: read whole (its size may change)
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
