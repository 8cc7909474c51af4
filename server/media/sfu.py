"""The SFU's public face: publications (a publisher's peer connection) and subscriptions.

The caller (the room layer) says "publish this offer", "subscribe", "subscription X takes
publication Y"; this module wires aiortc peer connections to the forwarding path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import secrets
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar, cast

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription, sdp
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import candidate_from_sdp

from . import native
from .forwarder import DownTrack, ForwardingStats, UpTrack
from .hls import hls_writer
from .interfaces import SLOTS, TRACK_NAMES, Kind, OnFailed, OnQuality, PeerId, SdpError, Slot, SourceRole
from .layers import HIGH, LOW, START_QUIET_S, STILL, LayerChoice
from .recorder import Recorder, record_track, recording_format
from .relay import RELAY_SSRC, RelayEgress, RelayIngress
from .seam import (
    IdleTrack,
    bandwidth_estimator,
    count_decoded_frames,
    negotiated_codec,
    send_only,
    send_pli,
    tap_receiver,
    tap_sender,
)

log = logging.getLogger(__name__)

KINDS: tuple[Kind, Kind] = ("audio", "video")
UNNAMED = {"audio": ("audio",), "video": ("video", "screen")}  # unnamed m-lines of each kind, in order
CAMERA = SLOTS[1]  # the slot whose layer follows the student's link
STILL_KEYFRAME_S = 3.0  # a student on still pictures gets a new one this often
DATA_SAVER_KEYFRAME_S = 5.0  # ...and one who chose the data saver (a 45-minute lesson in ~15 MB)


T = TypeVar("T")
RELAY_READY_TIMEOUT_S = 3.0
REMUX_KEYFRAME_S = 2.0  # HLS segment length when the teacher's own H.264 is remuxed


class Source(Protocol):
    """What a subscription takes media from: a publication, or a relayed copy of one."""

    tracks: dict[str, UpTrack]


class Peer:
    """A peer connection with the bits both directions share: ICE candidates, state, closing."""

    def __init__(self, pc: RTCPeerConnection, on_failed: Callable[[], None] | None) -> None:
        self.pc = pc
        self.closed = False
        self._on_failed = on_failed
        pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        log.debug("peer connection %s", self.pc.connectionState)
        if self.pc.connectionState == "failed" and self._on_failed is not None and not self.closed:
            self._on_failed()

    async def add_ice_candidate(self, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        """A candidate trickled by the browser (``a=candidate:`` line or ``candidate:...``)."""
        if not candidate:
            return  # end of candidates: aioice needs no marker
        text = candidate.removeprefix("a=").removeprefix("candidate:")
        try:
            parsed = candidate_from_sdp(text)
        except (ValueError, IndexError, AssertionError) as exc:  # aiortc asserts on the field count
            raise SdpError(f"Expected an ICE candidate line, but got {candidate[:80]!r}") from exc
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index if sdp_mline_index is not None else 0
        await self.pc.addIceCandidate(parsed)

    async def close(self) -> None:
        self.closed = True
        await self.pc.close()


class Publication(Peer):
    """A publisher's peer connection and its tracks (``UpTrack``s) by name."""

    def __init__(self, pc: RTCPeerConnection, on_failed: Callable[[], None] | None) -> None:
        super().__init__(pc, on_failed)
        self.tracks: dict[str, UpTrack] = {}

    async def close(self) -> None:
        for track in self.tracks.values():
            track.close()
        await super().close()


