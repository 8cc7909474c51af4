"""A client of our signaling protocol (docs/protocol.md) with aiortc peers: for load tests and tests."""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.media.seam import route_rtx

PING_INTERVAL_S = 20.0  # as the web client: the server closes a session silent for 60 s


INBOX_LIMIT = 1000  # messages kept unasked for; older ones go (a teacher's roster updates, say)


class SignalingClient:
    """Speaks docs/protocol.md like a browser: reads every message as it comes (a client that stops
    reading is dropped by the server), keeps those not asked for yet, and pings."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: collections.deque[dict[str, Any]] = collections.deque(maxlen=INBOX_LIMIT)
        self._arrived = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read())
        self._keepalive = loop.create_task(self._ping())

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                self.inbox.append(json.loads(text))
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self._arrived.set()

    async def wait_closed(self, timeout: float = 5.0) -> int:
        """The close code, once the server has closed the connection."""
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._reader)
        return int(self.ws.close_code or 0)

    async def _ping(self) -> None:
        try:
            while True:
                await asyncio.sleep(PING_INTERVAL_S)
                await self.send({"type": "ping"})
        except ConnectionClosed:
            pass

    @classmethod
    async def connect(cls, ws_url: str) -> SignalingClient:
        return cls(await connect(ws_url, max_size=2**22, compression=None))

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def expect(self, type_: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next message of ``type_``, keeping any others for later."""
        async with asyncio.timeout(timeout):
            while True:
                for message in self.inbox:
                    if message["type"] == type_:
                        self.inbox.remove(message)
                        return message
                if self._reader.done():
                    raise ConnectionClosed(None, None)
                self._arrived.clear()
                await self._arrived.wait()

    async def join(
        self, room: str, token: str, resume: str | None = None, delivery: str | None = None
    ) -> dict[str, Any]:
        """Join; ``delivery`` as the protocol's (a probe measuring WebRTC asks for it)."""
        extra = ({"resume": resume} if resume else {}) | ({"delivery": delivery} if delivery else {})
        await self.send({"type": "join", "room": room, "token": token} | extra)
        return await self.expect("joined")

    async def close(self) -> None:
        self._keepalive.cancel()
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)


def peer() -> RTCPeerConnection:
    # max-bundle: aiortc only starts the receivers of one transport when a kind repeats (screen, stage)
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


async def publish(
    client: SignalingClient,
    *tracks: MediaStreamTrack,
    video_codec: str | None = None,
    names: list[str] | None = None,
) -> RTCPeerConnection:
    """Send ``tracks`` as the room's broadcast; returns the publishing peer connection.

    ``video_codec`` ("H264", "VP8") restricts the offer, for tracks that carry encoded packets;
    ``names`` says what each track is ("audio", "video", "video_low", "screen"; by default their order does).
    """
    pc = peer()
    for track in tracks:
        transceiver = pc.addTransceiver(track, direction="sendonly")
        if video_codec and track.kind == "video":
            codecs = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType == f"video/{video_codec}"][:1])
    await pc.setLocalDescription(await pc.createOffer())
    message = {"type": "publish", "sdp": pc.localDescription.sdp}
    if names is not None:
        message["tracks"] = names
    await client.send(message)
    answer = await client.expect("answer", timeout=30)
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
    return pc


async def subscribe(client: SignalingClient) -> tuple[RTCPeerConnection, dict[str, MediaStreamTrack]]:
    """Answer the server's subscription offer; returns the pc and its remote tracks by slot
    ("audio" and "video" are the teacher's; see docs/protocol.md)."""
    offer = await client.expect("offer", timeout=30)
    pc = peer()
    await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    transceivers = pc.getTransceivers()
    for transceiver in transceivers:
        route_rtx(transceiver.receiver)
    slots = offer.get("slots") or [t.kind for t in transceivers]
    tracks = {slot: t.receiver.track for slot, t in zip(slots, transceivers)}
    await pc.setLocalDescription(await pc.createAnswer())
    await client.send({"type": "answer", "target": "subscribe", "sdp": pc.localDescription.sdp})
    return pc, tracks
