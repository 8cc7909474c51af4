"""One broadcast, many classes, on two nodes sharing a Redis: the timetable's classes are sections
(each kept by its class teacher), pupils without one join their own node's part of it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.media.ice import use_host_addresses

from .conftest import ServerProcess, start_server, stop_server
from .peers import PatternTrack, SignalingClient, publish, subscribe
from .test_classroom import joined, until
from .test_cluster import cluster_redis, no_tracebacks  # noqa: F401 (a fixture)
from .test_hls import decode_live, wait_for_playlist


@pytest.fixture(autouse=True)
def loopback_ice() -> None:
    use_host_addresses(["127.0.0.1"])


def sections_timetable(broadcast: str) -> str:
    return f"""classes:
  - {{id: {broadcast}-c1, grade: 初一, name: 初一(1)班}}
  - {{id: {broadcast}-c2, grade: 初一, name: 初一(2)班}}
slots:
  - {{class: {broadcast}-c1, start: "00:00", end: "24:00", subject: 升旗, mode: live, broadcast: {broadcast}}}
  - {{class: {broadcast}-c2, start: "00:00", end: "24:00", subject: 升旗, mode: live, broadcast: {broadcast}}}
"""


@contextlib.contextmanager
def broadcast_nodes(
    tmp_path: Path, redis_url: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, ServerProcess, ServerProcess]]:
    """Two nodes on one Redis whose timetable makes two classes sections of a broadcast (its name
    comes first), and with ``flag`` a broadcast without sections."""
    broadcast = f"big-{uuid.uuid4().hex[:6]}"
    timetable = tmp_path / "timetable.yaml"
    timetable.write_text(sections_timetable(broadcast))
    env = {"SKYCLASS_TIMETABLE": str(timetable), "SKYCLASS_BROADCAST_ROOMS": '["flag"]', **(env or {})}
    nodes = []
    try:
        for name in "ab":
            (tmp_path / name).mkdir()
            nodes.append(start_server(tmp_path / name, "--redis", redis_url, env=env))
        yield broadcast, nodes[0], nodes[1]
    finally:
        for node in nodes:
            stop_server(node)


@pytest.fixture
def two_nodes(tmp_path: Path, cluster_redis: str) -> Iterator[tuple[str, ServerProcess, ServerProcess]]:  # noqa: F811
    with broadcast_nodes(tmp_path, cluster_redis) as nodes:
        yield nodes


async def test_sections_of_a_broadcast_on_two_nodes(two_nodes: tuple[str, ServerProcess, ServerProcess]) -> None:
    broadcast, a, b = two_nodes
    c1, c2 = f"{broadcast}-c1", f"{broadcast}-c2"
    host = await joined(a, broadcast, "teacher", "Master Zhang")
    teacher1 = await joined(a, c1, "teacher", "Ms Li")
    teacher2 = await joined(b, c2, "teacher", "Mr Wang")
    wei = await joined(a, c1, "student", "Wei")  # class 1, on node A
    fang = await joined(b, c2, "student", "Fang")  # class 2, on node B
    lan = await joined(b, c2, "student", "Lan")
    clients = [host, teacher1, teacher2, wei, fang, lan]
    try:
        # the host sees the classes as rows with their pupils, not the pupils
        sections = await until(host, "sections", lambda m: sum(r["pupils"] for r in m["rows"]) == 3, 10)
        assert [(r["label"], r["pupils"]) for r in sections["rows"]] == [("初一(1)班", 1), ("初一(2)班", 2)]
        roster = await until(host, "roster", lambda m: True)
        assert [p["name"] for p in roster["participants"]] == ["Master Zhang"]
        assert (await until(host, "presence", lambda m: m["students"] == 3, 10))["students"] == 3

        # everyone watches the one broadcast, whichever node holds their class
        subscriptions = [await subscribe(client) for client in (wei, fang, teacher2)]
        publisher = await publish(host, PatternTrack())
        for client in (wei, fang, teacher2):
            assert (await client.expect("broadcast", 10))["live"] is True
        for _pc, tracks in subscriptions:
            for _ in range(3):
                await asyncio.wait_for(tracks["video"].recv(), 15)

        # a question goes to the pupil's class teacher, not the other class's
        await fang.send({"type": "ask", "text": "为什么升旗?"})
        waiting = await until(teacher2, "questions", lambda m: m["waiting"], 5)
        (question,) = waiting["waiting"]
        assert (question["name"], question["section"], question["passed"]) == ("Fang", "初一(2)班", False)
        assert not [m for m in teacher1.inbox if m["type"] == "questions" and m["waiting"]]
        row = await until(host, "sections", lambda m: any(r["questions"] == 1 for r in m["rows"]), 5)
        assert [r["questions"] for r in row["rows"]] == [0, 1]
        # a flood is one pupil's budget
        for _ in range(3):
            await fang.send({"type": "ask", "text": "再问一次"})
        assert (await fang.expect("error"))["code"] == "rate_limited"

        # passed on, it reaches the host's queue; answered there, every class sees it
        await teacher2.send({"type": "pass_question", "question_id": question["question_id"]})
        queue = await until(host, "questions", lambda m: any(q["text"] == "为什么升旗?" for q in m["waiting"]), 5)
        passed = next(q for q in queue["waiting"] if q["text"] == "为什么升旗?")
        await host.send({"type": "answer_question", "question_id": passed["question_id"], "answer": "纪念国旗"})
        for client in (wei, fang, lan, teacher1, host):
            shown = await client.expect("question_answered", 10)
            assert (shown["question"]["text"], shown["question"]["answer"]) == ("为什么升旗?", "纪念国旗")
        await until(teacher2, "questions", lambda m: not [q for q in m["waiting"] if q["text"] == "为什么升旗?"], 5)
        await wei.send({"type": "pass_question", "question_id": "x"})  # a pupil may not
        assert (await wei.expect("error"))["code"] == "forbidden"

        # the host's poll is answered in every class, counted per class and overall
        await host.send({"type": "poll_open", "question": "升旗几点?", "options": ["7:30", "8:00"]})
        poll_id = (await host.expect("poll_opened"))["poll_id"]
        for pupil, choice in ((wei, 0), (fang, 1), (lan, 1)):
            assert (await pupil.expect("poll", 10))["poll_id"] == poll_id
            await pupil.send({"type": "poll_answer", "poll_id": poll_id, "choice": choice})
        counted = await until(host, "sections", lambda m: [r["poll_counts"] for r in m["rows"]] == [[1, 0], [0, 2]], 10)
        assert counted["pupils"] == 3
        results = await until(host, "poll_results", lambda m: m["counts"] == [1, 2], 10)
        assert results["answered"] == 3
        class2 = await until(teacher2, "poll_results", lambda m: m["counts"] == [0, 2], 10)
        assert class2["answered"] == 2
        await host.send({"type": "poll_close", "poll_id": poll_id, "show": True})
        for pupil in (wei, fang, lan):
            final = await until(pupil, "poll_results", lambda m: m["final"], 10)
            assert final["counts"] == [1, 2]

        await publisher.close()
        for pc, _ in subscriptions:
            await pc.close()
        no_tracebacks(a, b)
    finally:
        for client in clients:
            await client.close()


async def test_pupils_of_a_broadcast_join_their_own_node(two_nodes: tuple[str, ServerProcess, ServerProcess]) -> None:
    _, a, b = two_nodes
    host = await joined(a, "flag", "teacher", "Principal")
    pupils: list[SignalingClient] = []
    try:
        for i in range(6):
            pupils.append(await joined((a, b)[i % 2], "flag", "student", f"pupil {i}"))
        sections = await until(host, "sections", lambda m: m["pupils"] == 6, 10)
        assert sorted(r["pupils"] for r in sections["rows"]) == [3, 3]  # one row per node
        assert all(r["label"].startswith("node ") for r in sections["rows"])
        # each node holds its own part: node B took its pupils without asking A, which holds the host
        assert b.metric("skyclass_rooms") == 1 and a.metric("skyclass_rooms") == 2
        # no class chat to a whole city: questions go to the host's queue instead
        await pupils[1].send({"type": "chat", "text": "大家好"})
        assert (await pupils[1].expect("error"))["code"] == "forbidden"
        await pupils[1].send({"type": "ask", "text": "能再放一遍国歌吗?"})
        queue = await until(host, "questions", lambda m: m["waiting"], 10)
        assert [(q["name"], q["section"]) for q in queue["waiting"]] == [("pupil 1", "")]
        (subscription, tracks) = await subscribe(pupils[1])  # node B's pupil watches from node B
        publisher = await publish(host, PatternTrack())
        assert (await pupils[1].expect("broadcast", 10))["live"] is True
        await asyncio.wait_for(tracks["video"].recv(), 15)
        assert b.metric("skyclass_edge_rooms") == 1
        # a pupil leaving is counted off within the summaries' interval
        await pupils[0].close()
        await until(host, "sections", lambda m: m["pupils"] == 5, 10)
        await publisher.close()
        await subscription.close()
        no_tracebacks(a, b)
    finally:
        for client in [host, *pupils]:
            await client.close()


async def test_a_broadcast_past_the_threshold_goes_to_hls_on_each_node(tmp_path: Path, cluster_redis: str) -> None:  # noqa: F811
    """The HLS decision counts the whole broadcast, not a node's part; the playlist is written on the
    pupil's own node: from the broadcast itself where it is held, from the node's feed elsewhere."""
    with broadcast_nodes(tmp_path, cluster_redis, {"SKYCLASS_HLS_ABOVE": "3"}) as (_, a, b):
        host = await joined(a, "flag", "teacher", "Principal")
        publisher = await publish(host, PatternTrack())
        pupils: list[SignalingClient] = []
        try:
            for i in range(4):  # two on each node: each part alone is under the threshold
                node = (a, b)[i % 2]
                pupils.append(await SignalingClient.connect(node.ws_url))
                assert (await pupils[-1].join("flag", node.token("flag", "student", f"pupil {i}")))["hls"] is None
            await until(host, "sections", lambda m: m["pupils"] == 4, 10)
            await asyncio.sleep(2.5)  # the host's answer to the parts' next summaries carries the count
            for node in (b, a):
                late = await SignalingClient.connect(node.ws_url)
                pupils.append(late)
                hls = (await late.join("flag", node.token("flag", "student", f"late on {node.url}")))["hls"]
                assert hls and hls.endswith("/hls/flag/index.m3u8"), hls
                await wait_for_playlist(node.url + hls, 30)
                pictures, _, size, _ = await asyncio.get_running_loop().run_in_executor(
                    None, decode_live, node.url + hls, 10
                )
                assert pictures >= 10 and size[0] > 0
            assert b.metric("skyclass_edge_rooms") == 1  # node B wrote it from its feed of the broadcast
            no_tracebacks(a, b)
        finally:
            await publisher.close()
            for client in [host, *pupils]:
                await client.close()