class Subscription(Peer):
    """A subscriber's peer connection: a ``DownTrack`` per slot, fed by the teacher's publication
    and the on-stage student's."""

    def __init__(
        self, pc: RTCPeerConnection, stats: ForwardingStats, on_failed: OnFailed, on_quality: OnQuality
    ) -> None:
        super().__init__(pc, on_failed)
        self.downtracks: dict[Slot, DownTrack] = {slot: DownTrack(slot.kind, stats) for slot in SLOTS}
        self.sources: dict[SourceRole, Source | None] = {"teacher": None, "stage": None}
        self.layers = LayerChoice()
        self.data_saver = False  # sound and still pictures only, whatever the link carries
        self._on_quality = on_quality
        self._stills: asyncio.Task[None] | None = None
        self.downtracks[CAMERA].on_report = self._reported

    async def accept_answer(self, sdp: str) -> None:
        if self.pc.signalingState != "have-local-offer":
            raise SdpError("No offer is outstanding for this subscription")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except (ValueError, KeyError, IndexError) as exc:
            raise SdpError(f"The answer could not be used: {exc}") from exc

    def attach(self, source: Source | None, role: SourceRole = "teacher") -> None:
        """Take ``role``'s media from ``source`` (None: from nobody), from its next keyframe on."""
        self.detach(role)
        self.sources[role] = source
        self._link()

    def detach(self, role: SourceRole | None = None) -> None:
        for slot, down in self.downtracks.items():
            if role not in (None, slot.role):
                continue
            if down.source is not None:
                down.source.remove(down)
                down.detach()
            self.sources[slot.role] = None

    def _link(self) -> None:
        """Feed each negotiated slot from its source (a slot the subscriber refused stays idle)."""
        if self.closed:
            return
        for slot, down in self.downtracks.items():
            if not down.ready:
                continue
            source = self.sources[slot.role]
            up = self._track(slot, source) if source is not None else None
            if up is None or source is None:
                continue
            if slot is CAMERA:
                for other in source.tracks.values():  # a switch asked for earlier, now unwanted
                    if other is not up:
                        other.unadopt(down)
                if down.source is None:  # its first reports tell of the catch-up burst
                    self.layers.quiet_until = time.monotonic() + START_QUIET_S
            if down.source is not up:
                up.adopt(down)  # at once when idle, else at the new track's next keyframe
        for slot, down in self.downtracks.items():  # the data saver: every picture still, the screen too
            if slot.kind == "video":
                down.keyframes_only = self.data_saver or (slot is CAMERA and self.layers.layer == STILL)

    def _track(self, slot: Slot, source: Source) -> UpTrack | None:
        if slot is CAMERA and self.layers.layer != HIGH:
            return _low_layer(source) or source.tracks.get("video")
        return source.tracks.get(slot.track)

    def save_data(self, on: bool) -> None:
        """Sound and a still picture every few seconds (the smallest layer's keyframes), or back to
        the layer the link carries."""
        self.data_saver = on
        if on:
            self.layers.layer, self.layers.reason = STILL, "data saver"
        else:
            self.layers.layer, self.layers.reason = LOW, "data saver off"  # then up, if the link allows
        self._link()
        self._keep_stills_coming()

    def _reported(self) -> None:
        """The student's browser reported on the camera slot: perhaps another layer suits its link."""
        source, camera = self.sources["teacher"], self.downtracks[CAMERA]
        if source is None or "video" not in source.tracks or self.data_saver:
            return
        now = time.monotonic()
        for name, layer in (("video", HIGH), ("video_low", LOW)):
            if name in source.tracks:
                self.layers.count(layer, source.tracks[name].bytes_in, now)
        offered = (HIGH, LOW, STILL) if _low_layer(source) is not None else (HIGH, STILL)
        if self.layers.report(*camera.reported, camera.bitrate_estimate, offered, now):
            log.info("subscriber %s: %s (%s)", id(self), self.layers.layer, self.layers.reason)
            self._link()
            self._keep_stills_coming()
            if self._on_quality is not None:
                self._on_quality(self.layers.layer, self.layers.reason)

    def _keep_stills_coming(self) -> None:
        """On still pictures, ask for a keyframe every few seconds (requests are coalesced across students)."""
        if self.layers.layer == STILL and self._stills is None:
            self._stills = asyncio.ensure_future(self._ask_for_stills())
        elif self.layers.layer != STILL and self._stills is not None:
            self._stills.cancel()
            self._stills = None

    async def _ask_for_stills(self) -> None:
        while True:
            stills = [d for s, d in self.downtracks.items() if s.kind == "video" and d.keyframes_only]
            for down in stills:  # coalesced with every other student's requests
                if down.source is not None:
                    down.source.request_keyframe()
            await asyncio.sleep(DATA_SAVER_KEYFRAME_S if self.data_saver else STILL_KEYFRAME_S)

    async def close(self) -> None:
        if self._stills is not None:
            self._stills.cancel()
        self.detach()
        for down in self.downtracks.values():
            down.close()
        await super().close()


