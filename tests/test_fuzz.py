"""Fuzzing: every parser of outside input answers with its own error, never anything else, and the
HTTP API never answers 500 (schemathesis against the server's own OpenAPI schema)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from server.lessons.timetable import TimetableError, parse_timetable
from server.media.rtp import h264_keyframe_start, vp8_keyframe_start
from server.signaling import protocol as p
from server.tokens import TokenError, verify_token

from .conftest import TEST_SECRET, ServerProcess, running_server

FIELDS = ["type", "room", "token", "sdp", "target", "candidate", "sdpMid", "sdpMLineIndex", "text", "raised"]
FIELDS += ["question", "options", "poll_id", "choice", "show", "participant_id", "muted", "subscribe", "slots"]
TYPES = ["join", "publish", "subscribe", "unpublish", "answer", "ice", "chat", "hand", "poll_open", "poll_answer"]
TYPES += ["poll_close", "remove", "end_lesson", "invite", "end_turn", "mute", "ping", "leave", "nonsense"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
# Messages that look like ours: a known type (mostly), known field names, any JSON values.
near_messages = st.fixed_dictionaries({"type": st.sampled_from(TYPES) | json_values}).flatmap(
    lambda head: st.dictionaries(st.sampled_from(FIELDS[1:]), json_values, max_size=6).map(lambda rest: head | rest)
)


def parses_or_refuses(text: str) -> None:
    try:
        message = p.parse_client_message(text)
    except p.ProtocolError as exc:
        assert exc.code in (p.ErrorCode.BAD_JSON, p.ErrorCode.BAD_MESSAGE) and exc.message
    else:
        assert message.type in TYPES


@given(st.text(max_size=300))
def test_any_text_frame(text: str) -> None:
    parses_or_refuses(text)


@given(json_values)
def test_any_json(value: Any) -> None:
    parses_or_refuses(json.dumps(value))


@settings(max_examples=300)
@given(near_messages)
def test_messages_that_look_like_ours(message: dict[str, Any]) -> None:
    parses_or_refuses(json.dumps(message))


@given(st.text(max_size=400))
def test_any_token(token: str) -> None:
    with pytest.raises(TokenError):
        verify_token(TEST_SECRET, token)


@given(st.text(max_size=400) | json_values.map(json.dumps))
def test_any_timetable(text: str) -> None:
    try:
        parse_timetable(text, lambda recording, class_id: None)
    except TimetableError as exc:
        assert exc.problems


@given(st.binary(max_size=64))
def test_any_payload_for_keyframe_detection(payload: bytes) -> None:
    assert isinstance(vp8_keyframe_start(payload), bool)
    assert isinstance(h264_keyframe_start(payload), bool)


@pytest.fixture(scope="module")
def api_server() -> Iterator[ServerProcess]:
    """A server of its own: the fuzzer may replace its timetable."""
    with running_server() as server:
        yield server


def test_the_api_never_answers_500(api_server: ServerProcess) -> None:
    """Every operation of /openapi.json, with generated paths, queries and bodies, as an admin."""
    schema = schemathesis.openapi.from_url(api_server.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {api_server.token('any-room', 'admin', 'fuzzer')}"}
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case: Any) -> None:
            case.call_and_validate(base_url=api_server.url, headers=headers, checks=[not_a_server_error])

        call()
        tried += 1
    assert tried >= 10, f"only {tried} operations in the schema"
    requests = sum(" HTTP/1.1" in line for line in api_server.log().splitlines())
    assert requests > 10 * tried, f"only {requests} requests reached the server"
    print(f"{tried} operations, {requests} requests")
    assert "Traceback" not in api_server.log(), api_server.log()[-3000:]
