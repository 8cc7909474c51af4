"""A publisher and subscribers as real aiortc peers, through `skyclass serve` over loopback."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from server.media.ice import use_host_addresses

from .conftest import ServerProcess
from .peers import PatternTrack, SignalingClient, ToneTrack, best_match, publish, subscribe


@pytest.fixture(autouse=True)
def loopback_ice() -> None:
    use_host_addresses(["127.0.0.1"])


async def test_subscribers_receive_the_frames_the_teacher_sent(server: ServerProcess) -> None:
    room = "e2e-aiortc"
    decoded_before = server.metric("skyclass_server_decoded_frames_total")
    teacher = await SignalingClient.connect(server.ws_url)
    await teacher.join(room, server.token(room, "teacher", "Ms Li"))
    students = [await SignalingClient.connect(server.ws_url) for _ in range(2)]
    subscriptions = []
    for i, student in enumerate(students):
        joined = await student.join(room, server.token(room, "student", f"pupil {i}"))
        assert joined["live"] is False
        subscriptions.append(await subscribe(student))

    video, audio = PatternTrack(), ToneTrack()
    publisher = await publish(teacher, audio, video)
    for student in students:
        assert (await student.expect("broadcast"))["live"] is True

    for _pc, tracks in subscriptions:
        for _ in range(50):
            if "video" in tracks and "audio" in tracks:
                break
            await asyncio.sleep(0.1)
        frame = await asyncio.wait_for(tracks["video"].recv(), 15)
        for _ in range(10):  # let the picture settle past the first keyframe
            frame = await asyncio.wait_for(tracks["video"].recv(), 5)
        image = frame.to_ndarray(format="rgb24")
        assert image.shape == (240, 320, 3)
        index, score = best_match(image, video)
        assert score > 30, f"received frame matches sent frame {index} at only {score:.1f} dB"
        sound = await asyncio.wait_for(tracks["audio"].recv(), 5)
        samples = sound.to_ndarray().astype(np.float64)
        assert samples.std() > 100, "the teacher's tone did not arrive"

    # The server forwarded packets and decoded none of them.
    assert server.metric("skyclass_sfu_packets_out_total") > 0
    assert server.metric("skyclass_server_decoded_frames_total") == decoded_before == 0

    await teacher.send({"type": "unpublish"})
    for student in students:
        assert (await student.expect("broadcast"))["live"] is False
    await publisher.close()
    for (pc, _), client in zip(subscriptions, students):
        await pc.close()
        await client.close()
    await teacher.close()


async def test_teacher_restart_continues_the_same_subscription(server: ServerProcess) -> None:
    """Stop and start again: the student's connection is kept and frames flow again."""
    room = "e2e-restart"
    teacher = await SignalingClient.connect(server.ws_url)
    await teacher.join(room, server.token(room, "teacher", "Mr Wang"))
    student = await SignalingClient.connect(server.ws_url)
    await student.join(room, server.token(room, "student", "pupil"))
    pc, tracks = await subscribe(student)

    first = await publish(teacher, PatternTrack())
    await asyncio.sleep(0.5)
    await asyncio.wait_for(tracks["video"].recv(), 15)
    await teacher.send({"type": "unpublish"})
    await first.close()
    assert (await student.expect("broadcast", 10))["live"] is True
    assert (await student.expect("broadcast", 10))["live"] is False

    video = PatternTrack(variant=1)  # other colours: its frames cannot pass for the first broadcast's
    second = await publish(teacher, video)
    assert (await student.expect("broadcast", 10))["live"] is True
    # Drain what was buffered, then a fresh frame from the second broadcast must arrive.
    for _ in range(30):
        frame = await asyncio.wait_for(tracks["video"].recv(), 15)
        index, score = best_match(frame.to_ndarray(format="rgb24"), video)
        if score > 30:
            break
    else:
        pytest.fail("no frame of the second broadcast arrived")
    await second.close()
    await pc.close()
    await student.close()
    await teacher.close()


async def test_a_fresh_subscription_replaces_the_old_one(server: ServerProcess) -> None:
    room = "e2e-resubscribe"
    teacher = await SignalingClient.connect(server.ws_url)
    await teacher.join(room, server.token(room, "teacher", "t"))
    video = PatternTrack()
    publisher = await publish(teacher, video)
    student = await SignalingClient.connect(server.ws_url)
    await student.join(room, server.token(room, "student", "s"))
    first, _ = await subscribe(student)
    await student.send({"type": "subscribe"})
    second, tracks = await subscribe(student)
    frame = await asyncio.wait_for(tracks["video"].recv(), 15)
    assert frame.width == 320
    assert best_match(frame.to_ndarray(format="rgb24"), video)[1] > 30
    for pc in (first, second, publisher):
        await pc.close()
    await student.close()
    await teacher.close()