class Sfu:
    """The SFU in this process: a ``MediaBackend`` holding publications, subscriptions and relays."""

    def __init__(self, *, video_codec: str = "VP8", keyframe_interval_s: float = 0.5) -> None:
        self.stats = ForwardingStats()
        count_decoded_frames(self.stats)
        log.info(native.describe())
        self.keyframe_interval_s = keyframe_interval_s
        self._codecs: dict[Kind, list[RTCRtpCodecCapability]] = {
            "audio": _capabilities("audio", "audio/opus"),
            "video": _capabilities("video", f"video/{video_codec}"),
        }
        self._peers: dict[PeerId, Peer | RelayIngress | RelayEgress] = {}
        self._recorders: dict[PeerId, tuple[Recorder, Recorder | None]] = {}  # camera+mic, screen
        self._streams: dict[PeerId, tuple[Recorder, asyncio.Task[None]]] = {}  # written as live HLS

    def _count(self, kind: type) -> int:
        return sum(isinstance(p, kind) for p in self._peers.values())

    @property
    def publications(self) -> int:
        return self._count(Publication)

    @property
    def subscriptions(self) -> int:
        return self._count(Subscription)

    def _add(self, peer: Peer | RelayIngress | RelayEgress) -> PeerId:
        peer_id = PeerId(secrets.token_hex(8))
        self._peers[peer_id] = peer
        return peer_id

    def _get(self, peer_id: PeerId, kind: type[T]) -> T:
        peer = self._peers.get(peer_id)
        if not isinstance(peer, kind):
            raise LookupError(f"No {kind.__name__.lower()} {peer_id!r} here")
        return peer

    def _peer_connection(self) -> RTCPeerConnection:
        # One transport for every track: a subscription carries several of each kind.
        return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))

    async def publish(
        self, offer_sdp: str, on_failed: OnFailed = None, names: list[str] | None = None
    ) -> tuple[PeerId, str]:
        """Answer a publisher's offer; its tracks become ``UpTrack``s, named by ``names`` (one per
        m-line, from ``TRACK_NAMES``) or by their order."""
        pc = self._peer_connection()
        publication = Publication(pc, on_failed)
        try:
            media: list[str] = [m.kind for m in sdp.SessionDescription.parse(offer_sdp).media if m.kind in KINDS]
            track_names = _track_names(media, names)
            # One transceiver per offered m-line, made before negotiation so our codec choice holds.
            for kind in media:
                pc.addTransceiver(kind, direction="recvonly").setCodecPreferences(self._codecs[cast(Kind, kind)])
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            estimator = None  # one for every video track (see ``tap_receiver``)
            for transceiver, name in zip(pc.getTransceivers(), track_names, strict=True):
                receiver = transceiver.receiver
                codec = negotiated_codec(transceiver)
                if receiver.track is None or codec is None or name is None:
                    continue
                if transceiver.kind == "video":
                    estimator = estimator or bandwidth_estimator(receiver)
                up = UpTrack(
                    transceiver.kind,
                    codec.mimeType,
                    codec.clockRate,
                    self.stats,
                    partial(send_pli, receiver),
                    self.keyframe_interval_s,
                )
                tap_receiver(receiver, up, estimator if transceiver.kind == "video" else None)
                publication.tracks[name] = up
            if not publication.tracks:
                raise SdpError("The offer sends no audio or video we can receive (Opus, VP8/H.264)")
            await pc.setLocalDescription(await pc.createAnswer())
        except SdpError:
            await pc.close()
            raise
        except Exception as exc:  # aiortc raises ValueError, OperationError, KeyError... on bad SDP
            await pc.close()
            raise SdpError(f"The offer could not be used: {exc}") from exc
        return self._add(publication), with_opus_fec(pc.localDescription.sdp)

    async def subscribe(self, on_failed: OnFailed = None, on_quality: OnQuality = None) -> tuple[PeerId, str]:
        """A subscriber's connection, a track per slot; returns its offer. ``on_quality(layer,
        reason)`` hears when the camera's layer changes for this subscriber's link."""
        pc = self._peer_connection()
        subscription = Subscription(pc, self.stats, on_failed, on_quality)
        for slot in SLOTS:
            transceiver = pc.addTransceiver(IdleTrack(slot.kind), direction="sendonly")
            transceiver.setCodecPreferences(self._codecs[slot.kind])
            tap_sender(transceiver.sender, subscription.downtracks[slot], subscription._link)
            send_only(transceiver.receiver)
        await pc.setLocalDescription(await pc.createOffer())
        return self._add(subscription), pc.localDescription.sdp

    async def accept_answer(self, subscription: PeerId, sdp: str) -> None:
        await self._get(subscription, Subscription).accept_answer(sdp)

    async def add_ice_candidate(
        self, peer: PeerId, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        await self._get(peer, Peer).add_ice_candidate(candidate, sdp_mid, sdp_mline_index)

    async def attach(self, subscription: PeerId, publication: PeerId | None, role: str = "teacher") -> None:
        if role not in ("teacher", "stage"):
            raise LookupError(f"No role {role!r}; expected teacher or stage")
        role = cast(SourceRole, role)
        target = self._get(subscription, Subscription)
        if publication is None:
            target.attach(None, role)
            return
        found = self._peers.get(publication)
        if isinstance(found, RelayIngress):
            await asyncio.wait_for(found.ready.wait(), RELAY_READY_TIMEOUT_S)
            target.attach(found, role)
        elif isinstance(found, Publication):
            target.attach(found, role)
        else:
            raise LookupError(f"No publication {publication!r} here")

    async def save_data(self, subscription: PeerId, on: bool) -> None:
        self._get(subscription, Subscription).save_data(on)

    async def set_muted(self, publication: PeerId, kind: str, muted: bool) -> None:
        """Stop (or resume) forwarding a publication's tracks of ``kind``: a teacher mutes a student."""
        for up in self._get(publication, Publication).tracks.values():
            if up.kind == kind:
                up.muted = muted

    async def open_relay_ingress(self, host: str = "127.0.0.1", standing: bool = False) -> tuple[PeerId, int, str]:
        """A relayed copy of a publication, listening on ``host``. A standing one has its tracks
        (this server's codecs) from the start: subscribers attach before any egress feeds it."""
        ingress, port = await RelayIngress.open(self.stats, self.keyframe_interval_s, host)
        if standing:
            tracks = []
            for name, ssrc in RELAY_SSRC.items():
                kind: Kind = "audio" if name == "audio" else "video"
                codec = self._codecs[kind][0]
                tracks.append(
                    {"name": name, "kind": kind, "mime": codec.mimeType, "clock": codec.clockRate, "ssrc": ssrc}
                )
            ingress.expect(tracks)
        return self._add(ingress), port, ingress.key

    def _source(self, publication: PeerId) -> Publication | RelayIngress:
        """A publication, or a relay's copy of one: what can be relayed on or streamed."""
        source = self._peers.get(publication)
        if not isinstance(source, Publication | RelayIngress):
            raise LookupError(f"No publication {publication!r} here")
        return source

    async def open_relay_egress(self, publication: PeerId, port: int, key: str, host: str = "127.0.0.1") -> PeerId:
        return self._add(await RelayEgress.open(self._source(publication), host, port, key, self.stats))

    async def start_recording(self, publication: PeerId, path: str) -> None:
        """Record to ``path`` with the extension the video codec needs (``.webm`` for VP8, ``.mp4``
        for H.264); ``stop_recording`` says which file it was."""
        source = self._get(publication, Publication)
        await self.stop_recording(publication)
        camera = source.tracks.get("video")
        lesson = self._recorder(Path(path), camera)
        for up in (source.tracks.get("audio"), camera):  # the camera and microphone
            _record(lesson, up)
        screen_track, screen = source.tracks.get("screen"), None
        if screen_track is not None:  # a shared screen: its own file beside the lesson's
            screen = self._recorder(screen_path(Path(path)), screen_track)
            _record(screen, screen_track)
        self._recorders[publication] = (lesson, screen)

    def _recorder(self, path: Path, video: UpTrack | None) -> Recorder:
        """A recorder writing ``video``'s codec into the container that takes it (WebM without video)."""
        mime_type = video.mime_type if video is not None else "video/vp8"
        found = recording_format(mime_type)
        if found is None:
            log.warning("video in %s is not recorded: %s goes into none of our containers", path.name, mime_type)
            found = recording_format("video/vp8")
            assert found is not None
        suffix, writer = found
        return Recorder(path.with_suffix(suffix), self._recording_failed, writer)

    def _recording_failed(self) -> None:
        self.stats.recording_failures += 1  # from the recorder's thread: one integer, under the GIL

    async def stop_recording(self, publication: PeerId) -> dict[str, object]:
        recorders = self._recorders.pop(publication, None)
        if recorders is None:
            return {}
        lesson, screen = recorders
        self._untap(publication, lesson, screen)
        loop = asyncio.get_running_loop()
        info = await loop.run_in_executor(None, lesson.stop)
        result: dict[str, object] = {
            "file": info.path.name,  # its extension follows the codec
            "duration_s": info.duration_s,
            "video_frames": info.video_frames,
            "audio_frames": info.audio_frames,
            "dropped_packets": info.dropped_packets,
            "error": info.error,
        }
        if screen is not None:
            screen_info = await loop.run_in_executor(None, screen.stop)
            if screen_info.video_frames:
                result["screen_file"] = screen_info.path.name
        return result

    async def start_hls(self, publication: PeerId, playlist: str) -> None:
        """Write ``publication`` (camera and microphone; or a relay's feed of them: a broadcast's
        pupils on another node) as a live HLS playlist at ``playlist``."""
        source = self._source(publication)
        video, audio = source.tracks.get("video"), source.tracks.get("audio")
        if video is None:
            raise LookupError("The broadcast has no video to stream")
        await self.stop_hls(publication)
        stream = Recorder(Path(playlist), self._recording_failed, hls_writer(video.mime_type, audio is not None))
        for up in (video, audio):
            if up is not None:
                up.taps.append(stream.tap(up.kind))
        remuxed = video.mime_type.lower() == "video/h264"
        keyframes = asyncio.create_task(_ask_keyframes(video, REMUX_KEYFRAME_S if remuxed else None))
        self._streams[publication] = (stream, keyframes)

    async def stop_hls(self, publication: PeerId) -> None:
        found = self._streams.pop(publication, None)
        if found is not None:
            stream, keyframes = found
            keyframes.cancel()
            self._untap(publication, stream)
            await asyncio.get_running_loop().run_in_executor(None, stream.stop)

    def _untap(self, publication: PeerId, *recorders: Recorder | None) -> None:
        source = self._peers.get(publication)
        if isinstance(source, Publication):
            taps = {id(tap) for recorder in recorders if recorder is not None for tap in recorder.taps}
            for up in source.tracks.values():
                up.taps = [tap for tap in up.taps if id(tap) not in taps]

    async def close(self, peer: PeerId) -> None:
        await self.stop_hls(peer)
        await self.stop_recording(peer)
        found = self._peers.pop(peer, None)
        if isinstance(found, Publication):  # what each track brought in (the camera's layers among them)
            log.info(
                "publication %s closed: %s", peer, ", ".join(f"{n} {t.bytes_in} B" for n, t in found.tracks.items())
            )
        if isinstance(found, RelayEgress):
            found.close()
        elif found is not None:
            await found.close()

    async def forwarding_stats(self) -> dict[str, int]:
        counters: dict[str, int] = dataclasses.asdict(self.stats)
        return counters

    async def shutdown(self) -> None:
        for peer in list(self._peers):
            await self.close(peer)


def _low_layer(source: Source) -> UpTrack | None:
    """The camera's low layer, if the publisher sends one (a relay's feed has the track either way)."""
    low = source.tracks.get("video_low")
    return low if low is not None and low.bytes_in > 0 else None


async def _ask_keyframes(up: UpTrack, every: float | None) -> None:
    """An HLS stream starts at a keyframe. A remuxed one (no encoder of ours to place them) can cut
    segments only at the teacher's keyframes, so it asks for one every ``every`` seconds."""
    up.request_keyframe()
    while every is not None:
        await asyncio.sleep(every)
        up.request_keyframe()


def _track_names(kinds: list[str], names: list[str] | None) -> list[str | None]:
    """The name of each offered m-line (None: one we do not take, like a third unnamed video)."""
    if names is None:
        counts: dict[str, int] = {}
        unnamed: list[str | None] = []
        for kind in kinds:
            index = counts[kind] = counts.get(kind, -1) + 1
            choices = UNNAMED[kind]
            unnamed.append(choices[index] if index < len(choices) else None)
        return unnamed
    if len(names) != len(kinds):
        raise SdpError(f"Expected {len(kinds)} track names (one per m-line), but got {len(names)}")
    for index, (kind, name) in enumerate(zip(kinds, names, strict=True)):
        if name not in TRACK_NAMES or (name == "audio") != (kind == "audio"):
            raise SdpError(f"Track name {name!r} does not fit m-line {index} ({kind}); expected one of {TRACK_NAMES}")
    if len(set(names)) != len(names):
        raise SdpError(f"Each track name may appear once, but got {names}")
    return list(names)


def screen_path(lesson: Path) -> Path:
    """Where the shared screen of a lesson recorded at ``lesson`` is written."""
    return lesson.with_name(f"{lesson.stem}-screen{lesson.suffix}")


def _record(recorder: Recorder, up: UpTrack | None) -> None:
    tap = record_track(recorder, up.kind, up.mime_type) if up is not None else None
    if up is not None and tap is not None:
        up.taps.append(tap)


def _capabilities(kind: str, mime_type: str) -> list[RTCRtpCodecCapability]:
    """The codec and its retransmission format, in aiortc's terms."""
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in codecs if c.mimeType.lower() == mime_type.lower()]
    if not chosen:
        raise ValueError(f"Expected a codec aiortc supports, but got {mime_type}")
    return chosen[:1] + [c for c in codecs if c.mimeType.lower() == f"{kind}/rtx"]


