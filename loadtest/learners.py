"""Locust users that behave like the web client: learners, teachers and recorded-lesson viewers.

They speak the signaling protocol over a websocket (websocket-client, cooperative under Locust's
gevent) without media: each learner is an idle session as a pupil's page is between messages. What a
learner actually sees and hears is measured by the media probes (``loadtest/probes.py``).

Configured by the runner through the environment (``SKYLOAD_*``). Counts that are not requests
(messages received by type) are written to ``SKYLOAD_OUT/messages-<pid>.json`` at the end.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gevent
import websocket
from locust import HttpUser, User, between, events, task
from locust.env import Environment

from server.tokens import Role, issue_token

SECRET = os.environ.get("SKYLOAD_SECRET", "")
OUT = Path(os.environ.get("SKYLOAD_OUT", "."))
DURATION_S = float(os.environ.get("SKYLOAD_DURATION_S", "60"))
WS_URL = os.environ.get("SKYLOAD_WS_URL", "")  # the signaling websocket, when not /ws on the host
PING_S = 20.0  # as the web client
RECEIVED: Counter[str] = Counter()
_sources = itertools.count()


def token(room: str, role: Role, name: str) -> str:
    return issue_token(SECRET, room=room, role=role, name=name, ttl_s=6 * 3600)


def _source_address(host: str) -> str | None:
    """On loopback, spread connections over 127.0.0.0/8: each source address has its own ~28,000
    ephemeral ports towards the server."""
    if not host.startswith("127."):
        return None
    return f"127.0.{next(_sources) % 200 + 1}.{random.randint(2, 250)}"


class SignalingError(Exception):
    """The server refused (its error code is the message, so failures group by code)."""


class SignalingSession:
    """One websocket session: join, keep alive, count what arrives, send what the user does."""

    def __init__(self, environment: Environment, base_url: str, room: str, token: str, role: str) -> None:
        self._env = environment
        self._url = WS_URL or base_url.replace("http", "ws", 1) + "/ws"
        self.room = room
        self._token = token
        self.role = role
        self.joined: dict[str, Any] | None = None
        self.closed = False
        self._ws: websocket.WebSocket | None = None
        self._greenlets: list[gevent.Greenlet] = []

    def join(self) -> dict[str, Any]:
        """Connect and join (again, after a drop: same token); the time to `joined` is the "join"
        request in Locust's stats."""
        self.close()
        self.closed = False
        started = time.perf_counter()
        sock = socket.socket()
        try:
            parts = urlsplit(self._url)
            source = _source_address(parts.hostname or "")
            if source:
                sock.bind((source, 0))
            sock.connect((parts.hostname, parts.port or 80))
            self._ws = websocket.create_connection(self._url, socket=sock, timeout=30, enable_multithread=True)
            self._ws.send(json.dumps({"type": "join", "room": self.room, "token": self._token, "subscribe": False}))
            while True:
                message = json.loads(self._ws.recv())
                RECEIVED[message["type"]] += 1
                if message["type"] == "joined":
                    break
                if message["type"] == "error" and message.get("fatal"):
                    raise SignalingError(message["code"])
        except Exception as exc:
            self._fire("join", started, exc if isinstance(exc, SignalingError) else SignalingError(type(exc).__name__))
            self.close()
            sock.close()
            raise
        self._fire("join", started, None)
        self.joined = message
        self._ws.settimeout(None)
        self._greenlets = [gevent.spawn(self._read), gevent.spawn(self._keepalive)]
        return message

    def _fire(self, name: str, started: float, exc: Exception | None) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._env.events.request.fire(
            request_type="WS", name=name, response_time=elapsed_ms, response_length=0, exception=exc, context={}
        )

    def send(self, message: dict[str, Any]) -> None:
        if self._ws is not None and not self.closed:
            try:
                self._ws.send(json.dumps(message))
            except (OSError, websocket.WebSocketException):
                self.close()

    def _read(self) -> None:
        assert self._ws is not None
        try:
            while True:
                message = json.loads(self._ws.recv())
                RECEIVED[message["type"]] += 1
                if message["type"] == "error":
                    self._env.events.request.fire(
                        request_type="WS",
                        name="error",
                        response_time=0,
                        response_length=0,
                        exception=SignalingError(message["code"]),
                        context={},
                    )
        except (OSError, websocket.WebSocketException, ValueError):
            pass
        finally:
            self.closed = True

    def _keepalive(self) -> None:
        while not self.closed:
            gevent.sleep(PING_S)
            self.send({"type": "ping"})

    def drop(self) -> None:
        """Lose the connection without saying goodbye (a network drop)."""
        if self._ws is not None and self._ws.sock is not None:
            self._ws.sock.close()
        self.close()

    def close(self) -> None:
        self.closed = True
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        if self._ws is not None:
            try:
                self._ws.close(timeout=1)
            except (OSError, websocket.WebSocketException):
                pass
            self._ws = None


class Participant(User):
    """A signaling participant in ``room()``; subclasses say who and what they do."""

    abstract = True
    role = Role.STUDENT
    wait_time = between(5, 15)

    def room(self) -> str:
        raise NotImplementedError

    def on_start(self) -> None:
        name = f"{self.role.value}-{id(self):x}"
        room = self.room()
        self.session = SignalingSession(self.environment, self.host, room, token(room, self.role, name), self.role)
        try:
            self.session.join()
        except Exception:
            pass  # counted as a failed join; a learner tries again on its next turn

    def on_stop(self) -> None:
        if getattr(self, "session", None) is not None:
            self.session.send({"type": "leave"})
            self.session.close()


class Learner(Participant):
    """A pupil: joins, stays, now and then chats or raises a hand."""

    abstract = True
    chat_probability = 0.02
    hand_probability = 0.02

    @task
    def attend(self) -> None:
        if self.session.closed:
            try:
                self.session.join()  # back by itself, as the page does
            except Exception:
                pass  # counted as a failed join; tried again next time
            return
        if random.random() < self.chat_probability:
            self.session.send({"type": "chat", "text": "老师好"})
        if random.random() < self.hand_probability:
            self.session.send({"type": "hand", "raised": random.random() < 0.5})


class RecordedViewer(HttpUser):
    """Plays a recorded lesson as the browser does: the catalog, then the file in ranges as it plays."""

    abstract = True
    wait_time = between(1, 3)
    chunk = 256 * 1024  # about 2 s of a lesson at ~1 Mbit/s

    def on_start(self) -> None:
        # A pupil of a class whose timetable plays the demo lesson: the catalog lists what that class
        # may watch, each on a signed URL.
        credential = {"Authorization": "Bearer " + token("g7-1", Role.STUDENT, "replay viewer")}
        listed = self.client.get("/api/recordings", name="/api/recordings", headers=credential).json()
        self.url = random.choice(listed)["url"]
        self.offset = 0

    @task
    def play(self) -> None:
        end = self.offset + self.chunk - 1
        with self.client.get(
            self.url, headers={"Range": f"bytes={self.offset}-{end}"}, name="recording range", catch_response=True
        ) as response:
            if response.status_code == 416:  # past the end: start again, as a replay would
                self.offset = 0
                response.success()
            elif response.status_code != 206:
                response.failure(f"expected 206, got {response.status_code}")
            else:
                self.offset += len(response.content)


@events.test_stop.add_listener
def _write_counts(environment: Environment, **kwargs: Any) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"messages-{os.getpid()}.json").write_text(json.dumps(RECEIVED))
