"""In Chromium: in a room past the HLS threshold, the next student is sent to HLS and plays it
through hls.js, while the earlier one stays on WebRTC."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("playwright.async_api")

from tests.test_browser import PageLog, chromium, learn_url, teach_url, wait_stats  # noqa: E402
from tests.test_browser import pytestmark as browser_marks  # noqa: E402
from tests.test_cluster_browser import broadcasting_teacher  # noqa: E402

from .conftest import start_server, stop_server  # noqa: E402

pytestmark = browser_marks
SOUND_ONLY_WINDOW_S = 20.0


async def test_a_student_past_the_threshold_plays_hls(tmp_path: Path) -> None:
    server = start_server(tmp_path, env={"SKYCLASS_HLS_ABOVE": "2"})  # the teacher and one student on WebRTC
    room = f"grade-{uuid.uuid4().hex[:6]}"
    log = PageLog()
    try:
        async with chromium() as browser:
            context = await browser.new_context(permissions=["camera", "microphone"])
            await broadcasting_teacher(context, log, teach_url(server, room))
            wei = log.watch(await context.new_page(), "wei")
            await wei.goto(learn_url(server, room, "Wei"))
            await wait_stats(wei, "s.source === 'live' && s.liveFramesDecoded > 10")

            fang = log.watch(await context.new_page(), "fang")
            opened = time.monotonic()
            await fang.goto(learn_url(server, room, "Fang"))
            shown = await wait_stats(fang, "s.source === 'hls' && s.videoWidth > 0", timeout=30_000)
            first_frame_s = time.monotonic() - opened
            assert shown["hls"]["url"].endswith(f"/hls/{room}/index.m3u8") and shown["subscriptions"] == 0
            assert shown["bytesUsed"] > 0, shown  # the segments count as the data the lesson used
            frames = shown["liveFramesDecoded"]
            playing = await wait_stats(fang, f"s.source === 'hls' && s.liveFramesDecoded > {frames + 30}")
            print(
                f"\nHLS in Chromium: first picture {first_frame_s:.1f} s after opening the page, "
                f"{playing['hls']['latency']} s behind the live edge (hls.js)"
            )
            assert wei.url and (await wait_stats(wei, "s.source === 'live'"))["hls"] is None

            # Saving data on HLS: the sound-only rendition plays on, without a picture.
            await fang.locator("#data-saver").click()
            s = await wait_stats(fang, "s.hls.soundOnly && s.hls.playing.endsWith('/audio.m3u8')")
            played = await fang.evaluate("document.getElementById('video').currentTime")
            s = await wait_stats(
                fang, f"s.source === 'hls' && document.getElementById('video').currentTime > {played + 3}"
            )
            assert s["dataSaver"] and not s["ladder"]["steps"], s
            before, at = s["bytesUsed"], time.monotonic()
            await asyncio.sleep(SOUND_ONLY_WINDOW_S)
            rate = ((await wait_stats(fang, "true"))["bytesUsed"] - before) / (time.monotonic() - at)
            print(f"HLS sound only: {rate * 2700 / 1e6:.1f} MB per 45 minutes (segments loaded by hls.js)")
            assert 0 < rate * 2700 <= 15e6, rate
            assert log.page_errors == [], log.dump()
        assert "writing HLS" in server.log()
        assert "Traceback" not in server.log(), server.log()[-4000:]
    except BaseException:
        print(log.dump())
        raise
    finally:
        stop_server(server)
