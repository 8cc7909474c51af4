"""One contract, both stores: the embedded one and Redis (a real server)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from server.state import Bus, ParticipantRecord, Store
from server.state.bus import MemoryBus
from server.state.memory import MemoryStore
from server.state.redis import RedisStore


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url = request.getfixturevalue("redis_url")
    redis_store = RedisStore.from_url(url, prefix=f"test-{uuid.uuid4().hex[:8]}", ttl_s=60)
    yield redis_store
    await redis_store.close()


def record(pid: str, role: str = "student") -> ParticipantRecord:
    return ParticipantRecord(participant_id=pid, name=f"name {pid}", role=role, node="n1", joined_at=1.5)


async def test_roster_and_counts(store: Store) -> None:
    assert await store.add_participant("r", record("a"))
    assert await store.add_participant("r", record("b"))
    assert await store.add_participant("r", record("t", "teacher"))
    assert not await store.add_participant("r", record("a"))  # twice is once
    assert await store.count("r", "student") == 2
    assert await store.count("r", "teacher") == 1
    assert await store.count("other", "student") == 0
    assert sorted(p.participant_id for p in await store.participants("r")) == ["a", "b", "t"]
    assert record("a") in await store.participants("r")


async def test_remove(store: Store) -> None:
    await store.add_participant("r", record("a"))
    assert await store.remove_participant("r", "a")
    assert not await store.remove_participant("r", "a")
    assert not await store.remove_participant("nowhere", "a")
    assert await store.count("r", "student") == 0
    assert await store.participants("r") == []


async def test_rooms_are_separate(store: Store) -> None:
    await store.add_participant("r1", record("a"))
    await store.add_participant("r2", record("a"))
    await store.remove_participant("r1", "a")
    assert await store.count("r2", "student") == 1


async def test_broadcaster(store: Store) -> None:
    assert await store.broadcaster("r") is None
    await store.set_broadcaster("r", "t1")
    assert await store.broadcaster("r") == "t1"
    await store.set_broadcaster("r", None)
    assert await store.broadcaster("r") is None


async def test_redis_keys_expire(redis_url: str) -> None:
    from redis.asyncio import Redis

    prefix = f"test-{uuid.uuid4().hex[:8]}"
    redis_store = RedisStore.from_url(redis_url, prefix=prefix, ttl_s=60)
    await redis_store.add_participant("r", record("a"))
    await redis_store.set_broadcaster("r", "t")
    client = Redis.from_url(redis_url)
    try:
        for name in ("roster", "counts", "broadcaster"):
            assert 0 < await client.ttl(f"{prefix}:{{r}}:{name}") <= 60
    finally:
        await client.aclose()
        await redis_store.close()


async def test_server_runs_on_redis(redis_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from .conftest import start_server, stop_server
    from .peers import SignalingClient

    server = start_server(tmp_path, "--redis", redis_url)
    try:
        assert "Redis at" in server.log()
        room = f"redis-{uuid.uuid4().hex[:6]}"
        student = await SignalingClient.connect(server.ws_url)
        await student.join(room, server.token(room, "student", "s"))
        async with httpx.AsyncClient() as http:
            status = await http.get(f"{server.url}/api/rooms/{room}", headers=server.member(room))
            assert status.json()["students"] == 1
        await student.close()
    finally:
        stop_server(server)


async def test_hands_in_order(store: Store) -> None:
    await store.set_hand("r", "b", 2.0)
    await store.set_hand("r", "a", 1.0)
    await store.set_hand("r", "a", 5.0)  # raising again keeps the first time
    assert await store.hands("r") == [("a", 1.0), ("b", 2.0)]
    assert await store.hand("r", "a") == 1.0
    await store.set_hand("r", "a", None)
    assert await store.hands("r") == [("b", 2.0)]
    assert await store.hand("r", "a") is None


async def test_the_first_poll_answer_stands(store: Store) -> None:
    assert await store.answer_poll("r", "p1", "a", 2)
    assert not await store.answer_poll("r", "p1", "a", 0)
    assert await store.answer_poll("r", "p1", "b", 1)
    assert await store.poll_answers("r", "p1") == {"a": 2, "b": 1}
    assert await store.poll_answers("r", "p2") == {}


async def test_attendance_stays(store: Store) -> None:
    from server.state import Stay

    await store.record_stay("r", Stay("a", "Wei", "student", 10.0))
    await store.record_stay("r", Stay("b", "Li", "student", 5.0, 50.0))
    await store.record_stay("r", Stay("a", "Wei", "student", 10.0, 70.0))  # the stay closes
    await store.record_stay("r", Stay("a", "Wei", "student", 100.0))
    stays = await store.attendance("r")
    assert [(s.participant_id, s.joined_at, s.left_at) for s in stays] == [
        ("b", 5.0, 50.0),
        ("a", 10.0, 70.0),
        ("a", 100.0, None),
    ]


async def test_open_stays_are_the_ones_not_closed(store: Store) -> None:
    from server.state import Stay

    await store.record_stay("r", Stay("a", "Wei", "student", 10.0, node="n1"))
    await store.record_stay("r", Stay("b", "Li", "student", 12.0, node="n1"))
    await store.record_stay("r", Stay("a", "Wei", "student", 10.0, 70.0, node="n1"))
    await store.record_stay("r", Stay("a", "Wei", "student", 80.0, node="n2"))  # back, on another node
    assert [(s.participant_id, s.joined_at, s.node) for s in await store.open_stays("r")] == [
        ("b", 12.0, "n1"),
        ("a", 80.0, "n2"),
    ]
    assert await store.open_stays("elsewhere") == []


async def test_heartbeats_lapse_but_are_remembered(store: Store) -> None:
    import asyncio

    from server.state import NodeInfo

    await store.heartbeat(NodeInfo("n1", participants=3, rooms=1, cpu=0.5, at=100.0), ttl_s=0.3)
    await store.heartbeat(NodeInfo("n2", participants=0, rooms=0, cpu=0.0, at=101.0), ttl_s=30)
    assert sorted(n.node for n in await store.nodes()) == ["n1", "n2"]
    assert next(n for n in await store.nodes() if n.node == "n1").load == 3 + 0.5 * 200
    await asyncio.sleep(0.4)
    assert [n.node for n in await store.nodes()] == ["n2"]
    assert await store.node_seen("n1") == 100.0
    assert await store.node_seen("never") is None


async def test_a_room_has_one_owner_at_a_time(store: Store) -> None:
    import asyncio

    assert await store.room_owner("r") is None
    assert await store.claim_room("r", "n1", 30) == "n1"
    assert await store.claim_room("r", "n2", 30) == "n1"  # taken
    assert await store.claim_room("r", "n2", 30, replacing="n3") == "n1"  # n3 does not own it
    assert await store.claim_room("r", "n2", 30, replacing="n1") == "n2"  # n1 died: n2 takes over
    assert await store.renew_rooms("n1", ["r"], 30) == ["r"]  # n1 lost it
    assert await store.renew_rooms("n2", ["r"], 30) == []
    await store.release_room("r", "n1")  # not n1's to release
    assert await store.room_owner("r") == "n2"
    await store.release_room("r", "n2")
    assert await store.room_owner("r") is None
    assert await store.claim_room("q", "n1", 0.2) == "n1"
    await asyncio.sleep(0.3)
    assert await store.room_owner("q") is None  # the lease lapsed


@pytest.fixture(params=["memory", "redis"])
async def bus_pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Bus, Bus]]:
    """Two nodes' buses: the same one in one process, two Redis connections otherwise."""
    if request.param == "memory":
        bus = MemoryBus()
        yield bus, bus
        return
    from server.state.redis import RedisBus

    url = request.getfixturevalue("redis_url")
    first, second = RedisBus.from_url(url), RedisBus.from_url(url)
    yield first, second
    await first.close()
    await second.close()