OPUS_BITRATE = 24_000  # bit/s the teacher's browser sends its voice at
OPUS_PTIME = 40  # ms of sound per packet
OPUS_RTPMAP = re.compile(r"^a=rtpmap:(\d+) opus/48000/2\r?$", re.MULTILINE | re.IGNORECASE)


def with_opus_fec(answer: str) -> str:
    """The answer asking for Opus in-band forward error correction: the publisher's browser encodes
    each packet's sound again, coarsely, in the next one, so a student's decoder fills a lost packet
    from its successor. A teacher's voice needs no more than ``OPUS_BITRATE`` (speech is clear at
    half of it), and ``OPUS_PTIME`` packets halve the headers of 20 ms ones (at 20 ms the RTP, SRTP,
    UDP and IP headers cost as much as the sound): a data saver's 45 minutes fit in ~15 MB.
    (aiortc's answer carries no Opus parameters.)"""
    for payload_type in OPUS_RTPMAP.findall(answer):
        answer = re.sub(rf"^a=fmtp:{payload_type} .*\r?\n", "", answer, flags=re.MULTILINE)
        rtpmap = re.compile(rf"^(a=rtpmap:{payload_type} opus/48000/2\r?\n)", re.MULTILINE | re.IGNORECASE)
        fmtp = f"minptime=10;useinbandfec=1;maxaveragebitrate={OPUS_BITRATE}"
        answer = rtpmap.sub(rf"\1a=fmtp:{payload_type} {fmtp}\r\na=ptime:{OPUS_PTIME}\r\n", answer)
    return answer
