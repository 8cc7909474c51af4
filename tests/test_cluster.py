"""Several `skyclass serve` nodes on one Redis: rooms shared across nodes, nodes and Redis that fail."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from server.media.ice import use_host_addresses

from .conftest import ServerProcess, _redis_answers, free_port, start_server, stop_server
from .peers import PatternTrack, SignalingClient, publish, subscribe
from .test_classroom import joined, until


@pytest.fixture(autouse=True)
def loopback_ice() -> None:
    use_host_addresses(["127.0.0.1"])


@pytest.fixture
def cluster_redis(redis_url: str) -> str:
    """A database of its own on the test Redis, empty (channels are per node, so they do not clash)."""
    url = redis_url.rsplit("/", 1)[0] + "/9"
    Redis.from_url(url).flushdb()
    return url


def start_nodes(tmp: Path, redis_url: str, count: int) -> list[ServerProcess]:
    nodes = []
    for name in "abcdef"[:count]:
        (tmp / name).mkdir()
        nodes.append(start_server(tmp / name, "--redis", redis_url))
    return nodes


async def next_frame_within(track, seconds: float) -> None:  # type: ignore[no-untyped-def]
    await asyncio.wait_for(track.recv(), seconds)


def no_tracebacks(*nodes: ServerProcess) -> None:
    for node in nodes:
        assert "Traceback" not in node.log(), node.log()[-4000:]


async def test_a_room_spans_three_nodes(tmp_path: Path, cluster_redis: str) -> None:
    a, b, c = start_nodes(tmp_path, cluster_redis, 3)
    try:
        room = f"city-{uuid.uuid4().hex[:6]}"
        teacher = await joined(a, room, "teacher", "Ms Li")
        wei = await joined(b, room, "student", "Wei")
        fang = await joined(c, room, "student", "Fang")
        subscriptions = [await subscribe(wei), await subscribe(fang)]
        publisher = await publish(teacher, PatternTrack())
        for student in (wei, fang):
            assert (await student.expect("broadcast"))["live"] is True
        for _pc, tracks in subscriptions:  # media from B and C, fed once each by the room's node
            for _ in range(5):
                await next_frame_within(tracks["video"], 15)

        await teacher.send({"type": "chat", "text": "早上好"})
        for client in (teacher, wei, fang):
            assert (await client.expect("chat"))["text"] == "早上好"
        await fang.send({"type": "hand", "raised": True})
        hands = await until(teacher, "hands", lambda m: m["raised"])
        assert [h["name"] for h in hands["raised"]] == ["Fang"]
        roster = await until(teacher, "roster", lambda m: m["total"] == 3)
        assert sorted(p["name"] for p in roster["participants"]) == ["Fang", "Ms Li", "Wei"]
        await fang.send({"type": "hand", "raised": [1]})  # refused by node C, precisely
        assert (await fang.expect("error"))["code"] == "bad_message"

        async with httpx.AsyncClient() as http:
            for node in (a, b, c):  # every node answers for the room
                status = (await http.get(f"{node.url}/api/rooms/{room}", headers=node.member(room))).json()
                assert status == {"room": room, "live": True, "students": 2}
            # one node holds the room (A, unless its CPU looked busier at the first join); the others
            # relay their sessions' signaling, and serve their students the broadcast it feeds them
            holder = next(node for node in (a, b, c) if node.metric("skyclass_rooms") == 1)
            others = [node for node in (a, b, c) if node is not holder]
            assert all(node.metric("skyclass_rooms") == 0 for node in others)
            edges = [node for node in (b, c) if node is not holder]
            assert holder.metric("skyclass_edges_fed") == len(edges)
            assert all(node.metric("skyclass_edge_rooms") == 1 for node in edges)
            assert all(node.metric("skyclass_sfu_packets_out_total") > 0 for node in edges)
            assert b.metric('skyclass_participants{role="student"}') == 1
            # the lesson's recording, on the holder's disk, is in the catalog every node lists
            listed = (
                await http.get(f"{others[0].url}/api/recordings", params={"room": room}, headers=others[0].member(room))
            ).json()
            assert [r["status"] for r in listed] == ["recording"], listed
            assert (await http.get(f"{holder.url}{listed[0]['url']}")).status_code == 200
            elsewhere = await http.get(f"{others[0].url}{listed[0]['url']}")
            assert elsewhere.status_code == 404 and "share SKYCLASS_DATA_DIR" in elsewhere.json()["detail"]

        await wei.send({"type": "leave"})
        roster = await until(teacher, "roster", lambda m: m["total"] == 2)
        await publisher.close()
        for pc, _ in subscriptions:
            await pc.close()
        for client in (teacher, wei, fang):
            await client.close()
        no_tracebacks(a, b, c)
    finally:
        for node in (a, b, c):
            stop_server(node)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A redis-server of this test's own (it restarts it), without persistence: it comes back empty."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (see .ci/run)"
    port = free_port()
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        processes.append(subprocess.Popen([*args, "--dir", str(tmp_path)], stdout=subprocess.DEVNULL))
        deadline = time.monotonic() + 10
        while not _redis_answers(port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    start()
    yield f"redis://127.0.0.1:{port}/0", processes
    for process in processes:
        process.kill()
        process.wait()


async def test_a_redis_restart_does_not_stop_the_lesson(tmp_path: Path, own_redis) -> None:  # type: ignore[no-untyped-def]
    url, processes = own_redis
    a, b = start_nodes(tmp_path, url, 2)
    try:
        room = f"outage-{uuid.uuid4().hex[:6]}"
        token = a.token(room, "teacher", "Ms Li")
        teacher = await joined(a, room, "teacher", "Ms Li", token)
        placed_on_b = b.metric("skyclass_rooms") == 1
        if placed_on_b:  # call B "A" from here on
            a, b = b, a
        near = await joined(a, room, "student", "Near")
        if placed_on_b:  # the teacher moves there too
            await teacher.close()
            teacher = await joined(a, room, "teacher", "Ms Li", token)  # same token: resumed
        far = await joined(b, room, "student", "Far")
        subscriptions = [await subscribe(near), await subscribe(far)]
        publisher = await publish(teacher, PatternTrack())
        for _pc, tracks in subscriptions:
            await next_frame_within(tracks["video"], 15)

        processes[0].kill()  # Redis gone, and with it everything it held
        processes[0].wait()
        outage_started = time.monotonic()
        while time.monotonic() - outage_started < 3:  # the lesson goes on: video to both students
            for _pc, tracks in subscriptions:
                await next_frame_within(tracks["video"], 2)
        await teacher.send({"type": "chat", "text": "still here"})
        assert (await near.expect("chat"))["text"] == "still here"  # same node: no Redis needed
        assert a.metric("skyclass_redis_up") == a.metric("skyclass_store_up") == 0  # alert SkyclassRedisDown

        restart = time.monotonic()
        # the same port, empty
        args = processes[0].args
        processes.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        async with httpx.AsyncClient() as http:
            while True:  # state converges: node A writes what its room knows again
                response = await http.get(f"{b.url}/api/rooms/{room}", headers=b.member(room))
                status = response.json() if response.status_code != 503 else "unavailable"
                if status == {"room": room, "live": True, "students": 2}:
                    break
                assert time.monotonic() - restart < 10, status
                await asyncio.sleep(0.2)
        print(f"state converged {time.monotonic() - restart:.1f} s after Redis came back")
        assert a.metric("skyclass_redis_up") == a.metric("skyclass_store_up") == 1

        for _ in range(5):  # B listens on the bus again (within a second): the room reaches its student
            await teacher.send({"type": "chat", "text": "back"})
            try:
                assert (await far.expect("chat", timeout=1.0))["text"] == "back"
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("the student on node B never heard the teacher again")
        await far.send({"type": "hand", "raised": True})
        await until(teacher, "hands", lambda m: [h["name"] for h in m["raised"]] == ["Far"])
        late = await joined(b, room, "student", "Late")
        await until(teacher, "roster", lambda m: m["total"] == 4)
        for _pc, tracks in subscriptions:
            await next_frame_within(tracks["video"], 2)

        await publisher.close()
        for pc, _ in subscriptions:
            await pc.close()
        for client in (teacher, near, far, late):
            await client.close()
        assert "Redis is unreachable" in a.log() and "Redis answers again" in a.log()
        no_tracebacks(a, b)
    finally:
        for node in (a, b):
            stop_server(node)


async def test_workers_share_one_port(tmp_path: Path, cluster_redis: str) -> None:
    """`--workers 2`: two processes on one port; whichever takes a connection, the room is one."""
    logs = ("--log-format", "json", "--log-level", "debug")  # a join's line is at debug
    node = start_server(tmp_path, "--redis", cluster_redis, "--workers", "2", *logs)
    try:
        registry = Redis.from_url(cluster_redis, decode_responses=True)
        deadline = time.monotonic() + 30
        while len(registry.hkeys("sky:nodes")) < 2:  # both processes are up
            assert time.monotonic() < deadline, registry.hkeys("sky:nodes")
            await asyncio.sleep(0.1)
        room = f"workers-{uuid.uuid4().hex[:6]}"
        clients = [await joined(node, room, "teacher", "Ms Li")]
        clients += [await joined(node, room, "student", f"pupil {i}") for i in range(6)]
        await clients[0].send({"type": "chat", "text": "大家好"})
        for client in clients:
            assert (await client.expect("chat"))["text"] == "大家好"
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{node.url}/api/rooms/{room}", headers=node.member(room))).json()["students"] == 6
        await asyncio.sleep(0.5)
        records = [json.loads(line) for line in node.log().splitlines() if line.startswith("{")]
        joins = [r for r in records if r["message"] == "joined" and r.get("room") == room]
        assert len(joins) == 7 and all(r["participant"] and r["role"] for r in joins), joins  # JSON log lines
        print(f"joins per process: {Counter(r['process'] for r in joins)}")
        for client in clients:
            await client.close()
        no_tracebacks(node)
    finally:
        stop_server(node)


async def test_a_full_server_refuses_cleanly_with_a_retry_time(tmp_path: Path) -> None:
    node = start_server(tmp_path, env={"SKYCLASS_MAX_SESSIONS": "2"})
    try:
        room = "full-house"
        first = await joined(node, room, "student", "a")
        second = await joined(node, room, "student", "b")
        third = await SignalingClient.connect(node.ws_url)
        await third.send({"type": "join", "room": room, "token": node.token(room, "student", "c")})
        error = await third.expect("error")
        assert error["code"] == "server_full" and error["fatal"] and 5 <= error["retry_after"] <= 15, error
        assert await third.wait_closed() == 4503
        await second.send({"type": "leave"})
        await asyncio.sleep(0.3)
        fourth = await joined(node, room, "student", "c")  # room again once someone left
        await first.send({"type": "chat", "text": "still fine"})
        assert (await fourth.expect("chat"))["text"] == "still fine"
        for client in (first, fourth):
            await client.close()
    finally:
        stop_server(node)
