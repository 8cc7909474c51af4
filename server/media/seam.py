"""Every use of aiortc's private names, in one place. aiortc is pinned (pyproject.toml) for this.

aiortc decodes every received track and encodes every sent one. An SFU must do neither, so:
- a publisher's ``RTCRtpReceiver`` gets its RTP handler replaced: statistics, REMB, NACK upstream
  and RTX unwrapping stay as aiortc does them, then the packet goes to our ``UpTrack`` instead of
  the jitter buffer and decoder (whose thread idles until the connection closes);
- a subscriber's ``RTCRtpSender`` is given a track that never yields (so it never encodes), its
  negotiated parameters are handed to our ``DownTrack``, RTCP from the subscriber goes to the
  ``DownTrack``, and its sender reports are ours (they carry the publisher's clock, for lip sync);
- the native fan-out step sends with aiortc's SRTP context (pylibsrtp's ``srtp_t`` and its
  ``srtp_protect``, as addresses) on the socket of the ICE pair aioice nominated.
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Callable
from typing import Any

from aiortc import MediaStreamTrack, RTCDtlsTransport, RTCRtpReceiver, RTCRtpSender
from aiortc import rtcrtpreceiver as aiortc_receiver
from aiortc.codecs import is_rtx
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
    unwrap_rtx,
)
from pylibsrtp import _binding as libsrtp

from . import native
from .forwarder import DownTrack, ForwardingStats, SenderReport, UpTrack


class IdleTrack(MediaStreamTrack):
    """A track whose ``recv()`` never returns: the sender's own RTP loop waits on it forever."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._never: asyncio.Future[None] = asyncio.get_event_loop().create_future()

    async def recv(self) -> Any:
        await self._never

    def stop(self) -> None:
        super().stop()
        if not self._never.done():
            self._never.cancel()


def bandwidth_estimator(receiver: RTCRtpReceiver) -> Any | None:
    """The receiver's REMB estimator (video receivers have one)."""
    return getattr(receiver, "_RTCRtpReceiver__remote_bitrate_estimator")  # noqa: B009 (name-mangled)


def tap_receiver(receiver: RTCRtpReceiver, uptrack: UpTrack, estimator: Any | None = None) -> None:
    """Route the receiver's RTP to ``uptrack`` before its jitter buffer and decoder.

    ``estimator``: the publisher's one REMB estimator for all its video receivers. A REMB is the
    sender's whole budget, so one estimator per receiver would cap a publisher sending two
    video tracks (camera layers, a shared screen) at what its smallest track brings in.
    """
    private = "_RTCRtpReceiver__"
    codecs: dict[int, Any] = getattr(receiver, private + "codecs")  # filled in by receive()
    rtx_ssrc: dict[int, int] = getattr(receiver, private + "rtx_ssrc")
    streams: dict[int, Any] = getattr(receiver, private + "remote_streams")
    nack_generator = getattr(receiver, private + "nack_generator")
    estimator = estimator or bandwidth_estimator(receiver)
    statistics = aiortc_receiver.StreamStatistics

    async def handle_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        stream = streams.get(packet.ssrc)
        if stream is None:
            stream = streams[packet.ssrc] = statistics(codec.clockRate)
        stream.add(packet)  # feeds our receiver reports to the publisher

        if estimator is not None and packet.extensions.abs_send_time is not None:
            remb = estimator.add(
                abs_send_time=packet.extensions.abs_send_time,
                arrival_time_ms=arrival_time_ms,
                payload_size=len(packet.payload) + packet.padding_size,
                ssrc=packet.ssrc,
            )
            rtcp_ssrc = getattr(receiver, private + "rtcp_ssrc")
            if remb is not None and rtcp_ssrc is not None:
                await receiver._send_rtcp(
                    RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(*remb))
                )

        if is_rtx(codec):
            original_ssrc = rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(packet.payload) < 2 or apt not in codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original_ssrc)

        if nack_generator is not None and nack_generator.add(packet):
            await receiver._send_rtcp_nack(packet.ssrc, sorted(nack_generator.missing))

        if packet.payload:
            uptrack.on_packet(
                packet.sequence_number, packet.timestamp, bool(packet.marker), packet.payload, packet.ssrc
            )

    handle_rtcp_default = receiver._handle_rtcp_packet

    async def handle_rtcp(packet: AnyRtcpPacket) -> None:
        await handle_rtcp_default(packet)
        if isinstance(packet, RtcpSrPacket) and packet.ssrc == uptrack.ssrc:
            info = packet.sender_info
            uptrack.sender_report = SenderReport(info.ntp_timestamp, info.rtp_timestamp)

    receiver._handle_rtp_packet = handle_rtp  # type: ignore[method-assign]
    receiver._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]
    route_rtx(receiver)


