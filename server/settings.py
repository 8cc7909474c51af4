"""Every setting in one place, read from the environment (prefix ``SKYCLASS_``) or a ``.env`` file."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .tokens import Lifetimes, check_secret, parse_duration

log = logging.getLogger(__name__)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKYCLASS_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    # A listener of its own for the signaling websocket (picows: about half the CPU a join and less
    # memory an idle session than /ws on the app's port, which stays). 0: none. Behind nginx, route
    # /ws to it (ops/nginx/skyclass.conf).
    signaling_port: int = 0
    redis_url: str | None = Field(default=None, description="Redis URL; embedded state when unset")
    secret: str | None = Field(default=None, description="Token signing secret (at least 32 bytes)")
    data_dir: Path = Path.home() / ".skyclass"
    # Host addresses offered as ICE candidates. Empty: every interface plus 127.0.0.1.
    ice_addresses: list[str] = []
    # Where other nodes send this node the broadcasts of rooms they hold, for its own viewers (the
    # cascade): an address the other nodes reach. 127.0.0.1 is right only when all run on one machine.
    relay_address: str = "127.0.0.1"
    # How clients reach this node directly (``/api/edge`` sends new viewers to the least-loaded
    # node); default http://host:port.
    public_url: str | None = None
    video_codec: Literal["VP8", "H264"] = "VP8"
    max_message_bytes: int = 64 * 1024
    join_timeout_s: float = 10.0  # from connecting, whatever the socket sends before its join
    max_sessions: int = 15_000  # joined sessions
    # Sockets not joined yet have a budget of their own, so strangers cannot take the seats: in all,
    # and per client address (a school's pupils may share one); join attempts per address too.
    max_unjoined: int = 2_000
    max_unjoined_per_address: int = 100
    join_rate_per_address: float = 20.0
    join_burst_per_address: int = 200
    # Addresses of the proxies in front (nginx): their X-Forwarded-For names the client.
    trusted_proxies: list[str] = []
    # Pages of these origins only may open /ws (e.g. ["https://class.example.edu.cn"]); empty: any.
    allowed_origins: list[str] = []
    # Per-participant message budget: a token bucket refilled at `rate_per_s`, holding `burst`.
    message_rate_per_s: float = 50.0
    message_burst: int = 100
    # The longest a token may live: join tokens (pupils, teachers, inspectors, reviewers), admins'.
    max_token_ttl: str = "12h"
    max_admin_token_ttl: str = "2h"
    # Signed media URLs (recordings, HLS) handed to members live this long (rounded up, so a
    # class shares one URL and a cache one copy).
    media_url_ttl: str = "4h"
    # /metrics needs `Authorization: Bearer <metrics_token>` when set; /docs and /openapi.json are
    # served only when api_docs is on.
    metrics_token: str | None = None
    api_docs: bool = True
    # TURN (coturn, `use-auth-secret`): where pupils behind firewalls relay their media, e.g.
    # ["turn:turn.example.cn:3478?transport=udp", "turn:turn.example.cn:3478?transport=tcp",
    #  "turns:turn.example.cn:443?transport=tcp"], and coturn's `static-auth-secret`; unset: no TURN.
    turn_urls: list[str] = []
    turn_secret: str | None = None
    turn_ttl: str = "6h"  # each participant's TURN credentials, from their join
    # nginx serves lesson files: the prefix of its internal location for data_dir/recordings (README).
    accel_redirect: str | None = None
    # The lesson library: the largest upload (bytes) and lesson (seconds) accepted.
    max_upload_bytes: int = 4 * 1024**3
    max_lesson_s: float = 3 * 3600.0
    keyframe_request_interval_s: float = 0.5
    # Media in worker processes (one per core is the production shape); 0 keeps it in this process.
    media_workers: int = 0
    # A room with more subscribers than this on its worker spills new ones to another worker.
    max_subscribers_per_worker: int = 150
    # Viewers beyond this many members in a room watch over HLS instead of WebRTC (a viewer may
    # also ask for HLS when joining); unset: only those who ask. `hls = false` turns the tier off.
    hls: bool = True
    hls_above: int | None = 1000
    # Rooms held as broadcasts (大课堂) besides those the timetable names: their pupils join a part
    # on the node their session landed on, so one room can hold a city (docs/broadcasts.md).
    broadcast_rooms: list[str] = []
    # Every broadcast is recorded (WebM) into data_dir/recordings unless this is off.
    record: bool = True
    # The timetable file (YAML or JSON, docs/timetable.md); unset: the last one edited through the
    # API, else a demo timetable.
    timetable: Path | None = None

    @field_validator("hls_above", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        """``SKYCLASS_HLS_ABOVE=`` (empty) unsets it: HLS only for those who ask."""
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def max_frame_bytes(self) -> int:
        """What a websocket reads of one message (either port): larger ones are cut off there, and the
        session refuses, precisely, those over ``max_message_bytes``."""
        return 4 * self.max_message_bytes

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def hls_dir(self) -> Path:
        return self.data_dir / "hls"

    @cached_property
    def lifetimes(self) -> Lifetimes:
        return Lifetimes(parse_duration(self.max_token_ttl), parse_duration(self.max_admin_token_ttl))

    @cached_property
    def signing_secret(self) -> str:
        """The configured secret, or a development secret generated once and kept on disk (made
        atomically, readable by this user only); refused when shorter than 32 bytes."""
        if self.secret:
            return check_secret(self.secret)
        path = self.data_dir / "secret"
        if not path.exists():
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            temporary = path.with_name(f".secret.{os.getpid()}.{secrets.token_hex(4)}")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(32))
            try:
                os.link(temporary, path)  # never replaces a secret another process made first
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
        try:
            return check_secret(path.read_text().strip())
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}; delete it to have a new one made") from exc

    @cached_property
    def media_secret(self) -> str:
        """What signs media URLs (and what nginx's secure_link is given): derived from the signing
        secret, so one secret serves every node and a leaked nginx config cannot mint tokens."""
        return hmac.new(self.signing_secret.encode(), b"skyclass media urls", hashlib.sha256).hexdigest()

    def describe_secret(self) -> str:
        if self.secret:
            return "SKYCLASS_SECRET"
        return f"development secret in {self.data_dir / 'secret'} (set SKYCLASS_SECRET in production)"
