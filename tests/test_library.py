"""The lesson library against a real server: uploads with a tus client (tuspy), one cut off mid-way
and resumed; the ingest's result decoded back with PyAV; review and its authorization; the timetable
taking approved lessons only, in every grade; what is refused, and how precisely."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from tusclient import client as tus

from .conftest import ServerProcess, start_server, stop_server
from .media_files import h264_aac_mp4, hevc_mp4, mp3, text_as_mp4, truncated_mp4

ROOM = "g2-1"
TIMETABLE = """\
classes:
  - {id: g2-1, grade: 二年级, name: 二年级(1)班, school: School A}
  - {id: g9-1, grade: 初三, name: 初三(1)班, school: School A}
slots:
  - {class: g9-1, start: "00:00", end: "24:00", subject: 数学, mode: live, recording: demo}
"""
MAX_UPLOAD = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("library")
    (tmp / "timetable.yaml").write_text(TIMETABLE, encoding="utf-8")
    env = {"SKYCLASS_TIMETABLE": str(tmp / "timetable.yaml"), "SKYCLASS_MAX_UPLOAD_BYTES": str(MAX_UPLOAD)}
    server = start_server(tmp, env=env)
    yield server
    stop_server(server)


def bearer(server: ServerProcess, role: str, name: str = "Ms Li", room: str = ROOM) -> dict[str, str]:
    if role == "admin":
        return {"Authorization": "Bearer " + server.token(room, "admin", name, scope="School A")}
    return {"Authorization": "Bearer " + server.token(room, role, name)}


def metadata(title: str = "分数的认识", grade: str = "二年级", **more: str) -> dict[str, str]:
    return {
        "filename": "lesson.mp4",
        "filetype": "video/mp4",
        "title": title,
        "grade": grade,
        "subject": "数学",
        **more,
    }


def upload(server: ServerProcess, path: Path, headers: dict[str, str], **fields: str) -> str:
    """The lesson's id: the last segment of the Location the server answered."""
    client = tus.TusClient(server.url + "/api/uploads", headers=headers)
    uploader = client.uploader(str(path), chunk_size=256 * 1024, metadata=metadata(**fields))
    uploader.upload()
    return str(uploader.url).rstrip("/").rsplit("/", 1)[1]


def lesson(server: ServerProcess, lesson_id: str, headers: dict[str, str]) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/api/lessons/{lesson_id}", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def settled(server: ServerProcess, lesson_id: str, headers: dict[str, str], timeout: float = 60) -> dict[str, Any]:
    """The lesson once it is no longer processing."""
    deadline = time.monotonic() + timeout
    while (found := lesson(server, lesson_id, headers))["status"] == "processing":
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    return found


def decoded(url: str) -> tuple[float, set[str], set[str]]:
    """Duration, stream kinds and codecs of what a URL serves, read back with PyAV."""
    with av.open(url) as container:
        kinds = {s.type for s in container.streams}
        codecs = {s.codec_context.name for s in container.streams}
        duration = max(float(p.pts * p.time_base) for p in container.demux() if p.pts is not None)
    return duration, kinds, codecs


def create(server: ServerProcess, headers: dict[str, str], length: int, fields: dict[str, str]) -> httpx.Response:
    """A bare tus creation request, to see exactly what is refused before any byte is sent."""
    encoded = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())
    tus_headers = {"Tus-Resumable": "1.0.0", "Upload-Length": str(length), "Upload-Metadata": encoded}
    return httpx.post(server.url + "/api/uploads", headers={**headers, **tus_headers}, timeout=10)


def test_upload_ingest_review_and_timetable(library: ServerProcess, tmp_path: Path) -> None:
    teacher, reviewer = bearer(library, "teacher"), bearer(library, "reviewer", "教研员 Wang")
    lesson_id = upload(library, h264_aac_mp4(tmp_path / "pc.mp4", seconds=6), teacher)
    ready = settled(library, lesson_id, teacher)
    assert ready["status"] == "pending", ready
    assert (ready["grade"], ready["subject"], ready["teacher"], ready["school"]) == (
        "二年级",
        "数学",
        "Ms Li",
        "School A",
    )
    duration, kinds, codecs = decoded(library.url + ready["media_url"])
    assert abs(duration - 6) < 0.5 and kinds == {"video", "audio"} and {"h264", "aac"} <= codecs
    assert httpx.get(library.url + ready["poster_url"], timeout=10).headers["content-type"] == "image/jpeg"

    # Pupils do not see it before review; the timetable does not take it.
    pupil = bearer(library, "student", "Wei")
    assert httpx.get(f"{library.url}/api/lessons/{lesson_id}", headers=pupil).status_code == 404
    admin = {"Authorization": "Bearer " + library.token("*", "admin", "ops", scope="city")}
    scheduled = TIMETABLE + f'  - {{class: g2-1, start: "00:00", end: "24:00", subject: 数学, lesson: {lesson_id}}}\n'
    refused = httpx.put(library.url + "/api/timetable", content=scheduled.encode(), headers=admin)
    assert refused.status_code == 400 and any("line 6" in p and "pending" in p for p in refused.json()["detail"])

    # Review: not by its own teacher; a rejection needs a reason; a reviewer approves.
    review = f"{library.url}/api/lessons/{lesson_id}/review"
    assert httpx.post(review, json={"decision": "approve"}, headers=teacher).status_code == 403
    assert httpx.post(review, json={"decision": "approve"}, headers=pupil).status_code == 404  # not visible
    assert httpx.post(review, json={"decision": "reject"}, headers=reviewer).status_code == 400
    approved = httpx.post(review, json={"decision": "approve", "reason": "清楚 Clear"}, headers=reviewer).json()
    assert approved["status"] == "approved"
    assert lesson(library, lesson_id, pupil)["status"] == "approved"  # now every pupil may watch it
    accepted = httpx.put(library.url + "/api/timetable", content=scheduled.encode(), headers=admin)
    assert accepted.status_code == 200, accepted.text
    listed = httpx.get(library.url + "/api/lessons", params={"grade": "二年级", "q": "分数"}, headers=pupil).json()
    assert [found["id"] for found in listed] == [lesson_id]


