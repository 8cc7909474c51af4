"""Faults survived, with real pages: a media worker process crashes mid-lesson."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import psutil
import pytest

pytest.importorskip("playwright.async_api")

from tests.test_browser import PageLog, chromium, learn_url, stats, teach_url, wait_stats  # noqa: E402
from tests.test_browser import pytestmark as browser_marks  # noqa: E402
from tests.test_cluster_browser import broadcasting_teacher  # noqa: E402
from tests.test_fallback_browser import RECORD_PEER_CONNECTIONS, recording_instances  # noqa: E402

from .conftest import ServerProcess, start_server, stop_server  # noqa: E402

pytestmark = browser_marks


def worker_holding_the_room(server: ServerProcess) -> psutil.Process:
    loads = {i: server.metric(f'skyclass_media_backend_subscriptions{{backend="{i}"}}') for i in range(2)}
    index = max(loads, key=lambda i: loads[i])
    for child in psutil.Process(server.process.pid).children(recursive=True):
        if any(arg.endswith(f"media-{index}.sock") for arg in child.cmdline()):
            return child
    raise AssertionError(f"no worker process for backend {index}")


async def test_a_media_worker_crash_restarts_its_rooms(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--media-workers", "2")
    room = f"crash-{uuid.uuid4().hex[:6]}"
    log = PageLog()
    try:
        async with chromium() as browser:
            context = await browser.new_context(permissions=["camera", "microphone"])
            teacher = await broadcasting_teacher(context, log, teach_url(server, room))
            student = log.watch(await context.new_page(), "student")
            await student.goto(learn_url(server, room, "Wei"))
            await wait_stats(student, "s.source === 'live' && s.liveFramesDecoded > 10")

            worker = worker_holding_the_room(server)
            crashed_at = time.monotonic()
            worker.kill()
            times: dict[str, float] = {}
            for label, page in (("teacher", teacher), ("student", student)):
                await wait_stats(page, "s.reconnects >= 1", timeout=15_000)
                times[f"{label} joined again"] = time.monotonic() - crashed_at
            await wait_stats(teacher, "s.publishing && s.state === 'connected'", timeout=15_000)
            frames = (await stats(student))["liveFramesDecoded"]
            await wait_stats(student, f"s.source === 'live' && s.liveFramesDecoded > {frames + 10}", timeout=15_000)
            times["student live video again"] = time.monotonic() - crashed_at
            print(
                "\nafter SIGKILL of the room's media worker: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
            )
            assert max(v for k, v in times.items() if k.endswith("joined again")) < 5, times
            assert log.page_errors == [], log.dump()
        assert "rooms start again on the other workers" in server.log()
        assert "Traceback" not in server.log(), server.log()[-4000:]
        workers = [
            c
            for c in psutil.Process(server.process.pid).children(recursive=True)
            if c.status() != psutil.STATUS_ZOMBIE and "server.media.worker" in " ".join(c.cmdline())
        ]
        assert len(workers) == 2 and worker.pid not in {w.pid for w in workers}  # the dead one was replaced
    except BaseException:
        print(log.dump())
        raise
    finally:
        stop_server(server)


# The page's websockets, so a test can cut the signaling connection as a dead network would.
RECORD_SOCKETS = recording_instances("WebSocket", "__sockets")

# Every sender of the teacher's broadcast connection stops (a dead uplink) or sends again.
SET_MEDIA = """async (on) => {
  const pc = window.__pcs.filter((p) => p.signalingState !== 'closed').at(-1);
  window.__tracks = window.__tracks || pc.getSenders().map((s) => s.track);
  await Promise.all(pc.getSenders().map((s, i) => s.replaceTrack(on ? window.__tracks[i] : null)));
}"""


async def test_a_teacher_offline_for_10_s(tmp_path: Path) -> None:
    """The teacher's network drops for 10 s (no media, the signaling socket cut, the page offline):
    students see the recorded lesson, then live again when the teacher is back."""
    server = start_server(tmp_path)
    room = "g12-1"  # a live slot of the demo timetable, with its recorded lesson
    log = PageLog()
    try:
        async with chromium() as browser:
            teacher_context = await browser.new_context(permissions=["camera", "microphone"])
            await teacher_context.add_init_script(RECORD_PEER_CONNECTIONS)
            await teacher_context.add_init_script(RECORD_SOCKETS)
            teacher = await broadcasting_teacher(teacher_context, log, teach_url(server, room))
            student = log.watch(await (await browser.new_context()).new_page(), "student")
            await student.goto(learn_url(server, room, "Wei"))
            await wait_stats(student, "s.source === 'live' && s.liveFramesDecoded > 10")

            dropped_at = time.monotonic()
            await teacher_context.set_offline(True)  # new connections fail from now on...
            await teacher.evaluate("window.__sockets.at(-1).close(3000)")  # ...and the signaling one is cut
            await teacher.evaluate(SET_MEDIA, False)
            await wait_stats(student, "s.source === 'recorded'", timeout=10_000)
            to_recording = time.monotonic() - dropped_at
            await asyncio.sleep(max(0.0, 10 - (time.monotonic() - dropped_at)))
            back_at = time.monotonic()
            await teacher_context.set_offline(False)
            await teacher.evaluate(SET_MEDIA, True)
            frames = (await stats(student))["liveFramesDecoded"]
            await wait_stats(student, f"s.source === 'live' && s.liveFramesDecoded > {frames + 10}", timeout=20_000)
            to_live = time.monotonic() - back_at
            teacher_stats = await stats(teacher)
            print(
                f"\nteacher offline 10 s: student on the recording {to_recording:.1f} s after the drop, live again "
                f"{to_live:.1f} s after the teacher came back (teacher reconnects: {teacher_stats['reconnects']})"
            )
            assert to_recording < 3, to_recording
            assert teacher_stats["reconnects"] >= 1 and teacher_stats["resumed"], teacher_stats  # the lesson was kept
            assert (await stats(student))["lastSwitch"]["reason"] in ("frames_resumed", "broadcast"), await stats(
                student
            )
            assert log.page_errors == [], log.dump()
    except BaseException:
        print(log.dump())
        raise
    finally:
        stop_server(server)
