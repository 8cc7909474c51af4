"""The one process: web client, signaling websocket, SFU, metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.resources
import logging
import os
import re
import socket
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from .cluster import Cluster
from .lessons.attendance import as_csv, attendees, rates
from .lessons.catalog import Catalog, Recording
from .lessons.demo import ensure_demo_lesson
from .lessons.schedule import Schedule
from .lessons.timetable import TimetableError
from .media.ice import use_host_addresses
from .media.interfaces import PLAYLIST, MediaBackend
from .media.pool import MediaPool
from .media.remote import WorkerClient
from .media.sfu import Sfu
from .metrics import Gauges, make_registry
from .rooms import Rooms
from .rooms.stream import HlsPolicy
from .settings import Settings
from .signaling.session import Session
from .state import StoreUnavailable, open_state
from .state.resilient import ResilientStore
from .tokens import Role, TokenError, issue_token, parse_duration, verify_token

log = logging.getLogger(__name__)


def _client_dir() -> Path:
    """The web client's folder. A wheel carries it as package data, server/web (pyproject.toml maps
    client_web/ there); a checkout, installed editable or not, has it as client_web/ beside server/
    (setuptools' editable finder does not serve a folder mapped into a package from elsewhere)."""
    packaged = Path(str(importlib.resources.files("server") / "web"))
    checkout = Path(__file__).resolve().parent.parent / "client_web"
    return checkout if not packaged.is_dir() and checkout.is_dir() else packaged


CLIENT_DIR = _client_dir()
HLS_FILE = re.compile(r"index\.m3u8|seg-\d{6}\.ts")
PLAYLIST_CACHE = {"Cache-Control": "public, max-age=1"}  # a cache asks again about once a segment
SEGMENT_CACHE = {"Cache-Control": "public, max-age=86400, immutable"}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    sessions: set[Session] = set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        use_host_addresses(settings.ice_addresses)
        store, bus = await open_state(settings.redis_url)
        runtime = tempfile.TemporaryDirectory(prefix="skyclass-")
        pool = MediaPool(await _media_backends(settings, Path(runtime.name)), settings.max_subscribers_per_worker)
        node_id = f"{socket.gethostname()}:{settings.port}:{os.getpid()}"
        catalog = Catalog(settings.recordings_dir, node_id)
        await asyncio.get_running_loop().run_in_executor(None, ensure_demo_lesson, catalog)
        for recording in catalog.list():  # every node lists what is on this one's disk
            await store.save_recording(recording.to_json())
        catalog.on_change = lambda recording: asyncio.ensure_future(store.save_recording(recording.to_json()))
        schedule = Schedule(catalog, settings.data_dir / "timetable.yaml")
        schedule.load(settings.timetable)
        app.state.catalog, app.state.schedule = catalog, schedule
        hls = HlsPolicy(settings.hls_dir, settings.hls_above) if settings.hls else None
        rooms = Rooms(pool, store, node_id, catalog if settings.record else None, schedule.title_now, hls)
        url = settings.public_url or f"http://{settings.host}:{settings.port}"
        cluster = Cluster(rooms, store, bus, settings.relay_address, url)
        await cluster.start()
        _replace_dead_workers(pool, rooms, settings, Path(runtime.name))
        app.state.rooms, app.state.cluster = rooms, cluster
        stats = _StatsCache(pool)
        gauges: Gauges = {
            "sessions": ("Open signaling sessions", lambda: len(sessions)),
            "rooms": ("Rooms held on this node", lambda: len(rooms)),
            "publications": ("Publishing peer connections", lambda: len(pool.publications)),
            "subscriptions": ("Subscribing peer connections", lambda: pool.subscriptions),
            "redis_rtt_seconds": ("Round trip of the latest heartbeat to the store", lambda: cluster.node.rtt_s),
            "bus_lost_messages": ("Messages to other nodes lost while Redis was away", lambda: cluster.link.lost),
            "joins_waiting": ("Joins queued for this node's rooms", lambda: cluster.joins_waiting),
            "edge_rooms": (
                "Rooms held elsewhere whose broadcast this node receives for its viewers",
                lambda: cluster.edge.rooms,
            ),
            "edges_fed": (
                "Other nodes fed the broadcast of a room held here",
                lambda: sum(len(r.edges.nodes) for r in rooms),
            ),
        }
        if isinstance(store, ResilientStore):
            health = store
            gauges["redis_up"] = ("1 while Redis answers", lambda: int(health.up))
            gauges["redis_queued_writes"] = ("Writes waiting for Redis to come back", lambda: health.queued)
            gauges["redis_failures"] = ("Redis calls that failed", lambda: health.failures)
            health.on_recovered = lambda: asyncio.ensure_future(cluster.resync())

        def participants() -> dict[str, int]:
            return dict(Counter(s.role.value for s in sessions if s.room is not None))

        app.state.registry, app.state.signaling_metrics = make_registry(
            stats.snapshot, gauges, lambda: pool.load, participants
        )
        refresher = asyncio.get_running_loop().create_task(stats.refresh_forever())
        log.info("signing tokens with the %s", settings.describe_secret())
        log.info("state: %s", "Redis at " + settings.redis_url if settings.redis_url else "embedded (in memory)")
        log.info("node %s", node_id)
        try:
            yield
        finally:
            refresher.cancel()
            await rooms.close()  # members reconnect: to another node, where there is one
            await cluster.close()
            await bus.close()
            await store.close()
            for backend in pool.backends:
                if isinstance(backend, WorkerClient):
                    await backend.stop()
            runtime.cleanup()

    app = FastAPI(title="Sky Classroom", lifespan=lifespan)

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"Shared state is unreachable for a moment: {exc}"}, 503, {"Retry-After": "2"})

    settings.signing_secret  # noqa: B018 (create the development secret before the first join)

    def page(name: str) -> FileResponse:
        return FileResponse(CLIENT_DIR / name, headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return page("index.html")

    @app.get("/teach", include_in_schema=False)
    async def teach() -> FileResponse:
        return page("teach.html")

    @app.get("/learn", include_in_schema=False)
    async def learn() -> FileResponse:
        return page("learn.html")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(app.state.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/rooms")
    async def all_rooms(request: Request) -> list[dict[str, object]]:
        """Every room held on this node, for admins: live or not, students, teachers."""
        _require_grant(request, settings, action="see every room")
        rooms: Rooms = app.state.rooms
        return [
            {
                "room": room.name,
                "live": room.live,
                "students": await rooms.store.count(room.name, Role.STUDENT),
                "teachers": await rooms.store.count(room.name, Role.TEACHER),
            }
            for room in rooms
        ]

    @app.get("/api/rooms/{room}")
    async def room_status(room: str) -> JSONResponse:
        rooms: Rooms = app.state.rooms
        return JSONResponse(
            {
                "room": room,
                "live": await rooms.store.broadcaster(room) is not None,
                "students": await rooms.store.count(room, Role.STUDENT),
            }
        )

    @app.get("/api/edge")
    async def edge(room: str | None = None) -> JSONResponse:
        """The node a new viewer should connect to: the least loaded with room for one more, other
        than the node holding ``room`` (its origin keeps its cores for the teacher and the feeds)."""
        cluster: Cluster = app.state.cluster
        origin = await cluster.rooms.store.room_owner(room) if room else None
        found = await cluster.node.least_loaded(settings.max_sessions, avoid=origin)
        if found is None:
            raise HTTPException(503, "Every node is full; try again in a few seconds")
        return JSONResponse({"node": found.node, "url": found.url, "participants": found.participants})

    @app.get("/replay", include_in_schema=False)
    async def replay_list() -> FileResponse:
        return page("replay.html")

    @app.get("/replay/{recording_id}", include_in_schema=False)
    async def replay(recording_id: str) -> FileResponse:
        return page("replay.html")

    @app.get("/api/timetable")
    async def timetable() -> dict[str, object]:
        return app.state.schedule.timetable.to_json()  # type: ignore[no-any-return]

    @app.put("/api/timetable")
    async def replace_timetable(request: Request) -> dict[str, object]:
        """Replace the timetable (YAML or JSON body, docs/timetable.md); admins only.
        A timetable with any problem is refused whole, naming each problem's line."""
        _require_grant(request, settings, action="change the timetable")
        text = (await request.body()).decode("utf-8", errors="replace")
        try:
            return app.state.schedule.replace(text).to_json()  # type: ignore[no-any-return]
        except TimetableError as exc:
            raise HTTPException(status_code=400, detail=exc.problems) from exc

    @app.post("/api/tokens")
    async def make_token(request: Request, body: TokenRequest) -> dict[str, str]:
        """Issue a join token, as `skyclass token` does; admins only."""
        _require_grant(request, settings, action="issue tokens")
        try:
            ttl_s = parse_duration(body.ttl)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        token = issue_token(settings.signing_secret, room=body.room, role=body.role, name=body.name, ttl_s=ttl_s)
        return {"token": token}

    @app.get("/api/rooms/{room}/attendance", response_model=None)
    async def room_attendance(request: Request, room: str, format: str = "json") -> Response | dict[str, object]:
        """Who attended, with join and leave times and minutes; JSON or ``?format=csv``.
        The room's teacher or an admin (token as ``Authorization: Bearer`` or ``?token=``)."""
        _require_grant(request, settings, action="see attendance", room=room)
        people = attendees(await app.state.rooms.store.attendance(room))
        if format == "csv":
            return Response(as_csv(people), media_type="text/csv; charset=utf-8")
        now = time.time()
        return {"room": room, "participants": [p.to_json(now) for p in people]}

    @app.get("/api/attendance/rates")
    async def attendance_rates(request: Request) -> dict[str, object]:
        """Students attending / enrolled, per class, school and grade of the timetable; admins only."""
        _require_grant(request, settings, action="see attendance rates")
        store = app.state.rooms.store
        attended = {
            class_id: {a.name for a in attendees(await store.attendance(class_id)) if a.role == Role.STUDENT}
            for class_id in app.state.schedule.timetable.classes
        }
        return rates(app.state.schedule.timetable, attended)

    @app.get("/api/recordings")
    async def recordings(room: str | None = None) -> list[dict[str, object]]:
        """Recorded lessons, newest first; ``room`` narrows to one class."""
        return [_recording_json(Recording.from_json(r)) for r in await app.state.rooms.store.recordings(room)]

    @app.get("/api/recordings/{recording_id}")
    async def recording(recording_id: str) -> dict[str, object]:
        found = await app.state.rooms.store.recording(recording_id)
        if found is None:
            raise HTTPException(status_code=404, detail=f"No recording {recording_id!r}")
        return _recording_json(Recording.from_json(found))

    @app.get("/recordings/{recording_id}-screen.webm", include_in_schema=False)
    async def recording_screen(recording_id: str) -> FileResponse:
        """The shared screen of a recorded lesson, with range requests."""
        found = await _local_recording(app, recording_id)
        if found.screen_file is None:
            raise HTTPException(status_code=404, detail=f"Recording {recording_id!r} has no shared screen")
        return FileResponse(app.state.catalog.directory / found.screen_file, media_type="video/webm")

    @app.get("/recordings/{recording_id}.webm", include_in_schema=False)
    async def recording_media(recording_id: str) -> FileResponse:
        """The file, with HTTP range requests so a browser can seek."""
        found = await _local_recording(app, recording_id)
        return FileResponse(app.state.catalog.media_path(found), media_type="video/webm")

    @app.get("/hls/{room:path}/{name}", include_in_schema=False)
    async def hls_file(room: str, name: str) -> Response:
        """A live playlist or segment, with cache headers for an HTTP cache or CDN in front: the
        playlist changes every segment, a segment never. Asked of a node that does not write the
        room's playlist, the answer is a redirect to the node that does."""
        policy: HlsPolicy | None = app.state.rooms.hls
        if policy is None or not HLS_FILE.fullmatch(name):
            raise HTTPException(status_code=404, detail="No such HLS file")
        path = policy.room_directory(room) / name
        if not path.exists():
            cluster: Cluster = app.state.cluster
            owner = await cluster.rooms.store.room_owner(room)
            url = next((n.url for n in await cluster.rooms.store.nodes() if n.node == owner), None)
            if owner is not None and owner != cluster.id and url:
                return RedirectResponse(f"{url}/hls/{quote(room, safe='')}/{name}", status_code=307)
            raise HTTPException(status_code=404, detail=f"Room {room!r} has no HLS {name} now")
        if name == PLAYLIST:  # rewritten every segment: read whole, not streamed with a size that may change
            playlist = await asyncio.to_thread(path.read_bytes)
            return Response(playlist, media_type="application/vnd.apple.mpegurl", headers=PLAYLIST_CACHE)
        return FileResponse(path, media_type="video/mp2t", headers=SEGMENT_CACHE)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        cluster, schedule, metrics = app.state.cluster, app.state.schedule, app.state.signaling_metrics
        await Session(websocket, cluster, settings, sessions, schedule, metrics).run()

    app.mount("/static", StaticFiles(directory=CLIENT_DIR), name="static")
    return app


class TokenRequest(BaseModel):
    room: str = Field(min_length=1, max_length=128)
    role: Role
    name: str = Field(min_length=1, max_length=100)
    ttl: str = "2h"


def _require_grant(request: Request, settings: Settings, *, action: str, room: str | None = None) -> None:
    """An admin's token; or, when ``room`` is given, also that room's teacher's."""
    token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    token = token or request.query_params.get("token", "")
    try:
        grant = verify_token(settings.signing_secret, token)
    except TokenError as exc:
        raise HTTPException(status_code=401, detail=str(exc)) from exc
    if grant.role is Role.ADMIN or (room is not None and grant.role is Role.TEACHER and grant.room == room):
        return
    raise HTTPException(status_code=403, detail=f"A {grant.role.value} may not {action}")


async def _local_recording(app: FastAPI, recording_id: str) -> Recording:
    """A recording whose files this node can serve."""
    catalog: Catalog = app.state.catalog
    found = catalog.get(recording_id)
    if found is not None and catalog.media_path(found).exists():
        return found
    elsewhere = await app.state.rooms.store.recording(recording_id)
    if elsewhere is not None:
        detail = (
            f"Recording {recording_id!r} is on the disk of node {elsewhere.get('node')}; "
            "share SKYCLASS_DATA_DIR/recordings between nodes (README, many nodes)"
        )
        raise HTTPException(status_code=404, detail=detail)
    raise HTTPException(status_code=404, detail=f"No recording {recording_id!r}")


def _recording_json(recording: Recording) -> dict[str, object]:
    return {
        "id": recording.id,
        "room": recording.room,
        "title": recording.title,
        "teacher": recording.teacher,
        "start": datetime.fromtimestamp(recording.started_at, UTC).isoformat(),
        "duration": recording.duration_s,
        "status": recording.status.value,
        "url": f"/recordings/{recording.id}.webm",
        "screen_url": f"/recordings/{recording.id}-screen.webm" if recording.screen_file else None,
        "replay": f"/replay/{recording.id}",
    }


async def _media_backends(settings: Settings, runtime: Path) -> list[MediaBackend]:
    """The SFU in this process, or one worker process per ``media_workers``."""
    if settings.media_workers <= 0:
        return [Sfu(video_codec=settings.video_codec, keyframe_interval_s=settings.keyframe_request_interval_s)]
    return list(await asyncio.gather(*(_spawn_worker(settings, runtime, i) for i in range(settings.media_workers))))


async def _spawn_worker(settings: Settings, runtime: Path, index: int) -> WorkerClient:
    return await WorkerClient.spawn(
        f"w{index}",
        runtime / f"media-{index}.sock",
        video_codec=settings.video_codec,
        keyframe_interval_s=settings.keyframe_request_interval_s,
        ice_addresses=settings.ice_addresses,
    )


def _replace_dead_workers(pool: MediaPool, rooms: Rooms, settings: Settings, runtime: Path) -> None:
    """A media worker that dies is replaced; its rooms start again on the others at once (their
    members are told to reconnect, as after a node failure)."""

    def watch(index: int, worker: WorkerClient) -> None:
        async def lost() -> None:
            pool.lose(index)
            await asyncio.get_running_loop().run_in_executor(None, worker.process.wait)  # reap it
            moved = await rooms.evict_backend(index)
            log.error("media worker %s died: %d rooms start again on the other workers", worker.name, moved)
            replacement = await _spawn_worker(settings, runtime, index)
            pool.replace(index, replacement)
            watch(index, replacement)

        worker.on_lost = lambda: asyncio.ensure_future(lost())

    for index, backend in enumerate(pool.backends):
        if isinstance(backend, WorkerClient):
            watch(index, backend)


class _StatsCache:
    """Forwarding counters for /metrics: live for media in this process, refreshed each second
    from worker processes (a scrape never waits on a worker)."""

    def __init__(self, pool: MediaPool) -> None:
        self._pool = pool
        self._workers: dict[str, int] = {}

    def snapshot(self) -> dict[str, int]:
        total = Counter(self._workers)
        for backend in self._pool.backends:
            if isinstance(backend, Sfu):
                total.update(dataclasses.asdict(backend.stats))
        return dict(total)

    async def refresh_forever(self) -> None:
        while True:
            workers = [b for b in self._pool.backends if isinstance(b, WorkerClient)]  # replaced ones too
            if not workers:
                return
            try:
                totals: Counter[str] = Counter()
                for stats in await asyncio.gather(*(w.forwarding_stats() for w in workers)):
                    totals.update(stats)
                self._workers = dict(totals)
            except RuntimeError as exc:
                log.warning("could not read a media worker's counters: %s", exc)
            await asyncio.sleep(1.0)
