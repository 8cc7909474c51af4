"""The cascade: a room's broadcast spans nodes. The origin holds the teacher and feeds each edge once;
edges serve their own students, start joiners from the picture group they keep, and a lost edge's
students move to another within seconds."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx

from .conftest import ServerProcess, stop_server
from .peers import PatternTrack, SignalingClient, publish, subscribe
from .test_classroom import joined
from .test_cluster import cluster_redis, loopback_ice, next_frame_within, no_tracebacks, start_nodes  # noqa: F401
from .test_hls import decode_live, wait_for_playlist


def edge_url(node: ServerProcess, room: str) -> str:
    """Where ``/api/edge`` sends a new viewer of ``room`` (as a websocket URL)."""
    found = httpx.get(
        f"{node.url}/api/edge", params={"room": room}, headers=node.member(room, "student"), timeout=5
    ).json()
    return str(found["url"]).replace("http://", "ws://") + "/ws"


async def test_origin_and_two_edges(tmp_path: Path, cluster_redis: str) -> None:  # noqa: F811
    nodes = start_nodes(tmp_path, cluster_redis, 3)
    try:
        room = f"grade-{uuid.uuid4().hex[:6]}"
        teacher = await joined(nodes[0], room, "teacher", "Ms Li")
        origin = next(node for node in nodes if node.metric("skyclass_rooms") == 1)
        first_edge, second_edge = [node for node in nodes if node is not origin]
        assert edge_url(origin, room) in (first_edge.page_ws_url, second_edge.page_ws_url)  # never the origin

        wei_token = first_edge.token(room, "student", "Wei")
        wei = await SignalingClient.connect(first_edge.ws_url)
        wei_seat = (await wei.join(room, wei_token))["resume"]
        fang = await joined(second_edge, room, "student", "Fang")
        subscriptions = {"Wei": await subscribe(wei), "Fang": await subscribe(fang)}
        publisher = await publish(teacher, PatternTrack())
        for _pc, tracks in subscriptions.values():
            await next_frame_within(tracks["video"], 15)
        assert origin.metric("skyclass_edges_fed") == 2
        assert first_edge.metric("skyclass_edge_rooms") == second_edge.metric("skyclass_edge_rooms") == 1

        # A late joiner on an edge starts from the picture group the edge keeps: no keyframe request
        # reaches the origin.
        requests_at_origin = origin.metric("skyclass_sfu_keyframe_requests_in_total")
        replays_at_edge = second_edge.metric("skyclass_sfu_keyframe_replays_total")
        late = await joined(second_edge, room, "student", "Late")
        late_pc, late_tracks = await subscribe(late)
        await next_frame_within(late_tracks["video"], 5)
        assert second_edge.metric("skyclass_sfu_keyframe_replays_total") > replays_at_edge
        assert origin.metric("skyclass_sfu_keyframe_requests_in_total") == requests_at_origin

        # A viewer sent to HLS through an edge: the edge redirects to the origin, which writes the
        # playlist; a player (PyAV) decodes it while the lesson runs.
        watcher = await SignalingClient.connect(second_edge.ws_url)
        token = second_edge.token(room, "student", "Watcher")
        await watcher.send({"type": "join", "room": room, "token": token, "delivery": "hls"})
        playlist = (await watcher.expect("joined"))["hls"]
        await wait_for_playlist(second_edge.url + playlist)
        pictures, audio, _, _ = await asyncio.to_thread(decode_live, second_edge.url + playlist, 30)
        assert pictures >= 30

        # The first edge dies: Wei's page reconnects where /api/edge says (the other edge) and
        # resumes with the same token.
        first_edge.process.kill()
        killed = time.monotonic()
        await wei.wait_closed()
        await subscriptions["Wei"][0].close()
        while (target := edge_url(origin, room)) != second_edge.page_ws_url:  # the dead one's last heartbeat
            await asyncio.sleep(0.2)
        wei = await SignalingClient.connect(target)
        joined_again = await wei.join(room, wei_token, resume=wei_seat)  # the page keeps its seat's secret
        assert joined_again["resumed"] is True
        subscriptions["Wei"] = await subscribe(wei)
        await next_frame_within(subscriptions["Wei"][1]["video"], 5)
        moved_s = time.monotonic() - killed
        print(f"edge killed: its student had video again through the other edge {moved_s:.2f} s later")
        assert moved_s < 5
        for _ in range(30):  # Fang, on the surviving edge, never noticed
            await next_frame_within(subscriptions["Fang"][1]["video"], 2)
        deadline = time.monotonic() + 10
        while origin.metric("skyclass_edges_fed") != 1:  # the origin stops feeding the dead edge
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)

        await publisher.close()
        for pc, _ in [*subscriptions.values(), (late_pc, None)]:
            await pc.close()
        for client in (teacher, wei, fang, late, watcher):
            await client.close()
        no_tracebacks(origin, second_edge)
    finally:
        for node in nodes:
            stop_server(node)
