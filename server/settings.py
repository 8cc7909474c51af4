"""Every setting in one place, read from the environment (prefix ``SKYCLASS_``) or a ``.env`` file."""

from __future__ import annotations

import logging
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKYCLASS_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    redis_url: str | None = Field(default=None, description="Redis URL; embedded state when unset")
    secret: str | None = Field(default=None, min_length=32, description="Token signing secret")
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
    join_timeout_s: float = 10.0
    max_sessions: int = 15_000
    # Per-socket message budget: a token bucket refilled at `rate_per_s`, holding `burst`.
    message_rate_per_s: float = 50.0
    message_burst: int = 100
    keyframe_request_interval_s: float = 0.5
    # Media in worker processes (one per core is the production shape); 0 keeps it in this process.
    media_workers: int = 0
    # A room with more subscribers than this on its worker spills new ones to another worker.
    max_subscribers_per_worker: int = 150
    # Viewers beyond this many members in a room watch over HLS instead of WebRTC (a viewer may
    # also ask for HLS when joining); unset: only those who ask. `hls = false` turns the tier off.
    hls: bool = True
    hls_above: int | None = 1000
    # Every broadcast is recorded (WebM) into data_dir/recordings unless this is off.
    record: bool = True
    # The timetable file (YAML or JSON, docs/timetable.md); unset: the last one edited through the
    # API, else a demo timetable.
    timetable: Path | None = None

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def hls_dir(self) -> Path:
        return self.data_dir / "hls"

    @cached_property
    def signing_secret(self) -> str:
        """The configured secret, or a development secret generated once and kept on disk."""
        if self.secret:
            return self.secret
        path = self.data_dir / "secret"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        path.touch(mode=0o600)
        path.write_text(value)
        return value

    def describe_secret(self) -> str:
        if self.secret:
            return "SKYCLASS_SECRET"
        return f"development secret in {self.data_dir / 'secret'} (set SKYCLASS_SECRET in production)"
