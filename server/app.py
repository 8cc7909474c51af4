"""The composition root: reads the settings, opens the state, starts the media backends, builds
rooms, cluster and sessions, and serves the pages, the API (``signaling/api.py``), lesson media
(``signaling/files.py``) and the signaling websocket."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import importlib.resources
import logging
import os
import shutil
import socket
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Receive, Scope, Send

from .cluster import Cluster
from .lessons.catalog import Catalog
from .lessons.demo import ensure_demo_lesson
from .lessons.ingest_queue import IngestQueue
from .lessons.library import Library, known_lessons
from .lessons.schedule import Schedule
from .media.ice import use_host_addresses
from .media.interfaces import MediaBackend
from .media.pool import MediaPool
from .media.remote import WorkerClient
from .media.sfu import Sfu
from .metrics import Gauges, make_registry
from .rooms import Rooms
from .rooms.stream import HlsPolicy
from .settings import Settings
from .signaling import api, city_api, files, library_api
from .signaling.access import Access, MediaSigner, credential
from .signaling.city import CityReporter
from .signaling.listener import SIGNALING_PATH, start_listener
from .signaling.qoe import QualityCollector, placement
from .signaling.session import Session, Sessions
from .state import StoreUnavailable, open_state
from .tokens import parse_duration

log = logging.getLogger(__name__)

# Every answer: no referrer leaves our pages (links carry tokens), only our own scripts run, no
# other site frames us, and types are not guessed.
SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self' ws: wss:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}


def _client_dir() -> Path:
    """The web client's folder. A wheel carries it as package data, server/web (pyproject.toml maps
    client_web/ there); a checkout, installed editable or not, has it as client_web/ beside server/
    (setuptools' editable finder does not serve a folder mapped into a package from elsewhere)."""
    packaged = Path(str(importlib.resources.files("server") / "web"))
    checkout = Path(__file__).resolve().parent.parent / "client_web"
    return checkout if not packaged.is_dir() and checkout.is_dir() else packaged


CLIENT_DIR = _client_dir()


class SkyClassroom(FastAPI):
    """The app; its signaling websocket is served straight from the ASGI call. A socket at
    ``/ws`` needs none of the HTTP middleware, routing and dependency solving that pages and API
    calls pass, and every layer of them would be set up for each join and kept, a frame each, for
    as long as the session lives (each message it receives resumes through all of them)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and _route_path(scope) == SIGNALING_PATH:
            await Session(WebSocket(scope, receive, send), self.state.sessions).run()
            return
        await super().__call__(scope, receive, send)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def create_app(settings: Settings | None = None) -> SkyClassroom:
    settings = settings or Settings()
    os.umask(0o077)  # recordings, timetables, the secret: readable by this user only

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
        schedule.known = await known_lessons(store)  # a timetable may name lessons other nodes keep
        schedule.load(settings.timetable)
        ingest = IngestQueue(
            settings.data_dir / "ingest",
            on_done=lambda lesson_id, result: library.ingested(lesson_id, result),
            max_duration_s=settings.max_lesson_s,
        )
        library = Library(catalog, settings.data_dir / "uploads", ingest)
        await ingest.start()  # a job a restart interrupted is done again
        hls = HlsPolicy(settings.hls_dir, settings.hls_above) if settings.hls else None
        recorder = catalog if settings.record else None
        rooms = Rooms(
            pool,
            store,
            node_id,
            recorder,
            schedule.title_now,
            hls,
            lambda: schedule.timetable,
            frozenset(settings.broadcast_rooms),
        )
        url = settings.public_url or f"http://{settings.host}:{settings.port}"
        cluster = Cluster(rooms, store, bus, settings.relay_address, url)
        signer = MediaSigner(settings.media_secret, parse_duration(settings.media_url_ttl))
        access = Access(settings.signing_secret, settings.lifetimes, store, schedule.school_of)
        app.state.services = api.Services(settings, cluster, catalog, schedule, access, signer, library)
        stats = _StatsCache(pool)
        gauges = _gauges(settings, rooms, cluster, pool, store)
        gauges["sessions"] = ("Open signaling sessions", lambda: len(sessions.joined) + len(sessions.unjoined))
        gauges["unjoined_sessions"] = ("Sockets open but not joined yet", lambda: len(sessions.unjoined))
        metrics_registry, signaling_metrics = make_registry(
            stats.snapshot, gauges, lambda: pool.load, lambda: dict(Counter(s.role.value for s in sessions.joined))
        )
        sessions = Sessions(settings, cluster, schedule, signaling_metrics, signer, access)
        cluster.on_revoked = sessions.revoke
        metrics_registry.register(QualityCollector(cluster.quality, placement(lambda: schedule.timetable)))
        city = CityReporter(cluster, store, lambda: [(s.room.name, s.role) for s in sessions.joined if s.room])
        app.state.sessions, app.state.registry = sessions, metrics_registry
        await cluster.start()
        _replace_dead_workers(pool, rooms, settings, Path(runtime.name))
        refresher = asyncio.get_running_loop().create_task(stats.refresh_forever())
        city.start()
        listener = None
        if settings.signaling_port:
            listener = await start_listener(sessions, settings.host, settings.signaling_port, settings.max_frame_bytes)
        log.info("signing tokens with the %s", settings.describe_secret())
        log.info("state: %s", "Redis at " + settings.redis_url if settings.redis_url else "embedded (in memory)")
        log.info("node %s, serving on %s", node_id, url)
        _settle_garbage_collector()
        try:
            yield
        finally:
            refresher.cancel()
            await city.close()
            await ingest.close()
            await rooms.close()  # members reconnect: to another node, where there is one
            if listener is not None:
                listener.close()
            await cluster.close()
            await bus.close()
            await store.close()
            for backend in pool.backends:
                if isinstance(backend, WorkerClient):
                    await backend.stop()
            runtime.cleanup()

    docs = settings.api_docs
    app = SkyClassroom(
        title="Sky Classroom",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"Shared state is unreachable for a moment: {exc}"}, 503, {"Retry-After": "2"})

    settings.signing_secret  # noqa: B018 (refuse a short secret, or make the development one, before serving)

    def page(name: str) -> FileResponse:
        return FileResponse(CLIENT_DIR / name, headers={"Cache-Control": "no-cache"})

    pages = {
        "/": "index.html",
        "/teach": "teach.html",
        "/learn": "learn.html",
        "/replay": "replay.html",
        "/library": "library.html",
        "/review": "review.html",
        "/city": "city.html",
    }
    for path, name in pages.items():
        app.add_api_route(path, functools.partial(page, name), include_in_schema=False)  # no parameters
    app.add_api_route("/replay/{recording_id}", lambda recording_id: page("replay.html"), include_in_schema=False)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if settings.metrics_token and credential(request) != settings.metrics_token:
            raise HTTPException(401, "Expected the metrics token: Authorization: Bearer <SKYCLASS_METRICS_TOKEN>")
        return Response(generate_latest(app.state.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(api.router)
    app.include_router(library_api.router)
    app.include_router(city_api.router)
    app.include_router(library_api.upload_router(settings))
    app.include_router(files.router)

    app.mount("/static", StaticFiles(directory=CLIENT_DIR), name="static")
    return app


# Python's cyclic collector runs a pass every 700 new container objects, and a full one over every
# object of the process: a join storm allocates a few hundred per join, and at 3,000 sessions the
# full passes alone took 1.6 CPU-s of a 60 s storm, each stalling the loop a quarter of a second.
GC_THRESHOLDS = (50_000, 20, 10)


def _settle_garbage_collector() -> None:
    """Once serving starts: what start-up made (modules, models, the services) is moved out of the
    collector's sight (``gc.freeze``), and passes run less often; cycles are still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _gauges(settings: Settings, rooms: Rooms, cluster: Cluster, pool: MediaPool, store: object) -> Gauges:
    gauges: Gauges = {
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
        "live_lessons_teacher_away": (
            "Lessons held here whose teacher's connection dropped and no teacher has come back",
            lambda: sum(room.journal.teacher_away for room in rooms),
        ),
        "data_disk_free_bytes": ("Free space on the data directory's disk", lambda: _disk(settings.data_dir)[0]),
        "data_disk_free_ratio": ("Free share of the data directory's disk", lambda: _disk(settings.data_dir)[1]),
        "store_up": ("1 while the shared state answers (always, embedded)", lambda: 1),
    }
    if settings.redis_url:
        from .state.resilient import ResilientStore  # only with Redis: the embedded store loads no redis

        health = store
        if isinstance(health, ResilientStore):
            gauges["redis_up"] = ("1 while Redis answers", lambda: int(health.up))
            gauges["store_up"] = ("1 while the shared state answers (0: Redis is away)", lambda: int(health.up))
            gauges["redis_queued_writes"] = ("Writes waiting for Redis to come back", lambda: health.queued)
            gauges["redis_failures"] = ("Redis calls that failed", lambda: health.failures)
            health.on_recovered = lambda: asyncio.ensure_future(cluster.resync())
    return gauges


def _disk(path: Path) -> tuple[int, float]:
    """Free bytes and free share of the disk ``path`` is on (its nearest existing folder)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    return usage.free, usage.free / usage.total if usage.total else 0.0


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
