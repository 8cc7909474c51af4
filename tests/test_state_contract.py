"""One contract, both stores: the embedded one and Redis (a real server)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from server.state import ParticipantRecord, Store
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
            assert (await http.get(f"{server.url}/api/rooms/{room}")).json()["students"] == 1
        await student.close()
    finally:
        stop_server(server)


async def test_hands_in_order(store: Store) -> None:
    await store.set_hand("r", "b", 2.0)
    await store.set_hand("r", "a", 1.0)
    await store.set_hand("r", "a", 5.0)  # raising again keeps the first time
    assert await store.hands("r") == [("a", 1.0), ("b", 2.0)]
    await store.set_hand("r", "a", None)
    assert await store.hands("r") == [("b", 2.0)]


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
