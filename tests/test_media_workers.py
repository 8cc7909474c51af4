"""Media in worker processes: a room pinned to one worker, overflow relayed once to another."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.media.ice import use_host_addresses

from .conftest import ServerProcess, start_server, stop_server
from .peers import PatternTrack, SignalingClient, best_match, publish, subscribe


@pytest.fixture(scope="module")
def workers_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Two media workers, each holding at most two subscribers before a room spills over."""
    server = start_server(
        tmp_path_factory.mktemp("workers"),
        "--media-workers",
        "2",
        env={"SKYCLASS_MAX_SUBSCRIBERS_PER_WORKER": "2"},
    )
    yield server
    stop_server(server)


async def test_students_on_both_workers_see_the_teacher(workers_server: ServerProcess) -> None:
    use_host_addresses(["127.0.0.1"])
    server = workers_server
    room = "workers-overflow"
    teacher = await SignalingClient.connect(server.ws_url)
    await teacher.join(room, server.token(room, "teacher", "t"))
    early = []
    for i in range(2):  # before the broadcast: attached when it starts
        client = await SignalingClient.connect(server.ws_url)
        await client.join(room, server.token(room, "student", f"early{i}"))
        early.append((client, *await subscribe(client)))
    video = PatternTrack()
    publisher = await publish(teacher, video)
    await asyncio.sleep(1)
    late = []
    for i in range(3):  # the room's worker is full: these go to the other one, through the relay
        client = await SignalingClient.connect(server.ws_url)
        await client.join(room, server.token(room, "student", f"late{i}"))
        late.append((client, *await subscribe(client)))

    for _, _, tracks in early + late:
        for _ in range(50):
            if "video" in tracks:
                break
            await asyncio.sleep(0.1)
        frame = await asyncio.wait_for(tracks["video"].recv(), 15)
        for _ in range(5):
            frame = await asyncio.wait_for(tracks["video"].recv(), 5)
        index, score = best_match(frame.to_ndarray(format="rgb24"), video)
        assert score > 30, f"frame {index} at {score:.1f} dB"

    assert server.metric("skyclass_subscriptions") == 6  # the teacher subscribes too (for the stage)
    loads = [server.metric(f'skyclass_media_backend_subscriptions{{backend="{i}"}}') for i in (0, 1)]
    assert sorted(loads) == [3, 3], f"expected the room to spill over to the second worker: {loads}"
    assert server.metric("skyclass_sfu_packets_out_total") > 0
    assert server.metric("skyclass_server_decoded_frames_total") == 0
    for client, pc, _ in early + late:
        await pc.close()
        await client.close()
    await publisher.close()
    await teacher.close()


def test_workers_are_separate_processes(workers_server: ServerProcess) -> None:
    children = Path(f"/proc/{workers_server.process.pid}/task/{workers_server.process.pid}/children")
    assert len(children.read_text().split()) == 2
