"""The one process: web client, signaling websocket, SFU, metrics."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .media.ice import use_host_addresses
from .media.sfu import Sfu
from .metrics import make_registry
from .rooms import Rooms
from .settings import Settings
from .signaling.session import Session
from .state import open_store
from .tokens import Role

log = logging.getLogger(__name__)

CLIENT_DIR = Path(__file__).resolve().parent.parent / "client_web"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    sessions: set[Session] = set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        use_host_addresses(settings.ice_addresses)
        store = await open_store(settings.redis_url)
        sfu = Sfu(video_codec=settings.video_codec, keyframe_interval_s=settings.keyframe_request_interval_s)
        rooms = Rooms(sfu, store, node=f"{socket.gethostname()}:{settings.port}")
        app.state.rooms = rooms
        app.state.registry = make_registry(
            sfu.stats,
            {
                "sessions": ("Open signaling sessions", lambda: len(sessions)),
                "rooms": ("Rooms held on this node", lambda: len(rooms)),
                "publications": ("Publishing peer connections", lambda: len(sfu.publications)),
                "subscriptions": ("Subscribing peer connections", lambda: len(sfu.subscriptions)),
            },
        )
        log.info("signing tokens with the %s", settings.describe_secret())
        log.info("state: %s", "Redis at " + settings.redis_url if settings.redis_url else "embedded (in memory)")
        try:
            yield
        finally:
            await rooms.close()
            await store.close()

    app = FastAPI(title="Sky Classroom", lifespan=lifespan)
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

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await Session(websocket, app.state.rooms, settings, sessions).run()

    app.mount("/static", StaticFiles(directory=CLIENT_DIR), name="static")
    return app
