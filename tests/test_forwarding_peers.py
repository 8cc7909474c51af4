"""The forwarding path with real aiortc peers over loopback, through `skyclass serve`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from server.media.ice import use_host_addresses
from server.media.rtp import vp8_keyframe_start

from .conftest import ServerProcess, running_server
from .peers import (
    PatternTrack,
    RtcpLog,
    RtpLog,
    SignalingClient,
    best_match,
    publish,
    subscribe,
    video_payload_type,
    video_receiver,
    video_sender,
)


@pytest.fixture(autouse=True)
def loopback_ice() -> None:
    use_host_addresses(["127.0.0.1"])


@pytest.fixture(scope="module", params=["native", "python"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """Each test against a server forwarding with the native step, then with the Python path."""
    with running_server(env={"SKYCLASS_NATIVE_FANOUT": "1" if request.param == "native" else "0"}) as process:
        yield process


@pytest.fixture(autouse=True)
def forwarded_by_the_expected_path(server: ServerProcess, request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    native_packets = server.metric("skyclass_sfu_native_packets_out_total")
    assert (native_packets > 0) is (request.node.callspec.params["server"] == "native"), native_packets


async def join(server: ServerProcess, room: str, role: str, name: str) -> SignalingClient:
    client = await SignalingClient.connect(server.ws_url)
    await client.join(room, server.token(room, role, name))
    return client


async def student_with_log(
    server: ServerProcess, room: str, name: str, drop: set[int] | None = None
) -> tuple[SignalingClient, object, dict, RtpLog]:
    client = await join(server, room, "student", name)
    pc, tracks = await subscribe(client)
    return client, pc, tracks, RtpLog(video_receiver(pc), drop)


def gaps(seqs: list[int]) -> list[int]:
    return [(b - a) & 0xFFFF for a, b in zip(seqs, seqs[1:]) if (b - a) & 0xFFFF != 1]


async def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_a_late_joiner_starts_at_a_keyframe_and_sequences_stay_continuous(server: ServerProcess) -> None:
    room = "fwd-late"
    teacher = await join(server, room, "teacher", "t")
    video = PatternTrack()
    publisher = await publish(teacher, video)
    await asyncio.sleep(2)  # mid-lesson

    student, pc, tracks, log = await student_with_log(server, room, "late")
    frame = await asyncio.wait_for(tracks["video"].recv(), 10)
    assert best_match(frame.to_ndarray(format="rgb24"), video)[1] > 30
    pt = video_payload_type(pc)
    first = log.media(pt)[0]
    assert vp8_keyframe_start(first[4]), "the first packet a joiner gets must start a keyframe"

    # A keyframe request (a PLI from this student) mid-stream: no gap, no restart.
    await video_receiver(pc)._send_rtcp_pli(first[0])
    await asyncio.sleep(1)

    # The teacher drops and returns: same subscription, numbering carries on.
    await teacher.send({"type": "unpublish"})
    await publisher.close()
    await asyncio.sleep(0.3)
    before = len(log.media(pt))
    second = PatternTrack(variant=1)
    again = await publish(teacher, second)
    await wait_for(lambda: len(log.media(pt)) > before + 50)
    for _ in range(400):  # frames queued from the first broadcast come first
        frame = await asyncio.wait_for(tracks["video"].recv(), 10)
        if best_match(frame.to_ndarray(format="rgb24"), second)[1] > 30:
            break
    else:
        pytest.fail("the second broadcast did not reach the student")
    seqs = [p[2] for p in log.media(pt)]
    assert gaps(seqs) == [], f"sequence numbers jumped: {gaps(seqs)[:10]}"
    assert len({p[0] for p in log.media(pt)}) == 1, "the subscriber saw more than one SSRC"
    for peer in (again, pc):
        await peer.close()
    for client in (student, teacher):
        await client.close()


async def test_nacks_are_answered_by_the_server_not_the_teacher(server: ServerProcess) -> None:
    room = "fwd-nack"
    teacher = await join(server, room, "teacher", "t")
    publisher = await publish(teacher, PatternTrack())
    upstream = RtcpLog(video_sender(publisher))
    student = await join(server, room, "student", "s")
    pc, tracks = await subscribe(student)
    log = RtpLog(video_receiver(pc))
    await asyncio.wait_for(tracks["video"].recv(), 10)
    # From now on, lose every 10th video packet once.
    pt = video_payload_type(pc)
    start = log.media(pt)[-1][2]
    log._drop.update((start + i) & 0xFFFF for i in range(5, 400, 10))
    retransmits = server.metric("skyclass_sfu_retransmits_total")
    frames = 0
    async with asyncio.timeout(20):
        while frames < 45:
            await tracks["video"].recv()
            frames += 1
    assert server.metric("skyclass_sfu_retransmits_total") > retransmits
    rtx = [p for p in log.packets if p[1] != pt and p[1] != 0 and len(p[4]) >= 2]
    assert rtx, "no retransmission reached the student"
    assert upstream.nacks == 0, "a student's NACK reached the teacher"
    for peer in (publisher, pc):
        await peer.close()
    for client in (student, teacher):
        await client.close()


async def test_keyframe_requests_are_coalesced(server: ServerProcess) -> None:
    room = "fwd-coalesce"
    teacher = await join(server, room, "teacher", "t")
    publisher = await publish(teacher, PatternTrack())
    upstream = RtcpLog(video_sender(publisher))
    await asyncio.sleep(1.5)
    before = upstream.keyframe_requests
    students = [await student_with_log(server, room, f"s{i}") for i in range(8)]
    # Every student asks for a keyframe at once, three times.
    for _, pc, _, log in students:
        await wait_for(lambda log=log, pc=pc: len(log.media(video_payload_type(pc))) > 0)
    for _ in range(3):
        for _, pc, _, log in students:
            await video_receiver(pc)._send_rtcp_pli(log.packets[0][0])
    for _, _, tracks, _ in students:
        await asyncio.wait_for(tracks["video"].recv(), 10)
    await asyncio.sleep(1.2)
    asked = upstream.keyframe_requests - before
    assert 1 <= asked <= 4, f"{8 * 4} requests became {asked} upstream"
    for client, pc, _, _ in students:
        await pc.close()
        await client.close()
    await publisher.close()
    await teacher.close()


async def test_a_stalled_student_does_not_hold_up_the_others(server: ServerProcess) -> None:
    room = "fwd-stall"
    teacher = await join(server, room, "teacher", "t")
    video = PatternTrack()
    publisher = await publish(teacher, video)
    stalled_client, stalled_pc, stalled_tracks, _ = await student_with_log(server, room, "stalled")
    healthy_client, healthy_pc, healthy_tracks, healthy_log = await student_with_log(server, room, "healthy")
    await asyncio.wait_for(stalled_tracks["video"].recv(), 10)
    await asyncio.wait_for(healthy_tracks["video"].recv(), 10)

    # The stalled student stops reading its socket altogether.
    pair = stalled_pc.getTransceivers()[0].receiver.transport.transport._connection._nominated[1]
    pair.protocol.transport.pause_reading()
    sent_before, got_before = video.sent, len(healthy_log.packets)
    await asyncio.sleep(3)
    frames_sent = video.sent - sent_before
    assert frames_sent > 40
    packets = len(healthy_log.packets) - got_before
    # At least a packet per frame (less 20% for what is in flight at either end of the window).
    assert packets >= 0.8 * frames_sent, f"the healthy student got {packets} packets for {frames_sent} frames"
    frame = await asyncio.wait_for(healthy_tracks["video"].recv(), 5)
    assert frame.width == 320
    pair.protocol.transport.resume_reading()
    for peer in (publisher, stalled_pc, healthy_pc):
        await peer.close()
    for client in (stalled_client, healthy_client, teacher):
        await client.close()
