"""A client of our signaling protocol (docs/protocol.md) with aiortc peers: for load tests and tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.media.seam import route_rtx

PING_INTERVAL_S = 20.0  # as the web client: the server closes a session silent for 60 s


class SignalingClient:
    """Speaks docs/protocol.md; keeps messages it was not asked for, in order; pings like a browser."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []
        self._keepalive = asyncio.get_running_loop().create_task(self._ping())

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
        for i, message in enumerate(self.inbox):
            if message["type"] == type_:
                return self.inbox.pop(i)
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self.ws.recv())
                if message["type"] == type_:
                    return message
                if message["type"] != "pong":  # answers to our keep-alive
                    self.inbox.append(message)

    async def join(self, room: str, token: str) -> dict[str, Any]:
        await self.send({"type": "join", "room": room, "token": token})
        return await self.expect("joined")

    async def close(self) -> None:
        self._keepalive.cancel()
        await self.ws.close()


def peer() -> RTCPeerConnection:
    # max-bundle: aiortc only starts the receivers of one transport when a kind repeats (screen, stage)
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


async def publish(
    client: SignalingClient, *tracks: MediaStreamTrack, video_codec: str | None = None
) -> RTCPeerConnection:
    """Send ``tracks`` as the room's broadcast; returns the publishing peer connection.

    ``video_codec`` ("H264", "VP8") restricts the offer, for tracks that carry encoded packets.
    """
    pc = peer()
    for track in tracks:
        transceiver = pc.addTransceiver(track, direction="sendonly")
        if video_codec and track.kind == "video":
            codecs = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType == f"video/{video_codec}"][:1])
    await pc.setLocalDescription(await pc.createOffer())
    await client.send({"type": "publish", "sdp": pc.localDescription.sdp})
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
