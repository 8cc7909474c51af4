"""The media layer's boundary: what the room layer may ask of a place that holds media.

A ``MediaBackend`` is the SFU in this process (``Sfu``) or in a media worker process
(``WorkerClient``); both speak in peer ids, so the room layer never holds an aiortc object.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NewType, Protocol

from ..rpc import Errors

PeerId = NewType("PeerId", str)
Kind = Literal["audio", "video"]
SourceRole = Literal["teacher", "stage"]  # the teacher's broadcast, or the student on stage
OnFailed = Callable[[], None] | None
OnQuality = Callable[[str, str], None] | None  # a subscriber's camera layer changed: (layer, reason)

PLAYLIST = "index.m3u8"  # an HLS stream's playlist, in its own folder with its segments
AUDIO_PLAYLIST = "audio.m3u8"  # the same stream's sound alone, beside it (low-data mode)


class SdpError(ValueError):
    """The remote description (or an ICE candidate) could not be used."""


# A publication's tracks by name: the microphone, the camera, the camera's low layer (sent a second
# time, smaller and cheaper, for weak links) and the shared screen. A publish may name its m-lines
# (`tracks`); unnamed, they are the audio, then the camera, then the screen.
TRACK_NAMES = ("audio", "video", "video_low", "screen")


@dataclass(frozen=True, slots=True)
class Slot:
    """One of a subscriber's tracks: which track of which source it carries."""

    name: str
    kind: Kind
    role: SourceRole
    track: str  # the source's track (the teacher's camera slot may carry its low layer instead)


# A subscriber's tracks, in m-line order (the `offer` message names them in `slots`).
SLOTS = (
    Slot("audio", "audio", "teacher", "audio"),
    Slot("video", "video", "teacher", "video"),
    Slot("screen", "video", "teacher", "screen"),
    Slot("stage_audio", "audio", "stage", "audio"),
    Slot("stage_video", "video", "stage", "video"),
)


class MediaBackend(Protocol):
    async def publish(
        self, offer_sdp: str, on_failed: OnFailed = None, names: list[str] | None = None
    ) -> tuple[PeerId, str]:
        """Answer a publisher's offer (its m-lines named by ``names``, or by order); returns the
        publication's id and the answer SDP."""

    async def subscribe(self, on_failed: OnFailed = None, on_quality: OnQuality = None) -> tuple[PeerId, str]:
        """A subscriber connection (a track per slot); returns its id and offer SDP. ``on_quality``
        hears the camera layer this subscriber's link gets, and why."""

    async def accept_answer(self, subscription: PeerId, sdp: str) -> None: ...

    async def add_ice_candidate(
        self, peer: PeerId, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None: ...

    async def attach(self, subscription: PeerId, publication: PeerId | None, role: SourceRole = "teacher") -> None:
        """Feed ``subscription``'s ``role`` slots (teacher or stage) from ``publication`` (None: from
        nobody), from its next keyframe."""

    async def set_muted(self, publication: PeerId, kind: str, muted: bool) -> None:
        """Stop or resume forwarding a publication's tracks of ``kind``."""

    async def save_data(self, subscription: PeerId, on: bool) -> None:
        """The data saver: sound and a still picture every few seconds only (or back to moving ones)."""

    async def close(self, peer: PeerId) -> None: ...

    async def open_relay_ingress(self, host: str = "127.0.0.1", standing: bool = False) -> tuple[PeerId, int, str]:
        """A publication fed by another backend or node over UDP on ``host``; returns its id, port
        and key (only an egress given the key can feed it). A standing one has its tracks before
        anything arrives and outlives the egresses feeding it."""

    async def open_relay_egress(self, publication: PeerId, port: int, key: str, host: str = "127.0.0.1") -> PeerId:
        """Send ``publication``'s packets to the relay ingress at ``host:port`` that ``key`` opens;
        returns the egress id."""

    async def start_recording(self, publication: PeerId, path: str) -> None:
        """Record ``publication`` to ``path`` (WebM) until it ends or ``stop_recording``."""

    async def stop_recording(self, publication: PeerId) -> dict[str, object]:
        """Finish the file; returns what was written (duration_s, video_frames, audio_frames, error)."""

    async def start_hls(self, publication: PeerId, playlist: str) -> None:
        """Write ``publication`` as a live HLS playlist at ``playlist`` (segments beside it)."""

    async def stop_hls(self, publication: PeerId) -> None: ...

    async def forwarding_stats(self) -> dict[str, int]: ...


# Every call a backend answers, read from the protocol: a media worker serves these, and its client
# in the main process forwards exactly these (``remote.py``).
MEDIA_CALLS: dict[str, inspect.Signature] = {
    name: inspect.signature(call) for name, call in vars(MediaBackend).items() if inspect.iscoroutinefunction(call)
}
# Arguments that are callbacks: they stay in the calling process, keyed by the peer the call makes.
CALLBACKS = ("on_failed", "on_quality")
# Errors that cross from a worker to the main process as themselves; anything else is RemoteFailure.
MEDIA_ERRORS = Errors(
    {
        "sdp": (SdpError, lambda code, message: SdpError(message)),
        "lookup": (LookupError, lambda code, message: LookupError(message)),
        "timeout": (TimeoutError, lambda code, message: TimeoutError(message)),
    }
)