def test_phone_and_audio_lessons_are_made_playable(library: ServerProcess, tmp_path: Path) -> None:
    teacher = bearer(library, "teacher", "Mr Zhao")
    phone = settled(library, upload(library, hevc_mp4(tmp_path / "phone.mp4", seconds=4), teacher), teacher)
    duration, kinds, codecs = decoded(library.url + phone["media_url"])
    assert phone["status"] == "pending" and "h264" in codecs and "hevc" not in codecs and abs(duration - 4) < 0.5
    sound = settled(
        library, upload(library, mp3(tmp_path / "talk.mp3", seconds=5), teacher, filename="talk.mp3"), teacher
    )
    duration, kinds, _ = decoded(library.url + sound["media_url"])
    assert sound["kind"] == "audio" and kinds == {"audio"} and abs(duration - 5) < 0.5
    assert sound["poster_url"]  # a card, for the list


def test_an_upload_cut_off_resumes_where_it_stopped(library: ServerProcess, tmp_path: Path) -> None:
    teacher = bearer(library, "teacher", "Ms Sun")
    path = h264_aac_mp4(tmp_path / "long.mp4", seconds=8)
    client = tus.TusClient(library.url + "/api/uploads", headers=teacher)
    first = client.uploader(str(path), chunk_size=16 * 1024, metadata=metadata("断点续传"))
    first.upload_chunk()
    first.upload_chunk()  # the link drops here
    sent = first.offset
    assert 0 < sent < path.stat().st_size
    again = client.uploader(str(path), url=first.url, chunk_size=16 * 1024)  # another try, same upload
    assert again.get_offset() == sent  # the server kept what came
    wrong = httpx.patch(
        str(first.url),
        content=b"x" * 10,
        headers={
            **teacher,
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert wrong.status_code == 409  # resumed at the wrong offset: refused, nothing lost
    again.upload()
    lesson_id = str(first.url).rsplit("/", 1)[1]
    duration, _, _ = decoded(library.url + settled(library, lesson_id, teacher)["media_url"])
    assert abs(duration - 8) < 0.5
    # Someone else cannot continue it.
    other = {"Authorization": "Bearer " + library.token("g9-1", "teacher", "Mr Qian")}
    assert httpx.head(str(first.url), headers={**other, "Tus-Resumable": "1.0.0"}).status_code == 404


def test_bad_uploads_are_refused_precisely(library: ServerProcess, tmp_path: Path) -> None:
    teacher = bearer(library, "teacher", "Ms Xu")
    cases = [
        (bearer(library, "student", "Wei"), 100, metadata(), 403, "may not upload"),
        (teacher, 0, metadata(), 400, "empty"),
        (teacher, MAX_UPLOAD + 1, metadata(), 413, "the limit is"),
        (teacher, 100, metadata(grade="九年级"), 400, "grade '九年级' is not one of"),
        (teacher, 100, metadata(title="x" * 10_000), 400, "'title' has 10000 characters"),
        (
            teacher,
            100,
            {"filename": "a.mp4", "filetype": "video/mp4", "grade": "二年级", "subject": "数学"},
            400,
            "needs 'title'",
        ),
        ({}, 100, metadata(), 401, "Expected a token"),
    ]
    for headers, length, fields, status, words in cases:
        answer = create(library, headers, length, fields)
        assert (answer.status_code, words in answer.text) == (status, True), (fields.get("title", "")[:20], answer.text)
    # Files that are not what they say end failed, with the reason; nothing is served for them.
    for path, words in [
        (text_as_mp4(tmp_path / "notes.mp4"), "not a video or audio file"),
        (truncated_mp4(tmp_path / "cut.mp4"), "damaged or incomplete"),
    ]:
        failed = settled(library, upload(library, path, teacher), teacher)
        assert failed["status"] == "failed" and words in failed["error"] and failed["media_url"] is None, failed
    # The server, its ingest worker and other uploads go on.
    good = settled(library, upload(library, h264_aac_mp4(tmp_path / "after.mp4", seconds=3), teacher), teacher)
    assert good["status"] == "pending"
