from __future__ import annotations

import subprocess
import sys

import pytest

from server.tokens import Role, TokenError, TokenExpired, issue_token, parse_duration, verify_token

SECRET = "s3cret-" + "z" * 32


def test_round_trip() -> None:
    token = issue_token(SECRET, room="g9-1", role=Role.TEACHER, name="Ms Li", ttl_s=60)
    grant = verify_token(SECRET, token)
    assert (grant.room, grant.role, grant.name) == ("g9-1", Role.TEACHER, "Ms Li")
    assert grant.participant_id


def test_other_secret_is_refused() -> None:
    token = issue_token(SECRET, room="r", role=Role.STUDENT, name="a", ttl_s=60)
    with pytest.raises(TokenError, match="not valid"):
        verify_token("another-secret-" + "y" * 32, token)


def test_expired_is_refused() -> None:
    token = issue_token(SECRET, room="r", role=Role.STUDENT, name="a", ttl_s=60, now=1000)
    with pytest.raises(TokenExpired):
        verify_token(SECRET, token)


def test_garbage_is_refused() -> None:
    with pytest.raises(TokenError):
        verify_token(SECRET, "not.a.token")


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


def test_parse_duration_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="Expected a duration"):
        parse_duration("two hours")


def test_cli_token_uses_the_persisted_development_secret(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"SKYCLASS_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "server.cli", "token", "--room", "r1", "--role", "student", "--name", "Wei"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.strip()
    second = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.strip()
    secret = (tmp_path / "secret").read_text().strip()
    assert verify_token(secret, first).room == "r1"
    assert verify_token(secret, second).role is Role.STUDENT
    assert (tmp_path / "secret").stat().st_mode & 0o077 == 0


def test_tokens_are_cut_from_log_lines() -> None:
    import logging

    from server.cli import RedactTokens

    token = issue_token(SECRET, room="r", role=Role.STUDENT, name="a", ttl_s=60)
    access = logging.LogRecord(
        "uvicorn.access", 20, "", 0, '%s - "%s %s"', ("1.2.3.4", "GET", f"/learn?room=r&token={token}"), None
    )
    failed = logging.LogRecord(
        "s", 40, "", 0, "failed on %s", (f'{{"type": "join", "room": "r", "token": "{token}"}}',), None
    )
    for record in (access, failed):
        assert RedactTokens().filter(record)
        assert token not in record.getMessage() and "[redacted]" in record.getMessage()
