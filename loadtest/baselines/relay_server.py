"""The slow path we must beat: aiortc's MediaRelay, decoding once and encoding per subscriber.

Speaks the subset of docs/protocol.md the fan-out benchmark uses (join, publish, subscription
offer/answer), so the same clients drive it. Tokens are read, not verified: a benchmark fixture.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging

import jwt
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from websockets.asyncio.server import ServerConnection, serve

from server.media.ice import use_host_addresses

relay = MediaRelay()
published: dict[str, MediaStreamTrack] = {}
peers: set[RTCPeerConnection] = set()


def _peer() -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    peers.add(pc)
    return pc


async def handle(ws: ServerConnection) -> None:
    join = json.loads(await ws.recv())
    role = jwt.decode(join["token"], options={"verify_signature": False})["role"]
    await ws.send(
        json.dumps(
            {
                "type": "joined",
                "participant_id": "x",
                "room": join["room"],
                "role": role,
                "name": role,
                "live": bool(published),
            }
        )
    )
    if role != "teacher":
        pc = _peer()
        for kind in ("audio", "video"):
            track = published.get(kind)
            if track is not None:
                sender = pc.addTrack(relay.subscribe(track, buffered=False))
                if kind == "video":
                    codecs = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
                    next(t for t in pc.getTransceivers() if t.sender is sender).setCodecPreferences(codecs[:1])
        await pc.setLocalDescription(await pc.createOffer())
        await ws.send(json.dumps({"type": "offer", "target": "subscribe", "sdp": pc.localDescription.sdp}))
    async for text in ws:
        message = json.loads(text)
        if message["type"] == "publish":
            pc = _peer()
            pc.on("track", lambda track: published.__setitem__(track.kind, track))
            await pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await ws.send(json.dumps({"type": "answer", "target": "publish", "sdp": pc.localDescription.sdp}))
        elif message["type"] == "answer":
            await pc.setRemoteDescription(RTCSessionDescription(message["sdp"], "answer"))


async def main(port: int) -> None:
    use_host_addresses(["127.0.0.1"])
    async with serve(handle, "127.0.0.1", port, max_size=2**22):
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main(parser.parse_args().port))
