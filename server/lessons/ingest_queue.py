"""Uploaded lessons wait here for their one ingest (server/lessons/ingest.py), run one at a time in a fresh
worker process: decoding and encoding never touch the event loop, and a worker that crashes (or is killed)
fails its own job only.

The worker is ``python -m server.lessons.ingest``, started with ``asyncio.create_subprocess_exec`` at a lower
CPU priority (live lessons come first). It prints JSON lines, read here without blocking: ``{"progress": p}``
as it goes, then ``{"ingested": {...}}`` or ``{"refused": reason}``. A process that ends without either
crashed.

A job is a small JSON file in ``jobs_dir``, written atomically when submitted and removed once its result is
handed to ``on_done``: a job a restart interrupted is still there, and ``start()`` does it again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .ingest import MAX_DURATION_S, Ingested, IngestError

log = logging.getLogger(__name__)

LESSON_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")  # it names files: no dots, no slashes
STDERR_KEPT = 4000  # bytes of a worker's stderr kept for the log when it crashes
_CHECKOUT = Path(__file__).resolve().parents[2]  # where the `server` package is: the worker imports the same one


class QueueFull(Exception):
    """As many uploads wait as the queue takes: the upload API answers 503 (try again later)."""


@dataclass
class _Job:
    lesson_id: str
    source: Path
    out_dir: Path
    submitted_at: float

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "source": str(self.source), "out_dir": str(self.out_dir)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Job:
        return cls(str(data["lesson_id"]), Path(data["source"]), Path(data["out_dir"]), float(data["submitted_at"]))


class IngestQueue:
    """Ingests each submitted upload once, ``workers`` at a time, and hands each result to ``on_done`` (on the
    event loop): an Ingested, or an IngestError whose reason the teacher reads."""

    def __init__(
        self,
        jobs_dir: Path,
        *,
        max_waiting: int = 100,
        on_done: Callable[[str, Ingested | IngestError], None],
        max_duration_s: float = MAX_DURATION_S,
        workers: int = 1,
        nice: int = 10,
    ) -> None:
        self.jobs_dir = jobs_dir
        self.max_waiting = max_waiting
        self.max_duration_s = max_duration_s
        self._on_done = on_done
        self._worker_count = workers
        self._nice = nice
        self._waiting: asyncio.Queue[_Job] = asyncio.Queue()
        self._progress: dict[str, float] = {}  # every job waiting (0) or running
        self._workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Starts the workers, after queueing again every job a restart interrupted (oldest first)."""
        await asyncio.to_thread(self.jobs_dir.mkdir, parents=True, exist_ok=True)
        found, unreadable = await asyncio.to_thread(self._read_jobs)
        for lesson_id in unreadable:
            self._hand_on(
                lesson_id,
                IngestError("The server lost this upload's record while restarting: upload it again"),
            )
        for job in sorted(found, key=lambda job: job.submitted_at):
            if job.lesson_id not in self._progress:  # submitted before start(): already queued
                log.info("ingesting lesson %s again: a restart interrupted it", job.lesson_id)
                self._enqueue(job)
        self._workers = [asyncio.create_task(self._work(), name=f"ingest-{n}") for n in range(self._worker_count)]

    def submit(self, lesson_id: str, source: Path, out_dir: Path) -> None:
        """Queues ``source``'s ingest into ``out_dir`` as ``<lesson_id>.<ext>`` and ``<lesson_id>.jpg``. Raises
        QueueFull when ``max_waiting`` jobs wait already."""
        if not LESSON_ID.fullmatch(lesson_id):
            raise ValueError(f"Expected a lesson id of letters, digits, '-' and '_', but got {lesson_id!r}")
        if lesson_id in self._progress:
            raise ValueError(f"Expected a lesson that is not being ingested, but got {lesson_id!r}, which is")
        if self.waiting >= self.max_waiting:
            raise QueueFull(f"{self.waiting} uploads are waiting to be processed: try again later")
        job = _Job(lesson_id, source.resolve(), out_dir.resolve(), time.time())
        self._write_job(job)  # a few hundred bytes: written here, so that the job exists once submit returns
        self._enqueue(job)

    @property
    def waiting(self) -> int:
        """How many jobs wait for a worker (the running ones are not counted)."""
        return self._waiting.qsize()

    def progress(self, lesson_id: str) -> float | None:
        """Percent done (0 while waiting), or None when the lesson is neither waiting nor being ingested."""
        return self._progress.get(lesson_id)

    async def close(self) -> None:
        """Stops the workers; a job they were doing is killed and stays in ``jobs_dir``, done again on start()."""
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            try:
                await worker
            except asyncio.CancelledError:
                if not worker.cancelled():  # close() itself was cancelled
                    raise
        self._workers = []

    # -----------------------------------------------------------------------------------------------------

    def _enqueue(self, job: _Job) -> None:
        self._progress[job.lesson_id] = 0.0
        self._waiting.put_nowait(job)

    def _job_path(self, lesson_id: str) -> Path:
        return self.jobs_dir / f"{lesson_id}.json"

    def _write_job(self, job: _Job) -> None:
        path = self._job_path(job.lesson_id)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(job.to_json()), encoding="utf-8")
        os.replace(partial, path)

    def _read_jobs(self) -> tuple[list[_Job], list[str]]:
        """The jobs in ``jobs_dir``, and the lesson ids of job files that cannot be read (removed)."""
        jobs, unreadable = [], []
        for path in self.jobs_dir.glob(".*.partial"):  # written by a submit a crash cut short: never queued
            path.unlink(missing_ok=True)
        for path in self.jobs_dir.glob("*.json"):
            if path.name.startswith("."):
                continue
            try:
                jobs.append(_Job.from_json(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, KeyError, TypeError) as error:
                log.error("cannot read the ingest job %s (%s): the lesson is reported failed", path, error)
                path.unlink(missing_ok=True)
                unreadable.append(path.stem)
        return jobs, unreadable

    async def _work(self) -> None:
        while True:
            job = await self._waiting.get()
            try:
                result = await self._run(job)
            except OSError as error:  # no worker process could start (out of processes or memory, say)
                log.error("cannot start the ingest worker of lesson %s: %s", job.lesson_id, error)
                result = IngestError("The server could not start processing the file: upload it again later")
            except Exception:  # a bug here must fail one job, not stop every later one
                log.exception("the ingest of lesson %s failed in the queue itself", job.lesson_id)
                result = IngestError("The server failed while processing the file: upload it again later")
            self._hand_on(job.lesson_id, result)

    async def _run(self, job: _Job) -> Ingested | IngestError:
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.lessons.ingest",
            str(job.source),
            str(job.out_dir),
            "--name",
            job.lesson_id,
            "--max-duration-s",
            repr(self.max_duration_s),
            "--nice",
            str(self._nice),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_CHECKOUT), os.getenv("PYTHONPATH")]))},
        )
        assert process.stdout is not None and process.stderr is not None  # both are pipes
        errors = asyncio.create_task(_tail(process.stderr, STDERR_KEPT))
        result: Ingested | IngestError | None = None
        try:
            async for line in process.stdout:
                result = self._read_line(job.lesson_id, line) or result
            returncode = await process.wait()
        finally:
            if process.returncode is None:  # close() cancelled this job: stop its worker now
                process.kill()
                await process.wait()
                await asyncio.to_thread(_remove_partials, job)
                errors.cancel()
        stderr = (await errors).decode(errors="replace")
        if result is None:
            await asyncio.to_thread(_remove_partials, job)  # a crashed worker could not clean up
            how = _ending(returncode)
            log.error("the ingest worker of lesson %s %s; its stderr ends:\n%s", job.lesson_id, how, stderr)
            return IngestError(
                f"Processing stopped unexpectedly (the worker {how}): upload the file again, or ask for help "
                "if it happens again (处理意外中断，请重新上传)"
            )
        if isinstance(result, Ingested):
            log.info("ingested lesson %s in %.1f s: %s", job.lesson_id, time.monotonic() - started, result)
        else:
            log.info("refused lesson %s: %s", job.lesson_id, result.reason)
        return result

    def _read_line(self, lesson_id: str, line: bytes) -> Ingested | IngestError | None:
        try:
            message = json.loads(line)
        except ValueError:
            log.warning("the ingest worker of lesson %s printed %r, which is not a JSON line", lesson_id, line[:200])
            return None
        if "progress" in message:
            self._progress[lesson_id] = float(message["progress"])
        if "ingested" in message:
            return Ingested.from_json(message["ingested"])
        if "refused" in message:
            if message.get("detail"):
                log.info("lesson %s was refused because of %s", lesson_id, message["detail"])
            return IngestError(str(message["refused"]))
        return None

    def _hand_on(self, lesson_id: str, result: Ingested | IngestError) -> None:
        self._progress.pop(lesson_id, None)
        try:
            self._on_done(lesson_id, result)
        except Exception:  # the job stays, so a restart hands the result on again
            log.exception("on_done failed for lesson %s: its job stays in %s", lesson_id, self.jobs_dir)
            return
        self._job_path(lesson_id).unlink(missing_ok=True)


async def _tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    """Reads ``stream`` to its end (a full pipe would stall the worker) and keeps its last ``keep`` bytes."""
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-keep:]
    return kept


def _remove_partials(job: _Job) -> None:
    """What a worker that did not finish left in ``out_dir``: the names ingest writes before renaming."""
    for path in job.out_dir.glob(f".{job.lesson_id}.partial.*"):
        path.unlink(missing_ok=True)


def _ending(returncode: int) -> str:
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:  # not a signal this platform names
        return f"was killed by signal {-returncode}"