async def test_the_bus_delivers_in_order_and_counts_listeners(bus_pair: tuple[Bus, Bus]) -> None:
    import asyncio

    sender, receiver = bus_pair
    channel = f"test-{uuid.uuid4().hex[:8]}"
    assert await sender.listeners(channel) == 0
    assert await sender.publish([(channel, "lost")]) == [0]  # nobody listens yet
    got: list[str] = []
    await receiver.listen(channel, got.append)
    assert await sender.listeners(channel) == 1
    assert await sender.publish([(channel, str(i)) for i in range(100)]) == [1] * 100
    for _ in range(100):
        if len(got) == 100:
            break
        await asyncio.sleep(0.01)
    assert got == [str(i) for i in range(100)]


async def test_recordings_newest_first(store: Store) -> None:
    room = f"r-{uuid.uuid4().hex[:6]}"
    for i, started in enumerate((10.0, 30.0, 20.0)):
        await store.save_recording({"id": f"{room}-{i}", "room": room, "started_at": started, "node": "n1"})
    await store.save_recording({"id": f"{room}-x", "room": room + "-other", "started_at": 40.0})
    await store.save_recording({"id": f"{room}-0", "room": room, "started_at": 10.0, "status": "complete"})
    assert [r["id"] for r in await store.recordings(room)] == [f"{room}-1", f"{room}-2", f"{room}-0"]
    assert (await store.recording(f"{room}-0"))["status"] == "complete"  # type: ignore[index]
    assert await store.recording("nothing") is None
    assert [r["id"] for r in await store.recordings(limit=2)][:1] == [f"{room}-x"]


async def test_the_denylist_lapses(store: Store) -> None:
    assert not await store.denied(["token:a", "participant:b"])
    await store.deny(["token:a"], 0.3)
    await store.deny(["ban:g9-1:name:Wei"], 60)
    assert await store.denied(["participant:b", "token:a"])
    assert await store.denied(["ban:g9-1:name:Wei"])
    assert not await store.denied(["ban:g9-2:name:Wei"])
    assert not await store.denied([])
    await asyncio.sleep(0.5)
    assert not await store.denied(["token:a"])
    assert await store.denied(["ban:g9-1:name:Wei"])


async def test_room_summaries_replace_each_nodes_last_and_lapse(store: Store) -> None:
    await store.save_room_summaries("n1", [{"room": "a", "pupils": 3}, {"room": "b", "pupils": 1}], 30)
    await store.save_room_summaries("n2", [{"room": "a", "pupils": 2}], 1.0)
    found = sorted((s["node"], s["room"], s["pupils"]) for s in await store.room_summaries())
    assert found == [("n1", "a", 3), ("n1", "b", 1), ("n2", "a", 2)]
    await store.save_room_summaries("n1", [{"room": "b", "pupils": 4}], 30)  # its last one replaced whole
    await asyncio.sleep(1.3)  # n2 stopped saving: its summaries lapse
    assert [(s["node"], s["room"], s["pupils"]) for s in await store.room_summaries()] == [("n1", "b", 4)]
    await store.save_room_summaries("n1", [], 30)
    assert await store.room_summaries() == []