def negotiated_codec(transceiver: Any) -> Any | None:
    """The codec a transceiver settled on in the last negotiation, or None."""
    codecs = transceiver._codecs
    return codecs[0] if codecs else None


def route_rtx(receiver: RTCRtpReceiver) -> None:
    """Route retransmissions by their own SSRC, as aiortc does not.

    aiortc's router knows each receiver's media SSRC and payload types; a retransmission (RTX)
    with its own SSRC is routed by payload type alone, which fails as soon as two receivers share
    it (a camera and a shared screen on one transport): the packet is dropped.
    """
    receive_default = receiver.receive

    async def receive(parameters: Any) -> None:
        await receive_default(parameters)
        router = receiver.transport._rtp_router
        for encoding in parameters.encodings:
            if encoding.rtx is not None:
                router.ssrc_table[encoding.rtx.ssrc] = receiver

    receiver.receive = receive  # type: ignore[method-assign]


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Ask the publisher for a keyframe (RFC 4585 picture loss indication)."""
    await receiver._send_rtcp_pli(media_ssrc)


def send_only(receiver: RTCRtpReceiver) -> None:
    """Drop what a receiver that will never receive holds from birth: aiortc gives every video
    receiver a 512-slot jitter buffer and a bandwidth estimator with 1 ms buckets (about 100 KB
    each; a subscriber's connection has three video slots, which only send), and every receiver
    a decoder queue and events that only a started one uses."""
    private = "_RTCRtpReceiver__"
    for name in (
        "jitter_buffer",
        "nack_generator",
        "remote_bitrate_estimator",
        "decoder_queue",
        "decoder_error",
        "rtcp_started",
        "rtcp_exited",
    ):
        setattr(receiver, private + name, None)


def tap_sender(sender: RTCRtpSender, downtrack: DownTrack, on_ready: Callable[[], None]) -> None:
    """Feed ``sender`` from ``downtrack`` instead of an encoder; must run before negotiation ends."""
    private = "_RTCRtpSender__"
    send_default = sender.send
    cname: list[str] = []

    async def send(parameters: RTCRtpSendParameters) -> None:
        codecs = parameters.codecs
        rtx = next((c for c in codecs if is_rtx(c) and c.parameters.get("apt") == codecs[0].payloadType), None)
        payload_type = codecs[0].payloadType
        if payload_type is None:
            raise ValueError("The negotiated codec has no payload type")
        endpoint = native_endpoint(sender.transport, sender._ssrc, payload_type)
        downtrack.configure(
            ssrc=sender._ssrc,
            payload_type=payload_type,
            rtx_ssrc=sender._rtx_ssrc if rtx is not None else None,
            rtx_payload_type=rtx.payloadType if rtx is not None else None,
            send=endpoint.send if endpoint is not None else rtp_sender(sender.transport),
            endpoint=endpoint,
        )
        if parameters.rtcp.cname:
            cname.append(parameters.rtcp.cname)
        await send_default(parameters)
        on_ready()

    async def run_rtcp() -> None:
        started: asyncio.Event = getattr(sender, private + "rtcp_started")
        exited: asyncio.Event = getattr(sender, private + "rtcp_exited")
        started.set()
        sdes = b""
        try:
            while True:
                await asyncio.sleep(0.5 + random.random())
                if not sdes and cname:
                    chunk = RtcpSourceInfo(ssrc=downtrack.ssrc, items=[(1, cname[0].encode())])
                    sdes = bytes(RtcpSdesPacket(chunks=[chunk]))
                await _send_reports(sender, downtrack, sdes)
        except asyncio.CancelledError:
            pass
        finally:
            exited.set()

    async def handle_rtcp(packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                downtrack.on_keyframe_request()
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except ValueError:
                    return
                if downtrack.ssrc in ssrcs:
                    downtrack.bitrate_estimate = bitrate
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            downtrack.on_nack(packet.lost)
        elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == downtrack.ssrc:
                    downtrack.fraction_lost = report.fraction_lost
                    downtrack.reported = (report.packets_lost, report.highest_sequence)
                    if downtrack.on_report is not None:
                        downtrack.on_report()

    sender.send = send  # type: ignore[method-assign]
    sender._run_rtcp = run_rtcp  # type: ignore[method-assign]
    sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]


MAX_SOCKET_BACKLOG = 256 * 1024  # bytes queued in a subscriber's socket before we drop


def rtp_sender(dtls: RTCDtlsTransport) -> Callable[[bytes], bool]:
    """Encrypt and send one RTP packet synchronously, below aiortc's coroutine layers.

    aiortc's own path awaits three coroutines per packet; this calls SRTP and ``sendto`` directly.
    Returns False (sending nothing) when ICE has no pair or the socket is backed up.
    """
    protect = dtls._tx_srtp.protect
    nominated = dtls.transport._connection._nominated

    def send(data: bytes) -> bool:
        pair = nominated.get(1)
        if pair is None:
            return False
        transport = pair.protocol.transport
        if transport.get_write_buffer_size() > MAX_SOCKET_BACKLOG:  # type: ignore[attr-defined]
            return False
        transport.sendto(protect(data), pair.remote_addr)
        return True

    return send


def session_endpoint(
    session: Any, *, fd: int, host: str, port: int, ssrc: int, payload_type: int
) -> native.Endpoint | None:
    """A native sender protecting with a pylibsrtp ``Session`` (its ``srtp_t`` and ``srtp_protect``,
    passed by address) and sending on ``fd`` (``host`` "": a connected socket)."""
    ffi, lib = libsrtp.ffi, libsrtp.lib
    return native.endpoint(
        context=int(ffi.cast("uintptr_t", session._srtp[0])),
        protect=int(ffi.cast("uintptr_t", ffi.addressof(lib, "srtp_protect"))),
        keepalive=session,
        fd=fd,
        host=host,
        port=port,
        ssrc=ssrc,
        payload_type=payload_type,
    )


def native_endpoint(dtls: RTCDtlsTransport, ssrc: int, payload_type: int) -> native.Endpoint | None:
    """A native sender for one track of a subscriber whose ICE pair sends straight from a UDP
    socket; None through TURN (aioice wraps those sends) or without the native step."""
    if not native.enabled() or dtls._tx_srtp is None:
        return None
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None or pair.local_candidate.type == "relay":
        return None
    sock = pair.protocol.transport.get_extra_info("socket")
    if sock is None:
        return None
    host, port = pair.remote_addr[:2]
    return session_endpoint(
        dtls._tx_srtp, fd=sock.fileno(), host=host, port=port, ssrc=ssrc, payload_type=payload_type
    )


# A sender report: V=2 and no report blocks, PT 200, length 6 (words - 1), SSRC, NTP, RTP, counts.
SENDER_REPORT = struct.Struct("!BBHIIIIII")


async def _send_reports(sender: RTCRtpSender, downtrack: DownTrack, sdes: bytes) -> None:
    """A sender report with the publisher's clock (and our CNAME), about once a second per
    forwarding slot; an idle slot (no screen shared, nobody on stage) says nothing."""
    report = downtrack.sender_report()
    if report is None or sender.transport.state != "connected":
        return
    ntp, rtp = report
    packets, octets = downtrack.packets_sent & 0xFFFFFFFF, downtrack.octets_sent & 0xFFFFFFFF
    data = SENDER_REPORT.pack(0x80, 200, 6, downtrack.ssrc, ntp >> 32, ntp & 0xFFFFFFFF, rtp, packets, octets)
    try:
        await sender.transport._send_rtp(data + sdes)
    except ConnectionError:
        pass


_decode_counter: ForwardingStats | None = None


def count_decoded_frames(stats: ForwardingStats) -> None:
    """Count every frame any aiortc decoder in this process produces into ``stats.decoded_frames``.

    The SFU should decode nothing; this makes that claim checkable from the outside.
    """
    global _decode_counter
    if _decode_counter is None:
        get_decoder = getattr(aiortc_receiver, "get_decoder")  # noqa: B009 (not re-exported)

        def counting_get_decoder(codec: Any) -> Any:
            return _CountingDecoder(get_decoder(codec))

        setattr(aiortc_receiver, "get_decoder", counting_get_decoder)  # noqa: B010
    _decode_counter = stats


class _CountingDecoder:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def decode(self, encoded_frame: Any) -> list[Any]:
        frames: list[Any] = self._inner.decode(encoded_frame)
        if _decode_counter is not None:
            _decode_counter.decoded_frames += len(frames)
        return frames
