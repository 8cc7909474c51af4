"""Faults survived, with real pages: a media worker process crashes mid-lesson."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import psutil
import pytest

pytest.importorskip("playwright.async_api")

from tests.test_browser import PageLog, chromium, learn_url, stats, teach_url, wait_stats  # noqa: E402
from tests.test_browser import pytestmark as browser_marks  # noqa: E402
from tests.test_cluster_browser import broadcasting_teacher  # noqa: E402

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
