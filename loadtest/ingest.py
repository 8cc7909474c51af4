"""What the lesson library costs, and how closely a class watches a recorded slot together.

    python -m loadtest.ingest [--minutes 1] [--upload-mb 256] [--viewers 20]

1. Ingest: a lesson of ``--minutes`` at 640x360 15 fps with grain (the encoder spends its bitrate)
   made twice, H.264/AAC (what a PC exports: remuxed) and HEVC/AAC (what a phone records: transcoded
   once), each ingested by the worker the server runs (``python -m server.lessons.ingest``): speed as a
   multiple of real time, and CPU-seconds per lesson-minute (the worker's own, from rusage).
2. Upload: ``--upload-mb`` of bytes sent with tus (tuspy, 8 MB pieces) to a local server: MB/s, with
   the client's and the server's CPU; when the client is the busier one it says so (the number is then
   the client's limit, not the server's).
3. In step: ``--viewers`` Chromium pages of one recorded slot, opened one after another; their
   positions are read together: the spread (max - min). Pages that do not play (a starved machine)
   are counted, and no spread is reported then.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import fractions
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import httpx
import numpy as np
import psutil
from tusclient import client as tus

from .media import FPS, HEIGHT, WIDTH, _frame

ROOT = Path(__file__).resolve().parent.parent


def make_lesson(path: Path, codec: str, seconds: float) -> Path:
    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.bit_rate = 1_100_000
        if codec == "libx265":
            video.options = {"x265-params": "log-level=error", "preset": "ultrafast"}
        else:
            video.options = {"preset": "veryfast"}
        audio = container.add_stream("aac", rate=48000, layout="mono")
        samples = 1024
        tone = (np.sin(2 * np.pi * 440 * np.arange(48000 * 2) / 48000) * 6000).astype(np.int16)
        sent = 0
        for index in range(int(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(_frame(index, rng, WIDTH, HEIGHT, 48), format="rgb24")
            frame.pts, frame.time_base = index, fractions.Fraction(1, FPS)
            container.mux(video.encode(frame))
            while sent < (index + 1) * 48000 / FPS:
                sound = av.AudioFrame.from_ndarray(
                    tone[None, sent % 48000 : sent % 48000 + samples], format="s16", layout="mono"
                )
                sound.sample_rate, sound.pts, sound.time_base = 48000, sent, fractions.Fraction(1, 48000)
                container.mux(audio.encode(sound))
                sent += samples
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path


def ingest_cost(source: Path, out: Path, seconds: float) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    command = [sys.executable, "-m", "server.lessons.ingest", str(source), str(out), "--name", source.stem]
    lines = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT).stdout.splitlines()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(lines[-1])
    if "ingested" not in result:
        raise SystemExit(f"{source.name} was refused: {result}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"x_realtime": round(seconds / wall, 1), "cpu_s_per_lesson_minute": round(cpu / (seconds / 60), 2)}


def start_server(data: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = 18000 + os.getpid() % 2000
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--ice-address", "127.0.0.1"],
        env={**os.environ, "SKYCLASS_SECRET": "bench-" + "s" * 32, "SKYCLASS_DATA_DIR": str(data), **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def token(room: str, role: str, name: str, scope: str | None = None) -> str:
    from server.tokens import Role, issue_token

    return issue_token("bench-" + "s" * 32, room=room, role=Role(role), name=name, ttl_s=3600, scope=scope)


def upload_throughput(url: str, server: subprocess.Popen[bytes], megabytes: int, tmp: Path) -> dict[str, object]:
    blob = tmp / "blob.bin"
    with blob.open("wb") as out:
        for _ in range(megabytes):
            out.write(os.urandom(1024 * 1024))
    headers = {"Authorization": "Bearer " + token("g2-1", "teacher", "bench")}
    fields = {
        "filename": "blob.bin",
        "filetype": "application/octet-stream",
        "title": "bench",
        "grade": "二年级",
        "subject": "x",
    }
    me, them = psutil.Process(), psutil.Process(server.pid)
    mine, theirs = me.cpu_times(), them.cpu_times()
    started = time.monotonic()
    tus.TusClient(url + "/api/uploads", headers=headers).uploader(
        str(blob), chunk_size=8 * 1024 * 1024, metadata=fields
    ).upload()
    wall = time.monotonic() - started
    client_cpu = sum(me.cpu_times()[:2]) - sum(mine[:2])
    server_cpu = sum(them.cpu_times()[:2]) - sum(theirs[:2])
    answer: dict[str, object] = {
        "mb_per_s": round(megabytes / wall, 1),
        "client_cpu_share": round(client_cpu / wall, 2),
        "server_cpu_share": round(server_cpu / wall, 2),
        "server_cpu_s_per_gb": round(server_cpu / (megabytes / 1024), 2),
    }
    if client_cpu > server_cpu:
        answer["note"] = "the client was the busier side: the figure is the client's limit, not the server's"
    return answer


async def in_step(url: str, viewers: int, tmp: Path) -> dict[str, object]:
    from playwright.async_api import async_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

    lesson_file = make_lesson(tmp / "slot.mp4", "libx264", 600)
    teacher = {"Authorization": "Bearer " + token("g2-1", "teacher", "bench")}
    fields = {"filename": "slot.mp4", "filetype": "video/mp4", "title": "slot", "grade": "二年级", "subject": "数学"}
    uploader = tus.TusClient(url + "/api/uploads", headers=teacher).uploader(str(lesson_file), metadata=fields)
    uploader.upload()
    lesson_id = str(uploader.url).rsplit("/", 1)[1]
    while httpx.get(f"{url}/api/lessons/{lesson_id}", headers=teacher).json()["status"] == "processing":
        time.sleep(0.2)
    reviewer = {"Authorization": "Bearer " + token("*", "reviewer", "bench reviewer")}
    httpx.post(
        f"{url}/api/lessons/{lesson_id}/review", json={"decision": "approve"}, headers=reviewer
    ).raise_for_status()
    start = dt.datetime.now().replace(second=0, microsecond=0)
    end = f"{min(start.hour + 1, 23):02d}:59"
    slot = f'{{class: g2-1, start: "{start:%H:%M}", end: "{end}", subject: 数学, lesson: {lesson_id}}}'
    table = f"classes:\n  - {{id: g2-1, grade: 二年级, name: 二年级(1)班}}\nslots:\n  - {slot}\n"
    admin = {"Authorization": "Bearer " + token("*", "admin", "bench", scope="city")}
    httpx.put(url + "/api/timetable", content=table.encode(), headers=admin).raise_for_status()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        pages = []
        for n in range(viewers):
            page = await browser.new_page(viewport={"width": 480, "height": 320})
            await page.goto(f"{url}/learn?room=g2-1&token={token('g2-1', 'student', f'viewer {n}')}")
            pages.append(page)
            await asyncio.sleep(0.5)
        await asyncio.sleep(5)
        samples = await asyncio.gather(*(page.evaluate("window.skyclass.stats()") for page in pages))
        await browser.close()
    playing = [s["recordedTime"] for s in samples if s["source"] == "recorded" and not s["recordedPaused"]]
    result: dict[str, object] = {"viewers": viewers, "playing": len(playing)}
    if len(playing) < viewers:
        result["note"] = f"{viewers - len(playing)} pages did not play: the machine, not the server, is the limit"
    else:
        result["spread_s"] = round(max(playing) - min(playing), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--upload-mb", type=int, default=256)
    parser.add_argument("--viewers", type=int, default=20)
    args = parser.parse_args()
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "out").mkdir()
        report: dict[str, object] = {}
        for label, codec in (("remux", "libx264"), ("transcode", "libx265")):
            source = make_lesson(tmp / f"{label}.mp4", codec, seconds)
            report[f"ingest_{label}"] = ingest_cost(source, tmp / "out", seconds)
            print(label, report[f"ingest_{label}"], flush=True)
        (tmp / "timetable.yaml").write_text("classes:\n  - {id: g2-1, grade: 二年级, name: 二年级(1)班}\nslots: []\n")
        server, url = start_server(tmp / "data", {"SKYCLASS_TIMETABLE": str(tmp / "timetable.yaml")})
        try:
            report["upload"] = upload_throughput(url, server, args.upload_mb, tmp)
            print("upload", report["upload"], flush=True)
            if args.viewers:
                report["in_step"] = asyncio.run(in_step(url, args.viewers, tmp))
                print("in step", report["in_step"], flush=True)
        finally:
            server.terminate()
            server.wait(10)
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
